package ledger

import "fmt"

// Rule names a domain rule. Each is a stable identifier that clients can
// match on; the HTTP API turns it into a problem type.
type Rule string

// The rules of the ledger.
const (
	RuleAccountExists        Rule = "account-exists"
	RuleAccountNotFound      Rule = "account-not-found"
	RuleInvalidAccountID     Rule = "invalid-account-id"
	RuleInvalidAccountName   Rule = "invalid-account-name"
	RuleInvalidCount         Rule = "invalid-count"
	RuleReductionBelowActive Rule = "reduction-below-active-users"
	RuleNoSeatAvailable      Rule = "no-seat-available"
	RuleDuplicateEmail       Rule = "duplicate-email"
	RuleInvalidUser          Rule = "invalid-user"
	RuleUserExists           Rule = "user-exists"
	RuleUserNotFound         Rule = "user-not-found"
	RuleLastActiveAdmin      Rule = "last-active-admin"
	RuleUserDeleted          Rule = "user-deleted"
	RuleConfirmationRequired Rule = "confirmation-required"
	RuleInvalidReassignment  Rule = "invalid-reassignment"
	RuleUserDeactivated      Rule = "user-deactivated"
	RuleInvalidActivity      Rule = "invalid-activity"
	RuleInvalidCommand       Rule = "invalid-command"
)

// RuleError is returned by [Decide] when a command breaks a rule. Nothing
// happened: no event was decided.
type RuleError struct {
	Rule   Rule
	Detail string
}

// Error returns the detail: a sentence a person understands.
func (e *RuleError) Error() string {
	if e.Detail == "" {
		return string(e.Rule)
	}
	return e.Detail
}

// Is reports whether target is a RuleError for the same rule, so that
// errors.Is(err, ledger.ErrNoSeatAvailable) matches whatever the detail.
func (e *RuleError) Is(target error) bool {
	t, ok := target.(*RuleError)
	return ok && t.Rule == e.Rule
}

func refuse(rule Rule, format string, args ...any) *RuleError {
	return &RuleError{Rule: rule, Detail: fmt.Sprintf(format, args...)}
}

// Sentinels for errors.Is, one per rule.
var (
	// ErrAccountExists is returned when opening an account whose id is taken.
	ErrAccountExists = &RuleError{Rule: RuleAccountExists}
	// ErrAccountNotFound is returned for a command on an account never opened.
	ErrAccountNotFound = &RuleError{Rule: RuleAccountNotFound}
	// ErrInvalidAccountID is returned when an account id does not match
	// [a-z0-9][a-z0-9_-]{0,62}.
	ErrInvalidAccountID = &RuleError{Rule: RuleInvalidAccountID}
	// ErrInvalidAccountName is returned for an empty or oversized account name.
	ErrInvalidAccountName = &RuleError{Rule: RuleInvalidAccountName}
	// ErrInvalidCount is returned for a seat count below 1 or above MaxSeats.
	ErrInvalidCount = &RuleError{Rule: RuleInvalidCount}
	// ErrReductionBelowActive is returned when a reduction would leave fewer
	// seats than active users.
	ErrReductionBelowActive = &RuleError{Rule: RuleReductionBelowActive}
	// ErrNoSeatAvailable is returned when adding or activating a user with
	// every seat taken, counting pending reductions.
	ErrNoSeatAvailable = &RuleError{Rule: RuleNoSeatAvailable}
	// ErrDuplicateEmail is returned when adding a user whose email another
	// user that is not deleted already has.
	ErrDuplicateEmail = &RuleError{Rule: RuleDuplicateEmail}
	// ErrInvalidUser is returned for a user with an empty or oversized name,
	// a malformed email or an unknown role.
	ErrInvalidUser = &RuleError{Rule: RuleInvalidUser}
	// ErrUserExists is returned when adding a user with an id already used.
	ErrUserExists = &RuleError{Rule: RuleUserExists}
	// ErrUserNotFound is returned for a command on a user the account never had.
	ErrUserNotFound = &RuleError{Rule: RuleUserNotFound}
	// ErrLastActiveAdmin is returned when deactivating or deleting the only
	// active admin of an account.
	ErrLastActiveAdmin = &RuleError{Rule: RuleLastActiveAdmin}
	// ErrUserDeleted is returned for any command on a deleted user: deleted
	// users cannot be recovered.
	ErrUserDeleted = &RuleError{Rule: RuleUserDeleted}
	// ErrConfirmationRequired is returned when deleting without confirming
	// with the user's id.
	ErrConfirmationRequired = &RuleError{Rule: RuleConfirmationRequired}
	// ErrInvalidReassignment is returned when reassign_to is the deleted user
	// themself, unknown or deleted.
	ErrInvalidReassignment = &RuleError{Rule: RuleInvalidReassignment}
	// ErrUserDeactivated is returned when a deactivated user records an activity.
	ErrUserDeactivated = &RuleError{Rule: RuleUserDeactivated}
	// ErrInvalidActivity is returned for an activity with an empty or
	// oversized kind or reference, or a reused activity id.
	ErrInvalidActivity = &RuleError{Rule: RuleInvalidActivity}
	// ErrInvalidCommand is returned for a command the ledger does not know or
	// one missing its time.
	ErrInvalidCommand = &RuleError{Rule: RuleInvalidCommand}
)
