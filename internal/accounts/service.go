// Package accounts is the application service of the license ledger: it
// takes a command for an account, decides it against the account's state,
// seals personal data, appends the events with the expected revision, and
// keeps the state for the next command.
//
// # State in memory
//
// Each account's state is loaded from its streams once and kept; later
// commands only catch up with events other processes appended. Correctness
// across processes comes from the store's optimistic concurrency: a
// conflict means another writer won, so the service catches up and decides
// again, a bounded number of times.
//
// # Idempotency
//
// A command given with an idempotency key that the account has seen
// within the window (Config.IdempotencyWindow, 24 hours by the service's
// clock by default) returns the first result and appends nothing, when it
// is the same command; another command under that key is refused with
// ErrIdempotencyKeyReused. The service judges it from a fingerprint of the
// command recorded in the events' metadata (fingerprint.go), which holds
// no personal data in clear nor a hash of it that outlives the user's
// key. Keys are
// recorded in the events' metadata, so they survive restarts and are seen
// by every process; loading an account rebuilds only the keys of commands
// recorded within the window. An account remembers at most
// Config.IdempotencyKeys keys (10,000 by default), forgetting the oldest
// first. A command given again under a forgotten key is a new command: it
// is decided again and, if allowed, appended again.
package accounts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/internal/telemetry"
)

// ErrPreconditionFailed is returned when a command names the ledger
// revision it expects (If-Match) and the account has moved on.
var ErrPreconditionFailed = errors.New("accounts: account changed since the revision given")

// ErrContention is returned when a command lost the race to append more
// times than the service retries. It wraps eventstore.ErrConflict.
var ErrContention = fmt.Errorf("accounts: too many concurrent writers: %w", eventstore.ErrConflict)

// DefaultRetries is how many times a command is decided again after losing
// a race to append.
const DefaultRetries = 8

// Config holds what a Service needs. Clock, NewEventID and NewULID are the
// service's only sources of time and randomness.
type Config struct {
	Store      eventstore.Store
	Codec      *codec.Codec
	Clock      func() time.Time
	NewEventID func() uuid.UUID
	NewULID    func() ulid.ULID
	// Retries bounds how often a command is decided again after a conflict;
	// DefaultRetries when 0.
	Retries int
	// IdempotencyWindow is how long an account remembers an idempotency
	// key after its command was recorded (by Clock), DefaultIdempotencyWindow
	// when 0; IdempotencyKeys is how many keys an account remembers at
	// most, DefaultIdempotencyKeys when 0, the oldest forgotten first. A
	// forgotten key is unknown everywhere, also to a service that loads
	// the account later: a command given again under it is decided and
	// appended as a new one.
	IdempotencyWindow time.Duration
	IdempotencyKeys   int
	Logger            *slog.Logger
	// OnAppend, if set, is called after every append the service asks the
	// store for, with what it asked and what the store answered. It is how
	// the wiring observes appends (metrics, the read models' lag): the
	// service holds the store itself, never a wrapper of it, so that the
	// store's optional capabilities (eventstore.ConditionalAppender) stay
	// visible to it. It runs on the command's goroutine: keep it short.
	OnAppend func(Appended)
	// Tracer makes a span (ledger.append) of every append to the store,
	// child of the command's context; nil makes none.
	Tracer *telemetry.Tracer
	// States, if set, is the accounts' read model (NewReadModel) the
	// runner keeps: an account's first command or read takes its state
	// from there and reads from the store only what came after, instead
	// of both streams whole.
	States *ReadModel
}

// Appended describes one append the service asked the store for.
type Appended struct {
	Stream eventstore.StreamID
	// Events is how many events the append carried.
	Events int
	// Result is where they landed; valid only when Err is nil.
	Result eventstore.AppendResult
	// Took is how long the store took to answer.
	Took time.Duration
	// Err is the store's error, nil when the events are stored.
	Err error
}

// Request is what the service records about who gave a command and how.
type Request struct {
	Actor codec.Actor
	// IdempotencyKey makes a repeat of the command return the first result.
	IdempotencyKey string
	// CorrelationID ties the events to the request that caused them; a new
	// id is drawn when zero. It is also the causation id of the first event;
	// each later event of the same command is caused by the one before.
	CorrelationID ulid.ULID
	// Traceparent and Tracestate are the W3C trace context the command was
	// given in (empty when none), recorded in every event's metadata; see
	// codec.Metadata. An invalid one fails the command: the HTTP layer
	// passes only those it parsed.
	Traceparent, Tracestate string
	// IfMatch, when set, is the ledger revision the client last saw; the
	// command is refused with ErrPreconditionFailed if the ledger moved.
	IfMatch *uint64
}

// TraceContext returns the W3C trace context a command given in ctx
// records in its events ([Request.Traceparent]): that of ctx's span (an
// HTTP request's server span when traced), else the one the request came
// with; empty when none. A tracestate events cannot keep (longer than
// codec.MaxTracestate) is left out.
func TraceContext(ctx context.Context) (traceparent, tracestate string) {
	traceparent, tracestate = telemetry.TraceContext(ctx)
	if !codec.ValidTraceparent(traceparent) {
		return "", ""
	}
	if !codec.ValidTracestate(tracestate) {
		tracestate = ""
	}
	return traceparent, tracestate
}

// Result is what a command did.
type Result struct {
	// Events are the events appended, decoded (for a repeat: those of the
	// first time). Empty when the command changed nothing.
	Events []codec.Decoded
	// State is the account after the command. Its maps and slices may be
	// shared with the account and with the results of other commands
	// (the account copies them before an event changes them): read it, do
	// not modify it.
	State ledger.State
	// Position is the global position the command's events reached; a read
	// model that has applied it reflects the command.
	Position eventstore.Position
	// Repeated is set when the idempotency key had been seen: nothing was
	// appended this time.
	Repeated bool
}

// Revision returns the account's ledger revision after the command: the
// value clients see as ETag and give back as If-Match.
func (r Result) Revision() uint64 { return LedgerRevision(r.State) }

// LedgerRevision returns the revision of the last ledger event folded into
// s (0 for an account with one event; also 0 before opening).
func LedgerRevision(s ledger.State) uint64 {
	if s.Version == 0 {
		return 0
	}
	return s.Version - 1
}

// Service runs commands on accounts. It is safe for concurrent use; commands
// on one account run one at a time within a process.
type Service struct {
	cfg Config
	log *slog.Logger

	mu       sync.RWMutex
	accounts map[string]*account

	// cond is the store's conditional append, nil when it has none or
	// refused one (noCond): activities are then appended after reading the
	// ledger.
	cond   eventstore.ConditionalAppender
	noCond atomic.Bool
}

// errNoCondition tells Execute that the store refused a conditional
// append: it reads the ledger and decides again.
var errNoCondition = errors.New("accounts: the store cannot append on condition")

// account is the service's memory of one account.
type account struct {
	mu     sync.Mutex
	id     string
	loaded bool
	state  ledger.State
	// Heads and lengths of the two streams, for the expected revision and
	// the hash chain of the next append.
	ledgerHead, activityHead codec.Hash
	activityLen              uint64
	lastPosition             eventstore.Position
	keys                     *keyMemory      // idempotency key -> first result, within the window
	pendingDestroy           map[string]bool // users whose key a failed destroy left
	// usersShared and restShared are set while results handed out (see
	// snapshot) share state's Users map, and its other maps and slices:
	// evolve copies what an event would change before it changes it.
	usersShared, restShared bool
	// fromModel is set while the state comes from the accounts' read
	// model (Config.States) rather than from the streams; streamsOnly
	// makes the next fresh load ignore the model.
	fromModel, streamsOnly bool
}

// snapshot returns the account's state for a caller to keep while later
// commands evolve the account. It shares the state's maps and slices with
// the account, which copies them before a later event changes them
// (evolve), so a result costs no copy, and an event copies only what it
// changes: an activity, 60% of the commands, nothing; a seat purchase or
// reduction nothing (reductions only grow at their end, which a result's
// slice does not reach); a user's deactivation or activation the users
// map; other ledger events every map.
func (a *account) snapshot() ledger.State {
	a.usersShared, a.restShared = true, true
	return a.state
}

// evolve folds e into the account's state, first copying the maps and
// slices of the state that e changes in place (ledger.Evolve) while a
// result shares them (snapshot).
func (a *account) evolve(e ledger.Event) {
	if (a.usersShared || a.restShared) && !ledger.IsActivity(e) {
		switch e.(type) {
		case ledger.SeatsPurchased, ledger.SeatReductionScheduled:
			// Only scalars change, and Reductions grows at its end.
		case ledger.UserDeactivated, ledger.UserActivated, ledger.UserRoleChanged:
			// Only a user's entry in Users changes.
			if a.usersShared {
				a.state.Users = maps.Clone(a.state.Users)
				a.usersShared = false
			}
		default:
			a.state = a.state.Clone()
			a.usersShared, a.restShared = false, false
		}
	}
	a.state = ledger.Evolve(a.state, e)
}

// reset replaces the account's state with st, which nothing else holds.
func (a *account) reset(st ledger.State) {
	a.state = st
	a.usersShared, a.restShared = false, false
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Retries == 0 {
		cfg.Retries = DefaultRetries
	}
	if cfg.IdempotencyWindow <= 0 {
		cfg.IdempotencyWindow = DefaultIdempotencyWindow
	}
	if cfg.IdempotencyKeys <= 0 {
		cfg.IdempotencyKeys = DefaultIdempotencyKeys
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: cfg.Logger, accounts: make(map[string]*account)}
	s.cond, _ = cfg.Store.(eventstore.ConditionalAppender)
	return s
}

func (s *Service) account(id string) *account {
	s.mu.RLock()
	a, ok := s.accounts[id]
	s.mu.RUnlock()
	if ok {
		return a
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok = s.accounts[id]
	if !ok {
		a = &account{id: id, keys: s.newKeys()}
		s.accounts[id] = a
	}
	return a
}

// State returns the account's current state as this process knows it,
// loading it on first use. An account never opened returns a zero State
// and ledger.ErrAccountNotFound.
func (s *Service) State(ctx context.Context, accountID string) (ledger.State, error) {
	if !ledger.ValidAccountID(accountID) {
		return ledger.State{}, &ledger.RuleError{Rule: ledger.RuleAccountNotFound, Detail: "account not found"}
	}
	a := s.account(accountID)
	a.mu.Lock()
	defer a.mu.Unlock()
	s.retryDestroys(ctx, a)
	if err := s.catchUp(ctx, a, !a.loaded); err != nil {
		return ledger.State{}, err
	}
	if !a.state.Opened() {
		return ledger.State{}, &ledger.RuleError{Rule: ledger.RuleAccountNotFound, Detail: fmt.Sprintf("account %q not found", accountID)}
	}
	return a.snapshot(), nil
}

// Execute runs cmd on the account: decide, seal, append with the expected
// revision, retrying after conflicts. Rule violations come back as
// *ledger.RuleError and change nothing.
func (s *Service) Execute(ctx context.Context, accountID string, cmd ledger.Command, req Request) (Result, error) {
	if err := checkAccountID(accountID, cmd); err != nil {
		return Result{}, err
	}
	a := s.account(accountID)
	a.mu.Lock()
	defer a.mu.Unlock()
	s.retryDestroys(ctx, a)
	// An activity goes to the activity stream, whose expected revision says
	// nothing about the ledger, yet only an active user may record one. On a
	// store that appends on condition, the activity is appended only if the
	// ledger is still at the revision the decision folded, checked by the
	// store with the append: no read first, and a deactivation or deletion
	// another process appended at any time before is seen (the conflict
	// makes the loop below catch up with both streams). Other stores get
	// the ledger read first, which leaves a window between the read and the
	// append. The activity stream needs no read: its expected revision
	// catches a stale head.
	current := false // whether the state was caught up during this call
	switch _, activity := cmd.(ledger.RecordActivity); {
	case !a.loaded:
		if err := s.catchUp(ctx, a, true); err != nil {
			return Result{}, err
		}
		current = true
	case activity && !s.conditional():
		if err := s.catchUpLedger(ctx, a); err != nil {
			return Result{}, err
		}
		current = true
	}
	if req.CorrelationID == (ulid.ULID{}) {
		req.CorrelationID = s.cfg.NewULID()
	}
	for attempt := 0; ; attempt++ {
		if r, ok := s.repeat(a, req.IdempotencyKey); ok {
			same, err := s.sameCommand(ctx, a.id, r, cmd)
			if err != nil {
				return Result{}, err
			}
			if !same {
				return Result{}, fmt.Errorf("%s under idempotency key %q: %w", cmd.CommandName(), req.IdempotencyKey, ErrIdempotencyKeyReused)
			}
			r.State, r.Repeated = a.snapshot(), true
			return r, nil
		}
		if req.IfMatch != nil && (!a.state.Opened() || *req.IfMatch != LedgerRevision(a.state)) {
			if !current {
				if err := s.catchUp(ctx, a, false); err != nil {
					return Result{}, err
				}
				current = true
				continue
			}
			return Result{}, fmt.Errorf("if-match revision %d, account at %d: %w", *req.IfMatch, LedgerRevision(a.state), ErrPreconditionFailed)
		}
		events, err := ledger.Decide(a.state, cmd)
		if (err != nil || len(events) == 0) && !current {
			// Only an append proves the state was current. Before refusing or
			// answering "nothing to do", catch up with what other processes
			// appended and decide again.
			if err := s.catchUp(ctx, a, false); err != nil {
				return Result{}, err
			}
			current = true
			continue
		}
		if err != nil {
			return Result{}, err
		}
		if len(events) == 0 {
			return Result{State: a.snapshot(), Position: a.lastPosition}, nil
		}
		res, err := s.append(ctx, a, events, cmd, req)
		if errors.Is(err, errNoCondition) {
			s.log.InfoContext(ctx, "the store refused a conditional append; reading the ledger before each activity", "err", err)
			if err := s.catchUpLedger(ctx, a); err != nil {
				return Result{}, err
			}
			current = true
			continue
		}
		if errors.Is(err, eventstore.ErrConflict) {
			if attempt >= s.cfg.Retries {
				return Result{}, fmt.Errorf("%s on %s after %d attempts: %w", cmd.CommandName(), accountID, attempt+1, ErrContention)
			}
			s.log.DebugContext(ctx, "append conflict, catching up", "account", accountID, "command", cmd.CommandName(), "attempt", attempt+1)
			// A state from the read model that conflicts again after
			// catching up is ahead of the store (its history lost events
			// the model had applied): it is read again from the streams,
			// which no later append can disagree with.
			fresh := a.fromModel && attempt > 0
			if fresh {
				s.log.WarnContext(ctx, "the account's state from the read model is ahead of the store; reading its streams", "account", accountID)
				a.streamsOnly = true
			}
			if err := s.catchUp(ctx, a, fresh); err != nil {
				return Result{}, err
			}
			current = true
			continue
		}
		if err != nil {
			return Result{}, err
		}
		return res, nil
	}
}

// repeat returns the result first given under an idempotency key the
// account remembers.
func (s *Service) repeat(a *account, key string) (Result, bool) {
	if key == "" {
		return Result{}, false
	}
	return a.keys.lookup(key, s.cfg.Clock())
}

// conditional reports whether activities are appended on condition that
// the ledger has not moved.
func (s *Service) conditional() bool { return s.cond != nil && !s.noCond.Load() }

func checkAccountID(accountID string, cmd ledger.Command) error {
	open, opening := cmd.(ledger.OpenAccount)
	switch {
	case opening && open.Account != accountID:
		return &ledger.RuleError{Rule: ledger.RuleInvalidCommand, Detail: "the command names another account than the request"}
	case ledger.ValidAccountID(accountID):
		return nil
	case opening:
		return &ledger.RuleError{Rule: ledger.RuleInvalidAccountID, Detail: "account id must match [a-z0-9][a-z0-9_-]{0,62}"}
	default:
		return &ledger.RuleError{Rule: ledger.RuleAccountNotFound, Detail: "account not found"}
	}
}

// append seals, chains and appends events decided together, then folds
// them into the account. Events of one command go to one stream.
func (s *Service) append(ctx context.Context, a *account, events []ledger.Event, cmd ledger.Command, req Request) (Result, error) {
	activity := ledger.IsActivity(events[0])
	stream, head, expected := eventstore.LedgerStream(a.id), a.ledgerHead, eventstore.ExpectRevisionAfter(a.state.Version)
	if activity {
		stream, head, expected = eventstore.ActivityStream(a.id), a.activityHead, eventstore.ExpectRevisionAfter(a.activityLen)
	}
	now := s.cfg.Clock().UTC()
	proposed := make([]eventstore.Proposed, len(events))
	decoded := make([]codec.Decoded, len(events))
	causation := req.CorrelationID
	var fingerprint string
	for i, e := range events {
		if added, ok := e.(ledger.UserAdded); ok {
			if err := s.cfg.Codec.Keys().Create(ctx, pii.KeyID(a.id, added.UserID)); err != nil {
				return Result{}, err
			}
		}
		if i == 0 && req.IdempotencyKey != "" {
			// After the user's key exists: a new user's personal data is
			// fingerprinted under the key just made.
			var err error
			if fingerprint, err = s.fingerprint(ctx, a.id, ledger.UserOf(e), cmd); err != nil {
				return Result{}, err
			}
		}
		meta := codec.Metadata{
			EventID: s.cfg.NewEventID(), Time: now, Account: a.id, Actor: req.Actor,
			CorrelationID: req.CorrelationID, CausationID: causation,
			Traceparent: req.Traceparent, Tracestate: req.Tracestate,
			IdempotencyKey: req.IdempotencyKey, CommandFingerprint: fingerprint, PrevHash: head,
		}
		p, err := s.cfg.Codec.Encode(ctx, e, meta)
		if err != nil {
			return Result{}, err
		}
		meta.Type, meta.Subject, meta.SchemaVersion = p.Type, ledger.UserOf(e), codec.Versions[p.Type]
		proposed[i] = p
		decoded[i] = codec.Decoded{Event: e, Meta: meta, Record: eventstore.Record{
			ID: p.ID, Stream: stream, Type: p.Type, Data: p.Data, Metadata: p.Metadata,
		}}
		head = codec.NextHash(head, p)
		causation = ulid.ULID(p.ID) // the next event of the command is caused by this one
	}
	var res eventstore.AppendResult
	var err error
	start := time.Now() // a duration for OnAppend, not the time of an event
	var span telemetry.Span
	if s.cfg.Tracer.Enabled() { // the attributes cost nothing when off
		ctx, span = s.cfg.Tracer.Start(ctx, "ledger.append", telemetry.String("ledger.stream", stream.String()),
			telemetry.String("ledger.event_type", events[0].EventType()), telemetry.Int("ledger.events", len(proposed)))
	}
	if activity && s.conditional() {
		ledgerAt := eventstore.Condition{Stream: eventstore.LedgerStream(a.id), Expected: eventstore.ExpectRevisionAfter(a.state.Version)}
		res, err = s.cond.AppendIf(ctx, stream, expected, ledgerAt, proposed...)
		if errors.Is(err, errors.ErrUnsupported) {
			s.noCond.Store(true)
			span.Fail("unsupported")
			span.End(err)
			return Result{}, fmt.Errorf("append %s to %s: %w (%w)", events[0].EventType(), stream, errNoCondition, err)
		}
	} else {
		res, err = s.cfg.Store.Append(ctx, stream, expected, proposed...)
	}
	if s.cfg.OnAppend != nil {
		s.cfg.OnAppend(Appended{Stream: stream, Events: len(proposed), Result: res, Took: time.Since(start), Err: err})
	}
	switch {
	case err == nil && span.Recording():
		span.SetAttributes(telemetry.Int64("ledger.position", int64(res.Position)))
	case errors.Is(err, eventstore.ErrConflict):
		span.Fail("conflict")
	}
	span.End(err)
	if err != nil {
		return Result{}, fmt.Errorf("append %s to %s: %w", events[0].EventType(), stream, err)
	}
	first := res.NextRevision + 1 - uint64(len(events))
	for i := range decoded {
		decoded[i].Record.Revision = first + uint64(i)
		decoded[i].Record.Position = res.Position // exact for the last; a lower bound for the others
		a.evolve(decoded[i].Event)
		if del, ok := decoded[i].Event.(ledger.UserDeleted); ok {
			s.destroyKey(ctx, a, del.UserID)
		}
	}
	if activity {
		a.activityHead, a.activityLen = head, res.NextRevision+1
	} else {
		a.ledgerHead = head
	}
	if res.Position > a.lastPosition {
		a.lastPosition = res.Position
	}
	out := Result{Events: decoded, State: a.snapshot(), Position: res.Position}
	if req.IdempotencyKey != "" {
		for _, d := range decoded { // copies: scrub edits them
			a.keys.remember(req.IdempotencyKey, d, now)
		}
	}
	return out, nil
}

// destroyKey destroys a deleted user's data key. The deletion is recorded
// whatever happens here, so a failure is logged, not returned: this
// process stops opening the user's data at once (the keyring marks the key
// destroyed before asking the store), and the store's destroy is retried
// at every later command or read of the account, and at every load, until
// it succeeds. It does not depend on the request: a client that hangs up
// as the deletion is appended does not cancel it.
func (s *Service) destroyKey(ctx context.Context, a *account, user string) {
	scrub(a, user)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.cfg.Codec.Keys().Destroy(ctx, pii.KeyID(a.id, user)); err != nil {
		s.log.ErrorContext(ctx, "destroy data key of deleted user; will retry", "account", a.id, "user", user, "err", err)
		if a.pendingDestroy == nil {
			a.pendingDestroy = make(map[string]bool)
		}
		a.pendingDestroy[user] = true
		return
	}
	delete(a.pendingDestroy, user)
}

// ForgetDeletedUser drops what this process keeps in memory of user, whom
// a UserDeleted event of account deleted, be it appended by this process
// or another: call it for every UserDeleted the read models apply. This
// process's keyring stops opening the user's data at once. When
// the account's state here has already folded the deletion, only the
// results kept for idempotent repeats are scrubbed (the deletion did it).
// Otherwise the deletion came from elsewhere and the state, the repeats'
// results and the email index still hold the user's personal data: the
// account is dropped from memory and loaded afresh from the store at its
// next command or read, with the user's data erased.
func (s *Service) ForgetDeletedUser(account, user string) {
	s.cfg.Codec.Keys().MarkDestroyed(pii.KeyID(account, user))
	s.mu.RLock()
	a, ok := s.accounts[account]
	s.mu.RUnlock()
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if u, ok := a.state.Users[user]; !a.loaded || ok && u.Status == ledger.StatusDeleted {
		scrub(a, user)
		return
	}
	a.loaded, a.keys = false, s.newKeys()
	a.reset(ledger.State{})
}

// scrub blanks a deleted user's personal data in the results the account
// keeps for idempotent repeats: nothing in memory outlives their key.
func scrub(a *account, user string) {
	for r := range a.keys.results() {
		for i, d := range r.Events {
			if ledger.UserOf(d.Event) != user {
				continue
			}
			if e, erased := codec.Erase(d.Event); erased {
				r.Events[i].Event, r.Events[i].Erased = e, true
			}
		}
	}
}

// retryDestroys retries the key destructions that failed on the account.
func (s *Service) retryDestroys(ctx context.Context, a *account) {
	for user := range a.pendingDestroy {
		s.destroyKey(ctx, a, user)
	}
}

// catchUp folds the events of the account's streams that the service has
// not seen yet (all of them when fresh). It destroys the keys of users
// deleted in those events, which also finishes a deletion that a crash
// interrupted before its key was destroyed.
//
// Fresh, it starts from the accounts' read model (Config.States) when that
// holds the account: from its state, each stream read from the first event
// that may carry an idempotency key within the window (remembered, not
// folded again) or else from the read model's end; no stream is read when
// the store confirms that both end where the read model folded them (see
// confirmed). The keys of users deleted before that end are destroyed
// again in the background.
func (s *Service) catchUp(ctx context.Context, a *account, fresh bool) error {
	ledgerFrom, activityFrom := a.state.Version, a.activityLen
	if fresh {
		a.ledgerHead, a.activityHead, a.activityLen, a.lastPosition = codec.Hash{}, codec.Hash{}, 0, 0
		a.reset(ledger.State{})
		a.keys = s.newKeys()
		ledgerFrom, activityFrom = 0, 0
		a.fromModel = false
		if h, ok := s.held(a.id); ok && !a.streamsOnly {
			a.fromModel = true
			a.reset(h.state) // a copy of the read model's
			a.lastPosition = h.lastPosition
			a.state.Version, a.ledgerHead = h.ledger.keys.Next, h.ledger.keys.Hash
			a.activityLen, a.activityHead = h.activity.keys.Next, h.activity.keys.Hash
			ledgerFrom, activityFrom = h.ledger.fold.Next, h.activity.fold.Next
			s.destroyDeletedKeys(ctx, a, h.state)
			if s.confirmed(ctx, a.id, h) {
				a.loaded = true
				return nil
			}
		}
	}
	if err := s.catchUpLedgerFrom(ctx, a, ledgerFrom); err != nil {
		return err
	}
	if err := s.catchUpActivitiesFrom(ctx, a, activityFrom); err != nil {
		return err
	}
	a.loaded = true
	return nil
}

// confirmed reports whether the store, asked without reading the
// account's streams (eventstore.EndConfirmer), confirms that they end
// where the read model folded them: the state from the model is then the
// account's, with nothing to read after it, and the store's next append
// expects those ends. A stream whose recent idempotency keys must be
// remembered is read all the same (not confirmed here), and so is an
// account the store does not confirm, or when it fails to answer.
func (s *Service) confirmed(ctx context.Context, account string, h heldLoad) bool {
	c, ok := s.cfg.Store.(eventstore.EndConfirmer)
	if !ok || h.ledger.keys != h.ledger.fold || h.activity.keys != h.activity.fold {
		return false
	}
	ok, err := c.ConfirmEnds(ctx, account, h.seen, h.ledger.end, h.activity.end)
	if err != nil {
		s.log.DebugContext(ctx, "the store did not confirm the ends of the account's streams; reading them", "account", account, "err", err)
		return false
	}
	return ok
}

// held returns the account's state as the accounts' read model holds it.
func (s *Service) held(account string) (heldLoad, bool) {
	if s.cfg.States == nil {
		return heldLoad{}, false
	}
	return s.cfg.States.load(account)
}

// destroyDeletedKeys destroys, in the background, the keys of the users
// deleted in st, as loading them from the stream would have: a deletion
// that a crash interrupted before its key was destroyed is finished. A
// destroy that fails is retried at the account's next command.
func (s *Service) destroyDeletedKeys(ctx context.Context, a *account, st ledger.State) {
	var users []string
	for id, u := range st.Users {
		if u.Status == ledger.StatusDeleted {
			users = append(users, id)
			s.cfg.Codec.Keys().MarkDestroyed(pii.KeyID(a.id, id))
		}
	}
	if len(users) == 0 {
		return
	}
	ctx = context.WithoutCancel(ctx)
	go func() {
		for _, user := range users {
			dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := s.cfg.Codec.Keys().Destroy(dctx, pii.KeyID(a.id, user))
			cancel()
			if err == nil {
				continue
			}
			s.log.ErrorContext(ctx, "destroy data key of deleted user; will retry", "account", a.id, "user", user, "err", err)
			a.mu.Lock()
			if a.pendingDestroy == nil {
				a.pendingDestroy = make(map[string]bool)
			}
			a.pendingDestroy[user] = true
			a.mu.Unlock()
		}
	}()
}

// catchUpLedger folds the ledger events the service has not seen yet.
func (s *Service) catchUpLedger(ctx context.Context, a *account) error {
	return s.catchUpLedgerFrom(ctx, a, a.state.Version)
}

// catchUpLedgerFrom reads the ledger from the revision after the state's
// link and folds the events from revision fold on; those before it are
// remembered for their idempotency keys only.
func (s *Service) catchUpLedgerFrom(ctx context.Context, a *account, fold uint64) error {
	l := codec.Link{Next: a.state.Version, Hash: a.ledgerHead}
	err := s.readNew(ctx, a, eventstore.LedgerStream(a.id), &l, fold, func(r eventstore.Record, d codec.Decoded) {
		if del, ok := d.Event.(ledger.UserDeleted); ok {
			s.destroyKey(ctx, a, del.UserID)
		}
	})
	// A record that took a revision without verifying moved the link but
	// folded nothing: the ledger's revision counts it all the same.
	a.state.Version, a.ledgerHead = l.Next, l.Hash
	return err
}

// catchUpActivitiesFrom folds the activity events the service has not
// seen yet, from revision fold on; they move only the account's time.
func (s *Service) catchUpActivitiesFrom(ctx context.Context, a *account, fold uint64) error {
	l := codec.Link{Next: a.activityLen, Hash: a.activityHead}
	err := s.readNew(ctx, a, eventstore.ActivityStream(a.id), &l, fold, func(eventstore.Record, codec.Decoded) {})
	a.activityLen, a.activityHead = l.Next, l.Hash
	return err
}

// ErrUnreadableHistory is returned (wrapped) when an account's stream
// holds, in its hash chain, an event this service cannot decode (a newer
// schema version, say): deciding without it could break a rule, so the
// account takes no command until the event can be read.
var ErrUnreadableHistory = errors.New("accounts: the account's history holds an event this service cannot decode")

// readNew reads stream from the revision l.Next, verifies each record
// against the stream's chain l (codec.Link), folds each event that
// verifies into the account and remembers it, then lets also do the
// stream's own bookkeeping. Events before revision fold, already folded
// into the state, are only remembered. l ends past the last record read.
//
// Records that are not the stream's (unreadable, out of the stream's
// order, or off its chain: foreign records, copies of events published
// again) are skipped: they are never folded into the state commands are
// decided on, and the account goes on taking commands, its next event
// chaining to the last one that verified. An event that is in the chain
// but does not decode stops the load with [ErrUnreadableHistory].
func (s *Service) readNew(ctx context.Context, a *account, stream eventstore.StreamID, l *codec.Link, fold uint64, also func(eventstore.Record, codec.Decoded)) error {
	var now time.Time
	for r, err := range s.cfg.Store.ReadStream(ctx, stream, l.Next) {
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			break
		}
		if errors.Is(err, eventstore.ErrUnreadable) {
			s.log.DebugContext(ctx, "skipping a record that is not the stream's", "stream", stream.String(), "position", uint64(r.Position), "reason", codec.Reason(err))
			continue
		}
		if err != nil {
			return fmt.Errorf("load %s: %w", stream, err)
		}
		before := l.Hash
		d, err := s.cfg.Codec.DecodeNext(ctx, l, r)
		switch {
		case err == nil:
		case errors.Is(err, codec.ErrOutOfOrder), errors.Is(err, codec.ErrBrokenLink), l.Hash == before && codec.Unfoldable(err):
			s.log.DebugContext(ctx, "skipping a record that is not the stream's", "stream", stream.String(), "position", uint64(r.Position), "reason", codec.Reason(err))
			continue
		case codec.Unfoldable(err):
			return fmt.Errorf("load %s at revision %d: %s: %w", stream, r.Revision, codec.Reason(err), ErrUnreadableHistory)
		default:
			return fmt.Errorf("load %s: %w", stream, err)
		}
		if r.Revision >= fold {
			a.evolve(d.Event)
			also(r, d)
		}
		if now.IsZero() && d.Meta.IdempotencyKey != "" {
			now = s.cfg.Clock() // once per read, and only for keys
		}
		s.seen(a, d, now)
	}
	return nil
}

// seen remembers a loaded event's idempotency key, if its command was
// recorded within the window before now, and its position.
func (s *Service) seen(a *account, d codec.Decoded, now time.Time) {
	if d.Record.Position > a.lastPosition {
		a.lastPosition = d.Record.Position
	}
	if k := d.Meta.IdempotencyKey; k != "" {
		// Keys of commands older than the window are not rebuilt.
		a.keys.remember(k, d, now)
	}
}

func (s *Service) newKeys() *keyMemory {
	return newKeyMemory(s.cfg.IdempotencyWindow, s.cfg.IdempotencyKeys)
}
