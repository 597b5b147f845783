// Package seats is the seat-usage read model: for every account, how many
// seats it bought, how many it has at a given instant, how many users are
// active, deactivated and deleted, how many seats are still available,
// which reduction is pending and when it takes effect, and the peak of
// active users; plus the account's user directory (id, name, email, role,
// status, when added and last changed, to whom a deleted user's records
// were reassigned).
//
// It folds each account's ledger events with the domain's own
// [ledger.Evolve], so its figures are by construction those the rules
// decide on. Deleted users keep their id, role and dates but have a blank
// name and email.
//
// The model also tracks the ledger stream revision of the last ledger
// event of each account (an ETag for account reads) and the last global
// position it applied.
package seats

import (
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

// Usage is an account's seat usage at an instant.
type Usage struct {
	Account  string    `json:"account"`
	Name     string    `json:"name"`
	OpenedAt time.Time `json:"opened_at"`
	// At is the instant Seats and the pending reduction are computed for.
	At time.Time `json:"at"`
	// Purchased is every seat bought, those at opening included, before
	// reductions.
	Purchased int `json:"purchased"`
	// Seats is Seats(At): Purchased minus the reductions effective by At.
	Seats       int `json:"seats"`
	Active      int `json:"active"`
	Deactivated int `json:"deactivated"`
	Deleted     int `json:"deleted"`
	// Available is the seats left once every scheduled reduction has taken
	// effect, minus the active users: how many users could be added or
	// activated now.
	Available int `json:"available"`
	// PendingReduction is the seats that reductions not yet effective at
	// At will remove; PendingReductionAt is when the first of them takes
	// effect (zero when none is pending).
	PendingReduction   int       `json:"pending_reduction"`
	PendingReductionAt time.Time `json:"pending_reduction_at,omitzero"`
	// PeakActive is the most users ever active at once.
	PeakActive int `json:"peak_active"`
	// Revision is the ledger stream revision of the last ledger event.
	Revision uint64 `json:"revision"`
	// Position is the global position of the last event of the account
	// applied, ledger or activity.
	Position eventstore.Position `json:"position"`
}

// User is one entry of an account's user directory.
type User struct {
	ID string `json:"id"`
	// Name and Email are blank once the user is deleted.
	Name      string        `json:"name"`
	Email     string        `json:"email"`
	Role      ledger.Role   `json:"role"`
	Status    ledger.Status `json:"status"`
	AddedAt   time.Time     `json:"added_at"`
	ChangedAt time.Time     `json:"changed_at"`
	// ReassignedTo is the user who owns a deleted user's records, if any.
	ReassignedTo string `json:"reassigned_to,omitempty"`
	// ExternalID is the identity provider's identifier (SCIM externalId),
	// blank when none and once deleted. The /v1 API does not show it.
	ExternalID string `json:"-"`
}

// UsageOf returns the seat usage of the account in state s at now.
// Revision and Position are left zero: s does not know them.
func UsageOf(s ledger.State, now time.Time) Usage {
	pending, when := s.PendingReduction(now)
	return Usage{
		Account: s.Account, Name: s.Name, OpenedAt: s.OpenedAt, At: now.UTC(),
		Purchased: s.Seats, Seats: s.SeatsAt(now),
		Active: s.Active, Deactivated: s.Deactivated, Deleted: s.Deleted,
		Available:        s.Available(),
		PendingReduction: pending, PendingReductionAt: when,
		PeakActive: s.PeakActive,
	}
}

// UsersOf returns the users of state s in the order they were added,
// only those with status when status is not empty.
func UsersOf(s ledger.State, status ledger.Status) []User {
	out := make([]User, 0, len(s.Order))
	for _, id := range s.Order {
		u := s.Users[id]
		if status != "" && u.Status != status {
			continue
		}
		out = append(out, userOf(u))
	}
	return out
}

func userOf(u ledger.User) User {
	return User{ID: u.ID, Name: u.Name, Email: u.Email, Role: u.Role, Status: u.Status,
		AddedAt: u.AddedAt, ChangedAt: u.ChangedAt, ReassignedTo: u.ReassignTo, ExternalID: u.ExternalID}
}

// Projection is the seat-usage read model of every account. It is safe for
// concurrent use; reads return copies.
type Projection struct {
	mu       sync.RWMutex
	accounts map[string]*account
	position eventstore.Position
	// ids are the opened accounts' ids, sorted: the order AccountsPage
	// walks. opened holds those opened since ids was last merged; every
	// apply merges them before it releases the lock, so readers always
	// see ids whole.
	ids    []string
	opened []string
}

// Summary is one line of the list of accounts.
type Summary struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	OpenedAt time.Time `json:"opened_at"`
	// Seats is the seats the account holds at the instant of the list:
	// every seat bought minus the reductions effective by then.
	Seats int `json:"seats"`
	// Active is how many users are active.
	Active int `json:"active"`
}

type account struct {
	State    ledger.State
	Revision uint64
	Position eventstore.Position
}

var (
	_ projections.Projection  = (*Projection)(nil)
	_ projections.Snapshotter = (*Projection)(nil)
	_ projections.Batcher     = (*Projection)(nil)
)

// New returns an empty seat-usage read model.
func New() *Projection { return &Projection{accounts: make(map[string]*account)} }

// Name returns "seats".
func (p *Projection) Name() string { return "seats" }

// Apply folds one event. Activities only advance the account's position.
func (p *Projection) Apply(d codec.Decoded) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.index()
	return p.apply(&d)
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
	id := projections.AccountOf(*d)
	a := p.accounts[id]
	if a == nil {
		a = &account{}
		p.accounts[id] = a
	}
	if d.Record.Stream.Category != eventstore.Activity && !ledger.IsActivity(d.Event) {
		was := a.State.Opened()
		a.State = ledger.Evolve(a.State, d.Event)
		if !was && a.State.Opened() {
			p.opened = append(p.opened, id)
		}
		a.Revision = d.Record.Revision
	}
	a.Position = d.Record.Position
	p.position = d.Record.Position
	return nil
}

// Position returns the global position of the last event applied.
func (p *Projection) Position() eventstore.Position {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.position
}

// Accounts returns the ids of the opened accounts, sorted.
func (p *Projection) Accounts() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return slices.Clone(p.ids)
}

// AccountsPage returns up to limit opened accounts, ordered by id,
// starting after the account id after ("": from the first), with their
// seats at now; more reports whether accounts follow the page. An id is a
// stable cursor: accounts are never removed, and one opened while a
// client walks the list appears at its place in the order, so a walk sees
// every account opened before it started exactly once. Only the page is
// copied.
func (p *Projection) AccountsPage(after string, limit int, now time.Time) (page []Summary, more bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	i, found := slices.BinarySearch(p.ids, after)
	if found {
		i++
	}
	limit = max(limit, 0)
	end := min(i+limit, len(p.ids))
	page = make([]Summary, 0, end-i)
	for _, id := range p.ids[i:end] {
		s := &p.accounts[id].State
		page = append(page, Summary{ID: id, Name: s.Name, OpenedAt: s.OpenedAt, Seats: s.SeatsAt(now), Active: s.Active})
	}
	return page, end < len(p.ids)
}

func (p *Projection) get(id string) (*account, error) {
	a := p.accounts[id]
	if a == nil || !a.State.Opened() {
		return nil, fmt.Errorf("account %q: %w", id, projections.ErrNotFound)
	}
	return a, nil
}

// Usage returns the seat usage of an account at now (the instant Seats(t)
// and the pending reduction are computed for). It returns
// projections.ErrNotFound (wrapped) for an account not opened.
func (p *Projection) Usage(id string, now time.Time) (Usage, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	a, err := p.get(id)
	if err != nil {
		return Usage{}, err
	}
	u := UsageOf(a.State, now)
	u.Revision, u.Position = a.Revision, a.Position
	return u, nil
}

// Users returns the users of an account in the order they were added,
// only those with status unless status is empty.
func (p *Projection) Users(id string, status ledger.Status) ([]User, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	a, err := p.get(id)
	if err != nil {
		return nil, err
	}
	return UsersOf(a.State, status), nil
}

// UsersPage returns up to limit users of an account in the order they
// were added, only those with status unless status is empty, starting
// after the first after users added (0: from the first). Users are never
// removed from that order, so after is a stable cursor: next is the one
// of the page that follows, and more reports whether a user after next
// has the status. Only the page is copied. It returns
// projections.ErrNotFound (wrapped) for an account not opened.
func (p *Projection) UsersPage(id string, status ledger.Status, after, limit int) (users []User, next int, more bool, err error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	a, err := p.get(id)
	if err != nil {
		return nil, 0, false, err
	}
	order := a.State.Order
	next = min(max(after, 0), len(order))
	users = make([]User, 0, min(max(limit, 0), len(order)-next))
	for i := next; i < len(order); i++ {
		u := a.State.Users[order[i]]
		if status != "" && u.Status != status {
			continue
		}
		if len(users) == limit {
			return users, next, true, nil
		}
		users = append(users, userOf(u))
		next = i + 1
	}
	return users, len(order), false, nil
}

// User returns one user of an account, or projections.ErrNotFound
// (wrapped).
func (p *Projection) User(id, user string) (User, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	a, err := p.get(id)
	if err != nil {
		return User{}, err
	}
	u, ok := a.State.Users[user]
	if !ok {
		return User{}, fmt.Errorf("user %q of account %q: %w", user, id, projections.ErrNotFound)
	}
	return userOf(u), nil
}

// State returns a copy of an account's domain state, for callers that
// decide on it.
func (p *Projection) State(id string) (ledger.State, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	a, err := p.get(id)
	if err != nil {
		return ledger.State{}, err
	}
	return a.State.Clone(), nil
}

// snapshotVersion is the format of Snapshot; Restore refuses any other.
const snapshotVersion = 3 // 3: users' external ids

// Snapshot returns the model's state in a compact binary form. Deleted
// users hold no name, email, external id or reason in it: the state blanked them.
func (p *Projection) Snapshot() ([]byte, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	ids := make([]string, 0, len(p.accounts))
	size := 0
	for id, a := range p.accounts {
		ids = append(ids, id)
		size += 128 + 96*len(a.State.Users) + 24*len(a.State.Reductions)
	}
	sort.Strings(ids)
	w := snap.NewWriter("seats", snapshotVersion, size)
	w.Uvarint(uint64(p.position))
	w.Uvarint(uint64(len(ids)))
	for _, id := range ids {
		a := p.accounts[id]
		s := &a.State
		w.String(id)
		w.Uvarint(a.Revision)
		w.Uvarint(uint64(a.Position))
		w.String(s.Account)
		w.String(s.Name)
		w.Time(s.OpenedAt)
		w.Int(s.Seats)
		w.Uvarint(uint64(len(s.Reductions)))
		for _, r := range s.Reductions {
			w.Int(r.Count)
			w.Time(r.ScheduledAt)
			w.Time(r.EffectiveAt)
		}
		// Users in the order added: Order lists every user once.
		w.Uvarint(uint64(len(s.Order)))
		for _, uid := range s.Order {
			u := s.Users[uid]
			w.String(uid)
			w.String(u.Name)
			w.String(u.Email)
			w.String(string(u.Role))
			w.String(string(u.Status))
			w.String(u.Reason)
			w.Time(u.AddedAt)
			w.Time(u.ChangedAt)
			w.String(u.ReassignTo)
			w.String(u.ExternalID)
		}
		w.Int(s.Active)
		w.Int(s.Deactivated)
		w.Int(s.Deleted)
		w.Int(s.ActiveAdmins)
		w.Int(s.PeakActive)
		w.Uvarint(s.Version)
		w.Time(s.LastAt)
	}
	return w.Bytes(), nil
}

// Restore replaces the model's state with a snapshot. It refuses, with an
// error wrapping projections.ErrSnapshotFormat, bytes that are not a seats
// snapshot of this format, and leaves the model as it was.
func (p *Projection) Restore(b []byte) error {
	r, err := snap.NewReader(b, "seats", snapshotVersion)
	if err != nil {
		return fmt.Errorf("seats restore: %w", err)
	}
	position := eventstore.Position(r.Uvarint())
	n := r.Count(16)
	accounts := make(map[string]*account, n)
	for range n {
		id := r.String()
		a := &account{Revision: r.Uvarint(), Position: eventstore.Position(r.Uvarint())}
		s := &a.State
		s.Account, s.Name, s.OpenedAt, s.Seats = r.String(), r.String(), r.Time(), r.Int()
		if nr := r.Count(5); nr > 0 {
			s.Reductions = make([]ledger.Reduction, nr)
			for i := range s.Reductions {
				s.Reductions[i] = ledger.Reduction{Count: r.Int(), ScheduledAt: r.Time(), EffectiveAt: r.Time()}
			}
		}
		nu := r.Count(12)
		if nu > 0 || s.Opened() {
			s.Users = make(map[string]ledger.User, nu)
		}
		if nu > 0 {
			s.Order = make([]string, 0, nu)
		}
		for range nu {
			u := ledger.User{ID: r.String(), Name: r.String(), Email: r.String(),
				Role: ledger.Role(r.String()), Status: ledger.Status(r.String()), Reason: r.String(),
				AddedAt: r.Time(), ChangedAt: r.Time(), ReassignTo: r.String(), ExternalID: r.String()}
			if _, dup := s.Users[u.ID]; dup {
				r.Fail("seats account %q: user %q repeated", id, u.ID)
			}
			s.Users[u.ID] = u
			s.Order = append(s.Order, u.ID)
		}
		s.Active, s.Deactivated, s.Deleted, s.ActiveAdmins, s.PeakActive = r.Int(), r.Int(), r.Int(), r.Int(), r.Int()
		s.Version, s.LastAt = r.Uvarint(), r.Time()
		if _, dup := accounts[id]; dup {
			r.Fail("seats account %q repeated", id)
		}
		accounts[id] = a
	}
	if err := r.End(); err != nil {
		return fmt.Errorf("seats restore: %w", err)
	}
	ids := make([]string, 0, len(accounts))
	for id, a := range accounts {
		if a.State.Opened() {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accounts, p.position, p.ids, p.opened = accounts, position, ids, nil
	return nil
}
