package billing_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections/billing"
)

// BenchmarkCyclesPage reads a page of 1000 cycles of a period, of 10,000
// accounts with 20 users each (one deactivated and activated again, one
// purchase), beside the same number of one account's cycle read one by
// one (Cycle), the read of GET /v1/accounts/{account}/billing.
func BenchmarkCyclesPage(b *testing.B) {
	const accounts, users = 10_000, 20
	p := billing.New()
	opened := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	var pos eventstore.Position
	batch := make([]codec.Decoded, 0, 64)
	for i := range accounts {
		id := fmt.Sprintf("acct-%05d", i)
		stream := eventstore.LedgerStream(id)
		ev := func(e ledger.Event) {
			pos++
			batch = append(batch, codec.Decoded{Event: e, Record: eventstore.Record{Stream: stream, Position: pos}})
		}
		ev(ledger.AccountOpened{Account: id, Name: id, Seats: users + 5, At: opened})
		for u := range users {
			ev(ledger.UserAdded{UserID: fmt.Sprintf("u%02d", u), Role: ledger.RoleMember, At: opened.Add(time.Duration(u) * time.Hour)})
		}
		ev(ledger.UserDeactivated{UserID: "u01", At: opened.Add(10 * 24 * time.Hour)})
		ev(ledger.UserActivated{UserID: "u01", At: opened.Add(12 * 24 * time.Hour)})
		ev(ledger.SeatsPurchased{Count: 2, At: opened.Add(15 * 24 * time.Hour)})
		if err := p.ApplyBatch(batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	b.Run("page=1000", func(b *testing.B) {
		for b.Loop() {
			page, _, more, err := p.CyclesPage("2026-01", "acct-04000", 1000, now)
			if err != nil || len(page) != 1000 || !more {
				b.Fatal(len(page), more, err)
			}
		}
	})
	b.Run("one-by-one=1000", func(b *testing.B) {
		for b.Loop() {
			for i := 4001; i <= 5000; i++ {
				if _, err := p.Cycle(fmt.Sprintf("acct-%05d", i), "2026-01", now); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}
