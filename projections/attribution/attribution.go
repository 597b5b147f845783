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
//
// Activities hold no pointers: their id, kind and ref are copied into a
// byte arena of their account and their user is an index, so a million
// activities cost the garbage collector nothing to scan and keep no
// decoded event alive.
package attribution

import (
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/internal/chunk"
	"github.com/licenseledger/ledger/projections/internal/intern"
	"github.com/licenseledger/ledger/projections/internal/snap"
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
	users []user
	ids   intern.Table // the users' ids, numbered as users
	// arena holds the id, kind and ref of every activity, one after the
	// other, in the order recorded.
	arena []byte
	acts  chunk.List[activity]
}

type user struct {
	id         string
	name       string
	deleted    bool
	reassignTo string
}

// activity is kept small and free of pointers: a million of them is an
// ordinary account base. Its id is arena[off:kind], its kind
// arena[kind:ref], its ref arena[ref:end].
type activity struct {
	at                  int64 // Unix nanoseconds, UTC
	off, kind, ref, end uint32
	by                  uint32 // index into account.users
}

var (
	_ projections.Projection  = (*Projection)(nil)
	_ projections.Snapshotter = (*Projection)(nil)
	_ projections.Batcher     = (*Projection)(nil)
)

// New returns an empty attribution read model.
func New() *Projection { return &Projection{accounts: make(map[string]*account)} }

// Name returns "attribution".
func (p *Projection) Name() string { return "attribution" }

func newAccount() *account { return &account{} }

// user returns the index of the user with id, adding them if needed.
func (a *account) user(id string) uint32 {
	i := a.ids.Index(id)
	if int(i) == len(a.users) {
		a.users = append(a.users, user{id: a.ids.String(i)})
	}
	return i
}

// Apply folds one event: activities are recorded, users added, renamed and
// deleted change the names and owners joined at read time.
func (p *Projection) Apply(d codec.Decoded) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.apply(&d)
}

// ApplyBatch folds events in order, as Apply would one by one, taking the
// lock once. It stops at the first event that cannot be applied and
// returns its error; the events before it are applied.
func (p *Projection) ApplyBatch(ds []codec.Decoded) error {
	return projections.ApplyLocked(&p.mu, ds, p.apply)
}

func (p *Projection) apply(d *codec.Decoded) error {
	var a *account
	switch e := d.Event.(type) {
	case ledger.ActivityRecorded:
		a = p.account(d)
		n := len(a.arena)
		if uint64(n)+uint64(len(e.ActivityID)+len(e.Kind)+len(e.Ref)) > math.MaxUint32 {
			return fmt.Errorf("attribution of account %q: activity text past 4 GiB", projections.AccountOf(*d))
		}
		a.arena = append(append(append(a.arena, e.ActivityID...), e.Kind...), e.Ref...)
		k := n + len(e.ActivityID)
		r := k + len(e.Kind)
		a.acts.Append(activity{at: e.At.UnixNano(), off: uint32(n), kind: uint32(k), ref: uint32(r), end: uint32(len(a.arena)), by: a.user(e.UserID)})
	case ledger.UserAdded:
		a = p.account(d)
		if u := &a.users[a.user(e.UserID)]; !u.deleted {
			u.name = e.Name
		}
	case ledger.UserProfileUpdated:
		a = p.account(d)
		if u := &a.users[a.user(e.UserID)]; !u.deleted && e.Name != "" {
			u.name = e.Name
		}
	case ledger.UserDeleted:
		a = p.account(d)
		u := &a.users[a.user(e.UserID)]
		u.name, u.deleted, u.reassignTo = "", true, e.ReassignTo
	}
	p.position = d.Record.Position
	return nil
}

func (p *Projection) account(d *codec.Decoded) *account {
	id := projections.AccountOf(*d)
	a := p.accounts[id]
	if a == nil {
		a = newAccount()
		p.accounts[id] = a
	}
	return a
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
		next, ok := a.ids.Lookup(u.reassignTo)
		if !ok {
			return u
		}
		u = &a.users[next]
	}
	return u
}

func (a *account) view(seq int, act *activity) Activity {
	by := &a.users[act.by]
	o := a.owner(by)
	return Activity{
		Seq: seq, ID: string(a.arena[act.off:act.kind]), Kind: string(a.arena[act.kind:act.ref]),
		Ref:    string(a.arena[act.ref:act.end]),
		At:     time.Unix(0, act.at).UTC(),
		UserID: by.id, UserName: by.name,
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
			page.Activities = append(page.Activities, a.view(i+1, a.acts.At(i)))
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
	if a == nil {
		return "", fmt.Errorf("user %q of account %q: %w", userID, id, projections.ErrNotFound)
	}
	i, ok := a.ids.Lookup(userID)
	if !ok {
		return "", fmt.Errorf("user %q of account %q: %w", userID, id, projections.ErrNotFound)
	}
	return a.owner(&a.users[i]).id, nil
}

// snapshotVersion is the format of Snapshot; Restore refuses any other.
const snapshotVersion = 2

// Snapshot returns the model's state in a compact binary form. A deleted
// user's name is not in it: it was blanked when they were deleted.
func (p *Projection) Snapshot() ([]byte, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	ids := make([]string, 0, len(p.accounts))
	size := 0
	for id, a := range p.accounts {
		ids = append(ids, id)
		size += 64 + 48*len(a.users) + len(a.arena) + 16*a.acts.Len()
	}
	sort.Strings(ids)
	w := snap.NewWriter("attribution", snapshotVersion, size)
	w.Uvarint(uint64(p.position))
	w.Uvarint(uint64(len(ids)))
	for _, id := range ids {
		a := p.accounts[id]
		w.String(id)
		w.Uvarint(uint64(len(a.users)))
		for i := range a.users {
			u := &a.users[i]
			w.String(u.id)
			w.String(u.name)
			w.Bool(u.deleted)
			w.String(u.reassignTo)
		}
		w.Blob(a.arena)
		w.Uvarint(uint64(a.acts.Len()))
		var at int64
		for i := range a.acts.Len() {
			act := a.acts.At(i)
			w.Grow(40)
			w.Varint(act.at - at)
			w.Uvarint(uint64(act.kind - act.off))
			w.Uvarint(uint64(act.ref - act.kind))
			w.Uvarint(uint64(act.end - act.ref))
			w.Uvarint(uint64(act.by))
			at = act.at
		}
	}
	return w.Bytes(), nil
}

// Restore replaces the model's state with a snapshot. It refuses, with an
// error wrapping projections.ErrSnapshotFormat, bytes that are not an
// attribution snapshot of this format, and leaves the model as it was.
func (p *Projection) Restore(b []byte) error {
	r, err := snap.NewReader(b, "attribution", snapshotVersion)
	if err != nil {
		return fmt.Errorf("attribution restore: %w", err)
	}
	position := eventstore.Position(r.Uvarint())
	n := r.Count(4)
	accounts := make(map[string]*account, n)
	for range n {
		id := r.String()
		nu := r.Count(4)
		a := &account{users: make([]user, 0, nu)}
		for range nu {
			u := user{id: r.String(), name: r.String(), deleted: r.Bool(), reassignTo: r.String()}
			if _, dup := a.ids.Lookup(u.id); dup {
				r.Fail("attribution account %q: user %q repeated", id, u.id)
				break
			}
			u.id = a.ids.String(a.ids.Index(u.id))
			a.users = append(a.users, u)
		}
		a.arena = append([]byte(nil), r.Bytes()...)
		na := r.Count(5)
		var at int64
		var off uint64
		for range na {
			act := activity{at: at + r.Varint(), off: uint32(off)}
			k := off + r.Uvarint()
			rf := k + r.Uvarint()
			end := rf + r.Uvarint()
			by := r.Uvarint()
			if end > uint64(len(a.arena)) || by >= uint64(nu) {
				r.Fail("attribution account %q: activity %d out of range", id, a.acts.Len()+1)
				break
			}
			act.kind, act.ref, act.end, act.by = uint32(k), uint32(rf), uint32(end), uint32(by)
			a.acts.Append(act)
			at, off = act.at, end
		}
		if off != uint64(len(a.arena)) {
			r.Fail("attribution account %q: activity text does not match its activities", id)
		}
		if _, dup := accounts[id]; dup {
			r.Fail("attribution account %q repeated", id)
		}
		accounts[id] = a
	}
	if err := r.End(); err != nil {
		return fmt.Errorf("attribution restore: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accounts, p.position = accounts, position
	return nil
}
