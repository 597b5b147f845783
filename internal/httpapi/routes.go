package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/codec"
)

// Header names of the API.
const (
	HeaderPosition    = "Ledger-Position"
	HeaderMinPosition = "Ledger-Min-Position"
	HeaderIdemKey     = "Idempotency-Key"
	HeaderReplayed    = "Idempotent-Replayed"
)

type readFunc func(ctx context.Context, r *http.Request, p auth.Principal) (*response, error)

// writeOp is one kind of write: how to build its command from the request
// and how to render its result.
type writeOp struct {
	action auth.Action
	// account returns the account the write is on; the path's by default.
	account func(r *http.Request, body []byte) (string, error)
	build   func(s *server, r *http.Request, body []byte) (ledger.Command, error)
	created bool
	render  func(s *server, r *http.Request, account string, cmd ledger.Command, res accounts.Result) (any, string, error)
}

func (s *server) register() {
	const acct = "/v1/accounts/{account}"
	s.write("POST /v1/accounts", openAccount)
	s.read("GET /v1/accounts", auth.ReadHistory, s.listAccounts)
	s.read("GET "+acct, auth.Read, s.getAccount)
	s.write("POST "+acct+"/seats", purchaseSeats)
	s.read("GET "+acct+"/seats", auth.Read, s.getAccount)
	s.write("POST "+acct+"/seat-reductions", reduceSeats)
	s.write("POST "+acct+"/users", addUser)
	s.read("GET "+acct+"/users", auth.Read, s.listUsers)
	s.read("GET "+acct+"/users/{user}", auth.Read, s.getUser)
	s.write("POST "+acct+"/users/{user}/deactivate", deactivateUser)
	s.write("POST "+acct+"/users/{user}/activate", activateUser)
	s.write("PATCH "+acct+"/users/{user}", updateUser)
	s.write("DELETE "+acct+"/users/{user}", deleteUser)
	s.write("POST "+acct+"/activities", recordActivity)
	s.read("GET "+acct+"/activities", auth.Read, s.listActivities)
	s.read("GET "+acct+"/activities/{activity}", auth.Read, s.getActivity)
	s.raw("GET "+acct+"/audit", auth.ReadHistory, s.getAudit)
	s.read("GET "+acct+"/audit/verify", auth.ReadHistory, s.verify)
	s.read("GET "+acct+"/state", auth.ReadHistory, s.stateAsOf)
	s.read("GET "+acct+"/billing", auth.ReadHistory, s.getBilling)
	s.raw("GET "+acct+"/events", auth.ReadHistory, s.events)
	s.read("GET /v1/billing", auth.ReadHistory, s.listBilling)
	s.tokenRoutes()
	s.webhookRoutes()
	s.quarantineRoutes()
	s.logRoutes()
	s.ops()
	s.contractRoutes()
	if s.cfg.SCIM != nil {
		s.handle("/scim/v2/", s.cfg.SCIM.ServeHTTP)
	}
}

// fastPatterns are the routes of the writes clients send most, which
// serve matches itself before the mux (see fastRoute).
var fastPatterns = []string{
	"POST /v1/accounts/{account}/activities",
	"POST /v1/accounts/{account}/users/{user}/deactivate",
	"POST /v1/accounts/{account}/users/{user}/activate",
	"POST /v1/accounts/{account}/users",
	"POST /v1/accounts/{account}/seats",
}

// fastRoute is one of fastPatterns: its path's segments ("{name}" for a
// wildcard) and its handler.
type fastRoute struct {
	pattern, method string
	segments        []string
	h               http.HandlerFunc
}

func (s *server) handle(pattern string, h http.HandlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	s.routes = append(s.routes, Route{Method: method, Path: path})
	if slices.Contains(fastPatterns, pattern) {
		s.fast = append(s.fast, fastRoute{pattern: pattern, method: method,
			segments: strings.Split(strings.TrimPrefix(path, "/"), "/"), h: h})
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if rec, ok := w.(*statusRecorder); ok {
			rec.routing = false // matched: the answer is the route's
		}
		h(w, r)
	})
}

// fastRoute returns the handler of the request when its route is one of
// fastPatterns, with the request's Pattern and path values set as the mux
// sets them; nil when the mux is to route it. Only a path of unreserved
// characters, without empty, "." or ".." segments, is matched here: the
// mux would neither unescape nor clean nor redirect it, and no other
// route takes such a path (TestFastRoutes).
func (s *server) fastRoute(r *http.Request) http.HandlerFunc {
	if r.URL.RawPath != "" || len(r.URL.Path) < 2 || r.URL.Path[0] != '/' {
		return nil
	}
	path := r.URL.Path[1:]
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '~':
		case c == '/':
			if i == 0 || path[i-1] == '/' || i == len(path)-1 {
				return nil
			}
		default:
			return nil // '.' too: no "." or ".." segment to clean
		}
	}
	n := strings.Count(path, "/") + 1
next:
	for i := range s.fast {
		f := &s.fast[i]
		if f.method != r.Method || len(f.segments) != n {
			continue
		}
		rest := path
		for _, seg := range f.segments {
			var v string
			v, rest, _ = strings.Cut(rest, "/")
			if seg[0] != '{' && seg != v {
				continue next
			}
		}
		rest = path
		for _, seg := range f.segments {
			var v string
			v, rest, _ = strings.Cut(rest, "/")
			if seg[0] == '{' {
				r.SetPathValue(seg[1:len(seg)-1], v)
			}
		}
		r.Pattern = f.pattern
		return f.h
	}
	return nil
}

// authorize authenticates the request and checks that the principal may
// see account (404 otherwise, so that scoped tokens learn nothing about
// other accounts) and that its role allows action (403).
func (s *server) authorize(r *http.Request, account string, action auth.Action) (auth.Principal, error) {
	p, err := auth.Authenticate(r.Context(), s.cfg.Tokens, authorization(r))
	if err != nil {
		return auth.Principal{}, err
	}
	if account != "" && !p.CanSee(account) {
		return auth.Principal{}, &ledger.RuleError{Rule: ledger.RuleAccountNotFound, Detail: "account " + strconv.Quote(account) + " not found"}
	}
	if !p.Role.Allows(action) {
		return auth.Principal{}, newProblem(ProblemForbidden, http.StatusForbidden,
			"a token with role "+string(p.Role)+" may not do this ("+string(action)+")")
	}
	return p, nil
}

// read registers a read: authorised, waiting for a min position, answered
// whole.
func (s *server) read(pattern string, action auth.Action, f readFunc) {
	s.handle(pattern, func(w http.ResponseWriter, r *http.Request) {
		resp, err := s.doRead(r, action, f)
		if err != nil {
			resp = s.problemResponse(r, err)
		}
		s.send(w, r, resp)
	})
}

func (s *server) doRead(r *http.Request, action auth.Action, f readFunc) (*response, error) {
	p, err := s.authorize(r, r.PathValue("account"), action)
	if err != nil {
		return nil, err
	}
	if err := s.checkReady(); err != nil {
		return nil, err
	}
	if err := s.awaitMin(r); err != nil {
		return nil, err
	}
	resp, err := f(r.Context(), r, p)
	if err != nil {
		return nil, err
	}
	if s.cfg.Progress != nil {
		resp.header.Set(HeaderPosition, strconv.FormatUint(uint64(s.cfg.Progress.Position()), 10))
	}
	return resp, nil
}

// raw registers a read that streams its body.
func (s *server) raw(pattern string, action auth.Action, f func(w http.ResponseWriter, r *http.Request) error) {
	s.handle(pattern, func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.authorize(r, r.PathValue("account"), action); err != nil {
			s.send(w, r, s.problemResponse(r, err))
			return
		}
		if err := s.checkReady(); err != nil {
			s.send(w, r, s.problemResponse(r, err))
			return
		}
		if err := s.awaitMin(r); err != nil {
			s.send(w, r, s.problemResponse(r, err))
			return
		}
		if err := f(w, r); err != nil {
			s.send(w, r, s.problemResponse(r, err))
		}
	})
}

// checkReady refuses a read while the read models are still catching up
// with the events stored before they started.
func (s *server) checkReady() error {
	if s.cfg.ReadModelsReady == nil || s.cfg.ReadModelsReady() {
		return nil
	}
	return newProblem(ProblemNotReady, http.StatusServiceUnavailable,
		"the service is starting and its read models are catching up with the stored events: retry shortly")
}

// awaitMin waits until the read models applied the position the request
// asks for, if any.
func (s *server) awaitMin(r *http.Request) error {
	v := r.Header.Get(HeaderMinPosition)
	if q := r.URL.Query().Get("min_position"); q != "" {
		v = q
	}
	if v == "" {
		return nil
	}
	pos, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		return badRequest("min position %q is not a non-negative integer", v)
	}
	if err := s.reachable(r.Context(), eventstore.Position(pos)); err != nil {
		return err
	}
	return s.awaitPosition(r.Context(), eventstore.Position(pos))
}

// reachable refuses a min position above the store's last position: no
// write answered with it, so waiting for it could only time out. The store
// is asked only when the position is above every one known to exist, and
// a store that cannot answer lets the read wait as before.
func (s *server) reachable(ctx context.Context, pos eventstore.Position) error {
	if s.cfg.Progress == nil || s.cfg.Head == nil {
		return nil
	}
	known := max(s.head.Load(), uint64(s.cfg.Progress.Position()))
	if uint64(pos) <= known {
		return nil
	}
	last, ok := s.storeLast(ctx)
	if !ok {
		return nil
	}
	if pos > last {
		return newProblem(ProblemUnreachable, http.StatusBadRequest,
			"min position "+strconv.FormatUint(uint64(pos), 10)+" is beyond the last position the store holds ("+
				strconv.FormatUint(uint64(last), 10)+"): use a Ledger-Position this API answered")
	}
	return nil
}

// storeLast asks the store for its last position, within the wait
// timeout, and keeps it as the highest known to exist. ok is false when
// the store could not answer (logged).
func (s *server) storeLast(ctx context.Context) (last eventstore.Position, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.WaitTimeout)
	defer cancel()
	last, err := s.cfg.Head.LastPosition(ctx)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "store's last position unknown", slog.String("err", err.Error()))
		return 0, false
	}
	for {
		cur := s.head.Load()
		if uint64(last) <= cur || s.head.CompareAndSwap(cur, uint64(last)) {
			return last, true
		}
	}
}

// awaitPosition waits, up to the wait timeout, for the read models to
// apply pos.
func (s *server) awaitPosition(ctx context.Context, pos eventstore.Position) error {
	if s.cfg.Progress == nil || pos == 0 || s.cfg.Progress.Position() >= pos {
		return nil
	}
	var err error
	if c, ok := s.cfg.Progress.(ProgressChanges); ok {
		err = s.awaitChanges(ctx, c, pos)
	} else {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.WaitTimeout)
		err = s.cfg.Progress.Wait(wctx, pos)
		cancel()
	}
	if err != nil {
		return &problemError{slug: ProblemNotCaughtUp, status: http.StatusServiceUnavailable,
			detail: "the read models have not reached position " + strconv.FormatUint(uint64(pos), 10) + " yet: retry shortly", err: err}
	}
	return nil
}

// awaitChanges waits for c to reach pos, ctx to end or the wait timeout
// to pass, without a context and a timer of its own: the timeout is one
// the waits that started within the same few milliseconds share, and the
// wait is woken once, when pos is reached (see waiters), not at every
// change of c.
func (s *server) awaitChanges(ctx context.Context, c ProgressChanges, pos eventstore.Position) error {
	reached := s.waiters.add(c, pos)
	select {
	case <-reached:
		return nil
	case <-ctx.Done():
		s.waiters.remove(reached)
		return fmt.Errorf("wait for position %d: %w", pos, ctx.Err())
	case <-s.timeouts.after(s.cfg.WaitTimeout):
		s.waiters.remove(reached)
		return fmt.Errorf("wait for position %d (at %d): %w", pos, c.Position(), context.DeadlineExceeded)
	}
}

// write registers a write. Every write goes through the same steps:
// authorise, read the body, check the idempotency key, run the command,
// wait for the read models, answer.
func (s *server) write(pattern string, op writeOp) {
	s.handle(pattern, func(w http.ResponseWriter, r *http.Request) {
		s.send(w, r, s.doWrite(w, r, op))
	})
}

// doWrite runs the write and returns its answer. The headers of an
// answer that is not kept for an idempotency key are set in w's directly.
func (s *server) doWrite(w http.ResponseWriter, r *http.Request, op writeOp) *response {
	body, err := s.readBody(r)
	if err != nil {
		// The body could not be read; authenticate first so that an anonymous
		// client learns only that it needs a token.
		if _, aerr := auth.Authenticate(r.Context(), s.cfg.Tokens, authorization(r)); aerr != nil {
			return s.problemResponse(r, aerr)
		}
		return s.problemResponse(r, err)
	}
	account := r.PathValue("account")
	if op.account != nil {
		if account, err = op.account(r, body); err != nil {
			if _, aerr := auth.Authenticate(r.Context(), s.cfg.Tokens, authorization(r)); aerr != nil {
				return s.problemResponse(r, aerr)
			}
			return s.problemResponse(r, err)
		}
	}
	scope := account
	if op.account != nil {
		// The account named in the body does not exist yet: only the role
		// decides (opening is for operators, who see every account).
		scope = ""
	}
	p, err := s.authorize(r, scope, op.action)
	if err != nil {
		return s.problemResponse(r, err)
	}
	key := r.Header.Get(HeaderIdemKey)
	if key == "" {
		return s.runWrite(r, op, p, account, body, "", w.Header())
	}
	if err := checkIdemKey(key); err != nil {
		return s.problemResponse(r, err)
	}
	fp := s.idem.fingerprint(r, body)
	cached, done, err := s.idem.begin(r.Context(), account, idemScope(p, account, key), fp)
	if err != nil {
		return s.problemResponse(r, err)
	}
	if cached != nil {
		return cached
	}
	var resp *response
	// Deferred so that a panic, recovered in serve, releases the key (resp
	// is then nil) instead of leaving its repeats waiting for good.
	defer func() { done(resp) }()
	resp = s.runWrite(r, op, p, account, body, key, http.Header{})
	return resp
}

// runWrite runs the write's command and renders its answer, whose
// headers are set in h: the ResponseWriter's own (the answer is then
// sent as it is) or a map of the answer's own.
func (s *server) runWrite(r *http.Request, op writeOp, p auth.Principal, account string, body []byte, key string, h http.Header) *response {
	ctx := r.Context()
	cmd, err := op.build(s, r, body)
	if err != nil {
		return s.problemResponse(r, err)
	}
	req := accounts.Request{
		Actor:          codec.Actor{ID: p.TokenID, Role: string(p.Role)},
		IdempotencyKey: key,
		CorrelationID:  s.cfg.NewID(),
	}
	req.Traceparent, req.Tracestate = accounts.TraceContext(ctx)
	if req.IfMatch, err = ifMatch(r); err != nil {
		return s.problemResponse(r, err)
	}
	start := time.Now()
	res, err := s.cfg.Commands.Execute(ctx, account, cmd, req)
	s.metrics.commandDone(cmd.CommandName(), outcome(res, err), time.Since(start))
	if err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		// The store may have recorded the command before the time ran
		// out: only a retry with the same key is safe.
		err = &problemError{slug: ProblemOutcomeUnknown, status: http.StatusServiceUnavailable, err: err,
			detail: "the command timed out and may or may not have been recorded: retry it with the same Idempotency-Key, or read the account before giving it again"}
	}
	if err != nil {
		return s.problemResponse(r, err)
	}
	if !s.cfg.NoWriteWait {
		if err := s.awaitPosition(ctx, res.Position); err != nil {
			// The write is done; a client that reads next can still ask for
			// Ledger-Position explicitly.
			s.log.WarnContext(ctx, "read models behind after write", "account", account, "position", uint64(res.Position))
		}
	}
	v, location, err := op.render(s, r, account, cmd, res)
	if err != nil {
		return s.problemResponse(r, err)
	}
	status := http.StatusOK
	if op.created {
		status = http.StatusCreated
	}
	resp := jsonResponseIn(h, status, v)
	// Keys in canonical form (ETag's is Etag), set directly.
	if location != "" {
		resp.header["Location"] = []string{location}
	}
	resp.header["Etag"] = []string{etag(res.Revision())}
	resp.header[HeaderPosition] = []string{strconv.FormatUint(uint64(res.Position), 10)}
	return resp
}

func outcome(res accounts.Result, err error) string {
	var re *ledger.RuleError
	switch {
	case errors.As(err, &re):
		return "refused"
	case errors.Is(err, accounts.ErrPreconditionFailed):
		return "precondition_failed"
	case errors.Is(err, accounts.ErrIdempotencyKeyReused):
		return "idempotency_key_reused"
	case errors.Is(err, accounts.ErrContention):
		return "contention"
	case err != nil:
		return "error"
	case res.Repeated:
		return "repeated"
	case len(res.Events) == 0:
		return "unchanged"
	}
	return "ok"
}

func ifMatch(r *http.Request) (*uint64, error) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" || v == "*" {
		return nil, nil
	}
	if len(v) < 3 || v[0] != '"' || v[len(v)-1] != '"' {
		return nil, badRequest("If-Match must be an ETag this API returned, such as \"7\"")
	}
	rev, err := strconv.ParseUint(v[1:len(v)-1], 10, 64)
	if err != nil {
		return nil, badRequest("If-Match must be an ETag this API returned, such as \"7\"")
	}
	return &rev, nil
}

// readBody reads the request body whole, up to MaxBody; a larger one is
// 413. A body that is not JSON by its Content-Type is 415.
func (s *server) readBody(r *http.Request) ([]byte, error) {
	b, err := readAll(r.Body, r.ContentLength, s.cfg.MaxBody)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, newProblem(ProblemBodyTooLarge, http.StatusRequestEntityTooLarge,
			"the request body is larger than "+strconv.FormatInt(s.cfg.MaxBody, 10)+" bytes")
	}
	if err != nil {
		return nil, badRequest("the request body could not be read")
	}
	if len(b) > 0 {
		// The Content-Type clients send, as is, needs no parsing.
		if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" {
			mt, _, err := mime.ParseMediaType(ct)
			if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
				return nil, newProblem(ProblemUnsupportedMedia, http.StatusUnsupportedMediaType, "the request body must be application/json")
			}
		}
	}
	return b, nil
}

// readAll reads body whole as io.ReadAll does, failing with an
// *http.MaxBytesError once it has more than max bytes. A body of known
// length (size, the request's Content-Length) is read into a buffer of
// its size plus the byte that finds its end: one allocation, no copy.
func readAll(body io.Reader, size, max int64) ([]byte, error) {
	if size < 0 || size > max {
		size = 511 // io.ReadAll's first buffer
	}
	b := make([]byte, 0, size+1)
	for {
		n, err := body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > max {
			return nil, &http.MaxBytesError{Limit: max}
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

// decodeBody decodes a JSON object strictly: unknown or duplicate fields,
// wrong types and trailing data are 400. An empty body decodes as {} when
// empty is allowed.
func decodeBody(body []byte, v any, emptyOK bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		if emptyOK {
			return nil
		}
		return badRequest("a JSON body is required")
	}
	if f, ok := v.(flatBody); ok && f.decodeFlat(body) {
		return nil
	}
	if err := json.Unmarshal(body, v, strictBody); err != nil {
		return &problemError{slug: ProblemMalformedRequest, status: http.StatusBadRequest, detail: describeJSONError(err), err: err}
	}
	return nil
}

// strictBody are the options request bodies are decoded with.
var strictBody = json.RejectUnknownMembers(true)

func describeJSONError(err error) string {
	var se *json.SemanticError
	switch {
	case errors.Is(err, json.ErrUnknownName) && errors.As(err, &se):
		return "the request body has an unknown field " + string(se.JSONPointer)
	case errors.As(err, &se) && se.JSONPointer != "":
		return "the request body has a value of the wrong type or range at " + string(se.JSONPointer)
	}
	return "the request body is not a single valid JSON object of the expected shape"
}

// authorization returns the request's Authorization header, or "" (no
// credentials) when it has more than one: which of them is meant is
// ambiguous, and a proxy in front may have taken another one than this
// server would.
func authorization(r *http.Request) string {
	if v := r.Header.Values("Authorization"); len(v) == 1 {
		return v[0]
	}
	return ""
}
