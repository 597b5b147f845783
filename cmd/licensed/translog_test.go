package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/translog"
)

// The transparency log through the real wiring, on each store: the key
// files, a checkpoint that verifies with log.vkey, leaves that are the
// store's records in its global order with inclusion proofs served for
// each, an audit bundle that verifies offline, and after a restart a tree
// that extends the one signed before it.
func TestTransparencyLog(t *testing.T) {
	for name, extra := range backends(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			args := append(extra(t), "--checkpoint-every", "200ms", "--log-origin", "ledger.test/"+name)
			svc := startService(t, dir, &syncBuffer{}, args...)
			tok, err := os.ReadFile(filepath.Join(dir, "operator.token"))
			if err != nil {
				t.Fatal(err)
			}
			op := strings.TrimSpace(string(tok))
			if st, err := os.Stat(filepath.Join(dir, translog.KeyFile)); err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("log.key: %v %v, want mode 0600", st, err)
			}
			vk, err := os.ReadFile(filepath.Join(dir, translog.VerifierKeyFile))
			if err != nil {
				t.Fatal(err)
			}
			vkey := strings.TrimSpace(string(vk))
			if got := svc.expect(200, op, "GET", "/v1/log/key", nil).raw; strings.TrimSpace(got) != vkey {
				t.Fatalf("GET /v1/log/key %q, log.vkey %q", got, vkey)
			}
			svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 3})
			svc.expect(201, op, "POST", "/v1/accounts/acme/users", map[string]string{"name": "Ada", "email": "ada@acme.test", "role": "admin"})
			first := logHoldsEveryRecord(t, svc, op, dir)
			if first.Size != 2 {
				t.Fatalf("checkpoint of %d leaves, want the 2 events stored", first.Size)
			}

			bundle := svc.expect(200, op, "GET", "/v1/accounts/acme/export?keys=true", nil).raw
			v, err := translog.VerifyBundle(context.Background(), strings.NewReader(bundle), vkey, time.Now())
			if err != nil {
				t.Fatalf("bundle: %v\n%s", err, bundle)
			}
			if v.Records != 2 || v.Keys != 1 || v.Seats.Active != 1 {
				t.Fatalf("bundle verified %+v, want 2 records, 1 key, 1 active", v)
			}

			svc.stop()
			svc = startService(t, dir, &syncBuffer{}, args...)
			defer svc.stop()
			svc.expect(200, op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 1})
			second := logHoldsEveryRecord(t, svc, op, dir)
			if second.Size != 3 {
				t.Fatalf("checkpoint of %d leaves after the restart, want the 3 events stored", second.Size)
			}
			var p struct{ Proof []tlog.Hash }
			raw := svc.expect(200, op, "GET", fmt.Sprintf("/v1/log/consistency?old=%d&new=%d", first.Size, second.Size), nil).raw
			if err := json.Unmarshal([]byte(raw), &p); err != nil {
				t.Fatal(err)
			}
			if err := tlog.CheckTree(p.Proof, second.Size, second.Hash, first.Size, first.Hash); err != nil {
				t.Fatalf("the tree after the restart does not extend the one before: %v", err)
			}
		})
	}
}

// checkpointOf fetches checkpoints until one covers size leaves.
func checkpointOf(t *testing.T, svc *running, token, vkey string, size int64) translog.Checkpoint {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := svc.do(token, "GET", "/v1/log/checkpoint", nil)
		if r.status == 200 {
			c, err := translog.OpenCheckpoint([]byte(r.raw), vkey)
			if err != nil {
				t.Fatalf("checkpoint %q: %v", r.raw, err)
			}
			if c.Size >= size {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of %d leaves: %d %s", size, r.status, r.raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logHoldsEveryRecord waits for a checkpoint of the service's log that
// covers every record its store holds, foreign ones included, verifies it
// with the data directory's log.vkey, and checks that leaf i is the
// store's i-th record in its global order, with the inclusion proof
// /v1/log/inclusion serves for it.
func logHoldsEveryRecord(t *testing.T, svc *running, token, dir string) translog.Checkpoint {
	t.Helper()
	vk, err := os.ReadFile(filepath.Join(dir, translog.VerifierKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	var leaves []tlog.Hash
	for rec, err := range svc.m.store.ReadAll(context.Background(), 0) {
		if err != nil && !errors.Is(err, eventstore.ErrUnreadable) {
			t.Fatal(err)
		}
		leaves = append(leaves, translog.LeafHash(rec, err))
	}
	c := checkpointOf(t, svc, token, strings.TrimSpace(string(vk)), int64(len(leaves)))
	if c.Size != int64(len(leaves)) {
		t.Fatalf("checkpoint of %d leaves, the store holds %d records", c.Size, len(leaves))
	}
	for i, leaf := range leaves {
		var p struct{ Proof []tlog.Hash }
		raw := svc.expect(200, token, "GET", fmt.Sprintf("/v1/log/inclusion?index=%d&size=%d", i, c.Size), nil).raw
		if err := json.Unmarshal([]byte(raw), &p); err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p.Proof, c.Size, c.Hash, int64(i), leaf); err != nil {
			t.Fatalf("leaf %d is not the store's record %d: %v", i, i, err)
		}
	}
	return c
}

// bundleNamesForeignRecord exports account's audit bundle and checks that
// it does not verify, naming a record of the account's ledger stream.
func bundleNamesForeignRecord(t *testing.T, svc *running, token, dir, account string) {
	t.Helper()
	vk, err := os.ReadFile(filepath.Join(dir, translog.VerifierKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	bundle := svc.expect(200, token, "GET", "/v1/accounts/"+account+"/export", nil).raw
	_, err = translog.VerifyBundle(context.Background(), strings.NewReader(bundle), strings.TrimSpace(string(vk)), time.Now())
	if want := "ledger-" + account + " revision"; !errors.Is(err, translog.ErrBundle) || !strings.Contains(err.Error(), want) {
		t.Fatalf("the bundle of an account with foreign records: %v, want ErrBundle naming %q", err, want)
	}
}
