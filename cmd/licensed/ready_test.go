package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// launch starts the service on dir without waiting for it to be ready.
func launch(t *testing.T, dir string, extra ...string) *running {
	t.Helper()
	args := append([]string{"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0"}, extra...)
	cfg, err := ParseConfig(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		m.Close()
		t.Fatal(err)
	}
	return &running{t: t, m: m, base: "http://" + m.HTTPAddr()}
}

// After a restart, clean (read models restored from their snapshot) or as
// a crash leaves it (no snapshot: every event folded again), reads are
// refused with 503 not-ready until the read models have caught up, and
// then answer with every acknowledged user: never a 404 for the account,
// never part of the list.
func TestReadsAfterRestartNeverMissData(t *testing.T) {
	const users = 800
	dir := t.TempDir()
	svc := startService(t, dir, io.Discard, "--durability", "interval")
	raw, err := os.ReadFile(filepath.Join(dir, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	op := strings.TrimSpace(string(raw))
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": users})
	var acked atomic.Int64
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				st, err := post(svc.base, op, "POST", "/v1/accounts/acme/users",
					map[string]any{"name": fmt.Sprintf("User %d", i), "email": fmt.Sprintf("user%d@acme.test", i), "role": "member"})
				if err == nil && st == 201 {
					acked.Add(1)
				}
			}
		})
	}
	for i := range users {
		next <- i
	}
	close(next)
	wg.Wait()
	if acked.Load() != users {
		t.Fatalf("%d of %d users acknowledged", acked.Load(), users)
	}
	svc.stop() // saves a snapshot

	svc = launch(t, dir, "--durability", "interval")
	pollDuringCatchUp(t, svc, op, users)
	svc.stop()

	// As after kill -9: the read models have no snapshot to start from.
	if err := os.RemoveAll(filepath.Join(dir, "snapshots")); err != nil {
		t.Fatal(err)
	}
	svc = launch(t, dir, "--durability", "interval")
	defer svc.stop()
	pollDuringCatchUp(t, svc, op, users)
}

// pollDuringCatchUp reads the account and its users from the moment the
// service listens until it has answered them in full a few times. Each
// answer is 503 not-ready, or complete.
func pollDuringCatchUp(t *testing.T, svc *running, token string, users int) {
	t.Helper()
	get := func(path string) (int, http.Header, map[string]any) {
		req, _ := http.NewRequest("GET", svc.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatalf("GET %s: %d, body: %v", path, resp.StatusCode, err)
		}
		return resp.StatusCode, resp.Header, body
	}
	complete, refused := 0, 0
	for deadline := time.Now().Add(30 * time.Second); complete < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("reads not complete after 30 s (%d refused)", refused)
		}
		for _, path := range []string{"/v1/accounts/acme", "/v1/accounts/acme/users?limit=1000"} {
			st, h, body := get(path)
			switch {
			case st == http.StatusServiceUnavailable:
				if body["type"] != "https://licenseledger.dev/problems/not-ready" || h.Get("Retry-After") == "" {
					t.Fatalf("GET %s while catching up: %v, Retry-After %q", path, body, h.Get("Retry-After"))
				}
				refused++
				continue
			case st != http.StatusOK:
				t.Fatalf("GET %s while catching up: %d %v", path, st, body)
			case strings.Contains(path, "/users"):
				if got := len(list(t, body, "users")); got != users {
					t.Fatalf("GET %s listed %d of %d users", path, got, users)
				}
			default:
				if got := num(t, body, "active"); got != users {
					t.Fatalf("GET %s counted %d of %d active users", path, got, users)
				}
			}
			complete++
		}
	}
	r, err := http.Get(svc.base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("reads complete but /readyz %d", r.StatusCode)
	}
	t.Logf("%d reads refused while catching up", refused)
}
