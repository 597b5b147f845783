package seats_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/internal/fixture"
	"github.com/licenseledger/ledger/projections/seats"
)

// UsersPage walks the directory in pages of every size, with and without
// a status, and yields each user of Users exactly once, in order.
func TestUsersPage(t *testing.T) {
	ctx := t.Context()
	l := fixture.New()
	if err := fixture.Seed(ctx, l); err != nil {
		t.Fatal(err)
	}
	p := seats.New()
	for _, d := range l.Live() {
		if err := p.Apply(d); err != nil {
			t.Fatal(err)
		}
	}
	for _, status := range []ledger.Status{"", ledger.StatusActive, ledger.StatusDeactivated, ledger.StatusDeleted} {
		want, err := p.Users("acme", status)
		if err != nil {
			t.Fatal(err)
		}
		for limit := 1; limit <= 5; limit++ {
			var got []seats.User
			after, more := 0, true
			for pages := 0; more; pages++ {
				if pages > 10 {
					t.Fatalf("status %q limit %d: no end", status, limit)
				}
				var page []seats.User
				page, after, more, err = p.UsersPage("acme", status, after, limit)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > limit || (more && len(page) != limit) {
					t.Fatalf("status %q limit %d: page of %d, more %v", status, limit, len(page), more)
				}
				got = append(got, page...)
			}
			if !slices.Equal(got, want) {
				t.Errorf("status %q limit %d: %v, want %v", status, limit, got, want)
			}
		}
	}
	if _, _, _, err := p.UsersPage("nope", "", 0, 10); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("unknown account: %v, want ErrNotFound", err)
	}
}

// AccountsPage walks the accounts by id while others are opened between
// its pages: each account opened before the walk started is seen exactly
// once, the ids only grow, and the walk ends. Accounts opened in a batch
// (a replay) and one by one (live) are ordered alike, and a restored
// snapshot pages as the model it was taken from.
func TestAccountsPage(t *testing.T) {
	ctx := t.Context()
	l := fixture.New()
	p := seats.New()
	applied := 0
	open := func(id string, seatsN int) {
		t.Helper()
		if _, err := l.Do(ctx, id, fixture.Operator, ledger.OpenAccount{Account: id, Name: "Name " + id, Seats: seatsN, At: fixture.H(0)}); err != nil {
			t.Fatal(err)
		}
	}
	// A replay: a batch opening accounts in no particular order.
	var initial []string
	for i := range 40 {
		id := fmt.Sprintf("a%02d", (i*17)%40)
		open(id, i+1)
		initial = append(initial, id)
	}
	if err := p.ApplyBatch(l.Live()); err != nil {
		t.Fatal(err)
	}
	applied = len(l.Live())
	slices.Sort(initial)
	now := fixture.H(1)

	var seen []string
	after, more := "", true
	for pages := 0; more; pages++ {
		if pages > 100 {
			t.Fatal("no end")
		}
		var page []seats.Summary
		page, more = p.AccountsPage(after, 3, now)
		if len(page) > 3 || (more && len(page) != 3) {
			t.Fatalf("page of %d, more %v", len(page), more)
		}
		for _, a := range page {
			if a.ID <= after {
				t.Fatalf("%q after %q: the walk went back", a.ID, after)
			}
			if a.Name != "Name "+a.ID || a.Seats < 1 || a.OpenedAt != fixture.H(0) || a.Active != 0 {
				t.Fatalf("summary %+v", a)
			}
			seen = append(seen, a.ID)
			after = a.ID
		}
		// Accounts opened live while the walk goes on, before and after
		// the cursor.
		for _, id := range []string{fmt.Sprintf("a%02d-x", pages), fmt.Sprintf("0%02d", pages), fmt.Sprintf("z%02d", pages)} {
			open(id, 1)
		}
		for _, d := range l.Live()[applied:] {
			if err := p.Apply(d); err != nil {
				t.Fatal(err)
			}
		}
		applied = len(l.Live())
	}
	for _, id := range initial {
		if n := count(seen, id); n != 1 {
			t.Errorf("account %s seen %d times in the walk", id, n)
		}
	}
	all := p.Accounts()
	if !slices.IsSorted(all) || len(all) != len(l.Live()) {
		t.Fatalf("Accounts: %d ids, sorted %v; %d opened", len(all), slices.IsSorted(all), len(l.Live()))
	}
	page, more := p.AccountsPage("", len(all)+1, now)
	if more || len(page) != len(all) {
		t.Fatalf("one page of all: %d, more %v", len(page), more)
	}
	b, err := p.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := seats.New()
	if err := r.Restore(b); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.AccountsPage("", len(all)+1, now); !slices.Equal(got, page) {
		t.Fatalf("restored pages differ:\n%v\n%v", got, page)
	}
	if got, more := p.AccountsPage(all[len(all)-1], 10, now); len(got) != 0 || more {
		t.Fatalf("after the last: %v, more %v", got, more)
	}
}

func count(ids []string, id string) int {
	n := 0
	for _, v := range ids {
		if v == id {
			n++
		}
	}
	return n
}

// BenchmarkAccountsPage reads a page of 100 accounts from the middle of
// many: the cost is the page's, not the number of accounts. The replay
// sub-benchmark folds every opening in batches of 1,000, as the runner
// does.
func BenchmarkAccountsPage(b *testing.B) {
	const n = 50_000
	l := fixture.New()
	l.Grow(n)
	for i := range n {
		id := fmt.Sprintf("acct-%06d", (i*7919)%n)
		if _, err := l.Do(b.Context(), id, fixture.Operator, ledger.OpenAccount{Account: id, Name: id, Seats: 1, At: fixture.H(0)}); err != nil {
			b.Fatal(err)
		}
	}
	ds := l.Live()
	replay := func() *seats.Projection {
		p := seats.New()
		for i := 0; i < len(ds); i += 1000 {
			if err := p.ApplyBatch(ds[i:min(i+1000, len(ds))]); err != nil {
				b.Fatal(err)
			}
		}
		return p
	}
	b.Run("replay", func(b *testing.B) {
		for b.Loop() {
			replay()
		}
	})
	p := replay()
	b.Run("page", func(b *testing.B) {
		for b.Loop() {
			if page, more := p.AccountsPage("acct-025000", 100, fixture.H(1)); len(page) != 100 || !more {
				b.Fatalf("page of %d, more %v", len(page), more)
			}
		}
	})
}
