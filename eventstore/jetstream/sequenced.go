package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream/internal/reply"
)

// Headers of sequenced appends (see the package doc, "Sequenced appends").
const (
	expectedLastSeqHeader   = jetstream.ExpectedLastSeqHeader   // Nats-Expected-Last-Sequence
	expectedLastMsgIDHeader = jetstream.ExpectedLastMsgIDHeader // Nats-Expected-Last-Msg-Id
)

// resyncReads is the most messages a resync reads one by one to bring
// the cached heads up to the stream's end; past it every cached head is
// forgotten instead (each is read again when next needed).
const resyncReads = 1000

// brokenRounds is how many times the chain may break under one append
// before it is published with its own stream's expectation instead.
const brokenRounds = 3

// maxMoves is how many times an append may find the view it checked
// moved before it is sent; past it the append takes its stream's own path.
const maxMoves = 100

// answerTimeout bounds the wait for the answer to a sequenced append,
// one event or a batch, whatever the caller's context: an answer that
// does not come in time is taken as lost (the chain breaks and resyncs),
// so that no append in flight holds the chain, and Close, forever. A
// variable for tests.
var answerTimeout = batchTimeout

// errMoved says the view of a stream changed between an append's check
// and its send: the append checks again.
var errMoved = errors.New("jetstream: stream moved since checked")

// chain is the state of a store's sequenced appends: the stream's last
// sequence as this store predicts it, and what it knows of the message
// there. Every head the store caches (heads) or predicts (pred) is
// exact as of last; a write to the stream that is not one of this
// store's sequenced appends makes the next one fail at the server, since
// it expects the stream's last sequence (and, behind an append in flight,
// its last message id) to be the predicted ones. Its fields are guarded
// by mu; Store.heads is written under mu too in sequenced mode (mu before
// Store.mu).
type chain struct {
	mu sync.Mutex
	// changed is closed, and replaced, whenever the chain may let a
	// waiting append go on.
	changed chan struct{}
	// last is the stream's last sequence once every append sent is
	// stored; lastID the Nats-Msg-Id of the last append sent, which the
	// next one expects while it is in flight (when nothing is, only last
	// counts, and lastID is not read).
	last   uint64
	lastID string
	// inflight counts appends sent and not yet answered.
	inflight int
	// Appends are served in the order they arrive: each takes a ticket
	// (the last one given is ticket); queued holds, in order, the tickets
	// of the multi-event appends waiting for nothing to be in flight. A
	// batch is sent when it is first in queued and nothing is in flight;
	// a single event waits only for the batches queued before it.
	ticket uint64
	queued []uint64
	// broken is set when an answer did not confirm the prediction (or a
	// write bypassed the chain): appends wait until nothing is in flight,
	// then one of them resyncs. good is the sequence up to which the
	// cached heads are known exact.
	broken    bool
	good      uint64
	resyncing bool
	// bypass counts appends published with their own stream's
	// expectation, past the chain; the chain stays broken while any runs.
	bypass int
	// gen counts resyncs: a head read from the server before one is not
	// cached after it.
	gen uint64
	// pred holds the heads predicted by appends in flight, per stream.
	pred map[eventstore.StreamID]predicted
	// pipelined counts appends sent behind another in flight, resyncs
	// the resyncs. Only tests read them (ChainStats, in export_test.go).
	pipelined, resyncs uint64
}

// predicted is the head of a stream once its appends in flight are
// stored, and how many they are.
type predicted struct {
	h head
	n int
}

func newChain(last uint64) *chain {
	return &chain{changed: make(chan struct{}), last: last, pred: make(map[eventstore.StreamID]predicted)}
}

// notify wakes the appends waiting on the chain. c.mu is held.
func (c *chain) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// breakAt marks the chain broken, its view exact up to seq at most.
// c.mu is held.
func (c *chain) breakAt(seq uint64) {
	if !c.broken || seq < c.good {
		c.good = seq
	}
	c.broken = true
}

// view returns the latest head of stream the store knows, predicted or
// confirmed, and whether it is a prediction. c.mu is held.
func (s *Store) view(stream eventstore.StreamID) (head, bool, bool) {
	if p, ok := s.chain.pred[stream]; ok {
		return p.h, true, true
	}
	s.mu.Lock()
	h, ok := s.heads[stream]
	s.mu.Unlock()
	return h, false, ok
}

// chainGen returns the chain's generation (see settle).
func (s *Store) chainGen() uint64 {
	s.chain.mu.Lock()
	defer s.chain.mu.Unlock()
	return s.chain.gen
}

// settle caches h, read from the server when the chain's generation was
// gen, as the head of stream unless a later one is known or a resync
// ran since (or the chain is broken: the resync to come sets the heads).
func (s *Store) settle(gen uint64, stream eventstore.StreamID, h head) {
	c := s.chain
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.broken {
		return
	}
	s.mu.Lock()
	// An equal head read elsewhere may lack the last id a cached one
	// has (ConfirmEnds): keep the cached one.
	if cur, ok := s.heads[stream]; !ok || cur.seq < h.seq {
		s.heads[stream] = h
	}
	s.mu.Unlock()
}

// chainHead returns the head an append to stream checks against: the
// latest by sequence of the predicted, the cached and, with reload or on
// a miss, the one just read from the server; predicted reports a
// prediction, fresh a read.
func (s *Store) chainHead(ctx context.Context, stream eventstore.StreamID, reload, recount bool) (h head, predicted, fresh bool, err error) {
	c := s.chain
	c.mu.Lock()
	v, pr, ok := s.view(stream)
	gen := c.gen
	c.mu.Unlock()
	if ok && !reload && !recount {
		return v, pr, false, nil
	}
	r, err := s.fetchHead(ctx, stream, recount)
	if err != nil {
		return head{}, false, false, err
	}
	s.settle(gen, stream, r)
	c.mu.Lock()
	v, pr, ok = s.view(stream)
	c.mu.Unlock()
	if ok && v.seq > r.seq {
		return v, pr, true, nil
	}
	return r, false, true, nil
}

// chainChanged returns the channel closed at the chain's next change:
// taken before a view is read, it tells when that view may have changed.
func (s *Store) chainChanged() <-chan struct{} {
	s.chain.mu.Lock()
	defer s.chain.mu.Unlock()
	return s.chain.changed
}

// await waits for wake, a channel the chain closes at its next change
// (see chainChanged). It ends early with the context's error, or with
// [eventstore.ErrClosed] once the store closes. c.mu is not held.
func (s *Store) await(ctx context.Context, wake <-chan struct{}) error {
	select {
	case <-wake:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return eventstore.ErrClosed
	}
}

// appendSequenced appends events to stream at expected (on condition
// cond, when not nil) through the chain: the condition is checked against
// the store's view, and the server checks that the view is current.
func (s *Store) appendSequenced(ctx context.Context, stream eventstore.StreamID, expected eventstore.ExpectedRevision, cond *eventstore.Condition, events []eventstore.Proposed) (eventstore.AppendResult, error) {
	bodies, err := encode(stream, events)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	// Message ids are always qualified with the stream: see the package
	// doc, "Sequenced appends".
	const qualify = true
	reload, recount := false, false
	rescanned := false
	var serverErr error // the server's refusal, kept as the cause of a conflict
	broken, moved := 0, 0
	for attempt := 0; ; attempt++ {
		wake := s.chainChanged()
		h, hp, fresh, err := s.chainHead(ctx, stream, reload, recount)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		var ch head
		chp, cfresh := false, true
		if cond != nil {
			if ch, chp, cfresh, err = s.chainHead(ctx, cond.Stream, reload, recount); err != nil {
				return eventstore.AppendResult{}, err
			}
		}
		reload, recount = false, false
		if !expected.Matches(h.n) || (cond != nil && !cond.Expected.Matches(ch.n)) {
			if hp || chp {
				// Decided by an append in flight: wait for its answer.
				if err := s.await(ctx, wake); err != nil {
					return eventstore.AppendResult{}, err
				}
				continue
			}
			if !fresh || !cfresh {
				reload = true
				continue
			}
			if (behind(expected, h.n) || (cond != nil && behind(cond.Expected, ch.n))) && !rescanned {
				rescanned, recount = true, true
				continue
			}
			if res, ok, err := s.findOwn(ctx, stream, expected, h, events); err != nil || ok {
				return res, err
			}
			if cond != nil {
				return eventstore.AppendResult{}, errors.Join(fmt.Errorf("jetstream: append to %s at %s if %s (streams hold %d and %d events): %w",
					stream, expected, cond, h.n, ch.n, eventstore.ErrConflict), serverErr)
			}
			return eventstore.AppendResult{}, errors.Join(fmt.Errorf("jetstream: append to %s at %s (stream holds %d events): %w",
				stream, expected, h.n, eventstore.ErrConflict), serverErr)
		}
		if err := ctx.Err(); err != nil {
			return eventstore.AppendResult{}, err
		}
		msgs := messages(stream, events, bodies, h.n, noExpectation, 0, qualify)
		var checks []check
		if cond != nil {
			checks = []check{{cond.Stream, ch}}
		}
		seq, dup, err := s.sendChained(ctx, stream, h, checks, msgs)
		switch {
		case errors.Is(err, errMoved):
			// Another append to the stream, or a resync, came first.
			// Under a writer that keeps breaking the chain the view can
			// keep moving: take the stream's own path then.
			if moved++; moved > maxMoves {
				return s.bypassChain(ctx, stream, expected, cond, events)
			}
			continue
		case err == nil && dup:
			// The ids being qualified, the answer is final.
			res, _, err := s.storedBefore(ctx, stream, events, seq, qualify, attempt)
			return res, err
		case err == nil:
			return eventstore.AppendResult{NextRevision: h.n + uint64(len(msgs)) - 1, Position: eventstore.Position(seq)}, nil
		case chainRefused(err), isDuplicate(err):
			serverErr = err
			if broken++; broken >= brokenRounds {
				return s.bypassChain(ctx, stream, expected, cond, events)
			}
			// The resync the chain runs before the next append makes the
			// view exact: no need to read the head from the server here.
			if isDuplicate(err) {
				rh, _, _, err2 := s.chainHead(ctx, stream, true, false)
				if err2 != nil {
					return eventstore.AppendResult{}, err2
				}
				// The ids being qualified, the answer is final.
				res, _, err3 := s.afterDuplicate(ctx, stream, expected, rh, events, qualify, err)
				return res, err3
			}
		default:
			return eventstore.AppendResult{}, fmt.Errorf("jetstream: append to %s: %w", stream, err)
		}
	}
}

// check is a stream whose view an append was checked against, besides
// the stream it appends to.
type check struct {
	stream eventstore.StreamID
	h      head
}

// sendChained sends msgs, the messages of an append to stream checked
// against head h (and the heads of checks), as the next link of the
// chain, waits for the answer and returns the sequence of the last
// message and whether the server took it for a duplicate. It returns
// errMoved, having sent nothing, when a view the append was checked
// against changed.
func (s *Store) sendChained(ctx context.Context, stream eventstore.StreamID, h head, checks []check, msgs []*nats.Msg) (uint64, bool, error) {
	c := s.chain
	k := uint64(len(msgs))
	batch := k > 1
	c.mu.Lock()
	c.ticket++
	me := c.ticket
	if batch {
		c.queued = append(c.queued, me)
	}
	// leave takes the batch out of the queue, and lets the appends
	// queued behind it go on. c.mu is held.
	leave := func() {
		if batch {
			c.queued = slices.DeleteFunc(c.queued, func(t uint64) bool { return t == me })
			c.notify()
		}
	}
	for {
		if c.broken && c.inflight == 0 && c.bypass == 0 && !c.resyncing {
			c.resyncing = true
			good := c.good
			c.mu.Unlock()
			err := s.resync(ctx, good)
			c.mu.Lock()
			c.resyncing = false
			c.notify()
			if err != nil {
				leave()
				c.mu.Unlock()
				return 0, false, err
			}
			continue
		}
		ready := !c.broken && !c.resyncing
		if batch {
			ready = ready && c.inflight == 0 && c.queued[0] == me
		} else {
			ready = ready && (len(c.queued) == 0 || c.queued[0] > me)
		}
		if ready {
			break
		}
		wake := c.changed
		c.mu.Unlock()
		if err := s.await(ctx, wake); err != nil {
			c.mu.Lock()
			leave()
			c.mu.Unlock()
			return 0, false, err
		}
		c.mu.Lock()
	}
	// Sent or moved, the batch leaves the queue: the appends behind it
	// may go on, pipelined behind it once it is sent.
	leave()
	// The check stands only if the views it used are still the latest.
	moved := false
	if v, _, ok := s.view(stream); !ok || v != h {
		moved = true
	}
	for _, ch := range checks {
		if v, _, ok := s.view(ch.stream); !ok || v != ch.h {
			moved = true
		}
	}
	if moved {
		c.mu.Unlock()
		return 0, false, errMoved
	}
	prev := c.last
	first := msgs[0]
	first.Header[expectedLastSeqHeader] = []string{strconv.FormatUint(prev, 10)}
	if c.inflight > 0 {
		// Behind an append in flight: the sequence alone could be met by
		// another writer's message stored in place of a failed one.
		first.Header[expectedLastMsgIDHeader] = []string{c.lastID}
		c.pipelined++
	}
	var w *reply.Pending
	var err error
	if batch {
		var last *nats.Msg
		if last, err = s.stageBatch(msgs); err == nil {
			w, err = s.boxes.Send(last)
		}
	} else {
		w, err = s.boxes.Send(first)
	}
	if err != nil {
		// Part of a batch may have gone: whatever the server did, the
		// chain no longer knows.
		c.breakAt(prev)
		c.notify()
		c.mu.Unlock()
		return 0, false, fmt.Errorf("publish: %w", err)
	}
	next := head{n: h.n + k, seq: prev + k, lastID: lastID(msgs)}
	c.last, c.lastID = next.seq, msgs[k-1].Header[jetstream.MsgIDHeader][0]
	c.inflight++
	p := c.pred[stream]
	c.pred[stream] = predicted{h: next, n: p.n + 1}
	c.mu.Unlock()

	wctx, cancel := context.WithTimeout(ctx, answerTimeout)
	defer cancel()
	resp, err := w.Wait(wctx)
	var seq uint64
	var dup bool
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		err = jetstream.ErrNoStreamResponse
	case err != nil && ctx.Err() == nil:
		// The store's own bound, not the caller's: the answer is lost.
		err = fmt.Errorf("no answer in %s: %w", answerTimeout, err)
	case err != nil:
	case batch:
		seq, err = batchAcked(resp.Data, len(msgs))
	default:
		seq, dup, err = reply.Ack(resp.Data)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight--
	defer c.notify()
	if err == nil && !dup && seq == next.seq {
		if p, ok := c.pred[stream]; ok {
			if p.n--; p.n == 0 {
				delete(c.pred, stream)
			} else {
				c.pred[stream] = p
			}
		}
		s.mu.Lock()
		if cur, ok := s.heads[stream]; !ok || cur.seq <= next.seq {
			s.heads[stream] = next
		}
		s.mu.Unlock()
		return seq, false, nil
	}
	// Refused, a duplicate that stored nothing, or no answer: the appends
	// sent behind this one fail too, and the stream's end is read again.
	delete(c.pred, stream)
	c.breakAt(prev)
	if err == nil && !dup {
		err = fmt.Errorf("append stored at %d, %d predicted", seq, next.seq)
	}
	return seq, dup, err
}

// chainRefused reports whether err is the server's refusal of a
// sequenced append's expectations: wrong last sequence (10071) or wrong
// last message id (10070).
func chainRefused(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == 10071 || apiErr.ErrorCode == 10070)
}

// resync brings the chain to the stream's end after it broke, nothing
// being in flight: it reads the messages after good, each setting the
// head of its stream (or forgetting it, for a message the store did not
// write), and takes the stream's last sequence. (The last message's id
// is not needed: the next append goes with nothing in flight before it.)
func (s *Store) resync(ctx context.Context, good uint64) error {
	info, err := s.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	n := info.State.LastSeq
	type seen struct {
		h  head
		ok bool
	}
	touched := make(map[eventstore.StreamID]seen)
	all := n > good && n-good > resyncReads
	from := good + 1
	if all || n < good {
		from = n + 1 // read nothing: every head is forgotten
	}
	for seq := from; seq <= n; seq++ {
		m, err := s.stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("resync at %d: %w", seq, err)
		}
		stream, ok := streamOf(m.Subject)
		if !ok {
			continue
		}
		h, err := headOf(m)
		touched[stream] = seen{h: h, ok: err == nil}
	}
	c := s.chain
	c.mu.Lock()
	defer c.mu.Unlock()
	s.mu.Lock()
	if all || n < good {
		clear(s.heads)
	} else {
		for stream, t := range touched {
			if t.ok {
				s.heads[stream] = t.h
			} else {
				delete(s.heads, stream)
			}
		}
	}
	s.mu.Unlock()
	clear(c.pred)
	c.last, c.lastID = n, ""
	c.broken = false
	c.gen++
	c.resyncs++
	s.log.Debug("sequenced appends resynced", "from", good, "to", n)
	return nil
}

// bypassChain appends with the stream's own expectation, the way of a
// store without sequenced appends, when the chain keeps breaking under
// an append (another writer keeps writing). Sequenced appends wait while
// it runs, and the chain resyncs after it.
func (s *Store) bypassChain(ctx context.Context, stream eventstore.StreamID, expected eventstore.ExpectedRevision, cond *eventstore.Condition, events []eventstore.Proposed) (eventstore.AppendResult, error) {
	c := s.chain
	c.mu.Lock()
	c.breakAt(c.last)
	c.bypass++
	for c.inflight > 0 || c.resyncing {
		wake := c.changed
		c.mu.Unlock()
		if err := s.await(ctx, wake); err != nil {
			c.mu.Lock()
			c.bypass--
			c.notify()
			c.mu.Unlock()
			return eventstore.AppendResult{}, err
		}
		c.mu.Lock()
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.bypass--
		c.notify()
		c.mu.Unlock()
	}()
	if cond != nil {
		return s.appendIf(ctx, stream, expected, *cond, events, true)
	}
	return s.append(ctx, stream, expected, events, true)
}

// sequencedHeader reports whether a stored message's headers show the
// expectation of a sequenced append.
func sequencedHeader(h nats.Header) bool { return h.Get(expectedLastSeqHeader) != "" }

// expectedOf returns the expectation a stored message was appended with:
// its stream's (Nats-Expected-Last-Subject-Sequence) or, for a sequenced
// append, the stream's last sequence (Nats-Expected-Last-Sequence); ""
// when it has neither.
func expectedOf(h nats.Header) string {
	if v := h.Get(jetstream.ExpectedLastSubjSeqHeader); v != "" {
		return v
	}
	return h.Get(expectedLastSeqHeader)
}
