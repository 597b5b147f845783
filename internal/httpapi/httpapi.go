// Package httpapi is the HTTP API of the license ledger (DESIGN.md section
// 7): JSON in and out under /v1, RFC 9457 problems, bearer-token
// authentication with roles, ETag/If-Match, Idempotency-Key,
// read-your-writes, metrics and the OpenAPI document.
//
// # Wiring
//
// [New] takes a [Config] naming every dependency: the application service
// that runs commands, the read models reads are served from, the store for
// raw history, the token store, the clock and the id sources. Nothing is
// global.
//
// # Errors
//
// Every error is an application/problem+json body whose type is
// [ProblemBase] followed by a stable slug: the domain rule (e.g.
// https://licenseledger.dev/problems/no-seat-available) or a Problem*
// constant of this package. One function, toProblem, maps errors to
// problems with errors.Is and errors.As; only unknown errors are 500s and
// only those are logged.
//
// # Authorisation
//
// A request without a valid token gets 401 with WWW-Authenticate. A token
// scoped to one account that names another gets 404, as if the account did
// not exist, whatever its role: scoped tokens cannot probe for accounts. A
// role not allowed to do something on an account it can see gets 403.
// /healthz, /readyz, /metrics, /openapi.json, /asyncapi.json and
// /schemas/<type>.json need no token.
//
// # Idempotency
//
// A write with an Idempotency-Key header is fingerprinted (HMAC-SHA-256 of
// method, path, query and body under a key drawn at start, kept in memory
// only, never a plain hash of personal data). The first successful
// (2xx) response is kept, per key, in a bounded in-memory cache
// ([Config.IdempotencyEntries], least recently used evicted, each entry
// kept at most [Config.IdempotencyTTL]); a repeat with the same fingerprint
// gets it back byte for byte, with Idempotent-Replayed: true, and appends
// nothing; another fingerprint gets 422. Refusals are not kept: nothing was
// appended, so a retry is decided again. After a restart (or eviction) the
// application service still knows the key from event metadata for the
// same 24 hours (and up to 10,000 keys per account) and reports a repeat:
// the answer is then the current resource with the first status. A key
// older than that is forgotten everywhere: a request repeated under it is
// a new request. When a user is deleted, every response kept for their
// account is dropped ([API.ForgetAccountAnswers]), in every process: no
// kept answer names a deleted user, and a repeat is answered by the
// service with the erased result.
//
// # Lists
//
// /accounts, /users, /activities, /audit, /billing and /quarantine answer
// pages of at most limit items ([DefaultLimit], [MaxLimit] at most) with
// has_more and an opaque next_cursor bound to the list, account and
// filters; while has_more is true, next_link and the Link header (rel
// "next") give the request for the next page. The JSON Lines
// exports (/audit?format=jsonl, /events) stream from a cursor without a
// default limit and send their continuation as the trailers
// [HeaderNextCursor] and [HeaderHasMore]. No answer holds more than a page
// in memory; the read models are scanned under short read locks.
//
// # Read your writes
//
// Every write answers with Ledger-Position, the global position its events
// reached, and by default waits (up to [Config.WaitTimeout]) for the read
// models to apply it, so that a read after a write sees it. Reads accept
// Ledger-Min-Position (header) or min_position (query) and wait for the read
// models to reach it, answering 503 with Retry-After when they do not in
// time. A position above the store's last one ([Config.Head]) is 400 at
// once: no write answered with it.
//
// # Readiness
//
// /healthz answers 200 while the process serves. /readyz answers 200 once
// every [Config.Ready] check passes. Until [Config.ReadModelsReady]
// reports the read models caught up with the store's position at their
// start, every read (and minting a token for an account) answers 503
// problem+json of type not-ready with Retry-After: never a 404 or a
// partial list for data that exists.
//
// # Hostile input
//
// A request whose path or query is not valid UTF-8 once percent-decoded is
// 400 before anything else, token or not. A path no route knows is 404, a
// method its routes do not take is 405 with Allow, both problems. A panic
// while answering is recovered, logged with its stack, counted in
// licensed_http_panics_total and answered with a 500 problem.
package httpapi

import (
	"context"
	"io"
	"iter"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/telemetry"
	"github.com/licenseledger/ledger/projections/attribution"
	"github.com/licenseledger/ledger/projections/audit"
	"github.com/licenseledger/ledger/projections/billing"
	"github.com/licenseledger/ledger/projections/seats"
)

// Commands runs commands on accounts; *accounts.Service is one.
type Commands interface {
	// Execute runs cmd on account. Rule violations are *ledger.RuleError;
	// a stale IfMatch is accounts.ErrPreconditionFailed.
	Execute(ctx context.Context, account string, cmd ledger.Command, req accounts.Request) (accounts.Result, error)
}

// SeatReader is the seat-usage and user-directory read model;
// *seats.Projection is one. Unknown accounts and users are
// projections.ErrNotFound.
type SeatReader interface {
	Usage(account string, now time.Time) (seats.Usage, error)
	// UsersPage returns up to limit users after the first after added,
	// only those with status unless it is empty, the after of the next
	// page and whether users with the status follow.
	UsersPage(account string, status ledger.Status, after, limit int) (users []seats.User, next int, more bool, err error)
	User(account, user string) (seats.User, error)
	// AccountsPage returns up to limit opened accounts ordered by id,
	// after the account id after, with their seats at now, and whether
	// accounts follow.
	AccountsPage(after string, limit int, now time.Time) (page []seats.Summary, more bool)
}

// ActivityReader is the attribution read model; *attribution.Projection is
// one.
type ActivityReader interface {
	Activities(account string, after, limit int) (attribution.Page, error)
}

// AuditReader is the audit read model; *audit.Projection is one.
type AuditReader interface {
	// Scan iterates over the entries f selects after a global position,
	// without copying the account's history.
	Scan(account string, f audit.Filter, after eventstore.Position) (iter.Seq[audit.Entry], error)
}

// BillingReader is the billing read model; *billing.Projection is one.
type BillingReader interface {
	Cycle(account, period string, now time.Time) (billing.Cycle, error)
	Current(account string, now time.Time) (billing.Cycle, error)
	// CyclesPage returns up to limit cycles starting in period, one per
	// account ordered by id after the account id after, the id a next
	// page starts after, and whether cycles follow.
	CyclesPage(period, after string, limit int, now time.Time) (page []billing.Cycle, next string, more bool, err error)
}

// History reads one stream as stored; eventstore.Store is one. It serves
// the raw event export, state as of an instant and chain verification.
type History interface {
	ReadStream(ctx context.Context, stream eventstore.StreamID, from uint64) iter.Seq2[eventstore.Record, error]
}

// Decoder turns stored records into events; *codec.Codec is one.
type Decoder interface {
	Decode(ctx context.Context, r eventstore.Record) (codec.Decoded, error)
}

// Progress tells how far the read models have applied the store's global
// order. The projection runner implements it; [Tracker] is a simple one.
type Progress interface {
	// Position returns the global position every read model has applied.
	Position() eventstore.Position
	// Wait returns when every read model has applied position p, or ctx's
	// error when ctx ends first.
	Wait(ctx context.Context, p eventstore.Position) error
}

// Head tells the position of the last event the store holds; the event
// stores implement it. A read asking for a position above it is refused
// at once, since no write can have answered with that position.
type Head interface {
	// LastPosition returns the global position of the last event stored,
	// 0 when there is none.
	LastPosition(ctx context.Context) (eventstore.Position, error)
}

// Check is a readiness check: nil when the dependency it checks is usable.
type Check func(ctx context.Context) error

// Defaults of Config.
const (
	DefaultMaxBody            = 64 << 10
	DefaultWaitTimeout        = 5 * time.Second
	DefaultIdempotencyEntries = 10_000
	DefaultIdempotencyTTL     = 24 * time.Hour
)

// Config is everything the API needs. Commands, Seats, Activities, Audit,
// Billing, History, Decoder, Tokens, Clock, NewID and Random are required.
type Config struct {
	// PublicURL is the URL clients reach the API at, which the published
	// envelopes' dataschema starts with (GET .../events?format=cloudevents);
	// empty: contract.DefaultBaseURL.
	PublicURL  string
	Commands   Commands
	Seats      SeatReader
	Activities ActivityReader
	Audit      AuditReader
	Billing    BillingReader
	History    History
	Decoder    Decoder
	// Progress is how far the read models are; nil when they are updated
	// synchronously with every write (then nothing waits). One that is a
	// [ProgressChanges] is waited on without a context per wait.
	Progress Progress
	// ReadModelsReady reports whether the read models have applied every
	// event the store held when they started (after a restart they fold
	// the events since their snapshot). Until it does, every read answers
	// 503 not-ready with Retry-After rather than from read models that
	// would miss accounts, users or activities; writes are served, since
	// the application service loads accounts from the store. Nil: ready.
	ReadModelsReady func() bool
	// Head is the store's last position, asked when a read wants a
	// position the read models have not reached; nil means History's own
	// when it has one. Without either, such a read waits and may get 503.
	Head   Head
	Tokens auth.Store
	// SCIM, when set, serves every path under /scim/v2/ (the SCIM service
	// provider of internal/scim), behind the same checks of the request
	// target, panic recovery, logging and metrics as the API.
	SCIM http.Handler
	// Quarantine lists the records the read models skipped (GET
	// /v1/quarantine, audit verification, /metrics); nil when none can be.
	Quarantine QuarantineReader
	// Log is the transparency log (checkpoints, proofs, audit bundles);
	// nil when the service keeps none (its routes then answer 503).
	Log TransparencyLog
	// DataKeys gives the data keys an audit bundle carries when asked;
	// nil when bundles carry none.
	DataKeys KeyReader
	// Webhooks keeps the accounts' webhook endpoints; nil when the
	// service runs without (its routes then answer 503).
	Webhooks WebhookService

	// Clock is the only source of time; NewID draws user, activity and
	// correlation ids (ULIDs); Random draws token secrets (crypto/rand.Reader
	// in production).
	Clock  func() time.Time
	NewID  func() ulid.ULID
	Random io.Reader

	// Logger logs one line per request and the errors; every line logged
	// while answering a request carries its request_id (and trace_id
	// when the request is traced).
	Logger  *slog.Logger
	Metrics *Metrics // NewMetrics() when nil
	// Tracer makes the server span of each request, named after its
	// route pattern; nil makes none. Either way a request's W3C trace
	// context (traceparent, tracestate) is taken, and recorded in the
	// events its command appends.
	Tracer *telemetry.Tracer
	// NewRequestID draws the X-Request-Id of a request that came without
	// a valid one; a ULID when nil.
	NewRequestID func() string
	// Ready are the checks of /readyz by name, e.g. "store" and
	// "projections".
	Ready map[string]Check

	// MaxBody caps request bodies (DefaultMaxBody when 0).
	MaxBody int64
	// WaitTimeout bounds how long a read waits for a min position and a
	// write for the read models to apply it (DefaultWaitTimeout when 0).
	WaitTimeout time.Duration
	// NoWriteWait makes writes answer without waiting for the read models.
	NoWriteWait bool
	// IdempotencyEntries and IdempotencyTTL bound the in-memory
	// idempotency cache (defaults when 0).
	IdempotencyEntries int
	IdempotencyTTL     time.Duration
}

type server struct {
	cfg     Config
	log     *slog.Logger
	metrics *Metrics
	idem    *idemCache
	mux     *http.ServeMux
	routes  []Route
	fast    []fastRoute // see fastRoute
	// head is the highest position known to exist: a min position at or
	// below it needs no question to the store.
	head atomic.Uint64
	// timeouts time the waits for the read models.
	timeouts *timeouts
	// waiters are the waits for the read models' position.
	waiters waiters
}

// Route is one registered route: a method and a ServeMux path pattern.
type Route struct {
	Method, Path string
}

// API is the HTTP handler of the ledger.
type API struct {
	s *server
}

// New returns the API handler.
func New(cfg Config) *API {
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.WaitTimeout == 0 {
		cfg.WaitTimeout = DefaultWaitTimeout
	}
	if cfg.IdempotencyEntries == 0 {
		cfg.IdempotencyEntries = DefaultIdempotencyEntries
	}
	if cfg.IdempotencyTTL == 0 {
		cfg.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Logger = slog.New(telemetry.LogHandler(cfg.Logger.Handler()))
	if cfg.NewRequestID == nil {
		// Not monotonic (no lock shared by requests); unique enough. A
		// request id is no secret: its 80 random bits come from the
		// runtime's generator (math/rand/v2, seeded by the system), which
		// needs neither a system call nor a lock.
		cfg.NewRequestID = func() string { return ulid.MustNew(ulid.Now(), runtimeEntropy{}).String() }
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	s := &server{cfg: cfg, log: cfg.Logger, metrics: cfg.Metrics, mux: http.NewServeMux(), timeouts: newTimeouts(),
		idem: newIdemCache(cfg.IdempotencyEntries, cfg.IdempotencyTTL, cfg.Clock)}
	if cfg.Head == nil {
		if h, ok := cfg.History.(Head); ok {
			s.cfg.Head = h
		}
	}
	// No catch-all route: the mux then tells a path it does not know (404)
	// from a method the path does not take (405 with Allow); see serve.
	s.register()
	return &API{s: s}
}

// runtimeEntropy reads random bytes from math/rand/v2's generator.
type runtimeEntropy struct{}

func (runtimeEntropy) Read(p []byte) (int, error) {
	for i := 0; i < len(p); i += 8 {
		v := rand.Uint64()
		for j := i; j < len(p) && j < i+8; j++ {
			p[j] = byte(v)
			v >>= 8
		}
	}
	return len(p), nil
}

// ServeHTTP serves a request and logs one line about it. The answer
// carries the request's id as X-Request-Id (see [HeaderRequestID]).
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := a.s.requestID(r)
	w.Header()[HeaderRequestID] = []string{id}
	ctx, span := a.s.cfg.Tracer.StartServer(telemetry.WithRequestID(r.Context(), id), r.Header, r.Method)
	r = r.WithContext(ctx)
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		// Also when a panic is passed on to abort the connection.
		span.End(nil)
	}()
	a.s.serve(rec, r)
	d := time.Since(start)
	route, path := r.Pattern, ""
	switch _, p, withMethod := strings.Cut(route, " "); {
	case route == "" || route == "/":
		route = "unmatched"
	case withMethod:
		path = p
	default:
		path = route
	}
	span.SetRoute(r.Method, path, rec.status)
	a.s.metrics.request(route, rec.status, d)
	acct := r.PathValue("account")
	if acct != "" && span.Recording() {
		span.SetAttributes(telemetry.String("ledger.account", acct))
	}
	h := a.s.log.Handler()
	if !h.Enabled(ctx, slog.LevelInfo) {
		return
	}
	// The record is made here rather than by Logger.LogAttrs, which
	// also looks up the caller's program counter for a source that is
	// always this line.
	line := slog.NewRecord(start.Add(d), slog.LevelInfo, "request", 0)
	line.AddAttrs(slog.String("method", r.Method), slog.String("route", route),
		slog.Int("status", rec.status), slog.Duration("duration", d))
	if acct != "" {
		line.AddAttrs(slog.String("account", acct))
	}
	_ = h.Handle(ctx, line)
}

// HeaderRequestID is the header every answer carries: the request's own
// X-Request-Id when it sent one valid id (see [ValidRequestID]), a new
// one otherwise. Log lines about the request and its problem answers
// carry it too.
const HeaderRequestID = "X-Request-Id"

// MaxRequestID is the longest request id taken from a request.
const MaxRequestID = 128

// ValidRequestID reports whether id may be taken from a request as its
// id: 1 to [MaxRequestID] characters among ASCII letters, digits and
// -_.~:/+=@ (UUIDs, ULIDs, base64 and most proxies' ids), so that it is
// safe in headers, logs and JSON as it is.
func ValidRequestID(id string) bool {
	if len(id) == 0 || len(id) > MaxRequestID {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("-_.~:/+=@", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// WithRequestID gives the requests h serves (the console's pages, say)
// an id as the API does: the answer carries it as X-Request-Id, and the
// request's context carries it, so that the log lines logged with it,
// and the API's answers to requests made in process with that context,
// carry the same id.
func (a *API) WithRequestID(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := a.s.requestID(r)
		w.Header().Set(HeaderRequestID, id)
		h.ServeHTTP(w, r.WithContext(telemetry.WithRequestID(r.Context(), id)))
	})
}

// requestID returns the id the request's context already carries (a
// request made in process while answering another), else the request's
// X-Request-Id when it sent exactly one valid one, else a new id.
func (s *server) requestID(r *http.Request) string {
	if id := telemetry.RequestID(r.Context()); id != "" {
		return id
	}
	if v := r.Header.Values(HeaderRequestID); len(v) == 1 && ValidRequestID(v[0]) {
		return v[0]
	}
	return s.cfg.NewRequestID()
}

// Routes returns the routes the API registers, in registration order.
func (a *API) Routes() []Route { return append([]Route(nil), a.s.routes...) }

// ForgetAccountAnswers drops what the API keeps in memory about the
// requests made on account: the responses and fingerprints its idempotency
// cache holds for it, which may name its users. Call it for every
// UserDeleted the read models apply, in every process that serves the API,
// before the read models' position reaches the event: a deleted user's
// personal data then outlives the deletion in no answer kept. (A response
// about one user may name others of the account, so all of the account's
// go.) A repeat of one of those requests is judged by the application
// service, which answers without the deleted user's personal data.
func (a *API) ForgetAccountAnswers(account string) {
	a.s.idem.forgetAccount(account)
}

// Metrics returns the metrics the API records into.
func (a *API) Metrics() *Metrics { return a.s.metrics }

// statusRecorder is the ResponseWriter of a request's handling: it keeps
// the status answered, and, while the mux routes the request (routing),
// keeps what the mux answers itself in unrouted instead of answering it.
type statusRecorder struct {
	http.ResponseWriter
	status   int
	wrote    bool
	routing  bool
	unrouted *captured
}

// aside returns where what the mux answers itself goes.
func (r *statusRecorder) aside() *captured {
	if r.unrouted == nil {
		r.unrouted = &captured{}
	}
	return r.unrouted
}

func (r *statusRecorder) Header() http.Header {
	if r.routing {
		return r.aside().Header()
	}
	return r.ResponseWriter.Header()
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.routing {
		r.aside().WriteHeader(code)
		return
	}
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.routing {
		return r.aside().Write(b)
	}
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	if r.routing {
		return
	}
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// response is a complete answer, kept whole so that it can be replayed
// for an idempotency key.
type response struct {
	status  int
	header  http.Header
	body    []byte
	problem bool
}

func (s *server) send(w http.ResponseWriter, _ *http.Request, resp *response) {
	if wh := w.Header(); !sameHeader(wh, resp.header) {
		for k, v := range resp.header {
			wh[k] = v
		}
	}
	w.WriteHeader(resp.status)
	w.Write(resp.body)
}

// answerOptions are the options answers are marshalled with. Strings
// that are not UTF-8 cannot come from a decoded body (the decoder refuses
// them), but one slipping through from elsewhere is written as U+FFFD
// rather than failing the answer.
var answerOptions = json.JoinOptions(json.Deterministic(true), jsontext.AllowInvalidUTF8(true))

// sameHeader reports whether a and b are the same map (set through the
// one is set in the other).
func sameHeader(a, b http.Header) bool {
	return a != nil && b != nil && reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v, answerOptions)
	if err != nil {
		// Only values built by this package are marshalled; the recovery
		// in serve turns a mistake here into a 500.
		panic(err)
	}
	return append(b, '\n')
}

// contentJSON is the Content-Type of a JSON answer. Header values are
// shared between answers: nothing changes a value in place (Set replaces
// it, and Add appends to a slice without room, making a new one).
var contentJSON = []string{"application/json"}

func jsonResponse(status int, v any) *response {
	return &response{status: status, header: http.Header{"Content-Type": contentJSON}, body: marshalAnswer(v)}
}

// jsonResponseIn is jsonResponse with its headers set in h.
func jsonResponseIn(h http.Header, status int, v any) *response {
	h["Content-Type"] = contentJSON
	return &response{status: status, header: h, body: marshalAnswer(v)}
}

func etag(rev uint64) string { return `"` + strconv.FormatUint(rev, 10) + `"` }
