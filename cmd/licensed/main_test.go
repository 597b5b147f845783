package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/esdbtest"
)

// syncBuffer collects the service's log output from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// running is the service started by its real wiring, on random ports.
type running struct {
	t    *testing.T
	m    *Main
	base string
}

// backends are the event stores the end-to-end tests run on: the embedded
// JetStream default, and EventStoreDB served by the in-process double of
// its gRPC API (started once per test and kept across service restarts).
func backends(t *testing.T) map[string]func(t *testing.T) []string {
	return map[string]func(t *testing.T) []string{
		"jetstream": func(*testing.T) []string { return nil },
		"esdb": func(t *testing.T) []string {
			srv, err := esdbtest.Start()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Close)
			return []string{"--store", srv.ConnectionString()}
		},
	}
}

func startService(t *testing.T, dir string, logs io.Writer, extra ...string) *running {
	t.Helper()
	args := append([]string{
		"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--log-level", "debug",
	}, extra...)
	cfg, err := ParseConfig(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		m.Close()
		t.Fatal(err)
	}
	r := &running{t: t, m: m, base: "http://" + m.HTTPAddr()}
	r.waitReady()
	return r
}

func (r *running) stop() {
	r.t.Helper()
	if err := r.m.Close(); err != nil {
		r.t.Fatalf("close: %v", err)
	}
}

func (r *running) waitReady() {
	r.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(r.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("service not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (r *running) do(token, method, path string, body any, header ...string) reply {
	r.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			r.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, r.base+path, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	out := reply{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

// expect checks a reply's status and returns it.
func (r *running) expect(want int, token, method, path string, body any) reply {
	r.t.Helper()
	got := r.do(token, method, path, body)
	if got.status != want {
		r.t.Fatalf("%s %s: status %d, want %d: %s", method, path, got.status, want, got.raw)
	}
	return got
}

// expectWith is expect with request headers given as name, value pairs.
func (r *running) expectWith(want int, token, method, path string, body any, header ...string) reply {
	r.t.Helper()
	got := r.do(token, method, path, body, header...)
	if got.status != want {
		r.t.Fatalf("%s %s: status %d, want %d: %s", method, path, got.status, want, got.raw)
	}
	return got
}

func num(t *testing.T, m map[string]any, key string) int {
	t.Helper()
	v, ok := m[key].(float64)
	if !ok {
		t.Fatalf("no number %q in %v", key, m)
	}
	return int(v)
}

func list(t *testing.T, m map[string]any, key string) []map[string]any {
	t.Helper()
	raw, ok := m[key].([]any)
	if !ok {
		t.Fatalf("no list %q in %v", key, m)
	}
	out := make([]map[string]any, len(raw))
	for i, v := range raw {
		out[i] = v.(map[string]any)
	}
	return out
}

// The seed story over HTTP against the real wiring, then a restart on the
// same data directory that finds everything as it was; on each store.
func TestEndToEndSeedStory(t *testing.T) {
	for name, backend := range backends(t) {
		t.Run(name, func(t *testing.T) { seedStory(t, backend(t)) })
	}
}

func seedStory(t *testing.T, store []string) {
	dir := t.TempDir()
	logs := &syncBuffer{}
	svc := startService(t, dir, logs, store...)

	tokenPath := filepath.Join(dir, "operator.token")
	fi, err := os.Stat(tokenPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("operator token mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(tokenPath)
	op := strings.TrimSpace(string(b))

	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme Recruiting", "seats": 2})
	minted := svc.expect(201, op, "POST", "/v1/tokens", map[string]any{"role": "admin", "account": "acme"})
	admin, _ := minted.body["token"].(string)
	if admin == "" {
		t.Fatalf("minted token missing: %s", minted.raw)
	}
	svc.expect(401, "", "GET", "/v1/accounts/acme", nil)

	ada := svc.expect(201, admin, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Ada Lovelace", "email": "ada@acme.test", "role": "admin"}).body["id"].(string)
	bob := svc.expect(201, admin, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Bob Babbage", "email": "bob@acme.test", "role": "member"}).body["id"].(string)
	full := svc.expect(409, admin, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Cyrus Quill", "email": "cyrus@acme.test", "role": "member"})
	if !strings.Contains(full.raw, "no seat available: 2 of 2 in use") || full.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("seat limit answered %s %s", full.header.Get("Content-Type"), full.raw)
	}

	svc.expect(200, admin, "POST", "/v1/accounts/acme/users/"+bob+"/deactivate", map[string]any{"reason": "moved to another team"})
	if seats := svc.expect(200, admin, "GET", "/v1/accounts/acme/seats", nil).body; num(t, seats, "available") != 1 || num(t, seats, "deactivated") != 1 {
		t.Fatalf("after deactivation seats read %v, want the seat freed", seats)
	}
	cyrus := svc.expect(201, admin, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Cyrus Quill", "email": "cyrus@acme.test", "role": "member"}).body["id"].(string)
	svc.expect(409, admin, "POST", "/v1/accounts/acme/users/"+bob+"/activate", nil)
	svc.expect(200, admin, "POST", "/v1/accounts/acme/seats", map[string]any{"count": 1})
	svc.expect(200, admin, "POST", "/v1/accounts/acme/users/"+bob+"/activate", nil)

	svc.expect(201, admin, "POST", "/v1/accounts/acme/activities", map[string]any{"user_id": cyrus, "kind": "note", "ref": "candidate-17"})
	svc.expect(201, admin, "POST", "/v1/accounts/acme/activities", map[string]any{"user_id": bob, "kind": "call", "ref": "candidate-18"})
	beforeDelete := time.Now().UTC()
	time.Sleep(10 * time.Millisecond)

	noConfirm := svc.expect(428, admin, "DELETE", "/v1/accounts/acme/users/"+cyrus, nil)
	if !strings.Contains(noConfirm.raw, "permanent") || !strings.Contains(noConfirm.raw, "deactivat") {
		t.Fatalf("428 does not explain deletion vs deactivation: %s", noConfirm.raw)
	}
	svc.expect(200, admin, "DELETE", "/v1/accounts/acme/users/"+cyrus+"?confirm="+cyrus+"&reassign_to="+ada, nil)
	gone := svc.expect(410, admin, "POST", "/v1/accounts/acme/users/"+cyrus+"/activate", nil)
	if !strings.Contains(gone.raw, "cannot be recovered") {
		t.Fatalf("reactivating a deleted user: %s", gone.raw)
	}

	checkStory := func(svc *running) {
		t.Helper()
		acts := list(t, svc.expect(200, admin, "GET", "/v1/accounts/acme/activities", nil).body, "activities")
		if len(acts) != 2 {
			t.Fatalf("%d activities, want 2 (records stay after deletion)", len(acts))
		}
		for _, a := range acts {
			switch a["user_id"] {
			case cyrus:
				if a["user_name"] != "" || a["owner_id"] != ada || a["owner_name"] != "Ada Lovelace" {
					t.Fatalf("deleted user's activity attributed as %v", a)
				}
			case bob:
				if a["user_name"] != "Bob Babbage" {
					t.Fatalf("deactivated-then-active user's activity attributed as %v", a)
				}
			}
		}
		seats := svc.expect(200, admin, "GET", "/v1/accounts/acme/seats", nil).body
		if num(t, seats, "active") != 2 || num(t, seats, "deleted") != 1 || num(t, seats, "seats") != 3 || num(t, seats, "available") != 1 {
			t.Fatalf("seats %v", seats)
		}
		users := list(t, svc.expect(200, admin, "GET", "/v1/accounts/acme/users", nil).body, "users")
		for _, u := range users {
			if u["id"] == cyrus && (u["name"] != "" || u["email"] != "" || u["status"] != "deleted") {
				t.Fatalf("deleted user listed as %v", u)
			}
		}
		verify := svc.expect(200, admin, "GET", "/v1/accounts/acme/audit/verify", nil)
		if verify.body["ok"] != true {
			t.Fatalf("chain verification: %s", verify.raw)
		}
		entries := list(t, svc.expect(200, admin, "GET", "/v1/accounts/acme/audit?user="+cyrus, nil).body, "entries")
		if len(entries) < 3 || entries[len(entries)-1]["action"] != "UserDeleted" {
			t.Fatalf("audit of the deleted user: %v", entries)
		}
		past := svc.expect(200, admin, "GET", "/v1/accounts/acme/state?as_of="+beforeDelete.Format(time.RFC3339Nano), nil)
		found := false
		for _, u := range list(t, past.body, "users") {
			if u["id"] == cyrus {
				found = true
				if u["status"] != "active" || u["name"] != "" {
					t.Fatalf("as of before the deletion the user reads %v, want active with the name erased", u)
				}
			}
		}
		if !found {
			t.Fatalf("state as of %s lacks the then active user: %s", beforeDelete, past.raw)
		}
		bill := svc.expect(200, admin, "GET", "/v1/accounts/acme/billing?period="+beforeDelete.Format("2006-01"), nil).body
		if num(t, bill, "seats_billed") != 2 || num(t, bill, "peak_active") != 3 {
			t.Fatalf("billing %v", bill)
		}
	}
	checkStory(svc)
	// Publishing may trail the answer (the EventStoreDB relay publishes
	// after the append): give it a moment.
	wants := []string{
		`licensed_commands_total{command="DeleteUser",outcome="ok"} 1`,
		`licensed_commands_total{command="AddUser",outcome="refused"} 1`,
		"licensed_events_published_total 10", // every appended event, on its subject
		"licensed_append_duration_seconds_count",
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		metrics := svc.expect(200, "", "GET", "/metrics", nil).raw
		missing := ""
		for _, want := range wants {
			if !strings.Contains(metrics, want) {
				missing = want
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %q:\n%s", missing, metrics)
		}
		time.Sleep(20 * time.Millisecond)
	}
	before := svc.expect(200, admin, "GET", "/v1/accounts/acme", nil)
	svc.stop()

	again := startService(t, dir, logs, store...)
	defer again.stop()
	after := again.expect(200, admin, "GET", "/v1/accounts/acme", nil)
	if after.header.Get("ETag") != before.header.Get("ETag") || after.header.Get("ETag") == "" {
		t.Fatalf("ETag %q after restart, %q before", after.header.Get("ETag"), before.header.Get("ETag"))
	}
	checkStory(again)
	// The account still refuses what it refused, and accepts more work.
	again.expect(409, admin, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Ada Twin", "email": "ada@acme.test", "role": "member"})
	again.expect(200, admin, "POST", "/v1/accounts/acme/users/"+bob+"/deactivate", nil)

	for _, secret := range []string{"Ada Lovelace", "Bob Babbage", "Cyrus Quill", "ada@acme.test", "cyrus@acme.test", op, admin} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("the service logged %q", secret)
		}
	}
	if !strings.Contains(logs.String(), `"route":"POST /v1/accounts/{account}/users"`) {
		t.Fatal("control: the request log lines are missing, the scan proves nothing")
	}
}

func dirContains(t *testing.T, dir, s string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(s)) || bytes.Contains(bytes.ToLower(b), []byte(strings.ToLower(s))) {
			t.Logf("%s holds %q", path, s)
			found = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
