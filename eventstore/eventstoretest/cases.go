package eventstoretest

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
)

type testCase struct {
	name string
	// fresh marks cases that need a store holding no event.
	fresh bool
	run   func(h *harness)
}

var cases = []testCase{
	{name: "AppendNoStream", run: testAppendNoStream},
	{name: "AppendAny", run: testAppendAny},
	{name: "AppendExact", run: testAppendExact},
	{name: "ConflictStoresNothing", run: testConflictStoresNothing},
	{name: "RevisionsAndResults", run: testRevisionsAndResults},
	{name: "AppendIsAtomicToReaders", run: testAppendIsAtomicToReaders},
	{name: "ReadStreamFrom", run: testReadStreamFrom},
	{name: "ReadStreamNotFound", run: testReadStreamNotFound},
	{name: "StreamsAreIndependent", run: testStreamsAreIndependent},
	{name: "RoundTrip", run: testRoundTrip},
	{name: "NewStoreIsEmpty", fresh: true, run: testNewStoreIsEmpty},
	{name: "LastPosition", run: testLastPosition},
	{name: "ReadAllOrder", run: testReadAllOrder},
	{name: "ReadAllStopsAtStart", run: testReadAllStopsAtStart},
	{name: "SubscribeCatchUpThenLive", run: testSubscribeCatchUpThenLive},
	{name: "SubscribeCancel", run: testSubscribeCancel},
	{name: "SubscribeResume", run: testSubscribeResume},
	{name: "SubscribeWhileWriting", run: testSubscribeWhileWriting},
	{name: "IdempotentRetry", run: testIdempotentRetry},
	{name: "RaceOnOneRevision", run: testRaceOnOneRevision},
	{name: "RaceWithRetries", run: testRaceWithRetries},
	{name: "ConcurrentStreams", run: testConcurrentStreams},
	{name: "CanceledContext", run: testCanceledContext},
	{name: "Close", run: testClose},
	{name: "CloseEndsSubscription", run: testCloseEndsSubscription},
	{name: "AppendIfHolds", run: testAppendIfHolds},
	{name: "AppendIfOtherMoved", run: testAppendIfOtherMoved},
	{name: "AppendIfOwnMoved", run: testAppendIfOwnMoved},
	{name: "AppendIfSelf", run: testAppendIfSelf},
	{name: "AppendIfRetry", run: testAppendIfRetry},
	{name: "AppendIfRace", run: testAppendIfRace},
}

func testAppendNoStream(h *harness) {
	s := h.ledger()
	first := h.events(2)
	res := h.appendWant(s, eventstore.NoStream(), 1, first...)
	h.checkResult(s, res)
	h.conflict(s, eventstore.NoStream(), h.events(1)...)
	h.checkStream(s, first)
}

func testAppendAny(h *harness) {
	s := h.ledger()
	first := h.events(1)
	h.appendWant(s, eventstore.Any(), 0, first...)
	second := h.events(3)
	res := h.appendWant(s, eventstore.Any(), 3, second...)
	h.checkResult(s, res)
	h.checkStream(s, slices.Concat(first, second))
}

func testAppendExact(h *harness) {
	s := h.ledger()
	// Exact(0) means the stream's last event has revision 0: an empty stream
	// does not match.
	h.conflict(s, eventstore.Exact(0), h.events(1)...)
	if got := h.readStream(s, 0); len(got) != 0 {
		h.t.Fatalf("a conflicting append stored %d events", len(got))
	}
	want := h.events(1)
	h.appendWant(s, eventstore.NoStream(), 0, want...)
	more := h.events(2)
	h.appendWant(s, eventstore.Exact(0), 2, more...)
	want = append(want, more...)
	h.conflict(s, eventstore.Exact(0), h.events(1)...) // stale
	h.conflict(s, eventstore.Exact(1), h.events(1)...) // inside the stream
	h.conflict(s, eventstore.Exact(3), h.events(1)...) // ahead of the stream
	more = h.events(1)
	res := h.appendWant(s, eventstore.ExpectRevisionAfter(3), 3, more...)
	want = append(want, more...)
	h.checkResult(s, res)
	h.checkStream(s, want)
}

func testConflictStoresNothing(h *harness) {
	start := h.origin()
	s := h.ledger()
	want := h.events(3)
	h.append(s, eventstore.NoStream(), want...)
	before := h.readAll(start)

	h.conflict(s, eventstore.Exact(0), h.events(5)...)
	h.conflict(s, eventstore.NoStream(), h.events(5)...)
	empty := h.ledger()
	h.conflict(empty, eventstore.Exact(4), h.events(5)...)

	h.checkStream(s, want)
	if _, err := h.collect(h.store.ReadStream(h.ctx, empty, 0)); !errors.Is(err, eventstore.ErrStreamNotFound) {
		h.t.Errorf("ReadStream of a stream whose only append conflicted: %v, want ErrStreamNotFound", err)
	}
	after := h.readAll(start)
	if !sameIDs(recordIDs(after), recordIDs(before)) {
		h.t.Errorf("global order changed by conflicting appends:\nbefore\n%safter\n%s", describe(before), describe(after))
	}
}

func testRevisionsAndResults(h *harness) {
	s := h.ledger()
	var all []eventstore.Proposed
	var results []eventstore.AppendResult
	for _, n := range []int{1, 3, 1, 5, 2} {
		evs := h.events(n)
		res := h.appendWant(s, eventstore.ExpectRevisionAfter(uint64(len(all))), uint64(len(all)+n-1), evs...)
		if len(results) > 0 && res.Position <= results[len(results)-1].Position {
			h.t.Errorf("append %d ended at position %d, not after the previous append's %d", len(results), res.Position, results[len(results)-1].Position)
		}
		all = append(all, evs...)
		results = append(results, res)
	}
	recs := h.checkStream(s, all)
	for _, res := range results {
		if got := recs[res.NextRevision].Position; got != res.Position {
			h.t.Errorf("AppendResult %+v: event at revision %d is at position %d", res, res.NextRevision, got)
		}
	}
}

// testAppendIsAtomicToReaders appends batches while other goroutines read:
// no reader may see part of a batch.
func testAppendIsAtomicToReaders(h *harness) {
	const batch, batches, readers = 4, 12, 3
	start := h.origin()
	s := h.ledger()
	var wg sync.WaitGroup
	var ready sync.WaitGroup
	ready.Add(readers)
	stop := make(chan struct{})
	for r := range readers {
		wg.Go(func() {
			for i := 0; ; i++ {
				if i == 1 {
					ready.Done()
				}
				if i > 0 {
					select {
					case <-stop:
						return
					default:
					}
				}
				n := 0
				if r == 0 {
					for rec, err := range h.store.ReadAll(h.ctx, start) {
						if err != nil {
							h.t.Errorf("ReadAll: %v", err)
							return
						}
						if rec.Stream == s {
							n++
						}
					}
				} else {
					for _, err := range h.store.ReadStream(h.ctx, s, 0) {
						if errors.Is(err, eventstore.ErrStreamNotFound) {
							break
						}
						if err != nil {
							h.t.Errorf("ReadStream: %v", err)
							return
						}
						n++
					}
				}
				if n%batch != 0 {
					h.t.Errorf("a reader saw %d events of a stream written in batches of %d", n, batch)
					return
				}
			}
		})
	}
	// Write only once every reader is reading, and let them run between
	// batches even on one CPU.
	h.wait(&ready)
	for i := range batches {
		h.append(s, eventstore.ExpectRevisionAfter(uint64(i*batch)), h.events(batch)...)
		runtime.Gosched()
	}
	close(stop)
	h.wait(&wg)
	if n := len(h.readStream(s, 0)); n != batch*batches {
		h.t.Errorf("stream holds %d events, want %d", n, batch*batches)
	}
}

func testReadStreamFrom(h *harness) {
	s := h.ledger()
	want := h.events(6)
	h.append(s, eventstore.NoStream(), want[:2]...)
	h.append(s, eventstore.Exact(1), want[2:]...)
	for _, from := range []uint64{0, 1, 2, 5, 6, 100} {
		got := h.readStream(s, from)
		var exp []eventstore.Proposed
		if from < uint64(len(want)) {
			exp = want[from:]
		}
		if len(got) != len(exp) {
			h.t.Errorf("ReadStream(%s, %d) returned %d events, want %d:\n%s", s, from, len(got), len(exp), describe(got))
			continue
		}
		for i := range got {
			checkRecord(h.t, got[i], s, from+uint64(i), exp[i])
		}
	}
}

func testReadStreamNotFound(h *harness) {
	acct := account()
	ledger, activity := eventstore.LedgerStream(acct), eventstore.ActivityStream(acct)
	h.claim(ledger, activity)
	check := func(stream eventstore.StreamID, from uint64) {
		h.t.Helper()
		recs, err := h.collect(h.store.ReadStream(h.ctx, stream, from))
		if len(recs) != 0 || !errors.Is(err, eventstore.ErrStreamNotFound) {
			h.t.Errorf("ReadStream(%s, %d) = %d events, %v; want no event and ErrStreamNotFound", stream, from, len(recs), err)
		}
	}
	check(ledger, 0)
	check(ledger, 3)
	h.append(ledger, eventstore.NoStream(), h.events(2)...)
	// The account's other stream, and an account whose id extends this one,
	// are still empty.
	check(activity, 0)
	check(eventstore.LedgerStream(acct+"0"), 0)
}

func testStreamsAreIndependent(h *harness) {
	a := account()
	b := a + "0" // shares a as a prefix
	streams := []eventstore.StreamID{
		eventstore.LedgerStream(a), eventstore.ActivityStream(a),
		eventstore.LedgerStream(b), eventstore.ActivityStream(b),
	}
	h.claim(streams...)
	want := make([][]eventstore.Proposed, len(streams))
	for i, s := range streams {
		want[i] = h.events(i + 1)
		h.appendWant(s, eventstore.NoStream(), uint64(i), want[i]...)
	}
	// Each stream's revision is its own: a conflict or an append on one
	// stream does not move another.
	for i, s := range streams {
		h.conflict(s, eventstore.NoStream(), h.events(1)...)
		more := h.events(1)
		h.appendWant(s, eventstore.Exact(uint64(i)), uint64(i+1), more...)
		want[i] = append(want[i], more...)
	}
	for i, s := range streams {
		h.checkStream(s, want[i])
	}
}

func testRoundTrip(h *harness) {
	long := `{"blob":"` + strings.Repeat("0123456789abcdef", 2048) + `"}`
	events := []eventstore.Proposed{
		{ID: uuid.New(), Type: "AccountOpened",
			Data:     []byte("{ \"z\" : 1,\n\t\"a\":\"caf\\u00e9 café \\\"quoted\\\" \\/ \\n\", \"big\": 12345678901234567890.50e-3, \"nil\": null }"),
			Metadata: []byte(`{"time":"2026-01-02T03:04:05.123456789Z","subject":"u-1","actorrole":"admin","schemaversion":2,"zeta":"z","alpha":"a"}`)},
		{ID: uuid.New(), Type: "SeatsPurchased", Data: []byte(`[1,2.50,"3",{"k":[]}]`), Metadata: nil},
		{ID: uuid.New(), Type: "UserDeleted", Data: []byte(`"just a string"`), Metadata: []byte(`{}`)},
		{ID: uuid.New(), Type: "ActivityRecorded", Data: []byte(long), Metadata: []byte(`{"seq":0.125}`)},
		{ID: uuid.New(), Type: "UserAdded", Data: []byte(`{"k":"\u0000\u001f\ud83d\ude00 😀"}`), Metadata: []byte(`{"subject":"","seq":-1}`)},
	}
	want := make([]eventstore.Proposed, len(events))
	for i, e := range events {
		want[i] = eventstore.Proposed{ID: e.ID, Type: e.Type, Data: slices.Clone(e.Data), Metadata: slices.Clone(e.Metadata)}
	}
	start := h.origin()
	s := h.ledger()
	h.append(s, eventstore.NoStream(), events...)
	// The store keeps the bytes, not the caller's buffers.
	for _, e := range events {
		if len(e.Data) > 0 {
			e.Data[0] ^= 0xff
		}
		if len(e.Metadata) > 0 {
			e.Metadata[0] ^= 0xff
		}
	}
	h.checkStream(s, want)
	all := h.readAll(start)
	if len(all) != len(want) {
		h.t.Fatalf("ReadAll returned %d events, want %d:\n%s", len(all), len(want), describe(all))
	}
	for i := range all {
		checkRecord(h.t, all[i], s, uint64(i), want[i])
	}
}

func testNewStoreIsEmpty(h *harness) {
	if recs := h.readAll(0); len(recs) != 0 {
		h.t.Errorf("ReadAll(0) of a new store returned:\n%s", describe(recs))
	}
	want := h.events(1)
	s := h.ledger()
	res := h.append(s, eventstore.NoStream(), want...)
	recs := h.readAll(0)
	if len(recs) != 1 || recs[0].ID != want[0].ID {
		h.t.Fatalf("ReadAll(0) after one append returned:\n%s", describe(recs))
	}
	if res.Position == 0 {
		h.t.Errorf("first event at position 0, which is before every event")
	}
	h.checkDense(recs)
}

func testReadAllOrder(h *harness) {
	start := h.origin()
	a, b, c := h.ledger(), h.ledger(), eventstore.ActivityStream(account())
	h.claim(c)
	type appended struct {
		stream eventstore.StreamID
		events []eventstore.Proposed
	}
	plan := []struct {
		stream eventstore.StreamID
		n      int
	}{{a, 2}, {b, 1}, {c, 3}, {a, 1}, {b, 2}, {c, 1}, {a, 4}}
	count := map[eventstore.StreamID]uint64{}
	var want []uuid.UUID
	var results []eventstore.AppendResult
	for _, p := range plan {
		evs := h.events(p.n)
		results = append(results, h.append(p.stream, eventstore.ExpectRevisionAfter(count[p.stream]), evs...))
		count[p.stream] += uint64(p.n)
		want = append(want, ids(evs)...)
	}
	got := h.readAll(start)
	if !sameIDs(recordIDs(got), want) {
		h.t.Fatalf("ReadAll(%d) returned\n%swant ids in append order %v", start, describe(got), want)
	}
	checkGlobal(h.t, got)
	h.checkDense(got)
	at := map[eventstore.Position]bool{}
	for _, r := range got {
		at[r.Position] = true
	}
	for _, res := range results {
		if !at[res.Position] {
			h.t.Errorf("AppendResult %+v names a position ReadAll did not return", res)
		}
	}
	// Reading after any returned position yields exactly the rest.
	for _, i := range []int{0, 1, 5, len(got) - 2, len(got) - 1} {
		rest := h.readAll(got[i].Position)
		if !sameIDs(recordIDs(rest), want[i+1:]) {
			h.t.Errorf("ReadAll(%d) returned\n%swant the %d events after it", got[i].Position, describe(rest), len(want)-i-1)
		}
	}
}

// testReadAllStopsAtStart appends while ReadAll is being consumed: the read
// ends with the events stored when it began.
func testReadAllStopsAtStart(h *harness) {
	start := h.origin()
	s := h.ledger()
	first := h.events(5)
	h.append(s, eventstore.NoStream(), first...)
	later := h.events(3)
	seq := h.store.ReadAll(h.ctx, start)
	done := make(chan []uuid.UUID, 1)
	go func() {
		var got []uuid.UUID
		defer func() { done <- got }()
		appended := false
		for rec, err := range seq {
			if err != nil {
				h.t.Errorf("ReadAll(%d): %v", start, err)
				return
			}
			if !h.owns(rec.Stream) {
				continue
			}
			got = append(got, rec.ID)
			if !appended {
				// The store must not hold a lock while it yields.
				appended = true
				if _, err := h.store.Append(h.ctx, s, eventstore.Exact(4), later...); err != nil {
					h.t.Errorf("Append during ReadAll: %v", err)
				}
			}
		}
	}()
	var got []uuid.UUID
	select {
	case got = <-done:
	case <-h.ctx.Done():
		h.t.Fatal("ReadAll with an append inside its loop did not finish")
	}
	if !sameIDs(got, ids(first)) {
		h.t.Errorf("ReadAll yielded ids %v, want the 5 events stored when it began %v", got, ids(first))
	}
	h.checkStream(s, slices.Concat(first, later))
}

func testSubscribeCatchUpThenLive(h *harness) {
	start := h.origin()
	s := h.ledger()
	old := h.events(3)
	h.append(s, eventstore.NoStream(), old...)
	sub := h.subscribe(h.ctx, start)
	got := sub.expect(ids(old))
	for i := range got {
		checkRecord(h.t, got[i], s, uint64(i), old[i])
	}
	live1, live2 := h.events(1), h.events(2)
	h.append(s, eventstore.Exact(2), live1...)
	got = append(got, sub.expect(ids(live1))...)
	// A second subscriber, started while the first waits, sees everything.
	late := h.subscribe(h.ctx, start)
	h.append(s, eventstore.Exact(3), live2...)
	got = append(got, sub.expect(ids(live2))...)
	late.expect(ids(slices.Concat(old, live1, live2)))
	checkGlobal(h.t, got)
	for i, want := range slices.Concat(old, live1, live2) {
		checkRecord(h.t, got[i], s, uint64(i), want)
	}
}

func testSubscribeCancel(h *harness) {
	start := h.origin()
	s := h.ledger()
	old := h.events(2)
	h.append(s, eventstore.NoStream(), old...)

	// Cancelled while waiting for live events.
	ctx, cancel := context.WithCancel(h.ctx)
	sub := h.subscribe(ctx, start)
	sub.expect(ids(old))
	settle()
	cancel()
	sub.end(context.Canceled)

	// Cancelled before it starts: it may yield the stored events, then it
	// must yield the context's error and stop.
	ctx, cancel = context.WithCancel(h.ctx)
	cancel()
	got, err := h.collect(h.store.Subscribe(ctx, start))
	if !errors.Is(err, context.Canceled) {
		h.t.Errorf("Subscribe with a cancelled context ended with %v after %d events, want context.Canceled", err, len(got))
	}

	// Past its deadline.
	ctx, cancel = context.WithTimeout(h.ctx, 1)
	defer cancel()
	<-ctx.Done()
	sub = h.subscribe(ctx, start)
	for {
		_, err := sub.next()
		if err != nil {
			if !errors.Is(err, context.DeadlineExceeded) {
				h.t.Errorf("Subscribe past its deadline yielded %v, want context.DeadlineExceeded", err)
			}
			break
		}
	}
}

func testSubscribeResume(h *harness) {
	s := h.ledger()
	want := h.events(5)
	var results []eventstore.AppendResult
	for i, e := range want {
		results = append(results, h.append(s, eventstore.ExpectRevisionAfter(uint64(i)), e))
	}
	mid := h.subscribe(h.ctx, results[1].Position)
	mid.expect(ids(want[2:]))
	// From the last position: the first thing yielded is the next append.
	tail := h.subscribe(h.ctx, results[4].Position)
	next := h.events(1)
	h.append(s, eventstore.Exact(4), next...)
	got := tail.expect(ids(next))
	checkRecord(h.t, got[0], s, 5, next[0])
	mid.expect(ids(next))
}

// testSubscribeWhileWriting starts a subscription while writers append to
// several streams: it must see every event once, in the global order.
func testSubscribeWhileWriting(h *harness) {
	const writers, perWriter = 4, 20
	start := h.origin()
	pre := h.ledger()
	preEvents := h.events(3)
	h.append(pre, eventstore.NoStream(), preEvents...)

	streams := make([]eventstore.StreamID, writers)
	for i := range streams {
		streams[i] = h.ledger()
	}
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Go(func() {
			<-begin
			for n := 0; n < perWriter; {
				k := 1 + n%3
				k = min(k, perWriter-n)
				if _, err := h.store.Append(h.ctx, s, eventstore.ExpectRevisionAfter(uint64(n)), h.events(k)...); err != nil {
					h.t.Errorf("Append(%s): %v", s, err)
					return
				}
				n += k
			}
		})
	}
	sub := h.subscribe(h.ctx, start)
	close(begin)
	total := len(preEvents) + writers*perWriter
	var got []eventstore.Record
	for len(got) < total {
		rec, err := sub.next()
		if err != nil {
			h.t.Fatalf("subscription failed after %d of %d events: %v", len(got), total, err)
		}
		got = append(got, rec)
	}
	h.wait(&wg)
	checkGlobal(h.t, got)
	seen := map[uuid.UUID]int{}
	for _, r := range got {
		seen[r.ID]++
		if seen[r.ID] > 1 {
			h.t.Errorf("subscription yielded %s/%d (%s) twice", r.Stream, r.Revision, r.ID)
		}
	}
	all := h.readAll(start)
	if !sameIDs(recordIDs(got), recordIDs(all)) {
		h.t.Errorf("subscription order differs from ReadAll:\nsubscription\n%sReadAll\n%s", describe(got), describe(all))
	}
}

func testIdempotentRetry(h *harness) {
	s := h.ledger()
	b1, b2, b3 := h.events(2), h.events(3), h.events(1)
	r1 := h.append(s, eventstore.NoStream(), b1...)
	retry := func(what string, expected eventstore.ExpectedRevision, batch []eventstore.Proposed, want eventstore.AppendResult) {
		h.t.Helper()
		got, err := h.tryAppend(h.ctx, s, expected, batch...)
		if err != nil || got != want {
			h.t.Errorf("%s: Append(%s, %s, the same %d events) = %+v, %v; want the first append's result %+v",
				what, s, expected, len(batch), got, err, want)
		}
	}
	retry("retry of the first append", eventstore.NoStream(), b1, r1)
	r2 := h.append(s, eventstore.Exact(1), b2...)
	retry("retry after a lost ack", eventstore.Exact(1), b2, r2)
	retry("second retry", eventstore.Exact(1), b2, r2)
	r3 := h.append(s, eventstore.Exact(4), b3...)
	retry("retry after another writer appended", eventstore.Exact(1), b2, r2)
	retry("retry of the first append after two more", eventstore.NoStream(), b1, r1)
	retry("retry with any revision", eventstore.Any(), b2, r2)
	retry("retry of the last append", eventstore.Exact(4), b3, r3)
	want := slices.Concat(b1, b2, b3)
	h.checkStream(s, want)

	// New ids with a stale expectation are a conflict, not a retry.
	h.conflict(s, eventstore.Exact(1), h.events(3)...)
	// Stored ids at a place they are not stored: the store may answer
	// either way, but never store them twice.
	for _, exp := range []eventstore.ExpectedRevision{eventstore.Exact(0), eventstore.Exact(5), eventstore.NoStream()} {
		res, err := h.tryAppend(h.ctx, s, exp, b2...)
		if err != nil && !errors.Is(err, eventstore.ErrConflict) {
			h.t.Errorf("Append(%s, %s, events stored at revision 2) = %v, want the first result or ErrConflict", s, exp, err)
		}
		if err == nil && res != r2 {
			h.t.Errorf("Append(%s, %s, events stored at revision 2) = %+v, want the first result %+v or ErrConflict", s, exp, res, r2)
		}
	}
	h.checkStream(s, want)

	// Retrying a batch into a new stream, and into another stream holding
	// nothing of it, stays independent per stream.
	other := h.ledger()
	ro := h.append(other, eventstore.NoStream(), b3[0])
	retryOther, err := h.tryAppend(h.ctx, other, eventstore.NoStream(), b3[0])
	if err != nil || retryOther != ro {
		h.t.Errorf("retry in a second stream = %+v, %v; want %+v", retryOther, err, ro)
	}
	h.checkStream(other, b3)
}

// testRaceOnOneRevision has writers append at the same expected revision
// with different events: exactly one wins.
func testRaceOnOneRevision(h *harness) {
	s := h.ledger()
	var stored []eventstore.Proposed
	race := func(expected eventstore.ExpectedRevision, size int) {
		h.t.Helper()
		n := h.cfg.writers
		batches := make([][]eventstore.Proposed, n)
		for i := range batches {
			batches[i] = h.events(size)
		}
		results := make([]eventstore.AppendResult, n)
		errs := make([]error, n)
		begin := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-begin
				results[i], errs[i] = h.store.Append(h.ctx, s, expected, batches[i]...)
			})
		}
		close(begin)
		h.wait(&wg)
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				h.t.Errorf("writers %d and %d both appended at %s", winner, i, expected)
			case err == nil:
				winner = i
			case !errors.Is(err, eventstore.ErrConflict):
				h.t.Errorf("writer %d: %v, want ErrConflict", i, err)
			}
		}
		if winner < 0 {
			h.t.Fatalf("no writer appended at %s", expected)
		}
		stored = append(stored, batches[winner]...)
		if want := uint64(len(stored) - 1); results[winner].NextRevision != want {
			h.t.Errorf("winner's NextRevision = %d, want %d", results[winner].NextRevision, want)
		}
		h.checkStream(s, stored)
	}
	race(eventstore.NoStream(), 1)
	for range 4 {
		race(eventstore.ExpectRevisionAfter(uint64(len(stored))), 1)
	}
	race(eventstore.ExpectRevisionAfter(uint64(len(stored))), 3)
}

// testRaceWithRetries has writers add events to one stream, each reloading
// and retrying on conflict: no append is lost or stored twice.
func testRaceWithRetries(h *harness) {
	const perWriter = 3
	s := h.ledger()
	n := h.cfg.writers
	begin := make(chan struct{})
	var wg sync.WaitGroup
	mine := make([][]uuid.UUID, n)
	for w := range n {
		wg.Go(func() {
			<-begin
			for range perWriter {
				e := h.events(1)
				for attempt := 0; ; attempt++ {
					if attempt > 50*n {
						h.t.Errorf("writer %d: still conflicting after %d attempts", w, attempt)
						return
					}
					var have uint64
					for _, err := range h.store.ReadStream(h.ctx, s, 0) {
						if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
							h.t.Errorf("writer %d: ReadStream: %v", w, err)
							return
						}
						if err == nil {
							have++
						}
					}
					_, err := h.store.Append(h.ctx, s, eventstore.ExpectRevisionAfter(have), e...)
					if err == nil {
						mine[w] = append(mine[w], e[0].ID)
						break
					}
					if !errors.Is(err, eventstore.ErrConflict) {
						h.t.Errorf("writer %d: Append: %v", w, err)
						return
					}
				}
			}
		})
	}
	close(begin)
	h.wait(&wg)
	got := h.readStream(s, 0)
	if len(got) != n*perWriter {
		h.t.Fatalf("stream holds %d events, want %d", len(got), n*perWriter)
	}
	at := map[uuid.UUID]int{}
	for i, r := range got {
		if r.Revision != uint64(i) {
			h.t.Errorf("event %d has revision %d", i, r.Revision)
		}
		at[r.ID] = i
	}
	for w, list := range mine {
		for j, id := range list {
			if _, ok := at[id]; !ok {
				h.t.Errorf("writer %d's event %d was acknowledged but is not stored", w, j)
			} else if j > 0 && at[id] < at[list[j-1]] {
				h.t.Errorf("writer %d's events are out of order", w)
			}
		}
	}
}

func testConcurrentStreams(h *harness) {
	const perStream = 10
	start := h.origin()
	n := h.cfg.writers
	streams := make([]eventstore.StreamID, n)
	for i := range streams {
		if i%2 == 0 {
			streams[i] = h.ledger()
		} else {
			streams[i] = eventstore.ActivityStream(account())
			h.claim(streams[i])
		}
	}
	want := make([][]eventstore.Proposed, n)
	begin := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range streams {
		want[i] = h.events(perStream)
		wg.Go(func() {
			<-begin
			for j, e := range want[i] {
				res, err := h.store.Append(h.ctx, s, eventstore.ExpectRevisionAfter(uint64(j)), e)
				if err != nil {
					h.t.Errorf("Append(%s, revision %d): %v", s, j, err)
					return
				}
				if res.NextRevision != uint64(j) {
					h.t.Errorf("Append(%s) NextRevision = %d, want %d", s, res.NextRevision, j)
				}
			}
		})
	}
	close(begin)
	h.wait(&wg)
	for i, s := range streams {
		h.checkStream(s, want[i])
	}
	all := h.readAll(start)
	if len(all) != n*perStream {
		h.t.Errorf("ReadAll returned %d events, want %d", len(all), n*perStream)
	}
	seen := map[uuid.UUID]bool{}
	for _, r := range all {
		if seen[r.ID] {
			h.t.Errorf("ReadAll returned %s/%d twice", r.Stream, r.Revision)
		}
		seen[r.ID] = true
	}
	for i := range want {
		for _, e := range want[i] {
			if !seen[e.ID] {
				h.t.Errorf("ReadAll is missing event %s of %s", e.ID, streams[i])
			}
		}
	}
	checkGlobal(h.t, all)
	h.checkDense(all)
}

func testCanceledContext(h *harness) {
	s := h.ledger()
	h.append(s, eventstore.NoStream(), h.events(1)...)
	ctx, cancel := context.WithCancel(h.ctx)
	cancel()

	other := h.ledger()
	_, err := h.tryAppend(ctx, other, eventstore.NoStream(), h.events(1)...)
	if !errors.Is(err, context.Canceled) {
		h.t.Errorf("Append with a cancelled context: %v, want context.Canceled", err)
	}
	if got := h.readStream(other, 0); len(got) != 0 {
		h.t.Errorf("Append with a cancelled context stored %d events", len(got))
	}
	if _, err := h.collect(h.store.ReadStream(ctx, s, 0)); !errors.Is(err, context.Canceled) {
		h.t.Errorf("ReadStream with a cancelled context: %v, want context.Canceled", err)
	}
	if _, err := h.collect(h.store.ReadAll(ctx, 0)); !errors.Is(err, context.Canceled) {
		h.t.Errorf("ReadAll with a cancelled context: %v, want context.Canceled", err)
	}
}

func testClose(h *harness) {
	s := h.ledger()
	h.append(s, eventstore.NoStream(), h.events(1)...)
	if err := h.within("Close", h.store.Close); err != nil {
		h.t.Fatalf("Close: %v", err)
	}
	check := func(what string, err error) {
		h.t.Helper()
		if !errors.Is(err, eventstore.ErrClosed) {
			h.t.Errorf("%s after Close: %v, want ErrClosed", what, err)
		}
	}
	check("Append", h.within("Append", func() error {
		_, err := h.store.Append(h.ctx, s, eventstore.Exact(0), h.events(1)...)
		return err
	}))
	_, err := h.collect(h.store.ReadStream(h.ctx, s, 0))
	check("ReadStream", err)
	_, err = h.collect(h.store.ReadAll(h.ctx, 0))
	check("ReadAll", err)
	_, err = h.collect(h.store.Subscribe(h.ctx, 0))
	check("Subscribe", err)
	if err := h.within("second Close", h.store.Close); err != nil && !errors.Is(err, eventstore.ErrClosed) {
		h.t.Errorf("second Close: %v, want nil or ErrClosed", err)
	}
}

func testCloseEndsSubscription(h *harness) {
	start := h.origin()
	s := h.ledger()
	evs := h.events(2)
	h.append(s, eventstore.NoStream(), evs...)
	sub := h.subscribe(h.ctx, start)
	sub.expect(ids(evs))
	settle()
	if err := h.within("Close", h.store.Close); err != nil {
		h.t.Fatalf("Close: %v", err)
	}
	sub.end(eventstore.ErrClosed)
}

// settle gives a subscription that has yielded everything stored time to
// start waiting for live events, so that the case tests waking a waiting
// subscriber rather than one that is still reading. Correct stores pass
// either way.
func settle() { time.Sleep(20 * time.Millisecond) }
