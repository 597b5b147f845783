package jetstream_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// syncRecord is one fsync of a block file: when (a tick of the test's
// clock) and what the file held then.
type syncRecord struct {
	tick uint64
	data []byte
}

// TestGroupSyncCoversEveryAck checks that each acknowledged append was
// fsynced before Append returned: some fsync of the block file that holds
// the event, made while the file already held the event's bytes, happened
// before Append returned. Skipping the sync, or syncing before the server
// wrote the event, fails it.
func TestGroupSyncCoversEveryAck(t *testing.T) {
	dir := t.TempDir()
	s, err := jetstream.Embedded(t.Context(), jetstream.ServerConfig{DataDir: dir, Port: -1}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var clock atomic.Uint64
	var mu sync.Mutex
	synced := map[string][]syncRecord{} // block file -> its fsyncs
	if !jetstream.SetFileSync(s, func(f *os.File) error {
		if !strings.HasSuffix(f.Name(), ".blk") {
			return f.Sync()
		}
		// What the file holds before the fsync, read through its own
		// name: the server may write to it meanwhile, which only adds
		// bytes the record does not claim.
		data, err := os.ReadFile(f.Name())
		if err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		tick := clock.Add(1)
		mu.Lock()
		synced[f.Name()] = append(synced[f.Name()], syncRecord{tick: tick, data: data})
		mu.Unlock()
		return nil
	}) {
		t.Fatal("embedded store with fsync durability has no group sync")
	}

	// Concurrent writers, single events and batches, so that rounds serve
	// several appends and appends wait during rounds.
	type acked struct {
		id       uuid.UUID
		returned uint64 // clock when Append returned
	}
	var acks []acked
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			stream := eventstore.LedgerStream(fmt.Sprintf("sync%d", w))
			rev := eventstore.NoStream()
			for n := range 25 {
				evs := events(1 + n%3)
				res, err := s.Append(t.Context(), stream, rev, evs...)
				ret := clock.Add(1)
				if err != nil {
					t.Error(err)
					return
				}
				rev = eventstore.Exact(res.NextRevision)
				mu.Lock()
				for _, e := range evs {
					acks = append(acks, acked{id: e.ID, returned: ret})
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	msgs := filepath.Join(dir, "jetstream", "$G", "streams", "LEDGER", "msgs")
	blocks, err := filepath.Glob(filepath.Join(msgs, "*.blk"))
	if err != nil || len(blocks) == 0 {
		t.Fatalf("no block files in %s: %v", msgs, err)
	}
	contents := map[string][]byte{}
	for _, b := range blocks {
		if contents[b], err = readAll(b); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, a := range acks {
		id := []byte(a.id.String())
		file := ""
		for b, data := range contents {
			if bytes.Contains(data, id) {
				file = b
			}
		}
		if file == "" {
			t.Fatalf("event %s is in no block file", a.id)
		}
		ok := false
		for _, r := range synced[file] {
			if r.tick < a.returned && bytes.Contains(r.data, id) {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("event %s acknowledged at tick %d: %s not synced with it before", a.id, a.returned, filepath.Base(file))
		}
	}
	rounds := jetstream.SyncRounds(s)
	t.Logf("%d events acknowledged, %d sync rounds", len(acks), rounds)
	if rounds == 0 {
		t.Error("no sync round ran")
	}
}

func readAll(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// TestGroupSyncFailure checks that an append whose fsync fails returns the
// error instead of an acknowledgement, and that every later append fails
// too: after a failed fsync the kernel may have dropped the pages it could
// not write.
func TestGroupSyncFailure(t *testing.T) {
	s := newStore(t, jetstream.Config{})
	ctx := t.Context()
	stream := eventstore.LedgerStream("fails")
	if _, err := s.Append(ctx, stream, eventstore.NoStream(), events(1)...); err != nil {
		t.Fatal(err)
	}
	broken := errors.New("disk on fire")
	var fail atomic.Bool
	jetstream.SetFileSync(s, func(f *os.File) error {
		if fail.Load() {
			return broken
		}
		return f.Sync()
	})
	fail.Store(true)
	res, err := s.Append(ctx, stream, eventstore.Exact(0), events(1)...)
	if !errors.Is(err, broken) {
		t.Fatalf("append with a failing fsync: %+v, %v; want %v", res, err, broken)
	}
	fail.Store(false)
	if _, err := s.Append(ctx, eventstore.LedgerStream("other"), eventstore.NoStream(), events(1)...); !errors.Is(err, broken) {
		t.Fatalf("append after a failed fsync: %v; want %v", err, broken)
	}
}

// TestGroupSyncOnlyEmbedded checks which stores sync the files
// themselves: an embedded server with fsync durability, not one with
// interval durability.
func TestGroupSyncOnlyEmbedded(t *testing.T) {
	s, err := jetstream.Embedded(t.Context(), jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1, Durability: jetstream.DurabilityInterval}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if jetstream.SetFileSync(s, func(*os.File) error { return nil }) {
		t.Error("interval durability has a group sync")
	}
	if s.Server().JetStreamConfig().SyncAlways {
		t.Error("interval durability runs the server with SyncAlways")
	}
	f := newStore(t, jetstream.Config{})
	if f.Server().JetStreamConfig().SyncAlways {
		t.Error("group sync runs the server with SyncAlways")
	}
	srv, err := jetstream.StartServer(jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer jetstream.StopServer(srv)
	if !srv.JetStreamConfig().SyncAlways {
		t.Error("a server started on its own with fsync durability does not sync every write")
	}
}
