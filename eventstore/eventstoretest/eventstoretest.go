// Package eventstoretest is the conformance suite every event store backend
// runs. A backend's test calls [Run] with a function that makes a store:
//
//	func TestConformance(t *testing.T) {
//		eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
//			return memory.New()
//		}, eventstoretest.DensePositions())
//	}
//
// # Cases
//
// Run runs one subtest per case, each with a store of its own made by the
// factory, and closes that store when the subtest ends. The cases cover the
// whole [eventstore.Store] contract: expected revisions and [eventstore.ErrConflict],
// revisions and positions in [eventstore.AppendResult], all-or-nothing
// appends, reading a stream and the global order, byte-exact round trips,
// live subscriptions, idempotent retries by event id, writers racing on one
// stream (exactly one wins), writers on many streams, cancelled contexts and
// [eventstore.ErrClosed].
//
// Every case works on streams of accounts it names itself with random ids,
// so a backend whose stores share one log (an external server) can run the
// suite with [SharedLog]. Every call runs under a deadline ([Timeout]) so a
// backend that hangs fails instead.
package eventstoretest

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
)

// Option changes what [Run] expects of a backend.
type Option func(*config)

type config struct {
	timeout time.Duration
	writers int
	dense   bool
	shared  bool
}

// Timeout sets how long each case may take before its context ends and it
// fails; the default is 10 seconds. Backends that talk to a remote server
// may need more.
func Timeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// Writers sets how many goroutines race in the concurrency cases; the
// default is 16.
func Writers(n int) Option {
	return func(c *config) {
		if n >= 2 {
			c.writers = n
		}
	}
}

// DensePositions makes the suite also require that a new store numbers its
// events 1, 2, 3, ... in global order. The contract only requires positions
// to grow; use this for backends that promise more. It has no effect with
// [SharedLog].
func DensePositions() Option {
	return func(c *config) { c.dense = true }
}

// SharedLog tells the suite that the stores the factory returns may hold
// events written elsewhere (by other cases or other processes), as when they
// all talk to one external server. The suite then ignores events of streams
// it did not create when it reads the global order, and skips the cases that
// need an empty store.
func SharedLog() Option {
	return func(c *config) { c.shared = true }
}

// Run runs the conformance suite against the stores newStore makes, one
// subtest per case with a fresh store each. newStore may call t.Fatal or
// t.Skip and may register cleanups on t; Run closes each store at the end of
// its subtest, so Close must tolerate a second call.
func Run(t *testing.T, newStore func(t *testing.T) eventstore.Store, opts ...Option) {
	t.Helper()
	cfg := config{timeout: 10 * time.Second, writers: 16}
	for _, o := range opts {
		o(&cfg)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.fresh && cfg.shared {
				t.Skip("needs an empty store; the stores share a log")
			}
			store := newStore(t)
			if store == nil {
				t.Fatal("newStore returned a nil store")
			}
			ctx, cancel := context.WithTimeout(t.Context(), cfg.timeout)
			h := &harness{t: t, ctx: ctx, store: store, cfg: cfg, own: map[eventstore.StreamID]bool{}}
			t.Cleanup(func() {
				cancel()
				// Close may already have been called by the case; either
				// answer is fine, hanging is not.
				if err := h.within("Close", func() error { return store.Close() }); err != nil && !errors.Is(err, eventstore.ErrClosed) {
					t.Errorf("Close: %v", err)
				}
			})
			c.run(h)
		})
	}
}

// harness is what a case works with: its store, a context with the case's
// deadline and the streams the case created.
type harness struct {
	t     *testing.T
	ctx   context.Context
	store eventstore.Store
	cfg   config

	mu  sync.Mutex
	own map[eventstore.StreamID]bool
	seq atomic.Int64
}

// grace is how long past the case's deadline the suite waits for a call to
// return before it reports that the backend hangs.
const grace = 2 * time.Second

// limit is how long to wait for a call that should end by the deadline.
func (h *harness) limit() time.Duration {
	d, ok := h.ctx.Deadline()
	if !ok {
		return h.cfg.timeout + grace
	}
	return time.Until(d) + grace
}

// within runs call and returns its error, failing the case if call does not
// return in time.
func (h *harness) within(name string, call func() error) error {
	h.t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		return err
	case <-time.After(h.limit()):
		h.t.Fatalf("%s did not return within the case's deadline", name)
		return nil
	}
}

// tryAppend calls Append, failing the case if it does not return in time.
func (h *harness) tryAppend(ctx context.Context, stream eventstore.StreamID, expected eventstore.ExpectedRevision, events ...eventstore.Proposed) (eventstore.AppendResult, error) {
	h.t.Helper()
	var res eventstore.AppendResult
	err := h.within(fmt.Sprintf("Append(%s, %s)", stream, expected), func() error {
		var err error
		res, err = h.store.Append(ctx, stream, expected, events...)
		return err
	})
	return res, err
}

// wait waits for the case's goroutines, failing the case if they do not
// finish in time.
func (h *harness) wait(wg *sync.WaitGroup) {
	h.t.Helper()
	h.within("the case's goroutines", func() error { wg.Wait(); return nil })
}

// account returns a new random account id. Accounts share a prefix so that
// backends that match streams by prefix are caught.
func account() string {
	return "acct" + strings.ReplaceAll(uuid.NewString(), "-", "")[:20]
}

// claim records streams as created by the case.
func (h *harness) claim(streams ...eventstore.StreamID) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range streams {
		h.own[s] = true
	}
}

// owns reports whether the case reads stream when it reads the global order:
// every stream unless the log is shared.
func (h *harness) owns(stream eventstore.StreamID) bool {
	if !h.cfg.shared {
		return true
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.own[stream]
}

// ledger returns the ledger stream of a new account.
func (h *harness) ledger() eventstore.StreamID {
	s := eventstore.LedgerStream(account())
	h.claim(s)
	return s
}

// origin returns a position before every event the case appends after it:
// 0 for a fresh store, or the position of a marker event in a shared log.
func (h *harness) origin() eventstore.Position {
	h.t.Helper()
	if !h.cfg.shared {
		return 0
	}
	mark := eventstore.ActivityStream("mark" + account())
	res, err := h.tryAppend(h.ctx, mark, eventstore.NoStream(), h.events(1)...)
	if err != nil {
		h.t.Fatalf("append marker event: %v", err)
	}
	return res.Position
}

var eventTypes = []string{"AccountOpened", "SeatsPurchased", "UserAdded", "UserDeactivated", "ActivityRecorded"}

// events returns n new events with fresh ids and distinct payloads.
func (h *harness) events(n int) []eventstore.Proposed {
	out := make([]eventstore.Proposed, n)
	for i := range out {
		k := h.seq.Add(1)
		out[i] = eventstore.Proposed{
			ID:       uuid.New(),
			Type:     eventTypes[int(k)%len(eventTypes)],
			Data:     fmt.Appendf(nil, `{"n":%d,"note":"event %d of the case"}`, k, k),
			Metadata: fmt.Appendf(nil, `{"seq":%d}`, k),
		}
	}
	return out
}

// append appends events and fails the case on error.
func (h *harness) append(stream eventstore.StreamID, expected eventstore.ExpectedRevision, events ...eventstore.Proposed) eventstore.AppendResult {
	h.t.Helper()
	res, err := h.tryAppend(h.ctx, stream, expected, events...)
	if err != nil {
		h.t.Fatalf("Append(%s, %s, %d events): %v", stream, expected, len(events), err)
	}
	return res
}

// appendWant appends events and checks the result.
func (h *harness) appendWant(stream eventstore.StreamID, expected eventstore.ExpectedRevision, wantNext uint64, events ...eventstore.Proposed) eventstore.AppendResult {
	h.t.Helper()
	res := h.append(stream, expected, events...)
	if res.NextRevision != wantNext {
		h.t.Errorf("Append(%s, %s, %d events).NextRevision = %d, want %d", stream, expected, len(events), res.NextRevision, wantNext)
	}
	return res
}

// conflict appends events and requires ErrConflict.
func (h *harness) conflict(stream eventstore.StreamID, expected eventstore.ExpectedRevision, events ...eventstore.Proposed) {
	h.t.Helper()
	res, err := h.tryAppend(h.ctx, stream, expected, events...)
	if !errors.Is(err, eventstore.ErrConflict) {
		h.t.Errorf("Append(%s, %s, %d events) = %+v, %v; want an error matching ErrConflict", stream, expected, len(events), res, err)
	}
}

// collect ranges over seq and returns its records up to the first error.
func (h *harness) collect(seq iter.Seq2[eventstore.Record, error]) ([]eventstore.Record, error) {
	h.t.Helper()
	type result struct {
		recs []eventstore.Record
		err  error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		for rec, err := range seq {
			if err != nil {
				r.err = err
				break
			}
			r.recs = append(r.recs, rec)
		}
		done <- r
	}()
	select {
	case r := <-done:
		return r.recs, r.err
	case <-time.After(h.limit()):
		h.t.Fatal("reading did not finish within the case's deadline")
		return nil, nil
	}
}

// readStream reads stream from revision from; a stream that does not exist
// reads as empty.
func (h *harness) readStream(stream eventstore.StreamID, from uint64) []eventstore.Record {
	h.t.Helper()
	recs, err := h.collect(h.store.ReadStream(h.ctx, stream, from))
	if errors.Is(err, eventstore.ErrStreamNotFound) && len(recs) == 0 {
		return nil
	}
	if err != nil {
		h.t.Fatalf("ReadStream(%s, %d): %v", stream, from, err)
	}
	return recs
}

// readAll reads the global order after position after, keeping the events
// of the case's own streams.
func (h *harness) readAll(after eventstore.Position) []eventstore.Record {
	h.t.Helper()
	recs, err := h.collect(h.store.ReadAll(h.ctx, after))
	if err != nil {
		h.t.Fatalf("ReadAll(%d): %v", after, err)
	}
	kept := recs[:0]
	for _, r := range recs {
		if h.owns(r.Stream) {
			kept = append(kept, r)
		}
	}
	return kept
}

// checkRecord compares a record with the event that was appended.
func checkRecord(t *testing.T, got eventstore.Record, stream eventstore.StreamID, rev uint64, want eventstore.Proposed) {
	t.Helper()
	if got.ID != want.ID || got.Stream != stream || got.Revision != rev || got.Type != want.Type {
		t.Errorf("record = {ID %s, Stream %s, Revision %d, Type %q}, want {ID %s, Stream %s, Revision %d, Type %q}",
			got.ID, got.Stream, got.Revision, got.Type, want.ID, stream, rev, want.Type)
	}
	if string(got.Data) != string(want.Data) {
		t.Errorf("record %s at %s/%d: Data = %q, want %q", got.ID, stream, rev, got.Data, want.Data)
	}
	if string(got.Metadata) != string(want.Metadata) {
		t.Errorf("record %s at %s/%d: Metadata = %q, want %q", got.ID, stream, rev, got.Metadata, want.Metadata)
	}
	if got.Stored.IsZero() {
		t.Errorf("record %s at %s/%d: Stored is zero", got.ID, stream, rev)
	}
}

// checkStream requires stream to hold exactly want, from revision 0.
func (h *harness) checkStream(stream eventstore.StreamID, want []eventstore.Proposed) []eventstore.Record {
	h.t.Helper()
	got := h.readStream(stream, 0)
	if len(got) != len(want) {
		h.t.Fatalf("stream %s holds %d events, want %d:\n%s", stream, len(got), len(want), describe(got))
	}
	for i := range got {
		checkRecord(h.t, got[i], stream, uint64(i), want[i])
		if i > 0 && got[i].Position <= got[i-1].Position {
			h.t.Errorf("stream %s: revision %d at position %d, revision %d at position %d; positions must grow",
				stream, i-1, got[i-1].Position, i, got[i].Position)
		}
	}
	return got
}

// checkResult requires res to name the revision and position of a stored
// event of stream.
func (h *harness) checkResult(stream eventstore.StreamID, res eventstore.AppendResult) {
	h.t.Helper()
	recs := h.readStream(stream, res.NextRevision)
	if len(recs) == 0 {
		h.t.Errorf("AppendResult %+v: stream %s has no event at revision %d", res, stream, res.NextRevision)
		return
	}
	if recs[0].Position != res.Position {
		h.t.Errorf("AppendResult %+v: the event at %s/%d is at position %d", res, stream, res.NextRevision, recs[0].Position)
	}
}

// checkGlobal requires recs to be in global order: positions strictly
// growing and each stream's revisions counting up from its first.
func checkGlobal(t *testing.T, recs []eventstore.Record) {
	t.Helper()
	next := map[eventstore.StreamID]uint64{}
	for i, r := range recs {
		if i > 0 && r.Position <= recs[i-1].Position {
			t.Errorf("global order: position %d follows %d", r.Position, recs[i-1].Position)
		}
		if want, ok := next[r.Stream]; ok && r.Revision != want {
			t.Errorf("global order: %s revision %d follows revision %d", r.Stream, r.Revision, want-1)
		}
		next[r.Stream] = r.Revision + 1
	}
}

// checkDense requires positions 1, 2, 3, ... when the backend promises them.
func (h *harness) checkDense(recs []eventstore.Record) {
	h.t.Helper()
	if !h.cfg.dense || h.cfg.shared {
		return
	}
	for i, r := range recs {
		if r.Position != eventstore.Position(i+1) {
			h.t.Errorf("dense positions: event %d of a new store is at position %d, want %d", i, r.Position, i+1)
			return
		}
	}
}

// ids returns the event ids of events.
func ids(events []eventstore.Proposed) []uuid.UUID {
	out := make([]uuid.UUID, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// recordIDs returns the event ids of records.
func recordIDs(recs []eventstore.Record) []uuid.UUID {
	out := make([]uuid.UUID, len(recs))
	for i, r := range recs {
		out[i] = r.ID
	}
	return out
}

// sameIDs compares two id lists in order.
func sameIDs(a, b []uuid.UUID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// describe lists records for failure messages.
func describe(recs []eventstore.Record) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "\t%s/%d at %d: %s %s\n", r.Stream, r.Revision, r.Position, r.Type, r.ID)
	}
	return b.String()
}

// subscription consumes a Subscribe iterator in its own goroutine so that a
// case can wait for the next event with a deadline.
type subscription struct {
	h      *harness
	items  chan item
	cancel context.CancelFunc
	stop   chan struct{}
	done   chan struct{}
}

type item struct {
	rec eventstore.Record
	err error
}

// subscribe starts a subscription after position after under ctx. The
// subscription ends when the case ends.
func (h *harness) subscribe(ctx context.Context, after eventstore.Position) *subscription {
	h.t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	s := &subscription{h: h, items: make(chan item), cancel: cancel, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(s.items)
		for rec, err := range h.store.Subscribe(ctx, after) {
			if err == nil && !h.owns(rec.Stream) {
				continue
			}
			select {
			case s.items <- item{rec, err}:
			case <-s.stop:
				return
			}
		}
	}()
	h.t.Cleanup(func() {
		cancel()
		close(s.stop)
		select {
		case <-s.done:
		case <-time.After(grace):
			h.t.Errorf("Subscribe(%d) did not return after its context was cancelled", after)
		}
	})
	return s
}

// next returns the subscription's next item; it fails the case if the
// subscription ends or nothing arrives in time.
func (s *subscription) next() (eventstore.Record, error) {
	s.h.t.Helper()
	select {
	case it, ok := <-s.items:
		if !ok {
			s.h.t.Fatal("subscription ended without an error")
		}
		return it.rec, it.err
	case <-time.After(s.h.limit()):
		s.h.t.Fatal("subscription yielded nothing within the case's deadline")
	}
	return eventstore.Record{}, nil
}

// expect reads len(want) records and requires their ids in order.
func (s *subscription) expect(want []uuid.UUID) []eventstore.Record {
	s.h.t.Helper()
	got := make([]eventstore.Record, 0, len(want))
	for range want {
		rec, err := s.next()
		if err != nil {
			s.h.t.Fatalf("subscription failed after %d of %d events: %v", len(got), len(want), err)
		}
		got = append(got, rec)
	}
	if !sameIDs(recordIDs(got), want) {
		s.h.t.Fatalf("subscription yielded\n%swant ids %v", describe(got), want)
	}
	return got
}

// end requires the subscription to yield an error matching target and then
// stop.
func (s *subscription) end(target error) {
	s.h.t.Helper()
	rec, err := s.next()
	if !errors.Is(err, target) {
		s.h.t.Fatalf("subscription yielded %s/%d (%v), want an error matching %v", rec.Stream, rec.Revision, err, target)
	}
	select {
	case it, ok := <-s.items:
		if ok {
			s.h.t.Fatalf("subscription went on after its error %v: yielded %s/%d, %v", err, it.rec.Stream, it.rec.Revision, it.err)
		}
	case <-time.After(grace):
		s.h.t.Fatalf("subscription did not return after yielding %v", err)
	}
}
