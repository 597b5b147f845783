package ledger

import "time"

// Event is something that happened to an account's license ledger. The
// concrete types are the event catalogue: [AccountOpened], [SeatsPurchased],
// [SeatReductionScheduled], [UserAdded], [UserDeactivated], [UserActivated],
// [UserDeleted], [ActivityRecorded], [UserProfileUpdated] and
// [UserRoleChanged].
type Event interface {
	// EventType returns the event's public type name, as in DESIGN.md.
	EventType() string
	// OccurredAt returns when the event happened.
	OccurredAt() time.Time
	isEvent()
}

// Event type names, as they appear on the wire and on NATS subjects.
const (
	TypeAccountOpened          = "AccountOpened"
	TypeSeatsPurchased         = "SeatsPurchased"
	TypeSeatReductionScheduled = "SeatReductionScheduled"
	TypeUserAdded              = "UserAdded"
	TypeUserDeactivated        = "UserDeactivated"
	TypeUserActivated          = "UserActivated"
	TypeUserDeleted            = "UserDeleted"
	TypeActivityRecorded       = "ActivityRecorded"
	TypeUserProfileUpdated     = "UserProfileUpdated"
	TypeUserRoleChanged        = "UserRoleChanged"
)

// EventTypes lists every event type of the catalogue.
var EventTypes = []string{
	TypeAccountOpened, TypeSeatsPurchased, TypeSeatReductionScheduled,
	TypeUserAdded, TypeUserDeactivated, TypeUserActivated, TypeUserDeleted,
	TypeActivityRecorded, TypeUserProfileUpdated, TypeUserRoleChanged,
}

// AccountOpened records that an account was opened with its first seats.
type AccountOpened struct {
	Account string
	Name    string
	Seats   int
	At      time.Time
}

// SeatsPurchased records seats added to an account at once.
type SeatsPurchased struct {
	Count int
	At    time.Time
}

// SeatReductionScheduled records that seats will be removed from the
// start of the next billing cycle.
type SeatReductionScheduled struct {
	Count       int
	EffectiveAt time.Time
	At          time.Time
}

// UserAdded records a new user taking a seat. Name and Email are personal
// data: plaintext here, sealed under the user's key when stored.
type UserAdded struct {
	UserID string
	Name   string
	Email  string
	Role   Role
	// ExternalID is the identity provider's identifier of the user, blank
	// when none; sealed like the email.
	ExternalID string
	At         time.Time
}

// UserDeactivated records a user losing access and freeing their seat. The
// reason is free text about a person and is sealed like a name.
type UserDeactivated struct {
	UserID string
	Reason string
	At     time.Time
}

// UserActivated records a deactivated user taking a seat again.
type UserActivated struct {
	UserID string
	At     time.Time
}

// UserDeleted records a user removed for good. Their records stay; their
// ownership moves to ReassignTo when it is set. Their personal data becomes
// unreadable once their key is destroyed.
type UserDeleted struct {
	UserID     string
	ReassignTo string
	At         time.Time
}

// ActivityRecorded records an activity a user logged. It belongs to the
// account's activity stream, not its ledger stream.
type ActivityRecorded struct {
	ActivityID string
	UserID     string
	Kind       string
	Ref        string
	At         time.Time
}

// UserProfileUpdated records a new name, a new email or both for a user
// not deleted. A blank field is unchanged. Both are personal data, sealed
// under the key the user was added with, so deleting the user erases every
// name and email they ever had.
type UserProfileUpdated struct {
	UserID string
	Name   string
	Email  string
	// ExternalID is a new identity provider's identifier, sealed likewise.
	ExternalID string
	At         time.Time
}

// UserRoleChanged records a user not deleted becoming an admin or a member.
type UserRoleChanged struct {
	UserID string
	Role   Role
	At     time.Time
}

// EventType returns "AccountOpened".
func (AccountOpened) EventType() string { return TypeAccountOpened }

// EventType returns "SeatsPurchased".
func (SeatsPurchased) EventType() string { return TypeSeatsPurchased }

// EventType returns "SeatReductionScheduled".
func (SeatReductionScheduled) EventType() string { return TypeSeatReductionScheduled }

// EventType returns "UserAdded".
func (UserAdded) EventType() string { return TypeUserAdded }

// EventType returns "UserDeactivated".
func (UserDeactivated) EventType() string { return TypeUserDeactivated }

// EventType returns "UserActivated".
func (UserActivated) EventType() string { return TypeUserActivated }

// EventType returns "UserDeleted".
func (UserDeleted) EventType() string { return TypeUserDeleted }

// EventType returns "ActivityRecorded".
func (ActivityRecorded) EventType() string { return TypeActivityRecorded }

// EventType returns "UserProfileUpdated".
func (UserProfileUpdated) EventType() string { return TypeUserProfileUpdated }

// EventType returns "UserRoleChanged".
func (UserRoleChanged) EventType() string { return TypeUserRoleChanged }

// OccurredAt returns when the profile was updated.
func (e UserProfileUpdated) OccurredAt() time.Time { return e.At }

// OccurredAt returns when the role changed.
func (e UserRoleChanged) OccurredAt() time.Time { return e.At }

// OccurredAt returns when the account was opened.
func (e AccountOpened) OccurredAt() time.Time { return e.At }

// OccurredAt returns when the seats were purchased.
func (e SeatsPurchased) OccurredAt() time.Time { return e.At }

// OccurredAt returns when the reduction was scheduled (not when it takes
// effect).
func (e SeatReductionScheduled) OccurredAt() time.Time { return e.At }

// OccurredAt returns when the user was added.
func (e UserAdded) OccurredAt() time.Time { return e.At }

// OccurredAt returns when the user was deactivated.
func (e UserDeactivated) OccurredAt() time.Time { return e.At }

// OccurredAt returns when the user was activated.
func (e UserActivated) OccurredAt() time.Time { return e.At }

// OccurredAt returns when the user was deleted.
func (e UserDeleted) OccurredAt() time.Time { return e.At }

// OccurredAt returns when the activity was recorded.
func (e ActivityRecorded) OccurredAt() time.Time { return e.At }

func (AccountOpened) isEvent()          {}
func (SeatsPurchased) isEvent()         {}
func (SeatReductionScheduled) isEvent() {}
func (UserAdded) isEvent()              {}
func (UserDeactivated) isEvent()        {}
func (UserActivated) isEvent()          {}
func (UserDeleted) isEvent()            {}
func (ActivityRecorded) isEvent()       {}
func (UserProfileUpdated) isEvent()     {}
func (UserRoleChanged) isEvent()        {}

// UserOf returns the id of the user an event is about, or "" for account
// events.
func UserOf(e Event) string {
	switch e := e.(type) {
	case UserAdded:
		return e.UserID
	case UserDeactivated:
		return e.UserID
	case UserActivated:
		return e.UserID
	case UserDeleted:
		return e.UserID
	case ActivityRecorded:
		return e.UserID
	case UserProfileUpdated:
		return e.UserID
	case UserRoleChanged:
		return e.UserID
	}
	return ""
}

// IsActivity reports whether e belongs to the activity stream rather than
// the ledger stream.
func IsActivity(e Event) bool {
	_, ok := e.(ActivityRecorded)
	return ok
}
