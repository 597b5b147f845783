package ledger

import (
	"maps"
	"slices"
	"time"
)

// Role is what a user may do in their account.
type Role string

// The roles a user can have.
const (
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleMember }

// Status is where a user is in their lifecycle.
type Status string

// The statuses of a user. Deleted is final.
const (
	StatusActive      Status = "active"
	StatusDeactivated Status = "deactivated"
	StatusDeleted     Status = "deleted"
)

// User is one user of an account as the ledger knows them.
type User struct {
	ID    string
	Name  string // blank once deleted
	Email string // blank once deleted
	// ExternalID is the identity provider's identifier, blank when none
	// and once deleted.
	ExternalID string
	Role       Role
	Status     Status
	// Reason is the reason given at the last deactivation, blank once deleted.
	Reason     string
	AddedAt    time.Time
	ChangedAt  time.Time
	ReassignTo string // set when deleted with reassignment
}

// Reduction is a scheduled seat reduction.
type Reduction struct {
	Count       int
	ScheduledAt time.Time
	EffectiveAt time.Time
}

// State is an account's license ledger folded from its events. The zero
// State is an account not yet opened.
//
// Evolve reuses a State's maps and slices for speed: a caller that needs the
// state before an event after applying it keeps a [State.Clone].
type State struct {
	Account  string
	Name     string
	OpenedAt time.Time
	// Seats is the seats at opening plus every purchase, before reductions.
	Seats      int
	Reductions []Reduction
	Users      map[string]User
	// Order lists user ids in the order they were added.
	Order []string

	Active, Deactivated, Deleted int
	ActiveAdmins                 int
	PeakActive                   int

	// Version counts the ledger events folded into the state: the ledger
	// stream's revision plus one.
	Version uint64
	// LastAt is the time of the last event folded, ledger or activity.
	LastAt time.Time

	emails map[string]string // lower-cased email -> user id, users not deleted
}

// Opened reports whether the account exists.
func (s State) Opened() bool { return s.Account != "" }

// Clone returns a deep copy of s that later Evolve calls on s leave alone.
func (s State) Clone() State {
	c := s
	c.Reductions = slices.Clone(s.Reductions)
	c.Users = maps.Clone(s.Users)
	c.Order = slices.Clone(s.Order)
	c.emails = maps.Clone(s.emails)
	return c
}

// SeatsAt returns Seats(t): the seats at opening plus those purchased minus
// the reductions effective at or before t.
func (s State) SeatsAt(t time.Time) int {
	n := s.Seats
	for _, r := range s.Reductions {
		if !r.EffectiveAt.After(t) {
			n -= r.Count
		}
	}
	return n
}

// SeatsAfterReductions returns the seats left once every scheduled
// reduction has taken effect.
func (s State) SeatsAfterReductions() int {
	n := s.Seats
	for _, r := range s.Reductions {
		n -= r.Count
	}
	return n
}

// Available returns the seats a user could take now: the seats after every
// pending reduction minus the active users.
func (s State) Available() int { return s.SeatsAfterReductions() - s.Active }

// PendingReduction returns the seats that reductions not yet effective at t
// will remove, and when the first of them takes effect.
func (s State) PendingReduction(t time.Time) (count int, effective time.Time) {
	for _, r := range s.Reductions {
		if r.EffectiveAt.After(t) {
			count += r.Count
			if effective.IsZero() || r.EffectiveAt.Before(effective) {
				effective = r.EffectiveAt
			}
		}
	}
	return count, effective
}

// User returns the user with id and whether the account has them.
func (s State) User(id string) (User, bool) {
	u, ok := s.Users[id]
	return u, ok
}

// EmailInUse reports whether a user that is not deleted has email,
// compared without regard to case.
func (s State) EmailInUse(email string) bool {
	if s.emails == nil && len(s.Users) > 0 {
		// A State built without Evolve (a literal, a decoded snapshot) has
		// no index yet.
		_, ok := emailIndex(s.Users)[foldEmail(email)]
		return ok
	}
	_, ok := s.emails[foldEmail(email)]
	return ok
}

// emailOwner returns the user not deleted who has email, compared without
// regard to case.
func (s State) emailOwner(email string) (string, bool) {
	idx := s.emails
	if idx == nil {
		idx = emailIndex(s.Users)
	}
	id, ok := idx[foldEmail(email)]
	return id, ok
}

// emailIndex maps the lower-cased email of every user not deleted to the
// user's id.
func emailIndex(users map[string]User) map[string]string {
	idx := make(map[string]string, len(users))
	for id, u := range users {
		if u.Status != StatusDeleted && u.Email != "" {
			idx[foldEmail(u.Email)] = id
		}
	}
	return idx
}
