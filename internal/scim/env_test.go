package scim_test

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/internal/scim"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/attribution"
	"github.com/licenseledger/ledger/projections/audit"
	"github.com/licenseledger/ledger/projections/billing"
	"github.com/licenseledger/ledger/projections/seats"
)

var t0 = time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Second)
	return c.now
}

// env is the real API router, with the SCIM service provider mounted,
// over the memory store, the application service and the read models fed
// from the store's subscription.
type env struct {
	t        testing.TB
	store    *memory.Store
	seats    *seats.Projection
	srv      *httptest.Server
	operator string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, store: memory.New()}
	t.Cleanup(func() { e.store.Close() })
	keys := pii.NewMemoryKeys()
	cdc := codec.New(pii.NewKeyring(keys, crand.Reader))
	tokens := auth.NewMemoryStore()
	clk := &clock{now: t0}
	rng := rand.NewChaCha8([32]byte{7})
	var mu sync.Mutex
	newULID := func() ulid.ULID {
		mu.Lock()
		defer mu.Unlock()
		return ulid.MustNew(ulid.Timestamp(clk.Now()), rng)
	}
	svc := accounts.New(accounts.Config{Store: e.store, Codec: cdc, Clock: clk.Now,
		NewEventID: func() uuid.UUID { return uuid.New() }, NewULID: newULID})
	st, at, au, bi := seats.New(), attribution.New(), audit.New(), billing.New()
	e.seats = st
	tracker := httpapi.NewTracker()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		set := projections.Set{st, at, au, bi}
		for rec, err := range e.store.Subscribe(ctx, 0) {
			if err != nil {
				return
			}
			d, err := cdc.Decode(ctx, rec)
			if err != nil {
				t.Errorf("feed: %v", err)
				return
			}
			if err := set.Apply(d); err != nil {
				t.Errorf("feed: %v", err)
				return
			}
			tracker.Advance(rec.Position)
		}
	}()
	api := httpapi.New(httpapi.Config{
		Commands: svc, Seats: st, Activities: at, Audit: au, Billing: bi,
		History: e.store, Decoder: cdc, Progress: tracker, Tokens: tokens,
		Clock: clk.Now, NewID: newULID, Random: crand.Reader, WaitTimeout: 2 * time.Second,
		SCIM: scim.New(scim.Config{Commands: svc, Directory: st, Tokens: tokens, Progress: tracker,
			Clock: clk.Now, NewID: newULID, WaitTimeout: 2 * time.Second}),
	})
	e.srv = httptest.NewServer(api)
	t.Cleanup(e.srv.Close)
	secret, ok, err := auth.Bootstrap(context.Background(), tokens, crand.Reader, t0)
	if err != nil || !ok {
		t.Fatalf("bootstrap: %v %v", ok, err)
	}
	e.operator = secret
	return e
}

type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r reply) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("decode %q: %v", r.Body, err)
	}
	return m
}

// do sends a request; a string body is sent as is, anything else
// marshalled. Bodies go as application/scim+json.
func (e *env) do(token, method, path string, body any, headers ...string) reply {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return reply{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func (e *env) must(want int, token, method, path string, body any, headers ...string) reply {
	e.t.Helper()
	r := e.do(token, method, path, body, headers...)
	if r.Status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	if len(r.Body) > 0 && !strings.HasPrefix(path, "/v1/") && r.Header.Get("Content-Type") != scim.MediaType {
		e.t.Fatalf("%s %s: Content-Type %q", method, path, r.Header.Get("Content-Type"))
	}
	return r
}

func (e *env) mint(role auth.Role, account string) string {
	e.t.Helper()
	r := e.must(201, e.operator, "POST", "/v1/tokens", map[string]string{"role": string(role), "account": account})
	return r.json(e.t)["token"].(string)
}

func (e *env) open(id string, seats int) {
	e.t.Helper()
	e.must(201, e.operator, "POST", "/v1/accounts", map[string]any{"id": id, "name": "Acme " + id, "seats": seats})
}

// v1User reads a user through the /v1 API as the operator.
func (e *env) v1User(account, id string) map[string]any {
	e.t.Helper()
	return e.must(200, e.operator, "GET", "/v1/accounts/"+account+"/users/"+id, nil).json(e.t)
}

// seatsAvailable reads the free seats through the /v1 API.
func (e *env) seatsAvailable(account string) float64 {
	e.t.Helper()
	return e.must(200, e.operator, "GET", "/v1/accounts/"+account+"/seats", nil).json(e.t)["available"].(float64)
}

// scimError checks a SCIM error answer.
func scimError(t testing.TB, r reply, status int, scimType string) map[string]any {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != scim.MediaType {
		t.Fatalf("error as %q: %s", ct, r.Body)
	}
	m := r.json(t)
	if s, _ := m["schemas"].([]any); len(s) != 1 || s[0] != scim.SchemaError {
		t.Fatalf("error schemas %v", m["schemas"])
	}
	if m["status"] != strconv.Itoa(status) {
		t.Fatalf("error status %v, want %q", m["status"], strconv.Itoa(status))
	}
	if got, _ := m["scimType"].(string); got != scimType {
		t.Fatalf("scimType %q, want %q: %s", got, scimType, r.Body)
	}
	return m
}
