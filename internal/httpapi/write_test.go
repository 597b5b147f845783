package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/projections"
)

func TestBadInputAppendsNothing(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 3)
	op := e.operator
	before := e.storeLen()
	big := `{"name":"` + strings.Repeat("x", 70<<10) + `","email":"a@b.c","role":"member"}`
	for _, c := range []struct {
		name, method, path string
		body               any
		status             int
		typ                string
	}{
		{"unknown field", "POST", "/v1/accounts/acme/users", `{"name":"A","email":"a@b.c","role":"member","admin":true}`, 400, "malformed-request"},
		{"wrong type", "POST", "/v1/accounts/acme/seats", `{"count":"3"}`, 400, "malformed-request"},
		{"fractional count", "POST", "/v1/accounts/acme/seats", `{"count":1.5}`, 400, "malformed-request"},
		{"huge count", "POST", "/v1/accounts/acme/seats", `{"count":1e40}`, 400, "malformed-request"},
		{"zero count", "POST", "/v1/accounts/acme/seats", `{"count":0}`, 400, "invalid-count"},
		{"negative count", "POST", "/v1/accounts/acme/seat-reductions", `{"count":-1}`, 400, "invalid-count"},
		{"trailing data", "POST", "/v1/accounts/acme/seats", `{"count":1} {"count":1}`, 400, "malformed-request"},
		{"not json", "POST", "/v1/accounts/acme/seats", `count=1`, 400, "malformed-request"},
		{"empty body", "POST", "/v1/accounts/acme/seats", ``, 400, "malformed-request"},
		{"duplicate field", "POST", "/v1/accounts/acme/seats", `{"count":1,"count":2}`, 400, "malformed-request"},
		{"oversized", "POST", "/v1/accounts/acme/users", big, 413, "body-too-large"},
		{"bad email", "POST", "/v1/accounts/acme/users", `{"name":"A","email":"nope","role":"member"}`, 400, "invalid-user"},
		{"bad role", "POST", "/v1/accounts/acme/users", `{"name":"A","email":"a@b.c","role":"owner"}`, 400, "invalid-user"},
		{"bad account id", "POST", "/v1/accounts", `{"id":"Bad Id","name":"X","seats":1}`, 400, "invalid-account-id"},
		{"malformed user id", "POST", "/v1/accounts/acme/users/..%2f/activate", nil, 404, "user-not-found"},
		{"unknown user", "POST", "/v1/accounts/acme/users/01ABC/deactivate", nil, 404, "user-not-found"},
		{"activity of unknown user", "POST", "/v1/accounts/acme/activities", `{"user_id":"ghost","kind":"note","ref":"r"}`, 404, "user-not-found"},
		{"activity malformed user", "POST", "/v1/accounts/acme/activities", `{"user_id":"a b","kind":"note","ref":"r"}`, 404, "user-not-found"},
		{"unknown account", "POST", "/v1/accounts/nope/seats", `{"count":1}`, 404, "account-not-found"},
		{"delete with body", "DELETE", "/v1/accounts/acme/users/x?confirm=x", `{}`, 400, "malformed-request"},
		{"delete unknown param", "DELETE", "/v1/accounts/acme/users/x?confirm=x&force=1", nil, 400, "malformed-request"},
		{"bad if-match", "POST", "/v1/accounts/acme/seats", `{"count":1}`, 400, "malformed-request"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var hdr []string
			if c.name == "bad if-match" {
				hdr = []string{"If-Match", "W/\"x\""}
			}
			r := e.must(c.status, op, c.method, c.path, c.body, hdr...)
			if got := r.json(t)["type"]; got != httpapi.ProblemBase+c.typ {
				t.Fatalf("type %v, want %s", got, c.typ)
			}
		})
	}
	if n := e.storeLen(); n != before {
		t.Fatalf("bad requests appended %d events", n-before)
	}
	// Not JSON by content type.
	r := e.do(op, "POST", "/v1/accounts/acme/seats", nil, "Content-Type", "text/plain")
	_ = r
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/accounts/acme/seats", strings.NewReader(`{"count":1}`))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Bearer "+op)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 415 {
		t.Fatalf("text/plain body: %d, want 415", resp.StatusCode)
	}
}

func TestIfMatch(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 3)
	op := e.operator
	g := e.must(200, op, "GET", "/v1/accounts/acme", nil)
	tag := g.Header.Get("ETag")
	if tag != `"0"` {
		t.Fatalf("ETag %q, want \"0\"", tag)
	}
	w := e.must(200, op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 1}, "If-Match", tag)
	if w.Header.Get("ETag") != `"1"` {
		t.Fatalf("write ETag %q", w.Header.Get("ETag"))
	}
	before := e.storeLen()
	r := e.must(412, op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 1}, "If-Match", tag)
	if r.json(t)["type"] != httpapi.ProblemBase+"precondition-failed" || e.storeLen() != before {
		t.Fatalf("stale If-Match: %s", r.Body)
	}
	u := e.addUser("acme", "Ann", "ann@acme.test", "admin")
	g = e.must(200, op, "GET", "/v1/accounts/acme/users/"+u, nil)
	e.must(201, op, "POST", "/v1/accounts/acme/users", map[string]string{"name": "Ben", "email": "ben@acme.test", "role": "member"}, "If-Match", g.Header.Get("ETag"))
	e.must(200, op, "GET", "/v1/accounts/acme/seats", nil, "If-Match", `"0"`) // reads ignore If-Match
}

func TestIdempotencyKey(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 3)
	op := e.operator
	body := map[string]string{"name": "Ann", "email": "ann@acme.test", "role": "admin"}
	first := e.must(201, op, "POST", "/v1/accounts/acme/users", body, "Idempotency-Key", "k1")
	n := e.storeLen()
	again := e.must(201, op, "POST", "/v1/accounts/acme/users", body, "Idempotency-Key", "k1")
	if !bytes.Equal(first.Body, again.Body) || again.Header.Get("Location") != first.Header.Get("Location") || again.Header.Get(httpapi.HeaderReplayed) != "true" {
		t.Fatalf("replay differs:\n%s\n%s", first.Body, again.Body)
	}
	if e.storeLen() != n {
		t.Fatal("a repeat appended")
	}
	other := map[string]string{"name": "Ann", "email": "ann2@acme.test", "role": "admin"}
	r := e.must(422, op, "POST", "/v1/accounts/acme/users", other, "Idempotency-Key", "k1")
	if r.json(t)["type"] != httpapi.ProblemBase+"idempotency-key-reused" {
		t.Fatalf("reuse: %s", r.Body)
	}
	e.must(422, op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 1}, "Idempotency-Key", "k1")
	if e.storeLen() != n {
		t.Fatal("a refused reuse appended")
	}
	// A refusal is not kept: the same key may succeed later.
	e.must(400, op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 0}, "Idempotency-Key", "k2")
	e.must(400, op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 0}, "Idempotency-Key", "k2")

	// Concurrent repeats: one append, identical answers.
	var wg sync.WaitGroup
	bodies := make([][]byte, 8)
	for i := range bodies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bodies[i] = e.do(op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 2}, "Idempotency-Key", "k3").Body
		}()
	}
	wg.Wait()
	for _, b := range bodies[1:] {
		if !bytes.Equal(b, bodies[0]) {
			t.Fatalf("concurrent repeats differ:\n%s\n%s", bodies[0], b)
		}
	}
	if e.storeLen() != n+1 {
		t.Fatalf("concurrent repeats appended %d events, want 1", e.storeLen()-n)
	}
}

// TestIdempotencyAfterRestart: a new API (empty cache) over the same
// service still answers a repeat with the first status and the current
// resource, and refuses the key for another command.
func TestIdempotencyAfterRestart(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 3)
	op := e.operator
	first := e.must(201, op, "POST", "/v1/accounts/acme/users", map[string]string{"name": "Ann", "email": "ann@acme.test", "role": "admin"}, "Idempotency-Key", "k1")
	id := first.json(t)["id"]
	n := e.storeLen()

	restarted := httpapi.New(e.cfg)
	e.srv.Config.Handler = restarted
	again := e.must(201, op, "POST", "/v1/accounts/acme/users", map[string]string{"name": "Ann", "email": "ann@acme.test", "role": "admin"}, "Idempotency-Key", "k1")
	if again.json(t)["id"] != id || again.Header.Get("Location") != first.Header.Get("Location") {
		t.Fatalf("repeat after restart: %s", again.Body)
	}
	e.must(422, op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 1}, "Idempotency-Key", "k1")
	if e.storeLen() != n {
		t.Fatal("a repeat after restart appended")
	}
}

// TestReadYourWrites: with read models that lag, a read with a min position
// waits for it, and one beyond the store's last position is refused.
func TestReadYourWrites(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 2)
	op := e.operator
	u := e.addUser("acme", "Ann", "ann@acme.test", "admin")
	u2 := e.addUser("acme", "Bo", "bo@acme.test", "member")
	w := e.must(200, op, "POST", "/v1/accounts/acme/users/"+u2+"/deactivate", nil)
	pos, err := strconv.ParseUint(w.Header.Get("Ledger-Position"), 10, 64)
	if err != nil || pos == 0 {
		t.Fatalf("Ledger-Position %q", w.Header.Get("Ledger-Position"))
	}
	if s := e.must(200, op, "GET", "/v1/accounts/acme/seats", nil).json(t); s["available"] != float64(1) {
		t.Fatalf("seat not freed for the next read: %v", s)
	}
	_ = u
	e.must(200, op, "GET", "/v1/accounts/acme/seats?min_position="+strconv.FormatUint(pos, 10), nil)
	e.must(400, op, "GET", "/v1/accounts/acme/seats?min_position=-1", nil)

	// No write answered with a position beyond the store's last: refused
	// at once rather than waited for (a wait that ends in 503 is
	// TestWriteWaitsForReadModels).
	r := e.must(400, op, "GET", "/v1/accounts/acme/seats", nil, "Ledger-Min-Position", strconv.FormatUint(pos+100, 10))
	if r.json(t)["type"] != httpapi.ProblemBase+"position-unreachable" {
		t.Fatalf("400: %v %s", r.Header, r.Body)
	}
}

// TestWriteWaitsForReadModels: with read models stalled, a write still
// answers after the bounded wait, a read asking for its position answers
// 503, and once the read models apply it the same read succeeds.
func TestWriteWaitsForReadModels(t *testing.T) {
	e := newEnv(t, options{noFeed: true, adjust: func(c *httpapi.Config) { c.WaitTimeout = 200 * time.Millisecond }})
	start := time.Now()
	w := e.must(201, e.operator, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 1})
	if time.Since(start) < 200*time.Millisecond {
		t.Fatal("the write did not wait for the read models")
	}
	pos := w.Header.Get("Ledger-Position")
	e.must(503, e.operator, "GET", "/v1/accounts/acme?min_position="+pos, nil)
	go func() {
		time.Sleep(50 * time.Millisecond)
		last, err := projections.Fold(context.Background(), e.store, e.codec, 0, e.readModels...)
		if err != nil {
			t.Error(err)
		}
		e.tracker.Advance(last)
	}()
	r := e.must(200, e.operator, "GET", "/v1/accounts/acme?min_position="+pos, nil)
	if r.json(t)["account"] != "acme" || r.Header.Get("Ledger-Position") != pos {
		t.Fatalf("read after catching up: %v %s", r.Header, r.Body)
	}
}

// TestIdempotencyCacheBound: the cache holds at most IdempotencyEntries
// keys; an evicted key is still honoured through the service's memory of
// keys in event metadata.
func TestIdempotencyCacheBound(t *testing.T) {
	e := newEnv(t, options{adjust: func(c *httpapi.Config) { c.IdempotencyEntries = 1 }})
	e.open("acme", 5)
	op := e.operator
	body := map[string]string{"name": "Ann", "email": "ann@acme.test", "role": "admin"}
	first := e.must(201, op, "POST", "/v1/accounts/acme/users", body, "Idempotency-Key", "k1")
	e.must(200, op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 1}, "Idempotency-Key", "k2") // evicts k1
	n := e.storeLen()
	again := e.must(201, op, "POST", "/v1/accounts/acme/users", body, "Idempotency-Key", "k1")
	if again.Header.Get(httpapi.HeaderReplayed) != "" {
		t.Fatal("k1 answered from a cache bounded to one entry")
	}
	if again.json(t)["id"] != first.json(t)["id"] || e.storeLen() != n {
		t.Fatalf("evicted key repeated the command: %s", again.Body)
	}
}

// timingOut answers every command as a store that did not answer in time.
type timingOut struct{}

func (timingOut) Execute(context.Context, string, ledger.Command, accounts.Request) (accounts.Result, error) {
	return accounts.Result{}, fmt.Errorf("append to ledger-acme: %w", context.DeadlineExceeded)
}

// A write that timed out may have been recorded: the answer says so and
// asks for a retry with the same key, not a plain retry that could buy the
// seats twice; a read that timed out is just behind.
func TestWriteTimeoutOutcomeUnknown(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 2)
	e.cfg.Commands = timingOut{}
	api := httptest.NewServer(httpapi.New(e.cfg))
	defer api.Close()
	req, _ := http.NewRequest("POST", api.URL+"/v1/accounts/acme/seats", strings.NewReader(`{"count":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+e.operator)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || p["rule"] != "outcome-unknown" || !strings.Contains(p["detail"].(string), "same Idempotency-Key") {
		t.Fatalf("timed-out write answered %d %v", resp.StatusCode, p)
	}
}

// Idempotency keys are scoped to the principal and account: two tenants
// that happen to pick the same key neither collide nor learn of each other.
func TestIdempotencyKeysScopedToTenant(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 2)
	e.open("globex", 2)
	acme, globex := e.mint(auth.Admin, "acme"), e.mint(auth.Admin, "globex")
	e.must(200, acme, "POST", "/v1/accounts/acme/seats", map[string]any{"count": 1}, "Idempotency-Key", "order-1")
	e.must(200, globex, "POST", "/v1/accounts/globex/seats", map[string]any{"count": 5}, "Idempotency-Key", "order-1")
	seats := e.must(200, globex, "GET", "/v1/accounts/globex/seats", nil).json(t)
	if seats["seats"] != float64(7) {
		t.Fatalf("globex seats %v, want 7: its purchase must not be taken for acme's", seats["seats"])
	}
	// The same tenant repeating its key still gets its first answer.
	again := e.must(200, acme, "POST", "/v1/accounts/acme/seats", map[string]any{"count": 1}, "Idempotency-Key", "order-1").json(t)
	if again["seats"] != float64(3) {
		t.Fatalf("acme's repeat answered seats %v, want the first answer's 3", again["seats"])
	}
}

// brokenHistory fails after the first event of every stream it reads.
type brokenHistory struct{ httpapi.History }

func (b brokenHistory) ReadStream(ctx context.Context, s eventstore.StreamID, from uint64) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		for r, err := range b.History.ReadStream(ctx, s, from) {
			if !yield(r, err) || err != nil {
				return
			}
			yield(eventstore.Record{}, errors.New("store connection lost"))
			return
		}
	}
}

// An export that fails half way is cut, so that the client cannot take
// the part it got for the whole history.
func TestBrokenExportIsCut(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 3)
	e.addUser("acme", "Ada Admin", "ada@acme.test", "admin")
	e.addUser("acme", "Bob Member", "bob@acme.test", "member")
	whole := e.must(200, e.operator, "GET", "/v1/accounts/acme/events", nil)
	if n := bytes.Count(whole.Body, []byte("\n")); n < 3 {
		t.Fatalf("control: the intact export has %d lines", n)
	}
	e.cfg.History = brokenHistory{e.cfg.History}
	api := httptest.NewServer(httpapi.New(e.cfg))
	defer api.Close()
	req, _ := http.NewRequest("GET", api.URL+"/v1/accounts/acme/events", nil)
	req.Header.Set("Authorization", "Bearer "+e.operator)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return // cut before the first bytes left: the client sees the failure
	}
	defer resp.Body.Close()
	if b, err := io.ReadAll(resp.Body); err == nil {
		t.Fatalf("a broken export read as complete (%d %s)", resp.StatusCode, b)
	}
}

// Once the cache has forgotten a key, a request that reuses it with other
// values is still refused: the service's first result is compared with it.
func TestForgottenKeyWithOtherBodyRefused(t *testing.T) {
	e := newEnv(t, options{adjust: func(c *httpapi.Config) { c.IdempotencyEntries = 1 }})
	e.open("acme", 5)
	op := e.operator
	e.must(200, op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 5}, "Idempotency-Key", "buy")
	e.must(201, op, "POST", "/v1/accounts/acme/users", map[string]string{"name": "Ann", "email": "ann@acme.test", "role": "admin"}, "Idempotency-Key", "add") // evicts "buy"
	n := e.storeLen()
	e.must(422, op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 10}, "Idempotency-Key", "buy")
	e.must(200, op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 1}, "Idempotency-Key", "other") // evicts "add"
	e.must(422, op, "POST", "/v1/accounts/acme/users", map[string]string{"name": "Ann", "email": "ann.other@acme.test", "role": "admin"}, "Idempotency-Key", "add")
	if e.storeLen() != n+1 {
		t.Fatalf("store grew by %d, want only the one new purchase", e.storeLen()-n)
	}
	e.must(200, op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 5}, "Idempotency-Key", "buy") // the same body still repeats
}

// TestMintWaitsForAccountInStore: an account opened through another
// process (here: while this one's read models are stalled) is not yet in
// the read models; minting a token for it waits for them to reach the
// store's last position instead of answering 404 at once, and an account
// the store does not hold is still refused with 404.
func TestMintWaitsForAccountInStore(t *testing.T) {
	e := newEnv(t, options{noFeed: true, adjust: func(c *httpapi.Config) { c.WaitTimeout, c.NoWriteWait = 2*time.Second, true }})
	e.must(201, e.operator, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 1})
	go func() {
		time.Sleep(100 * time.Millisecond)
		last, err := projections.Fold(context.Background(), e.store, e.codec, 0, e.readModels...)
		if err != nil {
			t.Error(err)
		}
		e.tracker.Advance(last)
	}()
	r := e.must(201, e.operator, "POST", "/v1/tokens", map[string]string{"role": "admin", "account": "acme"})
	if r.json(t)["account"] != "acme" {
		t.Fatalf("mint: %s", r.Body)
	}
	r = e.must(404, e.operator, "POST", "/v1/tokens", map[string]string{"role": "admin", "account": "nobody"})
	if r.json(t)["rule"] != "account-not-found" {
		t.Fatalf("mint for an unknown account: %s", r.Body)
	}
}
