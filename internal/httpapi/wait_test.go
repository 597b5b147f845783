package httpapi_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/projections"
)

// progressOnly is a Progress that is no ProgressChanges: the API waits
// on it with a context per wait.
type progressOnly struct{ httpapi.Progress }

// TestWaitsForEitherProgress: a read asking for a position the read
// models have not applied answers 503 not-caught-up after the wait, and
// 200 once they apply it while it waits, whether the read models tell of
// their changes (ProgressChanges) or only wait.
func TestWaitsForEitherProgress(t *testing.T) {
	for _, c := range []struct {
		name string
		wrap func(*httpapi.Tracker) httpapi.Progress
	}{
		{"changes", func(t *httpapi.Tracker) httpapi.Progress { return t }},
		{"wait", func(t *httpapi.Tracker) httpapi.Progress { return progressOnly{t} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			tracker := httpapi.NewTracker()
			e := newEnv(t, options{noFeed: true, adjust: func(cfg *httpapi.Config) {
				cfg.Progress, cfg.WaitTimeout, cfg.NoWriteWait = c.wrap(tracker), 100*time.Millisecond, true
			}})
			if _, ok := e.cfg.Progress.(httpapi.ProgressChanges); ok != (c.name == "changes") {
				t.Fatalf("control: the progress is a ProgressChanges: %v", ok)
			}
			w := e.must(201, e.operator, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 1})
			pos := w.Header.Get(httpapi.HeaderPosition)
			start := time.Now()
			r := e.must(503, e.operator, "GET", "/v1/accounts/acme?min_position="+pos, nil)
			if time.Since(start) < 100*time.Millisecond {
				t.Fatalf("answered 503 before the wait timeout")
			}
			if r.json(t)["type"] != httpapi.ProblemBase+httpapi.ProblemNotCaughtUp || r.Header.Get("Retry-After") == "" {
				t.Fatalf("503: %v %s", r.Header, r.Body)
			}
			cfg := e.cfg
			cfg.WaitTimeout = time.Hour
			api := httpapi.New(cfg)
			req := httptest.NewRequest("GET", "/v1/accounts/acme?min_position="+pos, nil)
			req.Header.Set("Authorization", "Bearer "+e.operator)
			rec := httptest.NewRecorder()
			done := make(chan struct{})
			go func() {
				defer close(done)
				api.ServeHTTP(rec, req)
			}()
			last, err := projections.Fold(context.Background(), e.store, e.codec, 0, e.readModels...)
			if err != nil {
				t.Fatal(err)
			}
			tracker.Advance(last)
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the read still waits 30 s after its position was applied")
			}
			if rec.Code != 200 || rec.Header().Get(httpapi.HeaderPosition) != pos {
				t.Fatalf("read once applied: %d %v %s", rec.Code, rec.Header(), rec.Body)
			}
		})
	}
}

// TestWaitEndsWithRequest: a request that ends (its client went away)
// while it waits for the read models stops waiting, long before the wait
// timeout.
func TestWaitEndsWithRequest(t *testing.T) {
	e := newEnv(t, options{noFeed: true, adjust: func(c *httpapi.Config) { c.WaitTimeout, c.NoWriteWait = time.Hour, true }})
	w := e.must(201, e.operator, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 1})
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequestWithContext(ctx, "GET", "/v1/accounts/acme?min_position="+w.Header.Get(httpapi.HeaderPosition), nil)
	req.Header.Set("Authorization", "Bearer "+e.operator)
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.api.ServeHTTP(rec, req)
	}()
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the wait goes on 30 s after its request ended")
	}
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("ended request answered %d: %s", rec.Code, rec.Body)
	}
}
