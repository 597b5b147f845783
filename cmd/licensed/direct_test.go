package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// On a single replica the ledger stream answers direct gets (the cheap way
// to read a stream's last event), and a stream made before that is updated
// on start. The reads stay exact: a process that recorded activities for a
// user refuses the next one as soon as another process deactivated them.
func TestLedgerStreamServesDirectGets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := startService(t, t.TempDir(), io.Discard)
	defer a.stop()
	js, err := natsjs.New(a.m.backend.nc)
	if err != nil {
		t.Fatal(err)
	}
	allowDirect := func() bool {
		t.Helper()
		st, err := js.Stream(ctx, "LEDGER")
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config.AllowDirect
	}
	if !allowDirect() {
		t.Fatal("the ledger stream of a fresh service does not allow direct gets")
	}
	// A stream as earlier versions made it.
	st, err := js.Stream(ctx, "LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	old := st.CachedInfo().Config
	old.AllowDirect = false
	if _, err := js.UpdateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if allowDirect() {
		t.Fatal("could not turn direct gets off")
	}
	b := joinService(t, a)
	defer b.stop()
	if !allowDirect() {
		t.Fatal("starting did not update the ledger stream to allow direct gets")
	}

	raw, err := os.ReadFile(filepath.Join(a.m.cfg.DataDir, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	op := strings.TrimSpace(string(raw))
	a.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 2})
	a.expect(201, op, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Bob Babbage", "email": "bob@acme.test", "role": "admin"})
	ada, _ := a.expect(201, op, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Ada Lovelace", "email": "ada@acme.test", "role": "member"}).body["id"].(string)
	if ada == "" {
		t.Fatal("no user id in the answer to adding a user")
	}
	activity := map[string]any{"user_id": ada, "kind": "note", "ref": "n-1"}
	b.expect(201, op, "POST", "/v1/accounts/acme/activities", activity)
	a.expect(201, op, "POST", "/v1/accounts/acme/activities", activity)
	b.expect(201, op, "POST", "/v1/accounts/acme/activities", activity)
	a.expect(200, op, "POST", "/v1/accounts/acme/users/"+ada+"/deactivate", nil)
	refused := b.expect(409, op, "POST", "/v1/accounts/acme/activities", activity)
	if !strings.Contains(refused.raw, "user-deactivated") {
		t.Fatalf("activity of a user another process deactivated: %s", refused.raw)
	}
}
