package jetstream_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/eventstore/jetstream/keys"
	"github.com/licenseledger/ledger/eventstore/jetstream/tokens"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/pii"
)

// blockSyncs records every fsync of a block file by the group sync of a
// store: when (a tick of its clock) and what the file held just before.
type blockSyncs struct {
	clock atomic.Uint64
	mu    sync.Mutex
	syncs map[string][]syncRecord // block file -> its fsyncs
}

func recordBlockSyncs(t *testing.T, s *jetstream.Store) *blockSyncs {
	t.Helper()
	r := &blockSyncs{syncs: map[string][]syncRecord{}}
	if !jetstream.SetFileSync(s, func(f *os.File) error {
		if !strings.HasSuffix(f.Name(), ".blk") {
			return f.Sync()
		}
		data, err := os.ReadFile(f.Name())
		if err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		tick := r.clock.Add(1)
		r.mu.Lock()
		r.syncs[f.Name()] = append(r.syncs[f.Name()], syncRecord{tick: tick, data: data})
		r.mu.Unlock()
		return nil
	}) {
		t.Fatal("embedded store with fsync durability has no group sync")
	}
	return r
}

// now returns the next tick: every fsync recorded before it has a lower
// one.
func (r *blockSyncs) now() uint64 { return r.clock.Add(1) }

// covered reports whether a block file of stream was fsynced before tick
// while it held needle at least n times.
func (r *blockSyncs) covered(stream string, needle []byte, n int, tick uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	dir := string(filepath.Separator) + stream + string(filepath.Separator) + "msgs" + string(filepath.Separator)
	for name, recs := range r.syncs {
		if !strings.Contains(name, dir) {
			continue
		}
		for _, rec := range recs {
			if rec.tick < tick && bytes.Count(rec.data, needle) >= n {
				return true
			}
		}
	}
	return false
}

// TestSyncCoversKeyAndTokenWrites checks that the key and token stores,
// given the ledger store's Sync on the same embedded server, return from
// Put, Destroy and Revoke only once a block file holding the write was
// fsynced: a token shown to an operator stays valid, a revoked one stays
// revoked and a destroyed key stays destroyed after an OS crash. Without
// the Sync call in any of them, no sync round runs after the write and
// the check fails.
func TestSyncCoversKeyAndTokenWrites(t *testing.T) {
	ctx := t.Context()
	s := newStore(t, jetstream.Config{})
	rec := recordBlockSyncs(t, s)
	js, err := natsjs.New(s.Conn())
	if err != nil {
		t.Fatal(err)
	}

	ks, err := keys.Open(ctx, js, keys.Config{Sync: s.Sync})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close(ctx)
	key := make([]byte, pii.KeySize)
	rand.Read(key)
	if err := ks.Put(ctx, "acme.u1", key); err != nil {
		t.Fatal(err)
	}
	keyStream, err := ks.StreamOf(ctx, "acme.u1")
	if err != nil {
		t.Fatal(err)
	}
	if !rec.covered(keyStream, key, 1, rec.now()) {
		t.Error("key Put returned before its key was fsynced")
	}
	if err := ks.Destroy(ctx, "acme.u1"); err != nil {
		t.Fatal(err)
	}
	if !rec.covered(keyStream, []byte(keys.TombstoneHeader+": "), 1, rec.now()) {
		t.Error("key Destroy returned before its tombstone was fsynced")
	}

	ts, err := tokens.Open(ctx, js, tokens.Config{Sync: s.Sync})
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	bucket := "KV_" + tokens.DefaultBucket
	// Two operators, so that one can be revoked.
	var toks []auth.Token
	for range 2 {
		tok, _, err := auth.Mint(ctx, ts, rand.Reader, auth.Operator, "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		body, err := json.Marshal(tok)
		if err != nil {
			t.Fatal(err)
		}
		if !rec.covered(bucket, body, 1, rec.now()) {
			t.Errorf("token Put returned before its token was fsynced")
		}
		toks = append(toks, tok)
	}
	tok := toks[0]
	if err := ts.Revoke(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	tick := rec.now()
	// The put and the delete marker of each key.
	if !rec.covered(bucket, []byte("hash."+tok.Hash.String()), 2, tick) {
		t.Error("token Revoke returned before the delete of its hash key was fsynced")
	}
	if !rec.covered(bucket, []byte("id."+tok.ID), 2, tick) {
		t.Error("token Revoke returned before the delete of its id key was fsynced")
	}
}
