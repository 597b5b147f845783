package httpapi_test

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/internal/telemetry"
	"github.com/licenseledger/ledger/internal/translog"
	"github.com/licenseledger/ledger/internal/webhooks"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/attribution"
	"github.com/licenseledger/ledger/projections/audit"
	"github.com/licenseledger/ledger/projections/billing"
	"github.com/licenseledger/ledger/projections/seats"
)

var t0 = time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)

// clock moves a second forward at each reading.
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

type env struct {
	t        testing.TB
	store    eventstore.Store
	keys     *pii.MemoryKeys
	codec    *codec.Codec
	tokens   *auth.MemoryStore
	clock    *clock
	tracker  *httpapi.Tracker
	api      *httpapi.API
	srv      *httptest.Server
	logs     *syncBuffer
	operator string
	cfg      httpapi.Config
	// readModels are the read models the API serves from.
	readModels []projections.Projection
	// log is the transparency log over the store; logKey its key.
	log    *translog.Log
	logKey translog.Key
	// hooks are the webhook endpoints, on the package's NATS server.
	hooks *webhooks.Service
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type options struct {
	noFeed bool // read models never advance
	adjust func(*httpapi.Config)
	// tracer traces the API and the appends; nil traces nothing.
	tracer *telemetry.Tracer
	// store opens the event store; nil is the in-memory one.
	store func(testing.TB) eventstore.Store
}

func newEnv(t testing.TB, opts ...options) *env {
	t.Helper()
	var o options
	if len(opts) > 0 {
		o = opts[0]
	}
	e := &env{t: t, keys: pii.NewMemoryKeys(), tokens: auth.NewMemoryStore(),
		clock: &clock{now: t0}, tracker: httpapi.NewTracker(), logs: &syncBuffer{}}
	if o.store != nil {
		e.store = o.store(t)
	} else {
		e.store = memory.New()
	}
	t.Cleanup(func() { e.store.Close() })
	e.codec = codec.New(pii.NewKeyring(e.keys, crand.Reader))
	rng := rand.NewChaCha8([32]byte{1})
	var mu sync.Mutex
	newULID := func() ulid.ULID {
		mu.Lock()
		defer mu.Unlock()
		return ulid.MustNew(ulid.Timestamp(e.clock.Now()), rng)
	}
	metrics := httpapi.NewMetrics()
	svc := accounts.New(accounts.Config{
		Store: e.store, Codec: e.codec, Clock: e.clock.Now,
		OnAppend:   func(a accounts.Appended) { metrics.ObserveAppend(a.Took) },
		NewEventID: func() uuid.UUID { return uuid.New() }, NewULID: newULID,
		Tracer: o.tracer,
	})
	st, at, au, bi := seats.New(), attribution.New(), audit.New(), billing.New()
	e.readModels = []projections.Projection{st, at, au, bi}
	apiReady := make(chan struct{}) // closed once e.api is set
	if !o.noFeed {
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
				d, err := e.codec.Decode(ctx, rec)
				if err != nil {
					t.Errorf("feed: %v", err)
					return
				}
				if err := set.Apply(d); err != nil {
					t.Errorf("feed: %v", err)
					return
				}
				if del, ok := d.Event.(ledger.UserDeleted); ok {
					// As the service's read models' hook does.
					<-apiReady
					e.codec.Keys().MarkDestroyed(pii.KeyID(projections.AccountOf(d), del.UserID))
					svc.ForgetDeletedUser(projections.AccountOf(d), del.UserID)
					e.api.ForgetAccountAnswers(projections.AccountOf(d))
				}
				e.tracker.Advance(rec.Position)
			}
		}()
	}
	e.startLog(t)
	e.hooks = openWebhooks(t)
	e.cfg = httpapi.Config{
		Webhooks: e.hooks,
		Log:      e.log, DataKeys: e.keys,
		Commands: svc, Seats: st, Activities: at, Audit: au, Billing: bi,
		History: e.store, Decoder: e.codec, Progress: e.tracker, Tokens: e.tokens,
		Clock: e.clock.Now, NewID: newULID, Random: crand.Reader,
		Logger:  slog.New(slog.NewJSONHandler(e.logs, nil)),
		Metrics: metrics,
		Ready: map[string]httpapi.Check{
			"projections": func(context.Context) error { return nil },
		},
		WaitTimeout: 2 * time.Second,
		Tracer:      o.tracer,
	}
	if o.adjust != nil {
		o.adjust(&e.cfg)
	}
	e.api = httpapi.New(e.cfg)
	close(apiReady)
	e.srv = httptest.NewServer(e.api)
	t.Cleanup(e.srv.Close)
	secret, ok, err := auth.Bootstrap(context.Background(), e.tokens, crand.Reader, t0)
	if err != nil || !ok {
		t.Fatalf("bootstrap: %v %v", ok, err)
	}
	e.operator = secret
	return e
}

// startLog runs a transparency log over the env's store.
func (e *env) startLog(t testing.TB) {
	t.Helper()
	dir := t.TempDir()
	key, err := translog.LoadKey(dir, "", "ledger.test/log", crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	l, err := translog.Open(translog.Config{Dir: dir, Key: key, SignEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := l.Run(ctx, e.store); err != nil && ctx.Err() == nil {
			t.Errorf("log: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done; l.Close() })
	e.log, e.logKey = l, key
}

// reply is a response read whole.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r reply) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
	return m
}

// do sends a request; body is marshalled unless it is a string.
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
		req.Header.Set("Content-Type", "application/json")
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

// must sends a request and fails unless the status is want.
func (e *env) must(want int, token, method, path string, body any, headers ...string) reply {
	e.t.Helper()
	r := e.do(token, method, path, body, headers...)
	if r.Status != want {
		e.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.Status, want, r.Body)
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

func (e *env) addUser(account, name, email, role string) string {
	e.t.Helper()
	r := e.must(201, e.operator, "POST", "/v1/accounts/"+account+"/users", map[string]string{"name": name, "email": email, "role": role})
	return r.json(e.t)["id"].(string)
}

func (e *env) storeLen() int {
	e.t.Helper()
	n := 0
	for _, err := range e.store.ReadAll(context.Background(), eventstore.Position(0)) {
		if err != nil {
			e.t.Fatal(err)
		}
		n++
	}
	return n
}
