package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder keeps the Idempotency-Key of each request a test server saw.
type recorder struct {
	mu   sync.Mutex
	keys []string
}

func (r *recorder) add(req *http.Request) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, req.Header.Get("Idempotency-Key"))
	return len(r.keys)
}

func (r *recorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.keys...)
}

// runCLI runs licensectl in process against url, with the waits between
// retries recorded instead of slept.
func runCLI(t *testing.T, url string, args ...string) (code int, stdout, stderr string, waits []time.Duration) {
	t.Helper()
	env := map[string]string{"LICENSECTL_URL": url, "LICENSECTL_TOKEN": "ll_secret"}
	var out, errb strings.Builder
	c := &cli{getenv: func(k string) string { return env[k] }, stdout: &out, stderr: &errb,
		sleep: func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return ctx.Err() }}
	code = c.main(context.Background(), args)
	return code, out.String(), errb.String(), waits
}

func TestRetryAfter503KeepsTheIdempotencyKey(t *testing.T) {
	var rec recorder
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec.add(r) == 1 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"status":503,"detail":"the read models are catching up","rule":"not-ready"}`)
			return
		}
		io.WriteString(w, `{"account":"acme","seats":3}`)
	}))
	t.Cleanup(srv.Close)

	code, out, errOut, waits := runCLI(t, srv.URL, "seats", "buy", "acme", "1", "--verbose", "-o", "json")
	keys := rec.seen()
	if code != exitOK || out != `{"account":"acme","seats":3}`+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if len(keys) != 2 || keys[0] == "" || keys[0] != keys[1] {
		t.Fatalf("Idempotency-Keys sent: %q, want the same key twice", keys)
	}
	if !strings.Contains(errOut, "licensectl: Idempotency-Key: "+keys[0]+"\n") {
		t.Errorf("--verbose did not print the key %s: %q", keys[0], errOut)
	}
	if len(waits) != 1 || waits[0] != 2*time.Second {
		t.Errorf("waited %v, want the 2s the API asked", waits)
	}
	if !strings.Contains(errOut, "(not-ready, 503); trying again in 2s (attempt 2 of 5)") {
		t.Errorf("stderr does not say it retries: %q", errOut)
	}
}

func TestNoRetryWithoutRetryAfterOrForOtherRefusals(t *testing.T) {
	for _, tt := range []struct {
		name   string
		status int
		header string
	}{
		{"503 without Retry-After", http.StatusServiceUnavailable, ""},
		{"409", http.StatusConflict, "1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var rec recorder
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rec.add(r)
				if tt.header != "" {
					w.Header().Set("Retry-After", tt.header)
				}
				w.WriteHeader(tt.status)
			}))
			t.Cleanup(srv.Close)
			code, _, errOut, waits := runCLI(t, srv.URL, "seats", "buy", "acme", "1")
			if code != exitRefused || len(rec.seen()) != 1 || len(waits) != 0 {
				t.Errorf("exit %d after %d requests and waits %v (stderr %q); want exit 1 after 1 request", code, len(rec.seen()), waits, errOut)
			}
		})
	}
}

func TestRetryGivesUpAfterMaxAttempts(t *testing.T) {
	var rec recorder
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.add(r)
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	code, _, errOut, waits := runCLI(t, srv.URL, "seats", "show", "acme")
	if code != exitRefused || len(rec.seen()) != maxAttempts || len(waits) != maxAttempts-1 {
		t.Errorf("exit %d after %d requests, %d waits (stderr %q); want exit 1 after %d", code, len(rec.seen()), len(waits), errOut, maxAttempts)
	}
}

// resetConn closes the connection of w's request with a TCP reset, as a
// proxy or a crashed server would, before any answer.
func resetConn(t *testing.T, w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// A write the API applied, whose connection is reset before the answer
// arrives, is retried with the same key: the API answers with its first
// result and the seats are bought once.
func TestConnectionResetRetriesAWriteOnce(t *testing.T) {
	srv, err := startServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.close(); err != nil {
			t.Error(err)
		}
	})
	api := srv.http.Config.Handler
	var rec recorder
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/seats") && rec.add(r) == 1 {
			api.ServeHTTP(httptest.NewRecorder(), r) // applied, answer lost
			resetConn(t, w)
			return
		}
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	env := map[string]string{"LICENSECTL_URL": front.URL, "LICENSECTL_TOKEN": srv.operator}
	runOK := func(args ...string) (string, string) {
		t.Helper()
		var out, errb strings.Builder
		c := &cli{getenv: func(k string) string { return env[k] }, stdout: &out, stderr: &errb,
			sleep: func(ctx context.Context, d time.Duration) error { return nil }}
		if code := c.main(context.Background(), args); code != exitOK {
			t.Fatalf("licensectl %q: exit %d, stderr %q", args, code, errb.String())
		}
		return out.String(), errb.String()
	}
	runOK("accounts", "open", "acme", "--name", "Acme", "--seats", "2")
	out, errOut := runOK("seats", "buy", "acme", "1", "-o", "json")
	keys := rec.seen()
	if len(keys) != 2 || keys[0] == "" || keys[0] != keys[1] {
		t.Fatalf("Idempotency-Keys sent: %q, want the same key twice", keys)
	}
	if !strings.Contains(errOut, "connection reset") || !strings.Contains(errOut, "nothing was done twice") {
		t.Errorf("stderr %q does not tell the retry and the replay", errOut)
	}
	var usage struct{ Seats int }
	if err := json.Unmarshal([]byte(out), &usage); err != nil || usage.Seats != 3 {
		t.Fatalf("answer %q (%v), want 3 seats", out, err)
	}
	out, _ = runOK("seats", "show", "acme", "-o", "json")
	if err := json.Unmarshal([]byte(out), &usage); err != nil || usage.Seats != 3 {
		t.Fatalf("the account holds %q (%v): the purchase was done twice", out, err)
	}
}

// --timeout bounds each wait for data, not a whole export that keeps
// moving.
func TestTimeoutIsPerRequestNotPerExport(t *testing.T) {
	const lines = 6
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jsonl")
		rc := http.NewResponseController(w)
		for i := range lines {
			io.WriteString(w, `{"n":`+string(rune('0'+i))+"}\n")
			rc.Flush()
			time.Sleep(250 * time.Millisecond)
		}
	}))
	t.Cleanup(srv.Close)
	code, out, errOut, _ := runCLI(t, srv.URL, "events", "acme", "--timeout", "1s")
	if code != exitOK || strings.Count(out, "\n") != lines {
		t.Errorf("exit %d, %d lines, stderr %q; want all %d lines", code, strings.Count(out, "\n"), errOut, lines)
	}
}

// A server that accepts and then says nothing is given up on after
// --timeout.
func TestTimeoutWithoutAnAnswer(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	code, _, errOut, _ := runCLI(t, srv.URL, "seats", "show", "acme", "--timeout", "200ms")
	if code != exitRefused || !strings.Contains(errOut, "no answer within --timeout 200ms") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"3": 3 * time.Second, "0": firstBackoff, now.Add(5 * time.Second).Format(http.TimeFormat): 5 * time.Second,
		"": -1, "soon": -1, "-1": -1, "3600": -1,
	} {
		got, ok := retryAfter(in, now)
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}
