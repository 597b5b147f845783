package ledger

import "time"

// Command is a request to change an account's ledger. Every command carries
// the time it is decided at; commands that create something carry its new
// id. Both come from the caller, so deciding stays pure.
type Command interface {
	// CommandName returns the command's name, e.g. "DeactivateUser".
	CommandName() string
	isCommand()
}

// OpenAccount opens an account with its first seats.
type OpenAccount struct {
	Account string
	Name    string
	Seats   int
	At      time.Time
}

// PurchaseSeats adds seats to an account at once.
type PurchaseSeats struct {
	Count int
	At    time.Time
}

// ScheduleSeatReduction removes seats from the start of the next billing
// cycle. Only support staff may give it; that is checked before deciding.
type ScheduleSeatReduction struct {
	Count int
	At    time.Time
}

// AddUser adds a user, who takes a seat.
type AddUser struct {
	UserID string
	Name   string
	Email  string
	Role   Role
	// ExternalID is the identifier an identity provider gives the user
	// (SCIM externalId); optional, personal data like the email.
	ExternalID string
	At         time.Time
}

// DeactivateUser frees a user's seat and blocks their access, keeping their
// name on everything they did.
type DeactivateUser struct {
	UserID string
	Reason string
	At     time.Time
}

// ActivateUser gives a deactivated user a seat again.
type ActivateUser struct {
	UserID string
	At     time.Time
}

// DeleteUser removes a user for good. Confirm must equal UserID. When
// ReassignTo is set, the user's records are owned by that user from then on.
type DeleteUser struct {
	UserID     string
	Confirm    string
	ReassignTo string
	At         time.Time
}

// RecordActivity records an activity an active user logged.
type RecordActivity struct {
	ActivityID string
	UserID     string
	Kind       string
	Ref        string
	At         time.Time
}

// UpdateUser changes the profile and role of a user not deleted. A nil
// field is left as it is; a field equal to the current value changes
// nothing. A new name or email becomes a [UserProfileUpdated], a new role a
// [UserRoleChanged], decided together.
type UpdateUser struct {
	UserID     string
	Name       *string
	Email      *string
	Role       *Role
	ExternalID *string
	At         time.Time
}

// CommandName returns "OpenAccount".
func (OpenAccount) CommandName() string { return "OpenAccount" }

// CommandName returns "PurchaseSeats".
func (PurchaseSeats) CommandName() string { return "PurchaseSeats" }

// CommandName returns "ScheduleSeatReduction".
func (ScheduleSeatReduction) CommandName() string { return "ScheduleSeatReduction" }

// CommandName returns "AddUser".
func (AddUser) CommandName() string { return "AddUser" }

// CommandName returns "DeactivateUser".
func (DeactivateUser) CommandName() string { return "DeactivateUser" }

// CommandName returns "ActivateUser".
func (ActivateUser) CommandName() string { return "ActivateUser" }

// CommandName returns "DeleteUser".
func (DeleteUser) CommandName() string { return "DeleteUser" }

// CommandName returns "RecordActivity".
func (RecordActivity) CommandName() string { return "RecordActivity" }

func (OpenAccount) isCommand()           {}
func (PurchaseSeats) isCommand()         {}
func (ScheduleSeatReduction) isCommand() {}
func (AddUser) isCommand()               {}
func (DeactivateUser) isCommand()        {}
func (ActivateUser) isCommand()          {}
func (DeleteUser) isCommand()            {}
func (RecordActivity) isCommand()        {}
func (UpdateUser) isCommand()            {}

// CommandName returns "UpdateUser".
func (UpdateUser) CommandName() string { return "UpdateUser" }
