package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// Two licensed processes sharing one NATS server: a token minted through
// one is accepted by the other, both see every account, and the store's
// concurrency control, not either process's memory, decides the last seat.
func TestTwoProcessesShareOneNATS(t *testing.T) {
	a := startService(t, t.TempDir(), io.Discard)
	defer a.stop()
	b := joinService(t, a)
	defer b.stop()

	raw, err := os.ReadFile(filepath.Join(a.m.cfg.DataDir, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	op := strings.TrimSpace(string(raw))
	if _, err := os.Stat(filepath.Join(b.m.cfg.DataDir, "operator.token")); !os.IsNotExist(err) {
		t.Fatalf("the second process made an operator token of its own (%v): there must be one per service", err)
	}
	a.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 2})
	admin, _ := b.expect(201, op, "POST", "/v1/tokens", map[string]any{"role": "admin", "account": "acme"}).body["token"].(string)
	a.expect(201, admin, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Ada Lovelace", "email": "ada@acme.test", "role": "admin"})

	// b has not loaded acme yet; a fills the last seat; b must refuse.
	b.expect(200, admin, "GET", "/v1/accounts/acme", nil)
	a.expect(201, admin, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Bob Babbage", "email": "bob@acme.test", "role": "member"})
	full := b.expect(409, admin, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Cy Quill", "email": "cy@acme.test", "role": "member"})
	if !strings.Contains(full.raw, "no-seat-available") {
		t.Fatalf("the second process answered %s", full.raw)
	}
	// b's purchase lets a add the third user.
	b.expect(200, admin, "POST", "/v1/accounts/acme/seats", map[string]any{"count": 1})
	a.expect(201, admin, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Cy Quill", "email": "cy@acme.test", "role": "member"})
	for _, svc := range []*running{a, b} {
		seats := svc.expect(200, admin, "GET", "/v1/accounts/acme/seats?min_position=5", nil).body
		if num(t, seats, "active") != 3 || num(t, seats, "seats") != 3 {
			t.Fatalf("a process reads seats %v, want 3 active on 3", seats)
		}
	}
}

// A process joining with a credential that lacks the service's rights
// (the downstream one, the easy mistake) fails its start at once with an
// error that says so, instead of retrying the stream's creation until its
// context ends; the server's refusal is logged through the service's
// logger, not printed by the NATS client.
func TestJoinWithSubscribeOnlyCredentialFailsAtOnce(t *testing.T) {
	a := startService(t, t.TempDir(), io.Discard)
	defer a.stop()

	cfg, err := ParseConfig([]string{"--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0",
		"--nats-url", a.m.NATSURL(), "--nats-creds", filepath.Join(a.m.cfg.DataDir, "downstream.nk")},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	m := NewMain(cfg, slog.New(slog.NewJSONHandler(&logs, nil)))
	// The start's own deadline is far beyond what a refusal takes; a start
	// that waits for it has not noticed the refusal.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = m.Start(ctx)
	m.Close()
	if err == nil {
		t.Fatal("a process with the subscribe-only credential started")
	}
	if ctx.Err() != nil || !errors.Is(err, nats.ErrPermissionViolation) || !strings.Contains(err.Error(), "downstream.nk") {
		t.Fatalf("start failed with %v (context: %v), want the permission refusal naming the credential", err, ctx.Err())
	}
	if !strings.Contains(logs.String(), "Permissions Violation") {
		t.Fatalf("the refusal is not in the service's log:\n%s", logs.String())
	}
}

// A process joining a service whose operator token was written by another
// process writes none and does not point its operator at a file of its
// data directory that does not exist.
func TestJoiningProcessNamesNoMissingOperatorToken(t *testing.T) {
	a := startService(t, t.TempDir(), io.Discard)
	defer a.stop()
	var logs syncBuffer
	dir := t.TempDir()
	b := startService(t, dir, &logs, "--nats-url", a.m.NATSURL(),
		"--nats-creds", filepath.Join(a.m.cfg.DataDir, "licensed.nk"))
	defer b.stop()
	path := filepath.Join(dir, "operator.token")
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the joining process wrote an operator token (%v)", err)
	}
	if strings.Contains(logs.String(), path) {
		t.Fatalf("the joining process names %s, which does not exist:\n%s", path, logs.String())
	}
	if !strings.Contains(logs.String(), "operator token") {
		t.Fatalf("the joining process says nothing about the operator token:\n%s", logs.String())
	}
}
