package runner_test

import (
	"context"
	crand "crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/runner"
)

// Catching up decodes records ahead of the fold, yet an event with a
// user's sealed data that follows the user's deletion is decoded only
// after the deletion was folded and the hooks forgot the user's key: the
// read models never see it in clear, whether it follows the deletion at
// once (same batch) or hundreds of events later (a later batch, decoded
// while the deletion's hook is still running).
func TestCatchUpDecodesAfterTheDeletionIsFolded(t *testing.T) {
	for _, gap := range []int{0, 300} {
		ctx := context.Background()
		store, keys, appendEvent := acmeHistory(t)
		at := acmeAt
		appendEvent(ledger.AccountOpened{Account: "acme", Name: "Acme", Seats: 5, At: at})
		appendEvent(ledger.UserAdded{UserID: "bob", Name: "Bob Byte", Email: "bob@acme.test", Role: ledger.RoleMember, At: at})
		appendEvent(ledger.UserDeleted{UserID: "bob", At: at})
		for range gap {
			appendEvent(ledger.SeatsPurchased{Count: 1, At: at})
		}
		// Stored after the deletion (a record the service would never
		// decide): bob's data, sealed under his key, which the store
		// still holds.
		appendEvent(ledger.UserDeactivated{UserID: "bob", Reason: "Bob Byte's secret", At: at})

		reader := codec.New(pii.NewKeyring(keys, crand.Reader))
		var mu sync.Mutex
		var clear []string
		cfg := runner.Config{Store: store, Codec: reader, Projections: []projections.Projection{newTally()},
			OnEvent: func(d codec.Decoded) {
				switch e := d.Event.(type) {
				case ledger.UserDeleted:
					// As the service does: forget the key, slowly enough
					// for the decoding to run ahead.
					time.Sleep(100 * time.Millisecond)
					reader.Keys().MarkDestroyed(pii.KeyID("acme", e.UserID))
				case ledger.UserDeactivated:
					if e.Reason != "" {
						mu.Lock()
						clear = append(clear, e.Reason)
						mu.Unlock()
					}
				}
			}}
		r, _ := start(t, cfg)
		var last eventstore.Position
		for rec, err := range store.ReadAll(ctx, 0) {
			if err != nil {
				t.Fatal(err)
			}
			last = rec.Position
		}
		waitFor(t, r, last)
		mu.Lock()
		if len(clear) > 0 {
			t.Fatalf("%d events apart: the read models saw %q of a user deleted before", gap, clear)
		}
		mu.Unlock()
	}
}

// Following the store live folds the records that arrived together as one
// batch, yet, as when catching up, an event with a user's sealed data
// that follows the user's deletion in the same batch is decoded only after
// the deletion was folded and the hooks forgot the user's key. The fold of
// the first live event is slowed so that the others queue up behind it
// and arrive together.
func TestFollowDecodesAfterTheDeletionIsFolded(t *testing.T) {
	store, keys, appendEvent := acmeHistory(t)
	at := acmeAt

	reader := codec.New(pii.NewKeyring(keys, crand.Reader))
	var mu sync.Mutex
	var clear []string
	tl := newTally()
	cfg := runner.Config{Store: store, Codec: reader, Projections: []projections.Projection{tl},
		OnEvent: func(d codec.Decoded) {
			switch e := d.Event.(type) {
			case ledger.AccountOpened:
				time.Sleep(200 * time.Millisecond) // the others queue up
			case ledger.UserDeleted:
				reader.Keys().MarkDestroyed(pii.KeyID("acme", e.UserID))
			case ledger.UserDeactivated:
				if e.Reason != "" {
					mu.Lock()
					clear = append(clear, e.Reason)
					mu.Unlock()
				}
			}
		}}
	r, stop := start(t, cfg)
	defer stop()
	for !r.Ready() {
		time.Sleep(time.Millisecond)
	}
	appendEvent(ledger.AccountOpened{Account: "acme", Name: "Acme", Seats: 5, At: at})
	appendEvent(ledger.UserAdded{UserID: "bob", Name: "Bob Byte", Email: "bob@acme.test", Role: ledger.RoleMember, At: at})
	appendEvent(ledger.UserDeleted{UserID: "bob", At: at})
	// Stored after the deletion (a record the service would never decide):
	// bob's data, sealed under his key, which the store still holds.
	last := appendEvent(ledger.UserDeactivated{UserID: "bob", Reason: "Bob Byte's secret", At: at})
	waitFor(t, r, last)
	mu.Lock()
	defer mu.Unlock()
	if len(clear) > 0 {
		t.Fatalf("following live, the read models saw %q of a user deleted before", clear)
	}
	if types, _ := tl.snapshot(); types["UserDeactivated"] != 1 || types["UserDeleted"] != 1 {
		t.Fatalf("applied %v", types)
	}
}

// acmeAt is when the events of acmeHistory happen.
var acmeAt = time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)

// acmeHistory returns a memory store, its data keys, and a function that
// appends an event to account acme's ledger stream, chained to the one
// before, creating the data key of a user it adds, and returns its
// position.
func acmeHistory(t *testing.T) (*memory.Store, *pii.MemoryKeys, func(ledger.Event) eventstore.Position) {
	ctx := context.Background()
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	keys := pii.NewMemoryKeys()
	writer := codec.New(pii.NewKeyring(keys, crand.Reader))
	var head codec.Hash
	var n uint64
	stream := eventstore.LedgerStream("acme")
	return store, keys, func(e ledger.Event) eventstore.Position {
		t.Helper()
		if added, ok := e.(ledger.UserAdded); ok {
			if err := writer.Keys().Create(ctx, pii.KeyID("acme", added.UserID)); err != nil {
				t.Fatal(err)
			}
		}
		p, err := writer.Encode(ctx, e, codec.Metadata{EventID: uuid.New(), Time: acmeAt, Account: "acme",
			Actor: codec.Actor{ID: "op", Role: "admin"}, PrevHash: head})
		if err != nil {
			t.Fatal(err)
		}
		res, err := store.Append(ctx, stream, eventstore.ExpectRevisionAfter(n), p)
		if err != nil {
			t.Fatal(err)
		}
		head, n = codec.NextHash(head, p), n+1
		return res.Position
	}
}
