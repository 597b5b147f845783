package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
