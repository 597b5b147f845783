package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// otherProcess opens a second store on s's server over a connection of
// its own, as another process sharing the stream would: it has no group
// sync, so its appends carry their stream's own expectation.
func otherProcess(t testing.TB, s *jetstream.Store) *jetstream.Store {
	t.Helper()
	srv := s.Server()
	nc, err := nats.Connect(srv.ClientURL(), nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	o, err := jetstream.Open(t.Context(), nc, jetstream.Config{MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return o
}

// acked is an append a writer got an answer to.
type acked struct {
	stream eventstore.StreamID
	ids    []uuid.UUID
	res    eventstore.AppendResult
}

// TestSequencedAppendsWithAnotherWriter has many goroutines of a store
// with sequenced appends, and a second store on the same stream (another
// process: its appends break the chain), append to a few overlapping
// streams, each with the revision it believes current, some several
// events at once, some on condition of the account's other stream.
// Every stream must then number its events 0..n-1 with no gap or repeat,
// every acknowledged append be stored where its result says, and no
// refused one be stored at all.
func TestSequencedAppendsWithAnotherWriter(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s := newStore(t, jetstream.Config{})
	o := otherProcess(t, s)
	accounts := []string{"seq-a", "seq-b"}
	var streams []eventstore.StreamID
	for _, a := range accounts {
		streams = append(streams, eventstore.LedgerStream(a), eventstore.ActivityStream(a))
	}
	const writers, perWriter = 12, 40
	var (
		mu      sync.Mutex
		oks     []acked
		refused []uuid.UUID
		wg      sync.WaitGroup
	)
	for w := range writers {
		store := s
		if w%4 == 3 {
			store = o // a quarter of the writers are the other process
		}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			known := map[eventstore.StreamID]uint64{} // events each stream holds, as this writer believes
			for range perWriter {
				st := streams[rng.IntN(len(streams))]
				evs := events(1 + rng.IntN(3)*(rng.IntN(2))) // 1 to 3 events, mostly 1
				expected := eventstore.ExpectRevisionAfter(known[st])
				var res eventstore.AppendResult
				var err error
				if rng.IntN(4) == 0 {
					other := eventstore.ActivityStream(st.Account)
					if st.Category == eventstore.Activity {
						other = eventstore.LedgerStream(st.Account)
					}
					cond := eventstore.Condition{Stream: other, Expected: eventstore.ExpectRevisionAfter(known[other])}
					res, err = store.AppendIf(ctx, st, expected, cond, evs...)
				} else {
					res, err = store.Append(ctx, st, expected, evs...)
				}
				ids := make([]uuid.UUID, len(evs))
				for i, e := range evs {
					ids[i] = e.ID
				}
				mu.Lock()
				switch {
				case err == nil:
					oks = append(oks, acked{stream: st, ids: ids, res: res})
					known[st] = res.NextRevision + 1
				case errors.Is(err, eventstore.ErrConflict):
					refused = append(refused, ids...)
				default:
					t.Errorf("writer %d: append to %s: %v", w, st, err)
				}
				mu.Unlock()
				if err != nil {
					// Learn the stream's length again, as a caller reloading
					// its state would.
					for _, s2 := range streams {
						n, err := count(ctx, store, s2)
						if err != nil {
							t.Errorf("writer %d: %v", w, err)
							return
						}
						known[s2] = n
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if len(oks) < writers*perWriter/4 {
		t.Fatalf("only %d of %d appends acknowledged", len(oks), writers*perWriter)
	}
	type place struct {
		stream eventstore.StreamID
		rev    uint64
		pos    eventstore.Position
	}
	stored := map[uuid.UUID]place{}
	for _, st := range streams {
		i := uint64(0)
		for rec, err := range s.ReadStream(ctx, st, 0) {
			if errors.Is(err, eventstore.ErrStreamNotFound) {
				break
			}
			if err != nil {
				t.Fatalf("read %s: %v", st, err)
			}
			if rec.Revision != i {
				t.Fatalf("%s: event %d has revision %d", st, i, rec.Revision)
			}
			if _, dup := stored[rec.ID]; dup {
				t.Fatalf("%s: event %s stored twice", st, rec.ID)
			}
			stored[rec.ID] = place{st, rec.Revision, rec.Position}
			i++
		}
	}
	for _, a := range oks {
		k := uint64(len(a.ids))
		for i, id := range a.ids {
			p, ok := stored[id]
			switch {
			case !ok:
				t.Fatalf("acknowledged event %s of %s not stored", id, a.stream)
			case p.stream != a.stream || p.rev != a.res.NextRevision+1-k+uint64(i):
				t.Fatalf("acknowledged event %s stored in %s at %d, acknowledged in %s at %d", id, p.stream, p.rev, a.stream, a.res.NextRevision+1-k+uint64(i))
			case i == len(a.ids)-1 && p.pos != a.res.Position:
				t.Fatalf("acknowledged event %s stored at position %d, acknowledged at %d", id, p.pos, a.res.Position)
			}
		}
	}
	for _, id := range refused {
		if p, ok := stored[id]; ok {
			t.Fatalf("refused event %s stored in %s at %d", id, p.stream, p.rev)
		}
	}
	if len(stored) != countIDs(oks) {
		t.Fatalf("streams hold %d events, %d acknowledged", len(stored), countIDs(oks))
	}
	pipelined, resyncs, _ := jetstream.ChainStats(s)
	t.Logf("%d appends acknowledged, %d events refused; %d appends pipelined, %d resyncs", len(oks), len(refused), pipelined, resyncs)
	if pipelined == 0 || resyncs == 0 {
		t.Fatalf("%d appends pipelined, %d resyncs: the test did not exercise the chain", pipelined, resyncs)
	}
}

func countIDs(as []acked) int {
	n := 0
	for _, a := range as {
		n += len(a.ids)
	}
	return n
}

// count returns how many events stream holds, as a reader finds them.
func count(ctx context.Context, s eventstore.Store, stream eventstore.StreamID) (uint64, error) {
	var n uint64
	for _, err := range s.ReadStream(ctx, stream, 0) {
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return 0, nil
		}
		if errors.Is(err, eventstore.ErrUnreadable) {
			continue
		}
		if err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}

// A sequenced append carries Nats-Expected-Last-Sequence, and behind an
// append in flight Nats-Expected-Last-Msg-Id too, never the per-subject
// expectation; a store set to PerSubjectChecks carries that one. Both
// kinds read back as events the store wrote, through the server and
// from the stream's files, while a message with neither stays foreign.
func TestSequencedHeaders(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	scfg := jetstream.ServerConfig{DataDir: dir, Port: -1}
	stream := eventstore.LedgerStream("hdr")
	evs := events(6)

	old, err := jetstream.Embedded(ctx, scfg, jetstream.Config{PerSubjectChecks: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Append(ctx, stream, eventstore.NoStream(), evs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Append(ctx, stream, eventstore.Exact(0), evs[1:3]...); err != nil {
		t.Fatal(err)
	}
	old.Close()

	s, err := jetstream.Embedded(ctx, scfg, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, _, ok := jetstream.ChainStats(s); !ok {
		t.Fatal("the store does not sequence its appends")
	}
	if _, err := s.Append(ctx, stream, eventstore.Exact(2), evs[3]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, stream, eventstore.Exact(3), evs[4:6]...); err != nil {
		t.Fatal(err)
	}
	js, err := natsjs.New(s.Conn())
	if err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, "ledger.hdr.SeatsPurchased", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	st := storeStream(t, s)
	for seq, want := range map[uint64]string{1: natsjs.ExpectedLastSubjSeqHeader, 2: natsjs.ExpectedLastSubjSeqHeader, 4: natsjs.ExpectedLastSeqHeader, 5: natsjs.ExpectedLastSeqHeader} {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(want) == "" {
			t.Errorf("message %d has no %s: %v", seq, want, m.Header)
		}
		if want == natsjs.ExpectedLastSeqHeader && m.Header.Get(natsjs.ExpectedLastSubjSeqHeader) != "" {
			t.Errorf("sequenced message %d carries the per-subject expectation too: %v", seq, m.Header)
		}
	}
	check := func(name string, recs []eventstore.Record, errs []error) {
		t.Helper()
		var revs []uint64
		foreign := 0
		for i, err := range errs {
			switch {
			case err == nil:
				revs = append(revs, recs[i].Revision)
			case errors.Is(err, eventstore.ErrUnreadable):
				foreign++
				if recs[i].Position != eventstore.Position(ack.Sequence) {
					t.Errorf("%s: record at %d unreadable", name, recs[i].Position)
				}
			default:
				t.Fatalf("%s: %v", name, err)
			}
		}
		if fmt.Sprint(revs) != "[0 1 2 3 4 5]" || foreign != 1 {
			t.Errorf("%s: revisions %v and %d foreign, want [0 1 2 3 4 5] and 1", name, revs, foreign)
		}
	}
	var recs []eventstore.Record
	var errs []error
	for rec, err := range s.ReadStream(ctx, stream, 0) {
		recs, errs = append(recs, rec), append(errs, err)
	}
	check("ReadStream", recs, errs)
	prev := jetstream.SetMinFileRead(0)
	defer jetstream.SetMinFileRead(prev)
	recs, errs = nil, nil
	for rec, err := range s.ReadAll(ctx, 0) {
		recs, errs = append(recs, rec), append(errs, err)
	}
	if jetstream.FileReads(s) == 0 {
		t.Error("ReadAll did not read the stream's files")
	}
	check("ReadAll", recs, errs)
}

// After a restart the store knows the stream's last sequence but not its
// last message's id: the first append goes alone, the next ones pipeline
// behind it. A message another process appended while the store was
// closed counts, and so does one appended after the restart before the
// store's first append, which the store learns of when the server refuses
// its expectation.
func TestSequencedRestart(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	scfg := jetstream.ServerConfig{DataDir: dir, Port: -1}
	x, y := eventstore.LedgerStream("restart-x"), eventstore.LedgerStream("restart-y")
	s, err := jetstream.Embedded(ctx, scfg, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []eventstore.StreamID{x, y} {
		if _, err := s.Append(ctx, st, eventstore.NoStream(), events(2)...); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()

	// Another process, the store closed.
	srv, err := jetstream.StartServer(scfg)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	o, err := jetstream.Open(ctx, nc, jetstream.Config{MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Append(ctx, x, eventstore.Exact(1), events(1)...); err != nil {
		t.Fatal(err)
	}
	o.Close()
	nc.Close()
	jetstream.StopServer(srv)

	s, err = jetstream.Embedded(ctx, scfg, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Cache y's head, then have the other process move it.
	if n, err := count(ctx, s, y); err != nil || n != 2 {
		t.Fatalf("y holds %d events (%v), want 2", n, err)
	}
	o = otherProcess(t, s)
	if _, err := o.Append(ctx, y, eventstore.Exact(1), events(1)...); err != nil {
		t.Fatal(err)
	}
	// The store's view of y is stale: the server refuses its first
	// append, and the store finds the other's event.
	if _, err := s.Append(ctx, y, eventstore.Exact(1), events(1)...); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("append to y at its stale revision: %v, want a conflict", err)
	}
	// Pipelined appends to both streams at the revisions the others made.
	var wg sync.WaitGroup
	next := map[eventstore.StreamID]uint64{x: 3, y: 3}
	var mu sync.Mutex
	for i := range 16 {
		st := x
		if i%2 == 1 {
			st = y
		}
		wg.Go(func() {
			for {
				mu.Lock()
				rev := next[st]
				mu.Unlock()
				res, err := s.Append(ctx, st, eventstore.ExpectRevisionAfter(rev), events(1)...)
				if errors.Is(err, eventstore.ErrConflict) {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				next[st] = max(next[st], res.NextRevision+1)
				mu.Unlock()
				return
			}
		})
	}
	wg.Wait()
	// The refusal broke the chain; the next append resynced it.
	if pipelined, resyncs, ok := jetstream.ChainStats(s); !ok || resyncs != 1 || pipelined == 0 {
		t.Errorf("%d resyncs, %d appends pipelined (sequenced: %v), want 1 and some", resyncs, pipelined, ok)
	}
	for _, st := range []eventstore.StreamID{x, y} {
		var revs []uint64
		for rec, err := range s.ReadStream(ctx, st, 0) {
			if err != nil {
				t.Fatal(err)
			}
			revs = append(revs, rec.Revision)
		}
		if len(revs) != 11 {
			t.Errorf("%s holds %d events, want 11: %v", st, len(revs), revs)
		}
		for i, r := range revs {
			if r != uint64(i) {
				t.Fatalf("%s: revisions %v", st, revs)
			}
		}
	}
}

// With no other writer the chain never breaks: appends of one event
// pipelined behind others, batches among them, are all stored as sent,
// with no resync (the server's last message id after a batch is its last
// event's, which the next append expects).
func TestSequencedAlone(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s := newStore(t, jetstream.Config{})
	const writers, perWriter = 16, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			st := eventstore.LedgerStream(fmt.Sprintf("alone-%d", w))
			n := uint64(0)
			for i := range perWriter {
				k := 1
				if i%5 == 4 {
					k = 3
				}
				res, err := s.Append(ctx, st, eventstore.ExpectRevisionAfter(n), events(k)...)
				if err != nil {
					t.Errorf("%s: %v", st, err)
					return
				}
				n += uint64(k)
				if res.NextRevision != n-1 {
					t.Errorf("%s: appended at %d, want %d", st, res.NextRevision, n-1)
					return
				}
			}
		})
	}
	wg.Wait()
	pipelined, resyncs, ok := jetstream.ChainStats(s)
	if !ok || resyncs != 0 || pipelined == 0 {
		t.Fatalf("%d resyncs, %d appends pipelined (sequenced: %v), want none and some", resyncs, pipelined, ok)
	}
	t.Logf("%d appends pipelined", pipelined)
}

// TestSequencedSingleAmongBatches appends one event while 32 writers loop
// appending two events each: batches are sent only when nothing is in
// flight, and the single append, served in its turn, must not wait for
// the batches that come after it.
func TestSequencedSingleAmongBatches(t *testing.T) {
	s := newStore(t, jetstream.Config{})
	if _, _, ok := jetstream.ChainStats(s); !ok {
		t.Fatal("the store does not sequence its appends")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	started := make(chan struct{}, 32)
	for i := range 32 {
		wg.Go(func() {
			stream := eventstore.LedgerStream(fmt.Sprintf("batch%d", i))
			for n := 0; ctx.Err() == nil; n += 2 {
				if _, err := s.Append(ctx, stream, eventstore.Any(), events(2)...); err != nil {
					if ctx.Err() == nil {
						t.Errorf("batch: %v", err)
					}
					return
				}
				if n == 0 {
					started <- struct{}{}
				}
			}
		})
	}
	for range 32 {
		<-started
	}
	single, scancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer scancel()
	if _, err := s.Append(single, eventstore.LedgerStream("single"), eventstore.NoStream(), events(1)...); err != nil {
		t.Fatalf("a single event among looping batches: %v", err)
	}
}

// TestTwoSequencedStores runs two stores with sequenced appends on one
// stream, each breaking the other's chain, with appends of one and two
// events to the same few streams: every append answered stored is in its
// stream at the revision and position it was answered, once, and every
// stream's revisions are dense.
func TestTwoSequencedStores(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	a := newStore(t, jetstream.Config{})
	nc, err := nats.Connect(a.Server().ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, err := jetstream.OpenSequenced(ctx, nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	type stored struct {
		rev uint64
		pos eventstore.Position
	}
	var mu sync.Mutex
	want := make(map[string]stored)
	streams := []eventstore.StreamID{eventstore.LedgerStream("s0"), eventstore.LedgerStream("s1"), eventstore.LedgerStream("s2")}
	var wg sync.WaitGroup
	for w := range 8 {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for i := range 25 {
				evs := events(1 + (w+i)%2)
				stream := streams[(w+i)%len(streams)]
				res, err := s.Append(ctx, stream, eventstore.Any(), evs...)
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				mu.Lock()
				for j, e := range evs {
					k := uint64(len(evs) - 1 - j)
					want[e.ID.String()] = stored{res.NextRevision - k, res.Position - eventstore.Position(k)}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	n := 0
	for _, stream := range streams {
		var rev uint64
		for r, err := range a.ReadStream(ctx, stream, 0) {
			if err != nil {
				t.Fatal(err)
			}
			w, ok := want[r.ID.String()]
			if !ok || w.rev != r.Revision || w.pos != r.Position || r.Revision != rev {
				t.Errorf("%s: event %s at revision %d, position %d; answered %+v (%v), want revision %d", stream, r.ID, r.Revision, r.Position, w, ok, rev)
			}
			rev++
			n++
		}
	}
	if n != len(want) {
		t.Errorf("streams hold %d events, %d answered stored", n, len(want))
	}
	// The stores wrote while the other's chain ran: one of them, at
	// least, read the other's writes (which one the scheduling decides).
	_, ra, _ := jetstream.ChainStats(a)
	_, rb, _ := jetstream.ChainStats(b)
	if ra+rb == 0 {
		t.Error("no store resynced: their appends did not interleave")
	}
}
