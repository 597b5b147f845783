package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// freeAddr returns a loopback address whose port is free at the moment.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// licensed builds cmd/licensed from this module and runs it on a fresh
// data directory; it returns the HTTP base URL, the NATS URL and the data
// directory.
func licensed(t *testing.T) (base, natsURL, dir string) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "licensed")
	build := exec.Command(goBin, "build", "-o", bin, "./cmd/licensed")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/licensed: %v\n%s", err, out)
	}
	dir = t.TempDir()
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	var logs bytes.Buffer
	var mu sync.Mutex
	cmd := exec.Command(bin, "--data-dir", dir, "--http-addr", httpAddr, "--nats-listen", natsAddr, "--durability", "interval")
	cmd.Stdout, cmd.Stderr = io.Discard, writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			mu.Lock()
			t.Logf("licensed logs:\n%s", logs.String())
			mu.Unlock()
		}
	})
	base = "http://" + httpAddr
	for deadline := time.Now().Add(60 * time.Second); ; {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("licensed not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return base, "nats://" + natsAddr, dir
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// api calls the ledger's HTTP API and decodes the answer into out.
func api(t *testing.T, base, token, method, path string, body any, want int, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatal(err)
		}
	}
}

// seats is the part of GET /v1/accounts/{account}/seats the example counts.
type seats struct {
	Purchased   int `json:"purchased"`
	Active      int `json:"active"`
	Deactivated int `json:"deactivated"`
	Deleted     int `json:"deleted"`
	Available   int `json:"available"`
}

// TestSeatCountMatchesTheLedger runs the example against licensed, stops
// and restarts it while the ledger changes, and checks that its count of
// every account is the one GET /v1/accounts/{account}/seats answers.
func TestSeatCountMatchesTheLedger(t *testing.T) {
	base, natsURL, dir := licensed(t)
	tok, err := os.ReadFile(filepath.Join(dir, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	op := strings.TrimSpace(string(tok))
	cfg := Config{
		NATSURL: natsURL, NkeySeed: filepath.Join(dir, "downstream.nk"), Durable: "seat-counter",
		StateFile: filepath.Join(t.TempDir(), "state.json"), Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	run := func() (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, cfg, NewCounter()) }()
		return func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}

	addUser := func(account string, n int) string {
		var u struct {
			ID string `json:"id"`
		}
		api(t, base, op, "POST", "/v1/accounts/"+account+"/users", map[string]any{"name": fmt.Sprintf("User %d", n), "email": fmt.Sprintf("u%d@%s.test", n, account), "role": "admin"}, 201, &u)
		return u.ID
	}
	stop := run()
	api(t, base, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 5}, 201, nil)
	api(t, base, op, "POST", "/v1/accounts", map[string]any{"id": "beta", "name": "Beta", "seats": 2}, 201, nil)
	var acme []string
	for n := range 4 {
		acme = append(acme, addUser("acme", n))
	}
	addUser("beta", 9)
	api(t, base, op, "POST", "/v1/accounts/acme/users/"+acme[1]+"/deactivate", map[string]any{"reason": "left"}, 200, nil)
	stop() // the example is down while the ledger goes on

	api(t, base, op, "POST", "/v1/accounts/acme/seats", map[string]any{"count": 3}, 200, nil)
	api(t, base, op, "POST", "/v1/accounts/acme/users/"+acme[1]+"/activate", nil, 200, nil)
	api(t, base, op, "POST", "/v1/accounts/acme/users/"+acme[2]+"/deactivate", nil, 200, nil)
	api(t, base, op, "DELETE", "/v1/accounts/acme/users/"+acme[3]+"?confirm="+acme[3], nil, 200, nil)
	api(t, base, op, "POST", "/v1/accounts/acme/seat-reductions", map[string]any{"count": 1}, 200, nil)

	counter := NewCounter()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, counter) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	for _, account := range []string{"acme", "beta"} {
		var want seats
		api(t, base, op, "GET", "/v1/accounts/"+account+"/seats", nil, 200, &want)
		var got seats
		for deadline := time.Now().Add(30 * time.Second); ; {
			c, _ := counter.Counts(account)
			got = seats{Purchased: c.Purchased, Active: c.Active, Deactivated: c.Deactivated, Deleted: c.Deleted, Available: c.Available()}
			if got == want || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got != want {
			t.Errorf("%s: the example counts %+v, the ledger answers %+v", account, got, want)
		}
	}
	if want := (seats{Purchased: 8, Active: 2, Deactivated: 1, Deleted: 1, Available: 5}); true {
		c, _ := counter.Counts("acme")
		if got := (seats{c.Purchased, c.Active, c.Deactivated, c.Deleted, c.Available()}); got != want {
			t.Errorf("acme: the example counts %+v, want %+v", got, want)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
