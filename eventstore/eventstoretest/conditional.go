package eventstoretest

import (
	"errors"
	"sync"

	"github.com/licenseledger/ledger/eventstore"
)

// The cases of the optional [eventstore.ConditionalAppender], skipped on
// stores that lack it. They append to an account's activity stream on
// condition that its ledger stream is at a revision.

// conditional returns the store's conditional append, skipping the case
// when it has none.
func (h *harness) conditional() eventstore.ConditionalAppender {
	h.t.Helper()
	c, ok := h.store.(eventstore.ConditionalAppender)
	if !ok {
		h.t.Skip("the store does not append on condition")
	}
	return c
}

// pairOfStreams returns the ledger and activity streams of a new account.
func (h *harness) pairOfStreams() (ledger, activity eventstore.StreamID) {
	acct := account()
	ledger, activity = eventstore.LedgerStream(acct), eventstore.ActivityStream(acct)
	h.claim(ledger, activity)
	return ledger, activity
}

// appendIf calls AppendIf, failing the case if it does not return in time.
func (h *harness) appendIf(c eventstore.ConditionalAppender, stream eventstore.StreamID, expected eventstore.ExpectedRevision, cond eventstore.Condition, events ...eventstore.Proposed) (eventstore.AppendResult, error) {
	h.t.Helper()
	var res eventstore.AppendResult
	err := h.within("AppendIf", func() error {
		var err error
		res, err = c.AppendIf(h.ctx, stream, expected, cond, events...)
		return err
	})
	if errors.Is(err, errors.ErrUnsupported) {
		h.t.Skipf("the store refuses a condition on the account's other stream: %v", err)
	}
	return res, err
}

func testAppendIfHolds(h *harness) {
	c := h.conditional()
	l, a := h.pairOfStreams()
	le := h.events(2)
	h.append(l, eventstore.NoStream(), le...)
	ae := h.events(3)
	res, err := h.appendIf(c, a, eventstore.NoStream(), eventstore.Condition{Stream: l, Expected: eventstore.Exact(1)}, ae[0])
	if err != nil || res.NextRevision != 0 {
		h.t.Fatalf("AppendIf with the condition holding = %+v, %v; want revision 0", res, err)
	}
	h.checkResult(a, res)
	res, err = h.appendIf(c, a, eventstore.Exact(0), eventstore.Condition{Stream: l, Expected: eventstore.Exact(1)}, ae[1:]...)
	if err != nil || res.NextRevision != 2 {
		h.t.Fatalf("second AppendIf = %+v, %v; want revision 2", res, err)
	}
	// The condition may name the activity stream too.
	more := h.events(1)
	res, err = h.appendIf(c, l, eventstore.Exact(1), eventstore.Condition{Stream: a, Expected: eventstore.Exact(2)}, more...)
	if err != nil || res.NextRevision != 2 {
		h.t.Fatalf("AppendIf to the ledger on the activities = %+v, %v; want revision 2", res, err)
	}
	h.checkStream(a, ae)
	h.checkStream(l, append(le, more...))
}

func testAppendIfOtherMoved(h *harness) {
	c := h.conditional()
	l, a := h.pairOfStreams()
	start := h.origin()
	h.append(l, eventstore.NoStream(), h.events(1)...)
	h.append(a, eventstore.NoStream(), h.events(1)...)
	h.append(l, eventstore.Exact(0), h.events(1)...) // the ledger moves to revision 1
	for _, cond := range []eventstore.ExpectedRevision{eventstore.Exact(0), eventstore.NoStream(), eventstore.Exact(5)} {
		res, err := h.appendIf(c, a, eventstore.Exact(0), eventstore.Condition{Stream: l, Expected: cond}, h.events(1)...)
		if !errors.Is(err, eventstore.ErrConflict) {
			h.t.Errorf("AppendIf on the ledger at %s, ledger at revision 1 = %+v, %v; want ErrConflict", cond, res, err)
		}
	}
	if got := h.readStream(a, 0); len(got) != 1 {
		h.t.Errorf("activity stream holds %d events after refused appends, want 1", len(got))
	}
	if got := h.readAll(start); len(got) != 3 {
		h.t.Errorf("global order holds %d events of the case, want 3:\n%s", len(got), describe(got))
	}
	// Once the condition names the ledger's revision, it holds.
	if _, err := h.appendIf(c, a, eventstore.Exact(0), eventstore.Condition{Stream: l, Expected: eventstore.Exact(1)}, h.events(1)...); err != nil {
		h.t.Errorf("AppendIf with the ledger's revision: %v", err)
	}
}

func testAppendIfSelf(h *harness) {
	c := h.conditional()
	l, _ := h.pairOfStreams()
	h.append(l, eventstore.NoStream(), h.events(1)...)
	res, err := h.appendIf(c, l, eventstore.Exact(0), eventstore.Condition{Stream: l, Expected: eventstore.Exact(0)}, h.events(1)...)
	if !errors.Is(err, eventstore.ErrSelfCondition) {
		h.t.Errorf("AppendIf on condition of the stream appended to = %+v, %v; want ErrSelfCondition", res, err)
	}
	if got := h.readStream(l, 0); len(got) != 1 {
		h.t.Errorf("ledger holds %d events after a refused append, want 1", len(got))
	}
}

func testAppendIfOwnMoved(h *harness) {
	c := h.conditional()
	l, a := h.pairOfStreams()
	h.append(l, eventstore.NoStream(), h.events(1)...)
	h.append(a, eventstore.NoStream(), h.events(2)...)
	cond := eventstore.Condition{Stream: l, Expected: eventstore.Exact(0)}
	for _, exp := range []eventstore.ExpectedRevision{eventstore.NoStream(), eventstore.Exact(0), eventstore.Exact(2)} {
		res, err := h.appendIf(c, a, exp, cond, h.events(1)...)
		if !errors.Is(err, eventstore.ErrConflict) {
			h.t.Errorf("AppendIf at %s, activities at revision 1 = %+v, %v; want ErrConflict", exp, res, err)
		}
	}
	if got := h.readStream(a, 0); len(got) != 2 {
		h.t.Errorf("activity stream holds %d events after refused appends, want 2", len(got))
	}
}

// testAppendIfRetry retries a conditional append whose acknowledgement was
// lost after the condition's stream moved: the first result comes back.
func testAppendIfRetry(h *harness) {
	c := h.conditional()
	l, a := h.pairOfStreams()
	h.append(l, eventstore.NoStream(), h.events(1)...)
	e := h.events(1)
	cond := eventstore.Condition{Stream: l, Expected: eventstore.Exact(0)}
	first, err := h.appendIf(c, a, eventstore.NoStream(), cond, e...)
	if err != nil {
		h.t.Fatal(err)
	}
	h.append(l, eventstore.Exact(0), h.events(1)...)
	again, err := h.appendIf(c, a, eventstore.NoStream(), cond, e...)
	if err != nil || again != first {
		h.t.Errorf("retry = %+v, %v; want %+v", again, err, first)
	}
	h.checkStream(a, e)
}

// testAppendIfRace races, round after round, writers appending activities
// on condition that the ledger is at its revision against one writer
// appending to the ledger: at most one activity is stored per round, and
// one stored after the ledger event would have broken its condition.
func testAppendIfRace(h *harness) {
	c := h.conditional()
	l, a := h.pairOfStreams()
	h.append(l, eventstore.NoStream(), h.events(1)...)
	var ledgerN, activityN uint64 = 1, 0
	n := h.cfg.writers
	for round := range 8 {
		cond := eventstore.Condition{Stream: l, Expected: eventstore.ExpectRevisionAfter(ledgerN)}
		expected := eventstore.ExpectRevisionAfter(activityN)
		batches := make([][]eventstore.Proposed, n)
		for i := range batches {
			batches[i] = h.events(1)
		}
		results := make([]eventstore.AppendResult, n)
		errs := make([]error, n)
		begin := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-begin
				if i == n/2 {
					results[i], errs[i] = h.store.Append(h.ctx, l, eventstore.ExpectRevisionAfter(ledgerN), batches[i]...)
					return
				}
				results[i], errs[i] = c.AppendIf(h.ctx, a, expected, cond, batches[i]...)
			})
		}
		close(begin)
		h.wait(&wg)
		if errs[n/2] != nil {
			h.t.Fatalf("round %d: ledger append: %v", round, errs[n/2])
		}
		ledgerAt := results[n/2].Position
		won := -1
		for i, err := range errs {
			switch {
			case i == n/2:
			case errors.Is(err, errors.ErrUnsupported):
				h.t.Skipf("the store refuses a condition on the account's other stream: %v", err)
			case err == nil && won >= 0:
				h.t.Errorf("round %d: writers %d and %d both appended at %s", round, won, i, expected)
			case err == nil:
				won = i
				if results[i].Position > ledgerAt {
					h.t.Errorf("round %d: activity at position %d appended on the ledger at %s, which moved at position %d", round, results[i].Position, cond.Expected, ledgerAt)
				}
			case !errors.Is(err, eventstore.ErrConflict):
				h.t.Errorf("round %d: writer %d: %v, want ErrConflict", round, i, err)
			}
		}
		ledgerN++
		if won >= 0 {
			activityN++
		}
		if got := uint64(len(h.readStream(a, 0))); got != activityN {
			h.t.Fatalf("round %d: activity stream holds %d events, want %d", round, got, activityN)
		}
		// The store must still serve the next round from what it knows:
		// a conditional append at the new revisions succeeds.
		if _, err := h.appendIf(c, a, eventstore.ExpectRevisionAfter(activityN), eventstore.Condition{Stream: l, Expected: eventstore.ExpectRevisionAfter(ledgerN)}, h.events(1)...); err != nil {
			h.t.Fatalf("round %d: AppendIf at the current revisions: %v", round, err)
		}
		activityN++
	}
	recs := h.readStream(l, 0)
	if uint64(len(recs)) != ledgerN {
		h.t.Errorf("ledger holds %d events, want %d", len(recs), ledgerN)
	}
}
