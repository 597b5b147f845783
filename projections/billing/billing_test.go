package billing_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/billing"
	"github.com/licenseledger/ledger/projections/internal/fixture"
)

func day(m time.Month, d, h int) time.Time { return time.Date(2025, m, d, h, 0, 0, 0, time.UTC) }

// threeCycles builds a history over three cycles of an account opened on
// 10 January 2025 at midnight: cycles start on the 10th (31, 28 and 31
// days).
func threeCycles(t *testing.T) *billing.Projection {
	t.Helper()
	l := fixture.New()
	add := func(id string, role ledger.Role, at time.Time) ledger.Command {
		return ledger.AddUser{UserID: id, Name: "N " + id, Email: id + "@x.test", Role: role, At: at}
	}
	cmds := []ledger.Command{
		ledger.OpenAccount{Account: "acc", Name: "Acc", Seats: 3, At: day(1, 10, 0)},
		add("a", ledger.RoleAdmin, day(1, 10, 0)),
		add("b", ledger.RoleMember, day(1, 20, 0)),
		ledger.PurchaseSeats{Count: 2, At: day(1, 26, 0)}, // 15 days before 10 Feb
		add("c", ledger.RoleMember, day(1, 30, 12)),
		add("d", ledger.RoleMember, day(1, 30, 12)),
		ledger.DeactivateUser{UserID: "b", At: day(2, 1, 0)},
		ledger.ScheduleSeatReduction{Count: 1, At: day(2, 15, 0)}, // effective 10 Mar
		ledger.ActivateUser{UserID: "b", At: day(2, 20, 0)},
		ledger.DeleteUser{UserID: "d", Confirm: "d", ReassignTo: "a", At: day(3, 1, 0)},
		ledger.PurchaseSeats{Count: 1, At: day(3, 20, 0)}, // 21 days before 10 Apr
		add("e", ledger.RoleMember, day(3, 25, 0)),
		ledger.RecordActivity{ActivityID: "x", UserID: "e", Kind: "note", Ref: "r", At: day(3, 26, 0)},
	}
	for _, c := range cmds {
		if _, err := l.Do(t.Context(), "acc", fixture.Operator, c); err != nil {
			t.Fatal(err)
		}
	}
	p := billing.New()
	for _, d := range l.Live() {
		if err := p.Apply(d); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestCycles(t *testing.T) {
	p := threeCycles(t)
	now := day(4, 1, 0) // during the third cycle
	type purchase struct {
		count              int
		at                 time.Time
		daysLeft, seatDays float64
		fraction           float64
	}
	cases := []struct {
		name, period         string
		start, end, until    time.Time
		inProgress           bool
		billed               int
		purchases            []purchase
		reduced, scheduled   int
		peak                 int
		userDays             float64
		seatCycles, seatDays float64
		seatsAtEnd           int
	}{
		{
			name: "first cycle: opening seats, one purchase", period: "2025-01",
			start: day(1, 10, 0), end: day(2, 10, 0), until: day(2, 10, 0),
			billed:    3,
			purchases: []purchase{{2, day(1, 26, 0), 15, 30, 15.0 / 31}},
			peak:      4,
			// a 31, b 20 Jan-1 Feb 12, c and d 30 Jan noon-10 Feb 10.5 each.
			userDays:   31 + 12 + 10.5 + 10.5,
			seatCycles: 3 + 2*15.0/31, seatDays: 3*31 + 30, seatsAtEnd: 5,
		},
		{
			name: "second cycle: reduction scheduled, reactivation, delete", period: "2025-02",
			start: day(2, 10, 0), end: day(3, 10, 0), until: day(3, 10, 0),
			billed: 5, scheduled: 1,
			// a, c, d at the start; b back on 20 Feb makes 4.
			peak: 4,
			// a 28, b 20 Feb-10 Mar 18, c 28, d 10 Feb-1 Mar 19.
			userDays:   28 + 18 + 28 + 19,
			seatCycles: 5, seatDays: 5 * 28, seatsAtEnd: 5,
		},
		{
			name: "third cycle in progress: reduction effective, purchase", period: "2025-03",
			start: day(3, 10, 0), end: day(4, 10, 0), until: now, inProgress: true,
			billed: 4, reduced: 1,
			purchases: []purchase{{1, day(3, 20, 0), 21, 21, 21.0 / 31}},
			peak:      4,
			// a, b, c 10 Mar-1 Apr 22 each, e 25 Mar-1 Apr 7.
			userDays:   22*3 + 7,
			seatCycles: 4 + 21.0/31, seatDays: 4*31 + 21, seatsAtEnd: 5,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := p.Cycle("acc", tc.period, now)
			if err != nil {
				t.Fatal(err)
			}
			if !c.Start.Equal(tc.start) || !c.End.Equal(tc.end) || !c.Until.Equal(tc.until) || c.InProgress != tc.inProgress {
				t.Errorf("cycle %s..%s until %s in progress %v, want %s..%s until %s %v",
					c.Start, c.End, c.Until, c.InProgress, tc.start, tc.end, tc.until, tc.inProgress)
			}
			if c.SeatsBilled != tc.billed {
				t.Errorf("seats billed = %d, want %d", c.SeatsBilled, tc.billed)
			}
			if len(c.Purchases) != len(tc.purchases) {
				t.Fatalf("purchases = %+v, want %+v", c.Purchases, tc.purchases)
			}
			for i, w := range tc.purchases {
				g := c.Purchases[i]
				if g.Count != w.count || !g.At.Equal(w.at) || !near(g.DaysRemaining, w.daysLeft) ||
					!near(g.SeatDays, w.seatDays) || !near(g.Fraction, w.fraction) || !near(g.ProratedSeats, float64(w.count)*w.fraction) {
					t.Errorf("purchase %d = %+v, want %+v", i, g, w)
				}
			}
			if c.Totals.ReducedSeats != tc.reduced || len(c.ScheduledReductions) != tc.scheduled {
				t.Errorf("reduced %d, scheduled %+v; want %d, %d", c.Totals.ReducedSeats, c.ScheduledReductions, tc.reduced, tc.scheduled)
			}
			for _, r := range c.Reductions {
				if !r.EffectiveAt.Equal(c.Start) {
					t.Errorf("reduction %+v listed but not effective at the start", r)
				}
			}
			if c.PeakActive != tc.peak {
				t.Errorf("peak active = %d, want %d", c.PeakActive, tc.peak)
			}
			if !near(c.ActiveUserDays, tc.userDays) {
				t.Errorf("active user-days = %v, want %v", c.ActiveUserDays, tc.userDays)
			}
			if !near(c.Totals.SeatCycles, tc.seatCycles) || !near(c.Totals.SeatDays, tc.seatDays) || c.Totals.SeatsAtEnd != tc.seatsAtEnd {
				t.Errorf("totals = %+v, want seat-cycles %v, seat-days %v, seats at end %d", c.Totals, tc.seatCycles, tc.seatDays, tc.seatsAtEnd)
			}
		})
	}
}

func TestCycleErrors(t *testing.T) {
	p := threeCycles(t)
	now := day(4, 1, 0)
	cases := []struct {
		name, account, period string
		err                   error
	}{
		{"malformed period", "acc", "2025-3", billing.ErrBadPeriod},
		{"not a month", "acc", "2025-13", billing.ErrBadPeriod},
		{"before opening", "acc", "2024-12", billing.ErrNotStarted},
		{"after now", "acc", "2025-04", billing.ErrNotStarted},
		{"unknown account", "nope", "2025-01", projections.ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := p.Cycle(tc.account, tc.period, now); !errors.Is(err, tc.err) {
				t.Errorf("err = %v, want %v", err, tc.err)
			}
		})
	}
	c, err := p.Current("acc", now)
	if err != nil || c.Period != "2025-03" || !c.InProgress {
		t.Errorf("Current = %+v, %v; want the March cycle in progress", c, err)
	}
}
