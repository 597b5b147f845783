// Package billing is the billing read model: for each monthly billing
// cycle of an account, the seats billed at its start, the seats bought
// during it with their proration, the reductions that took effect at its
// start, the peak of active users and the active user-days.
//
// # Definitions
//
// Cycles are those of [ledger.CycleStart]: monthly from the opening day,
// at midnight UTC; a period "YYYY-MM" names the cycle that starts in that
// month. Durations are measured exactly and expressed in days of 24 hours
// as float64 (cycles are in UTC, so every day has 24 hours).
//
//   - Seats billed is Seats(start): the seats at opening plus the purchases
//     made at or before the start, minus the reductions effective at or
//     before it. For the first cycle, which starts at midnight of the
//     opening day, it is Seats at the opening instant.
//   - A purchase during the cycle (strictly after the instant Seats billed
//     is taken at, before the end) is prorated by the time left:
//     DaysRemaining = (end - purchase time) in days, SeatDays = Count x
//     DaysRemaining, Fraction = DaysRemaining / CycleDays, and ProratedSeats
//     = Count x Fraction, the purchase in seat-cycles.
//   - Reductions apply from the start of the cycle after the one they are
//     scheduled in; a cycle lists those effective at its start (already
//     deducted from Seats billed) and those scheduled during it (effective
//     at its end).
//   - Peak active is the most users active at once at any instant of
//     [start, until), where until is the end, or now for the cycle in
//     progress.
//   - Active user-days is the sum over users of the time each was active
//     within [start, until), in days: a user active for the whole of a
//     31-day cycle counts 31, one activated at noon of the cycle's last day
//     counts 0.5.
package billing

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/internal/snap"
)

// ErrBadPeriod is returned for a period that is not of the form YYYY-MM.
var ErrBadPeriod = errors.New("billing: period must be YYYY-MM")

// ErrNotStarted is returned for a cycle that starts after now, or before
// the account was opened.
var ErrNotStarted = errors.New("billing: no such cycle yet")

// Day is the unit billing durations are expressed in.
const Day = 24 * time.Hour

// Cycle is the billing summary of one cycle of an account.
type Cycle struct {
	Account string `json:"account"`
	// Period is the month the cycle starts in, YYYY-MM.
	Period string `json:"period"`
	// Index is the cycle's number, 0 for the cycle of the opening day.
	Index      int       `json:"index"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	CycleDays  float64   `json:"cycle_days"`
	InProgress bool      `json:"in_progress"`
	// Until is the end, or now for a cycle in progress: usage is counted
	// up to it.
	Until time.Time `json:"until"`

	SeatsBilled         int         `json:"seats_billed"`
	Purchases           []Purchase  `json:"purchases"`
	Reductions          []Reduction `json:"reductions"`
	ScheduledReductions []Reduction `json:"scheduled_reductions"`
	PeakActive          int         `json:"peak_active"`
	ActiveUserDays      float64     `json:"active_user_days"`

	Totals Totals `json:"totals"`
}

// Purchase is seats bought during a cycle, prorated.
type Purchase struct {
	Count         int       `json:"count"`
	At            time.Time `json:"at"`
	DaysRemaining float64   `json:"days_remaining"`
	SeatDays      float64   `json:"seat_days"`
	Fraction      float64   `json:"fraction"`
	ProratedSeats float64   `json:"prorated_seats"`
}

// Reduction is a scheduled seat reduction.
type Reduction struct {
	Count       int       `json:"count"`
	ScheduledAt time.Time `json:"scheduled_at"`
	EffectiveAt time.Time `json:"effective_at"`
}

// Totals sums a cycle up.
type Totals struct {
	// PurchasedSeats is the seats bought during the cycle.
	PurchasedSeats int `json:"purchased_seats"`
	// ReducedSeats is the seats removed at the cycle's start.
	ReducedSeats int `json:"reduced_seats"`
	// SeatsAtEnd is SeatsBilled plus PurchasedSeats: the seats held at the
	// end, before reductions that take effect then.
	SeatsAtEnd int `json:"seats_at_end"`
	// SeatCycles is SeatsBilled plus every purchase's ProratedSeats: what
	// the cycle charges, in seats for a whole cycle.
	SeatCycles float64 `json:"seat_cycles"`
	// SeatDays is SeatsBilled x CycleDays plus every purchase's SeatDays.
	SeatDays float64 `json:"seat_days"`
}

// Projection is the billing read model of every account. It is safe for
// concurrent use; reads return copies.
type Projection struct {
	mu       sync.RWMutex
	accounts map[string]*account
	// ids are the opened accounts' ids, sorted: the order CyclesPage
	// walks. opened holds those opened since ids was last merged; every
	// Apply and ApplyBatch merges them before releasing the lock, so that
	// readers see ids whole.
	ids      []string
	opened   []string
	position eventstore.Position
}

type account struct {
	opened     bool
	openedAt   time.Time
	opening    int
	purchases  []purchase
	reductions []ledger.Reduction
	users      map[string][]span
	changes    []change
	active     int
}

type purchase struct {
	count int
	at    time.Time
}

// span is a time a user was active; to is zero while they still are.
type span struct{ from, to time.Time }

// change is the number of active users from at on.
type change struct {
	at     time.Time
	active int
}

var (
	_ projections.Projection  = (*Projection)(nil)
	_ projections.Snapshotter = (*Projection)(nil)
	_ projections.Batcher     = (*Projection)(nil)
)

// New returns an empty billing read model.
func New() *Projection { return &Projection{accounts: make(map[string]*account)} }

// Name returns "billing".
func (p *Projection) Name() string { return "billing" }

// Apply folds one ledger event; activities only advance the position.
func (p *Projection) Apply(d codec.Decoded) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	err := p.apply(&d)
	p.index()
	return err
}

// ApplyBatch folds events in order, as Apply would one by one, taking the
// lock once. It stops at the first event that cannot be applied and
// returns its error; the events before it are applied.
func (p *Projection) ApplyBatch(ds []codec.Decoded) error {
	return projections.ApplyLocked(&p.mu, ds, func(d *codec.Decoded) error {
		err := p.apply(d)
		if err != nil || d == &ds[len(ds)-1] {
			p.index()
		}
		return err
	})
}

// index merges the accounts opened since the last merge into ids
// (projections.MergeIDs). The caller holds the write lock.
func (p *Projection) index() {
	if len(p.opened) == 0 {
		return
	}
	p.ids = projections.MergeIDs(p.ids, p.opened)
	clear(p.opened)
	p.opened = p.opened[:0]
}

func (p *Projection) apply(d *codec.Decoded) error {
	p.position = d.Record.Position
	if d.Record.Stream.Category == eventstore.Activity || ledger.IsActivity(d.Event) {
		return nil
	}
	id := projections.AccountOf(*d)
	a := p.accounts[id]
	if a == nil {
		a = &account{users: make(map[string][]span)}
		p.accounts[id] = a
	}
	switch e := d.Event.(type) {
	case ledger.AccountOpened:
		if !a.opened {
			a.opened, a.openedAt, a.opening = true, e.At.UTC(), e.Seats
			p.opened = append(p.opened, id)
		}
	case ledger.SeatsPurchased:
		a.purchases = append(a.purchases, purchase{e.Count, e.At.UTC()})
	case ledger.SeatReductionScheduled:
		a.reductions = append(a.reductions, ledger.Reduction{Count: e.Count, ScheduledAt: e.At.UTC(), EffectiveAt: e.EffectiveAt.UTC()})
	case ledger.UserAdded:
		if _, ok := a.users[e.UserID]; !ok {
			a.start(e.UserID, e.At)
		}
	case ledger.UserActivated:
		if s := a.users[e.UserID]; len(s) > 0 && !s[len(s)-1].to.IsZero() {
			a.start(e.UserID, e.At)
		}
	case ledger.UserDeactivated:
		a.stop(e.UserID, e.At)
	case ledger.UserDeleted:
		a.stop(e.UserID, e.At)
	}
	return nil
}

// Position returns the global position of the last event applied.
func (p *Projection) Position() eventstore.Position {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.position
}

func (a *account) start(user string, at time.Time) {
	at = at.UTC()
	a.users[user] = append(a.users[user], span{from: at})
	a.active++
	a.changes = append(a.changes, change{at, a.active})
}

func (a *account) stop(user string, at time.Time) {
	s := a.users[user]
	if len(s) == 0 || !s[len(s)-1].to.IsZero() {
		return // not active: deleting a deactivated user frees no seat
	}
	s[len(s)-1].to = at.UTC()
	a.active--
	a.changes = append(a.changes, change{at.UTC(), a.active})
}

// ParsePeriod parses "YYYY-MM".
func ParsePeriod(period string) (time.Time, error) {
	t, err := time.Parse("2006-01", period)
	if err != nil {
		return time.Time{}, fmt.Errorf("period %q: %w", period, ErrBadPeriod)
	}
	return t, nil
}

// Cycle returns the billing summary of an account's cycle that starts in
// period (YYYY-MM), counted up to now when the cycle is in progress. It
// returns ErrBadPeriod for a malformed period, ErrNotStarted for a cycle
// starting after now or before the opening, and projections.ErrNotFound
// (all wrapped) for an account not opened.
func (p *Projection) Cycle(id, period string, now time.Time) (Cycle, error) {
	month, err := ParsePeriod(period)
	if err != nil {
		return Cycle{}, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	a := p.accounts[id]
	if a == nil || !a.opened {
		return Cycle{}, fmt.Errorf("billing of account %q: %w", id, projections.ErrNotFound)
	}
	k := (month.Year()-a.openedAt.Year())*12 + int(month.Month()) - int(a.openedAt.Month())
	return a.cycle(id, k, now.UTC())
}

// Current returns the billing summary of an account's cycle in progress
// at now.
func (p *Projection) Current(id string, now time.Time) (Cycle, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	a := p.accounts[id]
	if a == nil || !a.opened {
		return Cycle{}, fmt.Errorf("billing of account %q: %w", id, projections.ErrNotFound)
	}
	return a.cycle(id, ledger.CycleIndex(a.openedAt, now), now.UTC())
}

// CyclesPage returns the cycles that start in period (YYYY-MM) of the
// opened accounts, ordered by account id, starting after the account id
// after ("": from the first), counted up to now for a cycle in progress.
// An account opened after period, or whose cycle of period starts after
// now, has no cycle there and is skipped. It returns at most limit cycles,
// the account id a next page starts after (the last account examined),
// and whether cycles of period follow. A malformed period is
// ErrBadPeriod. Only the page is copied.
func (p *Projection) CyclesPage(period, after string, limit int, now time.Time) (page []Cycle, next string, more bool, err error) {
	month, err := ParsePeriod(period)
	if err != nil {
		return nil, "", false, err
	}
	now = now.UTC()
	p.mu.RLock()
	defer p.mu.RUnlock()
	i, found := slices.BinarySearch(p.ids, after)
	if found {
		i++
	}
	next = after
	page = make([]Cycle, 0, min(max(limit, 0), len(p.ids)-i))
	for _, id := range p.ids[i:] {
		a := p.accounts[id]
		k := (month.Year()-a.openedAt.Year())*12 + int(month.Month()) - int(a.openedAt.Month())
		c, err := a.cycle(id, k, now)
		if err != nil {
			if len(page) < limit {
				next = id
			}
			continue
		}
		if len(page) == limit {
			return page, next, true, nil
		}
		page, next = append(page, c), id
	}
	return page, next, false, nil
}

// Opening is when an account was opened: its billing cycles follow from
// it ([ledger.CycleStart]).
type Opening struct {
	Account  string
	OpenedAt time.Time
}

// Openings returns every opened account with its opening instant, ordered
// by account id.
func (p *Projection) Openings() []Opening {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]Opening, len(p.ids))
	for i, id := range p.ids {
		out[i] = Opening{Account: id, OpenedAt: p.accounts[id].openedAt}
	}
	return out
}

func days(d time.Duration) float64 { return d.Hours() / 24 }

func (a *account) cycle(id string, k int, now time.Time) (Cycle, error) {
	start, end := ledger.CycleStart(a.openedAt, k), ledger.CycleStart(a.openedAt, k+1)
	if k < 0 || start.After(now) {
		return Cycle{}, fmt.Errorf("billing cycle %d of account %q starting %s: %w", k, id, start.Format(time.DateOnly), ErrNotStarted)
	}
	c := Cycle{
		Account: id, Period: start.Format("2006-01"), Index: k,
		Start: start, End: end, CycleDays: days(end.Sub(start)),
		Until: end, Purchases: []Purchase{}, Reductions: []Reduction{}, ScheduledReductions: []Reduction{},
	}
	if now.Before(end) {
		c.InProgress, c.Until = true, now
	}
	billedAt := start
	if a.openedAt.After(billedAt) {
		billedAt = a.openedAt
	}
	c.SeatsBilled = a.opening
	for _, pu := range a.purchases {
		switch {
		case !pu.at.After(billedAt):
			c.SeatsBilled += pu.count
		case pu.at.Before(end):
			left := days(end.Sub(pu.at))
			frac := left / c.CycleDays
			c.Purchases = append(c.Purchases, Purchase{Count: pu.count, At: pu.at,
				DaysRemaining: left, SeatDays: float64(pu.count) * left,
				Fraction: frac, ProratedSeats: float64(pu.count) * frac})
		}
	}
	for _, r := range a.reductions {
		if !r.EffectiveAt.After(billedAt) {
			c.SeatsBilled -= r.Count
		}
		if r.EffectiveAt.Equal(start) {
			c.Reductions = append(c.Reductions, Reduction(r))
		}
		if !r.ScheduledAt.Before(start) && r.ScheduledAt.Before(end) {
			c.ScheduledReductions = append(c.ScheduledReductions, Reduction(r))
		}
	}

	// Peak: the active users at the start, then every change before until.
	for _, ch := range a.changes {
		if ch.at.After(start) {
			break
		}
		c.PeakActive = ch.active
	}
	for _, ch := range a.changes {
		if ch.at.After(start) && ch.at.Before(c.Until) && ch.active > c.PeakActive {
			c.PeakActive = ch.active
		}
	}
	// Summed as whole days plus a remainder below a day: exact, the same
	// whatever order the users are visited in, and safe from overflowing
	// a Duration (292 years) on large accounts.
	var wholeDays int64
	var rest time.Duration
	for _, spans := range a.users {
		for _, s := range spans {
			from, to := s.from, s.to
			if to.IsZero() || to.After(c.Until) {
				to = c.Until
			}
			if from.Before(start) {
				from = start
			}
			if to.After(from) {
				d := to.Sub(from)
				wholeDays += int64(d / Day)
				if rest += d % Day; rest >= Day {
					wholeDays, rest = wholeDays+1, rest-Day
				}
			}
		}
	}
	c.ActiveUserDays = float64(wholeDays) + days(rest)

	t := &c.Totals
	t.SeatCycles = float64(c.SeatsBilled)
	t.SeatDays = float64(c.SeatsBilled) * c.CycleDays
	for _, pu := range c.Purchases {
		t.PurchasedSeats += pu.Count
		t.SeatCycles += pu.ProratedSeats
		t.SeatDays += pu.SeatDays
	}
	for _, r := range c.Reductions {
		t.ReducedSeats += r.Count
	}
	t.SeatsAtEnd = c.SeatsBilled + t.PurchasedSeats
	return c, nil
}

// snapshotVersion is the format of Snapshot; Restore refuses any other.
const snapshotVersion = 1

// Snapshot returns the model's state in a compact binary form. It holds
// counts, times and user ids, never a name or an email.
func (p *Projection) Snapshot() ([]byte, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	ids := make([]string, 0, len(p.accounts))
	size := 0
	for id, a := range p.accounts {
		ids = append(ids, id)
		size += 64 + 12*len(a.purchases) + 24*len(a.reductions) + 32*len(a.users) + 12*len(a.changes)
	}
	sort.Strings(ids)
	w := snap.NewWriter("billing", snapshotVersion, size)
	w.Uvarint(uint64(p.position))
	w.Uvarint(uint64(len(ids)))
	users := make([]string, 0, 64)
	for _, id := range ids {
		a := p.accounts[id]
		w.String(id)
		w.Bool(a.opened)
		w.Time(a.openedAt)
		w.Int(a.opening)
		w.Int(a.active)
		w.Uvarint(uint64(len(a.purchases)))
		for _, pu := range a.purchases {
			w.Int(pu.count)
			w.Time(pu.at)
		}
		w.Uvarint(uint64(len(a.reductions)))
		for _, r := range a.reductions {
			w.Int(r.Count)
			w.Time(r.ScheduledAt)
			w.Time(r.EffectiveAt)
		}
		users = users[:0]
		for u := range a.users {
			users = append(users, u)
		}
		sort.Strings(users)
		w.Uvarint(uint64(len(users)))
		for _, u := range users {
			spans := a.users[u]
			w.String(u)
			w.Uvarint(uint64(len(spans)))
			for _, s := range spans {
				w.Time(s.from)
				w.Time(s.to)
			}
		}
		w.Uvarint(uint64(len(a.changes)))
		for _, c := range a.changes {
			w.Time(c.at)
			w.Int(c.active)
		}
	}
	return w.Bytes(), nil
}

// Restore replaces the model's state with a snapshot. It refuses, with an
// error wrapping projections.ErrSnapshotFormat, bytes that are not a
// billing snapshot of this format, and leaves the model as it was.
func (p *Projection) Restore(b []byte) error {
	r, err := snap.NewReader(b, "billing", snapshotVersion)
	if err != nil {
		return fmt.Errorf("billing restore: %w", err)
	}
	position := eventstore.Position(r.Uvarint())
	n := r.Count(8)
	accounts := make(map[string]*account, n)
	for range n {
		id := r.String()
		a := &account{opened: r.Bool(), openedAt: r.Time(), opening: r.Int(), active: r.Int()}
		if np := r.Count(3); np > 0 {
			a.purchases = make([]purchase, np)
			for i := range a.purchases {
				a.purchases[i] = purchase{count: r.Int(), at: r.Time()}
			}
		}
		if nr := r.Count(5); nr > 0 {
			a.reductions = make([]ledger.Reduction, nr)
			for i := range a.reductions {
				a.reductions[i] = ledger.Reduction{Count: r.Int(), ScheduledAt: r.Time(), EffectiveAt: r.Time()}
			}
		}
		nu := r.Count(2)
		a.users = make(map[string][]span, nu)
		for range nu {
			u := r.String()
			spans := make([]span, r.Count(4))
			for i := range spans {
				spans[i] = span{from: r.Time(), to: r.Time()}
			}
			a.users[u] = spans
		}
		if nc := r.Count(3); nc > 0 {
			a.changes = make([]change, nc)
			for i := range a.changes {
				a.changes[i] = change{at: r.Time(), active: r.Int()}
			}
		}
		if _, dup := accounts[id]; dup {
			r.Fail("billing account %q repeated", id)
		}
		accounts[id] = a
	}
	if err := r.End(); err != nil {
		return fmt.Errorf("billing restore: %w", err)
	}
	ids := make([]string, 0, len(accounts))
	for id, a := range accounts {
		if a.opened {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accounts, p.ids, p.opened, p.position = accounts, ids, nil, position
	return nil
}
