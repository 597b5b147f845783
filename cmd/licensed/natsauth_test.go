package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/licenseledger/ledger/internal/auth"
)

// The embedded NATS server takes no anonymous client, and the credential
// licensed writes for downstream services can subscribe but place nothing:
// not an event on a ledger subject, not a token record in the token bucket.
// licensed's own seed is kept and reused across restarts; both files are
// readable by their owner only, and the log names their paths, never a
// seed.
func TestEmbeddedNATSRequiresCredentials(t *testing.T) {
	for name, backend := range backends(t) {
		t.Run(name, func(t *testing.T) { embeddedNATSAuth(t, backend(t)) })
	}
}

func embeddedNATSAuth(t *testing.T, store []string) {
	dir := t.TempDir()
	logs := &syncBuffer{}
	svc := startService(t, dir, logs, store...)
	stopped := false
	defer func() {
		if !stopped {
			svc.stop()
		}
	}()
	url := svc.m.NATSURL()
	// Anonymous clients are refused.
	if nc, err := nats.Connect(url, nats.NoReconnect()); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("anonymous client: %v, want an authorization violation", err)
	}
	svcSeed, downSeed := filepath.Join(dir, "licensed.nk"), filepath.Join(dir, "downstream.nk")
	seeds := map[string][]byte{}
	for _, p := range []string{svcSeed, downSeed} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("no credential file: %v", err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v, want 0600", p, fi.Mode().Perm())
		}
		seeds[p], _ = os.ReadFile(p)
	}


	raw, err := os.ReadFile(filepath.Join(dir, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	op := strings.TrimSpace(string(raw))
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 3})

	// The downstream credential subscribes...
	creds, err := nats.NkeyOptionFromSeed(downSeed)
	if err != nil {
		t.Fatal(err)
	}
	var violations []string
	errc := make(chan error, 16)
	nc, err := nats.Connect(url, creds, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errc <- err }))
	if err != nil {
		t.Fatalf("downstream credential: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("ledger.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	svc.expect(200, op, "POST", "/v1/accounts/acme/seats", map[string]any{"count": 1})
	var m *nats.Msg
	for m == nil || m.Subject != "ledger.acme.SeatsPurchased" { // the relay may publish the opening after the subscription
		if m, err = sub.NextMsg(10 * time.Second); err != nil {
			t.Fatalf("downstream subscriber: %v", err)
		}
	}

	// ...but a copy of that purchase published again, and a forged
	// operator token, are refused.
	secret := auth.Prefix + "forgedforgedforgedforgedforgedforgedforged"
	h := auth.HashSecret(secret)
	record, _ := json.Marshal(auth.Token{ID: uuid.NewString(), Hash: h, Role: auth.Operator, CreatedAt: time.Now()})
	for subj, data := range map[string][]byte{
		"ledger.acme.SeatsPurchased":           m.Data,
		"$KV.LEDGER_TOKENS.hash." + h.String(): record,
	} {
		if err := nc.Publish(subj, data); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			violations = append(violations, err.Error())
		case <-time.After(5 * time.Second):
			t.Fatalf("publish on %s: no permissions violation", subj)
		}
	}
	for _, v := range violations {
		if !strings.Contains(v, "Permissions Violation") {
			t.Fatalf("publish refused for another reason: %s", v)
		}
	}
	seats := svc.expect(200, op, "GET", "/v1/accounts/acme/seats", nil).body
	if num(t, seats, "seats") != 4 {
		t.Fatalf("seats %v, want 4", seats)
	}
	svc.expect(401, secret, "GET", "/v1/accounts/acme", nil)

	// The log says where the downstream credential is, and never a seed.
	if !strings.Contains(logs.String(), downSeed) {
		t.Fatalf("the log does not name %s", downSeed)
	}
	for p, seed := range seeds {
		if s := strings.TrimSpace(string(seed)); strings.Contains(logs.String(), s) {
			t.Fatalf("the log holds the seed of %s", p)
		}
	}

	// A restart keeps both identities.
	svc.stop()
	stopped = true
	again := startService(t, dir, logs, store...)
	defer again.stop()
	for p, seed := range seeds {
		if b, _ := os.ReadFile(p); !bytes.Equal(b, seed) {
			t.Fatalf("%s changed across a restart", p)
		}
	}
	nc2, err := nats.Connect(again.m.NATSURL(), creds)
	if err != nil {
		t.Fatalf("downstream credential after a restart: %v", err)
	}
	nc2.Close()
}
