package seats_test

import (
	"errors"
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
