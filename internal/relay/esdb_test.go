package relay_test

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/esdb"
	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/esdbtest"
	"github.com/licenseledger/ledger/internal/relay"
)

// openESDB opens a store on the in-process EventStoreDB double, as a
// service would with its own connection. The caller closes it.
func openESDB(t testing.TB, ctx context.Context, srv *esdbtest.Server) *esdb.Store {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := esdb.Open(ctx, srv.ConnectionString(), log)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// retryingWriter appends through an esdb store and retries appends that
// meet a dropped connection, which is safe: the events and the expectation
// are the same, so a write that did land is answered with its first result.
// It remembers the position of the last event appended.
type retryingWriter struct {
	store *esdb.Store
	last  atomic.Uint64
}

func (w *retryingWriter) Append(ctx context.Context, stream eventstore.StreamID, expected eventstore.ExpectedRevision, events ...eventstore.Proposed) (eventstore.AppendResult, error) {
	for {
		res, err := w.store.Append(ctx, stream, expected, events...)
		if err == nil {
			w.last.Store(uint64(res.Position))
			return res, nil
		}
		if errors.Is(err, eventstore.ErrConflict) || errors.Is(err, eventstore.ErrClosed) {
			return res, err
		}
		select {
		case <-ctx.Done():
			return res, err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// streamMsgs returns how many messages the target stream holds.
func streamMsgs(t testing.TB, ctx context.Context, js jetstream.JetStream) uint64 {
	t.Helper()
	st, err := js.Stream(ctx, contract.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestESDBRestartsExactlyOnce relays an EventStoreDB store (the esdb
// adapter on the in-process double, whose positions are sparse commit
// positions) while it grows, also while no relay runs. Each round starts a
// new relay, on a new store connection and a new NATS connection. Every
// other round it is killed mid-stream, its context cancelled after a
// random number of publishes; in the others the store's connections are
// cut under its live subscription, which has to subscribe again from the
// last event it delivered, and it is stopped after a random pause. A
// durable consumer on a connection of its own sees every event exactly
// once, in the store's global order, as the message the JetStream store
// would write.
func TestESDBRestartsExactlyOnce(t *testing.T) {
	ctx := testCtx(t)
	esrv, err := esdbtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(esrv.Close)
	nsrv := startNATS(t)
	wstore := openESDB(t, ctx, esrv)
	t.Cleanup(func() { _ = wstore.Close() })
	w := &retryingWriter{store: wstore}
	h := newHistory(w)
	for a := range 12 { // 12 * (2 + 2*4) = 120 events to start with
		if err := h.account(ctx, "acct"+strconv.Itoa(a), 2); err != nil {
			t.Fatal(err)
		}
	}
	_, djs := connect(t, nsrv, "downstream")
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))

	var d *downstream
	kills, midStream, drops := 0, 0, 0
	for round := range 6 {
		// Events are appended while no relay runs, too.
		if err := h.account(ctx, "down"+strconv.Itoa(round), 2+rng.IntN(3)); err != nil {
			t.Fatal(err)
		}
		dropRound := round%2 == 1
		users := 1 + rng.IntN(3)
		maxInFlight := 1 + rng.IntN(8)
		// Kill the relay, in the rounds without a drop, from within the
		// killAt-th acknowledgement: at most maxInFlight more are
		// acknowledged after it, so some of the pending events are left
		// for the next relay.
		killAt := int64(-1)
		if !dropRound {
			pending := int(h.n-streamMsgs(t, ctx, djs)) + 2 + 4*users
			killAt = int64(1 + rng.IntN(max(1, pending-maxInFlight-2)))
		}
		rctx, kill := context.WithCancel(ctx)
		killed := make(chan struct{})
		var published atomic.Int64
		var lastPos atomic.Uint64
		src := openESDB(t, ctx, esrv)
		rnc, rjs := connect(t, nsrv, "relay")
		r := newRelay(t, relay.Config{
			Source: src, JS: rjs, MaxInFlight: maxInFlight, AckTimeout: 2 * time.Second,
			OnPublished: func(p eventstore.Position) {
				if prev := lastPos.Swap(uint64(p)); uint64(p) <= prev {
					t.Errorf("round %d: published position %d after %d", round, p, prev)
				}
				if published.Add(1) == killAt {
					kill()
					close(killed)
				}
			},
		})
		subs := esrv.Subscriptions()
		stop := runRelay(rctx, r)
		if d == nil {
			d = startDownstream(t, ctx, djs, contract.Stream, "svc")
		}

		if dropRound {
			// Cut the connections under the live subscription, at a random
			// moment of its catch-up or while it waits, and append only
			// once it has subscribed again: relaying any of the new
			// events proves the subscription was renewed.
			waitFor(t, ctx, "the relay subscribed", func() bool { return esrv.Subscriptions() > subs })
			time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
			subs = esrv.Subscriptions()
			before := w.last.Load()
			esrv.DropConnections()
			drops++
			waitFor(t, ctx, "the relay subscribed again", func() bool { return esrv.Subscriptions() > subs })
			if err := h.account(ctx, "d"+strconv.Itoa(round), users); err != nil {
				t.Fatal(err)
			}
			waitFor(t, ctx, "an event appended after the drop relayed", func() bool {
				return uint64(r.Status().Relayed) > before
			})
			time.Sleep(time.Duration(rng.IntN(10)) * time.Millisecond)
		} else {
			// More events arrive while the relay runs.
			wrote := make(chan error, 1)
			go func() { wrote <- h.account(ctx, "r"+strconv.Itoa(round), users) }()
			select {
			case <-killed:
				kills++
			case <-ctx.Done():
				t.Fatalf("round %d: %d of %d publishes before the deadline", round, published.Load(), killAt)
			}
			if err := <-wrote; err != nil {
				t.Fatal(err)
			}
		}
		if err := stop(); err != nil {
			t.Fatalf("round %d: Run: %v", round, err)
		}
		kill()
		if st := r.Status(); uint64(st.Relayed) < w.last.Load() {
			midStream++
		}
		rnc.Close()
		if err := src.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// A cancelled relay may still publish a few events before it notices,
	// so a kill can happen to reach the end of the store; not all of them.
	if midStream == 0 {
		t.Errorf("%d relays were killed, none before the end of the store", kills)
	}

	// A last relay runs to the end.
	src := openESDB(t, ctx, esrv)
	t.Cleanup(func() { _ = src.Close() })
	_, rjs := connect(t, nsrv, "relay")
	r := newRelay(t, relay.Config{Source: src, JS: rjs})
	stop := runRelay(ctx, r)
	recs := records(t, wstore)
	waitFor(t, ctx, "every event relayed", func() bool { return d.count() >= len(recs) })
	time.Sleep(50 * time.Millisecond) // let a duplicate show if there is one
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if uint64(len(recs)) != h.n {
		t.Fatalf("the store holds %d events, %d were appended", len(recs), h.n)
	}
	sparse := false
	for i := 1; i < len(recs); i++ {
		if recs[i].Position <= recs[i-1].Position {
			t.Fatalf("store positions out of order: %d then %d", recs[i-1].Position, recs[i].Position)
		}
		sparse = sparse || recs[i].Position > recs[i-1].Position+1
	}
	if !sparse || recs[0].Position <= 1 {
		t.Fatalf("positions %d..%d are dense: the test does not exercise commit positions", recs[0].Position, recs[len(recs)-1].Position)
	}

	msgs, dups := d.snapshot()
	if len(dups) > 0 {
		t.Fatalf("duplicates delivered: %v", dups)
	}
	if len(msgs) != len(recs) {
		t.Fatalf("consumer got %d events, store holds %d", len(msgs), len(recs))
	}
	for i, m := range msgs {
		if got := m.Headers().Get(jetstream.MsgIDHeader); got != recs[i].ID.String() {
			t.Fatalf("message %d is event %s, want %s (position %d)", i, got, recs[i].ID, recs[i].Position)
		}
		checkMessage(t, recs[i], m.Subject(), m.Headers(), m.Data())
		if md, err := m.Metadata(); err != nil || md.Sequence.Stream != uint64(i+1) {
			t.Errorf("message %d at stream sequence %v, %v", i, md, err)
		}
	}
	t.Logf("%d events, %d relays killed mid-stream, %d connection drops, %d subscriptions to $all",
		len(recs), midStream, drops, esrv.Subscriptions())
}
