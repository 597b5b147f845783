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

	natsjs "github.com/nats-io/nats.go/jetstream"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/esdbtest"
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

// A log kept in the data directory is not extended over a store whose
// history changed under it (its last record removed, or rewritten in
// place on an EventStoreDB node): after a restart its endpoints answer 503
// log-unavailable, while the ledger goes on serving and taking commands.
func TestLogRefusesAChangedHistory(t *testing.T) {
	rewrite := func(t *testing.T) func([]byte) []byte {
		return func(data []byte) []byte {
			out := strings.Replace(string(data), `"count":1`, `"count":9`, 1)
			if out == string(data) {
				t.Errorf("control: the last record is not a purchase of one seat: %s", data)
			}
			return []byte(out)
		}
	}
	for name, setup := range map[string]func(t *testing.T) (args []string, tamper func(t *testing.T, svc *running, dir string)){
		"jetstream/truncated": func(*testing.T) ([]string, func(*testing.T, *running, string)) {
			return nil, func(t *testing.T, svc *running, dir string) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				js, err := natsjs.New(connectAsLicensed(t, svc, dir))
				if err != nil {
					t.Fatal(err)
				}
				st, err := js.Stream(ctx, "LEDGER")
				if err != nil {
					t.Fatal(err)
				}
				m, err := st.GetLastMsgForSubject(ctx, ">")
				if err != nil {
					t.Fatal(err)
				}
				if err := st.SecureDeleteMsg(ctx, m.Sequence); err != nil {
					t.Fatal(err)
				}
			}
		},
		"esdb/truncated": func(t *testing.T) ([]string, func(*testing.T, *running, string)) {
			srv := startESDB(t)
			return []string{"--store", srv.ConnectionString()}, func(*testing.T, *running, string) { srv.Truncate(1) }
		},
		"esdb/rewritten": func(t *testing.T) ([]string, func(*testing.T, *running, string)) {
			srv := startESDB(t)
			return []string{"--store", srv.ConnectionString()}, func(t *testing.T, _ *running, _ string) { srv.RewriteLast(rewrite(t)) }
		},
	} {
		t.Run(name, func(t *testing.T) {
			args, tamper := setup(t)
			args = append(args, "--checkpoint-every", "200ms")
			dir := t.TempDir()
			svc := startService(t, dir, &syncBuffer{}, args...)
			op := operatorToken(t, dir)
			svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 3})
			svc.expect(200, op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 1})
			if c := logHoldsEveryRecord(t, svc, op, dir); c.Size != 2 {
				t.Fatalf("checkpoint of %d leaves, want the 2 events stored", c.Size)
			}
			tamper(t, svc, dir)
			svc.stop()

			again := startService(t, dir, &syncBuffer{}, args...)
			defer again.stop()
			for deadline := time.Now().Add(10 * time.Second); ; {
				p := again.do(op, "GET", "/v1/log/checkpoint", nil)
				if p.status == 503 && strings.Contains(p.raw, "log-unavailable") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the log's checkpoint answered %d %s, want 503 log-unavailable", p.status, p.raw)
				}
				time.Sleep(50 * time.Millisecond)
			}
			again.expect(503, op, "GET", "/v1/log/inclusion?index=0&size=1", nil)
			// The ledger goes on: reads, and commands (on another account:
			// the read models still hold acme's events removed from the
			// store until they are folded again).
			again.expect(200, op, "GET", "/v1/accounts/acme/seats", nil)
			again.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "beta", "name": "Beta", "seats": 1})
			again.expect(200, op, "POST", "/v1/accounts/beta/seats", map[string]int{"count": 2})
			select {
			case err := <-again.m.errs:
				t.Fatalf("the service stopped: %v", err)
			default:
			}
		})
	}
}

// startESDB starts an EventStoreDB double for the test.
func startESDB(t *testing.T) *esdbtest.Server {
	t.Helper()
	srv, err := esdbtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}
