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

	"github.com/go-json-experiment/json"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections"
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
		AddedAt: u.AddedAt, ChangedAt: u.ChangedAt, ReassignedTo: u.ReassignTo}
}

// Projection is the seat-usage read model of every account. It is safe for
// concurrent use; reads return copies.
type Projection struct {
	mu       sync.RWMutex
	accounts map[string]*account
	position eventstore.Position
}

type account struct {
	State    ledger.State        `json:"state"`
	Revision uint64              `json:"revision"`
	Position eventstore.Position `json:"position"`
}

var (
	_ projections.Projection  = (*Projection)(nil)
	_ projections.Snapshotter = (*Projection)(nil)
)

// New returns an empty seat-usage read model.
func New() *Projection { return &Projection{accounts: make(map[string]*account)} }

// Name returns "seats".
func (p *Projection) Name() string { return "seats" }

// Apply folds one event. Activities only advance the account's position.
func (p *Projection) Apply(d codec.Decoded) error {
	id := projections.AccountOf(d)
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.accounts[id]
	if a == nil {
		a = &account{}
		p.accounts[id] = a
	}
	if d.Record.Stream.Category != eventstore.Activity && !ledger.IsActivity(d.Event) {
		a.State = ledger.Evolve(a.State, d.Event)
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
	out := make([]string, 0, len(p.accounts))
	for id, a := range p.accounts {
		if a.State.Opened() {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
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

type snapshot struct {
	Version  int                 `json:"version"`
	Position eventstore.Position `json:"position"`
	Accounts map[string]*account `json:"accounts"`
}

// Snapshot returns the model's state as JSON. Deleted users hold no name,
// email or reason in it.
func (p *Projection) Snapshot() ([]byte, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	b, err := json.Marshal(snapshot{Version: 1, Position: p.position, Accounts: p.accounts}, json.Deterministic(true))
	if err != nil {
		return nil, fmt.Errorf("seats snapshot: %w", err)
	}
	return b, nil
}

// Restore replaces the model's state with a snapshot.
func (p *Projection) Restore(b []byte) error {
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("seats restore: %w", err)
	}
	if s.Version != 1 {
		return fmt.Errorf("seats restore: snapshot version %d, want 1", s.Version)
	}
	if s.Accounts == nil {
		s.Accounts = make(map[string]*account)
	}
	for _, a := range s.Accounts {
		if a.State.Users == nil && a.State.Opened() {
			a.State.Users = make(map[string]ledger.User)
		}
		a.State.Order = slices.Clip(a.State.Order)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accounts, p.position = s.Accounts, s.Position
	return nil
}
