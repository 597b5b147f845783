package seats_test

import (
	"errors"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/internal/fixture"
	"github.com/licenseledger/ledger/projections/seats"
)

func TestUsage(t *testing.T) {
	ctx := t.Context()
	l := fixture.New()
	if err := fixture.Seed(ctx, l); err != nil {
		t.Fatal(err)
	}
	// Then, on 20 January, support schedules a reduction of 2 seats:
	// effective at the next cycle, 10 February.
	if _, err := l.Do(ctx, "acme", fixture.Operator, ledger.ScheduleSeatReduction{Count: 2, At: fixture.H(240)}); err != nil {
		t.Fatal(err)
	}
	effective := time.Date(2025, 2, 10, 0, 0, 0, 0, time.UTC)
	p := seats.New()
	for _, d := range l.Live() {
		if err := p.Apply(d); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name           string
		now            time.Time
		seats, pending int
		pendingAt      time.Time
	}{
		{"before the reduction takes effect", fixture.H(241), 4, 2, effective},
		{"an instant before", effective.Add(-time.Nanosecond), 4, 2, effective},
		{"once effective", effective, 2, 0, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := p.Usage("acme", tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if u.Seats != tc.seats || u.PendingReduction != tc.pending || !u.PendingReductionAt.Equal(tc.pendingAt) {
				t.Errorf("usage = %+v, want seats %d pending %d at %s", u, tc.seats, tc.pending, tc.pendingAt)
			}
			// Whatever the instant: 4 bought, 2 active, none available after
			// the reduction, the peak of 4 kept, the last ledger revision.
			if u.Purchased != 4 || u.Active != 2 || u.Deactivated != 1 || u.Deleted != 1 ||
				u.Available != 0 || u.PeakActive != 4 || u.Revision != 11 || int(u.Position) != len(l.Records()) {
				t.Errorf("usage = %+v", u)
			}
		})
	}

	statuses := []struct {
		status ledger.Status
		ids    []string
	}{
		{"", []string{"ann", "bob", "cy", "dee"}},
		{ledger.StatusActive, []string{"ann", "dee"}},
		{ledger.StatusDeactivated, []string{"bob"}},
		{ledger.StatusDeleted, []string{"cy"}},
	}
	for _, tc := range statuses {
		users, err := p.Users("acme", tc.status)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, u := range users {
			ids = append(ids, u.ID)
			if u.Status == ledger.StatusDeleted && (u.Name != "" || u.Email != "") {
				t.Errorf("deleted user %+v keeps personal data", u)
			}
			if u.Status != ledger.StatusDeleted && (u.Name == "" || u.Email == "") {
				t.Errorf("user %+v lost personal data", u)
			}
		}
		if len(ids) != len(tc.ids) {
			t.Errorf("status %q: %v, want %v", tc.status, ids, tc.ids)
			continue
		}
		for i := range ids {
			if ids[i] != tc.ids[i] {
				t.Errorf("status %q: %v, want %v", tc.status, ids, tc.ids)
			}
		}
	}

	cy, err := p.User("acme", "cy")
	if err != nil || cy.ReassignedTo != "ann" || !cy.ChangedAt.Equal(fixture.H(15)) || !cy.AddedAt.Equal(fixture.H(7)) {
		t.Errorf("cy = %+v, %v", cy, err)
	}
	for _, err := range []error{
		func() error { _, err := p.User("acme", "zed"); return err }(),
		func() error { _, err := p.Usage("nope", fixture.H(1)); return err }(),
		func() error { _, err := p.Users("nope", ""); return err }(),
	} {
		if !errors.Is(err, projections.ErrNotFound) {
			t.Errorf("err = %v, want ErrNotFound", err)
		}
	}
	if got := p.Accounts(); len(got) != 1 || got[0] != "acme" {
		t.Errorf("Accounts = %v", got)
	}
}
