package relay_test

import (
	"context"
	"iter"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/relay"
)

// noSubscribe is a store a fed relay must not follow: it counts calls to
// Subscribe.
type noSubscribe struct {
	eventstore.Store
	subscribes atomic.Int64
}

func (s *noSubscribe) Subscribe(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	s.subscribes.Add(1)
	return s.Store.Subscribe(ctx, after)
}

// TestFedRelayEveryEventOnceInOrder feeds relays, as the read models'
// runner does, the records another reader of the store reads from a
// position in the middle of the history (after its snapshot), through a
// feed too small to hold them all, while the store grows and publishes
// fail: every event reaches the stream once, in order, and no relay
// follows the store itself.
func TestFedRelayEveryEventOnceInOrder(t *testing.T) {
	ctx := testCtx(t)
	srv := startNATS(t)
	mem, h := filledStore(t, 20, 2) // 200 events before the reader starts
	store := &noSubscribe{Store: mem}
	_, djs := connect(t, srv, "downstream")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 15))

	feed := eventstore.NewFeed(4)
	// The reader starts after a snapshot in the middle of the history and
	// offers every record it reads, with the one before it.
	recs := records(t, mem)
	from := recs[len(recs)/2].Position
	rctx, stopReader := context.WithCancel(ctx)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		prev := from
		for rec, err := range mem.Subscribe(rctx, from) {
			if rctx.Err() != nil {
				return
			}
			feed.Offer(prev, rec, err)
			prev = rec.Position
		}
	}()
	defer func() { stopReader(); <-readerDone }()

	var d *downstream
	for round := range 4 {
		_, rjs := connect(t, srv, "relay")
		js := jetstream.JetStream(rjs)
		if round%2 == 1 {
			js = &flakyJS{JetStream: rjs, failAfter: int64(rng.IntN(40)), lostAck: round == 3}
		}
		r := newRelay(t, relay.Config{Source: store, JS: js, Feed: feed, MaxInFlight: 1 + rng.IntN(32), AckTimeout: 2 * time.Second})
		stop := runRelay(ctx, r)
		if d == nil {
			d = startDownstream(t, ctx, djs, contract.Stream, "svc")
		}
		// The store grows while the relay runs: it publishes what the
		// feed hands it, and reads what the feed had no room for.
		for a := range 3 {
			if err := h.account(ctx, "fed"+strconv.Itoa(round)+"-"+strconv.Itoa(a), 1+rng.IntN(3)); err != nil {
				t.Fatal(err)
			}
		}
		all := records(t, mem)
		last := all[len(all)-1].Position
		waitFor(t, ctx, "every event relayed", func() bool { return r.Status().Relayed == last })
		if err := stop(); err != nil {
			t.Fatalf("round %d: Run: %v", round, err)
		}
	}
	if n := store.subscribes.Load(); n != 0 {
		t.Errorf("a fed relay subscribed to the store %d times", n)
	}
	all := records(t, mem)
	waitFor(t, ctx, "every event delivered", func() bool { return d.count() >= len(all) })
	time.Sleep(50 * time.Millisecond) // let a duplicate show if there is one
	msgs, dups := d.snapshot()
	if len(dups) > 0 || len(msgs) != len(all) {
		t.Fatalf("consumer got %d messages (duplicates %v), store holds %d events", len(msgs), dups, len(all))
	}
	for i, m := range msgs {
		checkMessage(t, all[i], m.Subject(), m.Headers(), m.Data())
	}
}
