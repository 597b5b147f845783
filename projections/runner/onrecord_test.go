package runner_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/runner"
)

// OnRecord sees every stored record once, in order, caught up over and
// followed live, unreadable ones with their error, each with the
// position of the record before it.
func TestOnRecordSeesEveryRecordInOrder(t *testing.T) {
	h := newHostile(t)
	now := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	h.run(t, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 2, At: now})
	h.publish(t, &nats.Msg{Subject: "ledger.acme.SeatsPurchased", Data: []byte("{not json")})
	type seen struct {
		prev, pos  eventstore.Position
		unreadable bool
	}
	var mu sync.Mutex
	var got []seen
	cfg := runner.Config{Store: h.store, Codec: h.codec, Projections: []projections.Projection{newTally()},
		OnRecord: func(prev eventstore.Position, rec eventstore.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, seen{prev, rec.Position, errors.Is(err, eventstore.ErrUnreadable)})
		}}
	r, _ := start(t, cfg)
	h.run(t, "acme", ledger.PurchaseSeats{Count: 1, At: now})
	h.publish(t, &nats.Msg{Subject: "ledger.acme.SeatsPurchased", Data: []byte("{not json either")})
	last := h.run(t, "acme", ledger.PurchaseSeats{Count: 1, At: now}).Position
	r.Observe(last)
	waitFor(t, r, last)

	var want []seen
	prev := eventstore.Position(0)
	for rec, err := range h.store.ReadAll(context.Background(), 0) {
		if err != nil && !errors.Is(err, eventstore.ErrUnreadable) {
			t.Fatal(err)
		}
		want = append(want, seen{prev, rec.Position, err != nil})
		prev = rec.Position
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) || len(want) != 5 {
		t.Fatalf("OnRecord saw %+v, want %+v (5 records)", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("record %d: OnRecord saw %+v, want %+v", i, got[i], want[i])
		}
	}
}
