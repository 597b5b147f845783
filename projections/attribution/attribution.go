// Package attribution is the read model of activities with their
// attribution: for every activity an account's users recorded, who logged
// it and who owns it now.
//
// Who logged it is the user who recorded it, with their name while that
// user exists: a deactivated user keeps their name on everything they
// logged, a deleted user's name is blank everywhere. Who owns it is the
// user who logged it, or, once that user was deleted with reassignment,
// the user their records were reassigned to, following the chain when
// that user was in turn deleted with reassignment.
//
// Names are kept once per user and joined when reading, so deleting a user
// blanks their name on every activity at once and no activity record ever
// holds a name.
package attribution

import (
	"fmt"
	"sync"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/internal/chunk"
)

// Activity is an activity with its attribution.
type Activity struct {
	// Seq numbers the account's activities from 1 in the order recorded;
	// it is the cursor of [Projection.Activities].
	Seq  int       `json:"seq"`
	ID   string    `json:"id"`
	Kind string    `json:"kind"`
	Ref  string    `json:"ref"`
	At   time.Time `json:"at"`
	// UserID is who logged the activity; UserName is their name, blank
	// once they are deleted.
	UserID   string `json:"user_id"`
	UserName string `json:"user_name"`
	// OwnerID is who owns the activity now; OwnerName is their name, blank
	// when the owner is deleted.
	OwnerID   string `json:"owner_id"`
	OwnerName string `json:"owner_name"`
}

// Page is one page of an account's activities.
type Page struct {
	Activities []Activity `json:"activities"`
	// Next is the cursor of the next page, 0 when this page is the last.
	Next int `json:"next,omitempty"`
}

// Projection is the attribution read model of every account. It is safe
// for concurrent use; reads return copies.
type Projection struct {
	mu       sync.RWMutex
	accounts map[string]*account
	position eventstore.Position
}

type account struct {
	users map[string]*user
	acts  chunk.List[activity]
}

type user struct {
	id         string
	name       string
	deleted    bool
	reassignTo string
}

// activity is kept small: a million of them is an ordinary account base.
type activity struct {
	id, kind, ref string
	at            int64 // Unix nanoseconds, UTC
	by            *user
}

var (
	_ projections.Projection  = (*Projection)(nil)
	_ projections.Snapshotter = (*Projection)(nil)
)

// New returns an empty attribution read model.
func New() *Projection { return &Projection{accounts: make(map[string]*account)} }

// Name returns "attribution".
func (p *Projection) Name() string { return "attribution" }

func (a *account) user(id string) *user {
	u := a.users[id]
	if u == nil {
		u = &user{id: id}
		a.users[id] = u
	}
	return u
}

// Apply folds one event: activities are recorded, users added and deleted
// change the names and owners joined at read time.
func (p *Projection) Apply(d codec.Decoded) error {
	switch d.Event.(type) {
	case ledger.ActivityRecorded, ledger.UserAdded, ledger.UserDeleted:
	default:
		p.mu.Lock()
		p.position = d.Record.Position
		p.mu.Unlock()
		return nil
	}
	id := projections.AccountOf(d)
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.accounts[id]
	if a == nil {
		a = &account{users: make(map[string]*user)}
		p.accounts[id] = a
	}
	switch e := d.Event.(type) {
	case ledger.ActivityRecorded:
		a.acts.Append(activity{id: e.ActivityID, kind: e.Kind, ref: e.Ref, at: e.At.UnixNano(), by: a.user(e.UserID)})
	case ledger.UserAdded:
		if u := a.user(e.UserID); !u.deleted {
			u.name = e.Name
		}
	case ledger.UserDeleted:
		u := a.user(e.UserID)
		u.name, u.deleted, u.reassignTo = "", true, e.ReassignTo
	}
	p.position = d.Record.Position
	return nil
}

// Position returns the global position of the last event applied.
func (p *Projection) Position() eventstore.Position {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.position
}

// owner follows u's reassignments to the user who owns u's records.
func (a *account) owner(u *user) *user {
	for range len(a.users) { // a chain visits each user at most once
		if !u.deleted || u.reassignTo == "" {
			return u
		}
		next := a.users[u.reassignTo]
		if next == nil {
			return u
		}
		u = next
	}
	return u
}

func (a *account) view(seq int, act activity) Activity {
	o := a.owner(act.by)
	return Activity{
		Seq: seq, ID: act.id, Kind: act.kind, Ref: act.ref,
		At:     time.Unix(0, act.at).UTC(),
		UserID: act.by.id, UserName: act.by.name,
		OwnerID: o.id, OwnerName: o.name,
	}
}

// DefaultLimit is the page size when none is asked for.
const DefaultLimit = 100

// Activities returns up to limit activities of an account (DefaultLimit
// when limit <= 0) in the order recorded, starting after the activity with
// sequence number after (0: from the first). It returns
// projections.ErrNotFound (wrapped) for an account without activities or
// users.
func (p *Projection) Activities(id string, after, limit int) (Page, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	after = max(after, 0)
	p.mu.RLock()
	defer p.mu.RUnlock()
	a := p.accounts[id]
	if a == nil {
		return Page{}, fmt.Errorf("activities of account %q: %w", id, projections.ErrNotFound)
	}
	var page Page
	end := min(a.acts.Len(), after+limit)
	if after < end {
		page.Activities = make([]Activity, 0, end-after)
		for i := after; i < end; i++ {
			page.Activities = append(page.Activities, a.view(i+1, *a.acts.At(i)))
		}
	}
	if end < a.acts.Len() {
		page.Next = end
	}
	return page, nil
}

// Owner returns who owns the records a user logged: the user, or whom
// they were reassigned to, following the chain of deletions.
func (p *Projection) Owner(id, userID string) (string, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	a := p.accounts[id]
	if a == nil || a.users[userID] == nil {
		return "", fmt.Errorf("user %q of account %q: %w", userID, id, projections.ErrNotFound)
	}
	return a.owner(a.users[userID]).id, nil
}

type snapshot struct {
	Version  int                    `json:"version"`
	Position eventstore.Position    `json:"position"`
	Accounts map[string]snapAccount `json:"accounts"`
}

type snapAccount struct {
	Users      []snapUser     `json:"users"`
	Activities []snapActivity `json:"activities"`
}

type snapUser struct {
	ID         string `json:"id"`
	Name       string `json:"name,omitempty"`
	Deleted    bool   `json:"deleted,omitempty"`
	ReassignTo string `json:"reassign_to,omitempty"`
}

type snapActivity struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	Ref  string `json:"ref"`
	At   int64  `json:"at"`
	User string `json:"user"`
}

// Snapshot returns the model's state as JSON. A deleted user's name is not
// in it.
func (p *Projection) Snapshot() ([]byte, error) {
	p.mu.RLock()
	s := snapshot{Version: 1, Position: p.position, Accounts: make(map[string]snapAccount, len(p.accounts))}
	for id, a := range p.accounts {
		sa := snapAccount{Users: make([]snapUser, 0, len(a.users)), Activities: make([]snapActivity, 0, a.acts.Len())}
		for _, u := range a.users {
			sa.Users = append(sa.Users, snapUser{ID: u.id, Name: u.name, Deleted: u.deleted, ReassignTo: u.reassignTo})
		}
		for i := range a.acts.Len() {
			act := a.acts.At(i)
			sa.Activities = append(sa.Activities, snapActivity{ID: act.id, Kind: act.kind, Ref: act.ref, At: act.at, User: act.by.id})
		}
		s.Accounts[id] = sa
	}
	p.mu.RUnlock()
	b, err := json.Marshal(s, json.Deterministic(true))
	if err != nil {
		return nil, fmt.Errorf("attribution snapshot: %w", err)
	}
	return b, nil
}

// Restore replaces the model's state with a snapshot.
func (p *Projection) Restore(b []byte) error {
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("attribution restore: %w", err)
	}
	if s.Version != 1 {
		return fmt.Errorf("attribution restore: snapshot version %d, want 1", s.Version)
	}
	accounts := make(map[string]*account, len(s.Accounts))
	for id, sa := range s.Accounts {
		a := &account{users: make(map[string]*user, len(sa.Users))}
		for _, u := range sa.Users {
			a.users[u.ID] = &user{id: u.ID, name: u.Name, deleted: u.Deleted, reassignTo: u.ReassignTo}
		}
		for _, act := range sa.Activities {
			a.acts.Append(activity{id: act.ID, kind: act.Kind, ref: act.Ref, at: act.At, by: a.user(act.User)})
		}
		accounts[id] = a
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accounts, p.position = accounts, s.Position
	return nil
}
