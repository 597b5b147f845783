package asof_test

import (
	"errors"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/projections/asof"
	"github.com/licenseledger/ledger/projections/internal/fixture"
)

func TestAt(t *testing.T) {
	ctx := t.Context()
	l := fixture.New()
	if err := fixture.Seed(ctx, l); err != nil {
		t.Fatal(err)
	}
	type user struct {
		name   string
		status ledger.Status
	}
	cases := []struct {
		name                      string
		at                        time.Time
		seats, active, deact, del int
		users                     map[string]user
		err                       error
	}{
		{name: "before opening", at: fixture.H(0).Add(-time.Second), err: asof.ErrNotOpened},
		{name: "at opening", at: fixture.H(0), seats: 2, users: map[string]user{}},
		{name: "two users, seats full", at: fixture.H(3), seats: 2, active: 2,
			users: map[string]user{"ann": {fixture.AnnName, "active"}, "bob": {fixture.BobName, "active"}}},
		{name: "bob deactivated keeps his name", at: fixture.H(6), seats: 2, active: 1, deact: 1,
			users: map[string]user{"ann": {fixture.AnnName, "active"}, "bob": {fixture.BobName, "deactivated"}}},
		// Cy existed then, but her key is destroyed now: blank name.
		{name: "cy active before her deletion", at: fixture.H(14).Add(30 * time.Minute), seats: 4, active: 4,
			users: map[string]user{"ann": {fixture.AnnName, "active"}, "bob": {fixture.BobName, "active"},
				"cy": {"", "active"}, "dee": {fixture.DeeName, "active"}}},
		{name: "end", at: fixture.H(100), seats: 4, active: 2, deact: 1, del: 1,
			users: map[string]user{"ann": {fixture.AnnName, "active"}, "bob": {fixture.BobName, "deactivated"},
				"cy": {"", "deleted"}, "dee": {fixture.DeeName, "active"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := asof.At(ctx, l, l.Codec, "acme", tc.at)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			u := s.Usage
			if u.Seats != tc.seats || u.Active != tc.active || u.Deactivated != tc.deact || u.Deleted != tc.del {
				t.Errorf("usage = %+v, want seats %d active %d deactivated %d deleted %d", u, tc.seats, tc.active, tc.deact, tc.del)
			}
			got := map[string]user{}
			for _, u := range s.Users {
				got[u.ID] = user{u.Name, u.Status}
			}
			if len(got) != len(tc.users) {
				t.Errorf("users = %+v, want %+v", got, tc.users)
			}
			for id, w := range tc.users {
				if got[id] != w {
					t.Errorf("user %s = %+v, want %+v", id, got[id], w)
				}
			}
		})
	}
	if _, err := asof.At(ctx, l, l.Codec, "nobody", fixture.H(1)); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("unknown account: err = %v, want ErrStreamNotFound", err)
	}
}

// TestAtWithReduction checks Seats(t) around a reduction's effective time.
func TestAtWithReduction(t *testing.T) {
	ctx := t.Context()
	l := fixture.New()
	opened := time.Date(2025, 5, 3, 0, 0, 0, 0, time.UTC)
	for _, c := range []ledger.Command{
		ledger.OpenAccount{Account: "r", Name: "R", Seats: 5, At: opened},
		ledger.ScheduleSeatReduction{Count: 2, At: opened.AddDate(0, 0, 10)},
	} {
		if _, err := l.Do(ctx, "r", fixture.Operator, c); err != nil {
			t.Fatal(err)
		}
	}
	effective := opened.AddDate(0, 1, 0)
	for _, tc := range []struct {
		at             time.Time
		seats, pending int
	}{
		{opened.AddDate(0, 0, 9), 5, 0},
		{opened.AddDate(0, 0, 10), 5, 2},
		{effective.Add(-time.Nanosecond), 5, 2},
		{effective, 3, 0},
	} {
		s, err := asof.At(ctx, l, l.Codec, "r", tc.at)
		if err != nil {
			t.Fatal(err)
		}
		if s.Usage.Seats != tc.seats || s.Usage.PendingReduction != tc.pending {
			t.Errorf("at %s: seats %d pending %d, want %d %d", tc.at, s.Usage.Seats, s.Usage.PendingReduction, tc.seats, tc.pending)
		}
	}
}
