package accounts_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
)

// An event in the account's chain that this version cannot decode (as a
// newer version would write it) makes the account refuse commands rather
// than decide without it; an event at the next revision that does not
// chain to the last one is never folded, and the account goes on.
func TestHistoryThatDoesNotVerify(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc := e.service(t)
	req := accounts.Request{Actor: codec.Actor{ID: "op", Role: "operator"}}
	if _, err := svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 2, At: t0}, req); err != nil {
		t.Fatal(err)
	}
	stream := eventstore.LedgerStream("acme")
	var head codec.Hash
	n := uint64(0)
	for rec, err := range e.store.ReadStream(ctx, stream, 0) {
		if err != nil {
			t.Fatal(err)
		}
		head, n = codec.RecordHash(head, rec), n+1
	}
	meta := func(prev codec.Hash) []byte {
		return []byte(`{"time":"2026-03-10T09:00:00Z","schemaversion":1,"account":"acme","actorid":"op","actorrole":"operator","correlationid":"","causationid":"","prevhash":"` + prev.String() + `"}`)
	}
	// Off the chain: 500 seats at the next revision, naming a zero
	// previous hash.
	forged := eventstore.Proposed{ID: uuid.New(), Type: ledger.TypeSeatsPurchased, Data: []byte(`{"count":500,"at":"2026-03-10T09:00:00Z"}`), Metadata: meta(codec.Hash{})}
	if _, err := e.store.Append(ctx, stream, eventstore.ExpectRevisionAfter(n), forged); err != nil {
		t.Fatal(err)
	}
	fresh := e.service(t)
	res, err := fresh.Execute(ctx, "acme", ledger.PurchaseSeats{Count: 1, At: t0}, req)
	if err != nil {
		t.Fatalf("a command after a record off the chain: %v", err)
	}
	if res.State.Seats != 3 || res.Revision() != 2 {
		t.Fatalf("decided on %d seats at revision %d, want 3 at 2 (the record takes revision 1, its seats do not count)", res.State.Seats, res.Revision())
	}
	if ev := res.Events[0]; ev.Meta.PrevHash != head {
		t.Fatalf("the new event names %s as previous link, want the last verified event's %s", ev.Meta.PrevHash, head)
	}

	// In the chain but of a type this version does not know.
	head = codec.NextHash(head, eventstore.Proposed{ID: res.Events[0].Record.ID, Type: res.Events[0].Record.Type, Data: res.Events[0].Record.Data, Metadata: res.Events[0].Record.Metadata})
	newer := eventstore.Proposed{ID: uuid.New(), Type: "UserTitleChanged", Data: []byte(`{}`), Metadata: meta(head)}
	if _, err := e.store.Append(ctx, stream, eventstore.Exact(2), newer); err != nil {
		t.Fatal(err)
	}
	for _, s := range []*accounts.Service{fresh, e.service(t)} {
		_, err = s.Execute(ctx, "acme", ledger.PurchaseSeats{Count: 1, At: t0}, req)
		if !errors.Is(err, accounts.ErrUnreadableHistory) {
			t.Fatalf("a command after an event this version cannot decode: %v, want ErrUnreadableHistory", err)
		}
	}
}
