package ledger

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on what a command may carry.
const (
	MaxSeats    = 1_000_000
	MaxNameLen  = 200
	MaxEmailLen = 254
	// MaxExternalIDLen bounds an identity provider's identifier of a user.
	MaxExternalIDLen = 256
	MaxReasonLen     = 500
	MaxRefLen        = 200
	MaxAccountName   = 200
)

// ValidAccountID reports whether id is a well-formed account id:
// [a-z0-9][a-z0-9_-]{0,62}.
func ValidAccountID(id string) bool { return validToken(id, 63, false, false) }

// ValidID reports whether id is a well-formed user or activity id:
// [A-Za-z0-9][A-Za-z0-9_-]{0,63}.
func ValidID(id string) bool { return validToken(id, 64, true, false) }

// validKind reports whether k is a well-formed activity kind:
// [a-z0-9][a-z0-9_.-]{0,63}.
func validKind(k string) bool { return validToken(k, 64, false, true) }

// validToken reports whether s is 1 to maxLen ASCII lower-case letters
// (and upper-case ones with upper), digits, and, after the first, _ and -
// (and . with dot). Every command checks a few such ids: a loop over the
// bytes costs a tenth of a regular expression.
func validToken(s string, maxLen int, upper, dot bool) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case upper && 'A' <= c && c <= 'Z':
		case i > 0 && (c == '_' || c == '-'):
		case i > 0 && dot && c == '.':
		default:
			return false
		}
	}
	return true
}

// Decide returns the events cmd causes on an account in state s, or a
// *RuleError when cmd breaks a rule. A command that changes nothing (a
// repeated deactivation or activation) returns no event and no error.
func Decide(s State, cmd Command) ([]Event, error) {
	at, known := commandTime(cmd)
	if !known {
		return nil, refuse(RuleInvalidCommand, "unknown command %T", cmd)
	}
	if c, ok := cmd.(OpenAccount); ok {
		return decideOpen(s, c)
	}
	if !s.Opened() {
		return nil, refuse(RuleAccountNotFound, "account not found")
	}
	if at.IsZero() {
		return nil, refuse(RuleInvalidCommand, "command has no time")
	}
	switch c := cmd.(type) {
	case PurchaseSeats:
		if err := checkCount(c.Count); err != nil {
			return nil, err
		}
		return one(SeatsPurchased{Count: c.Count, At: s.at(c.At)})
	case ScheduleSeatReduction:
		return decideReduction(s, c)
	case AddUser:
		return decideAdd(s, c)
	case DeactivateUser:
		return decideDeactivate(s, c)
	case ActivateUser:
		return decideActivate(s, c)
	case DeleteUser:
		return decideDelete(s, c)
	case RecordActivity:
		return decideActivity(s, c)
	case UpdateUser:
		return decideUpdate(s, c)
	}
	return nil, refuse(RuleInvalidCommand, "unknown command %T", cmd)
}

// commandTime returns the time cmd is decided at and whether cmd is a
// command the ledger knows.
func commandTime(cmd Command) (time.Time, bool) {
	switch c := cmd.(type) {
	case OpenAccount:
		return c.At, true
	case PurchaseSeats:
		return c.At, true
	case ScheduleSeatReduction:
		return c.At, true
	case AddUser:
		return c.At, true
	case DeactivateUser:
		return c.At, true
	case ActivateUser:
		return c.At, true
	case DeleteUser:
		return c.At, true
	case RecordActivity:
		return c.At, true
	case UpdateUser:
		return c.At, true
	}
	return time.Time{}, false
}

// at keeps an account's event times from going backwards when clocks of
// several writers disagree: replay as of an instant relies on it.
func (s State) at(t time.Time) time.Time {
	t = t.UTC()
	if t.Before(s.LastAt) {
		return s.LastAt
	}
	return t
}

func one(e Event) ([]Event, error) { return []Event{e}, nil }

func checkCount(n int) error {
	if n < 1 || n > MaxSeats {
		return refuse(RuleInvalidCount, "seat count must be between 1 and %d, got %d", MaxSeats, n)
	}
	return nil
}

func decideOpen(s State, c OpenAccount) ([]Event, error) {
	if s.Opened() {
		return nil, refuse(RuleAccountExists, "account %q already exists", s.Account)
	}
	if !ValidAccountID(c.Account) {
		return nil, refuse(RuleInvalidAccountID, "account id must match [a-z0-9][a-z0-9_-]{0,62}")
	}
	name := strings.TrimSpace(c.Name)
	if name == "" || utf8.RuneCountInString(name) > MaxAccountName || !printable(name) {
		return nil, refuse(RuleInvalidAccountName, "account name must be 1 to %d printable characters", MaxAccountName)
	}
	if err := checkCount(c.Seats); err != nil {
		return nil, err
	}
	if c.At.IsZero() {
		return nil, refuse(RuleInvalidCommand, "command has no time")
	}
	return one(AccountOpened{Account: c.Account, Name: name, Seats: c.Seats, At: c.At.UTC()})
}

func decideReduction(s State, c ScheduleSeatReduction) ([]Event, error) {
	if err := checkCount(c.Count); err != nil {
		return nil, err
	}
	after := s.SeatsAfterReductions()
	if after-c.Count < s.Active {
		return nil, refuse(RuleReductionBelowActive,
			"cannot remove %d seats: %d would remain for %d active users; deactivate users first",
			c.Count, after-c.Count, s.Active)
	}
	at := s.at(c.At)
	return one(SeatReductionScheduled{Count: c.Count, EffectiveAt: NextCycleStart(s.OpenedAt, at), At: at})
}

func decideAdd(s State, c AddUser) ([]Event, error) {
	if !ValidID(c.UserID) {
		return nil, refuse(RuleInvalidUser, "user id must match [A-Za-z0-9][A-Za-z0-9_-]{0,63}")
	}
	if _, ok := s.Users[c.UserID]; ok {
		return nil, refuse(RuleUserExists, "user %s already exists", c.UserID)
	}
	name, email := strings.TrimSpace(c.Name), strings.TrimSpace(c.Email)
	if name == "" || utf8.RuneCountInString(name) > MaxNameLen || !printable(name) {
		return nil, refuse(RuleInvalidUser, "name must be 1 to %d printable characters", MaxNameLen)
	}
	if !validEmail(email) {
		return nil, refuse(RuleInvalidUser, "email must look like name@example.com")
	}
	if !c.Role.Valid() {
		return nil, refuse(RuleInvalidUser, "role must be admin or member")
	}
	ext := strings.TrimSpace(c.ExternalID)
	if !validExternalID(ext) {
		return nil, refuse(RuleInvalidUser, "an external id must be at most %d printable characters", MaxExternalIDLen)
	}
	if s.EmailInUse(email) {
		return nil, refuse(RuleDuplicateEmail, "another user of this account has that email")
	}
	if s.Available() < 1 {
		return nil, noSeat(s, s.at(c.At))
	}
	return one(UserAdded{UserID: c.UserID, Name: name, Email: email, Role: c.Role, ExternalID: ext, At: s.at(c.At)})
}

// noSeat explains a refusal for want of a seat at t: reductions already in
// effect are simply fewer seats, pending ones are named.
func noSeat(s State, t time.Time) error {
	if pending, _ := s.PendingReduction(t); pending > 0 {
		return refuse(RuleNoSeatAvailable, "no seat available: %d of %d in use, counting a pending reduction of %d",
			s.Active, s.SeatsAfterReductions(), pending)
	}
	return refuse(RuleNoSeatAvailable, "no seat available: %d of %d in use", s.Active, s.SeatsAfterReductions())
}

// user returns the user a command is about, refusing unknown and deleted
// users.
func (s State) user(id string) (User, error) {
	u, ok := s.Users[id]
	if !ok {
		return User{}, refuse(RuleUserNotFound, "user %q not found", id)
	}
	if u.Status == StatusDeleted {
		return User{}, refuse(RuleUserDeleted, "user %s was deleted: deleted users cannot be recovered", id)
	}
	return u, nil
}

func (s State) lastActiveAdmin(u User) bool {
	return u.Status == StatusActive && u.Role == RoleAdmin && s.ActiveAdmins <= 1
}

func decideDeactivate(s State, c DeactivateUser) ([]Event, error) {
	u, err := s.user(c.UserID)
	if err != nil {
		return nil, err
	}
	if u.Status == StatusDeactivated {
		return nil, nil
	}
	if s.lastActiveAdmin(u) {
		return nil, refuse(RuleLastActiveAdmin, "user %s is the last active admin: make another user admin first", u.ID)
	}
	reason := strings.TrimSpace(c.Reason)
	if utf8.RuneCountInString(reason) > MaxReasonLen || !printable(reason) {
		return nil, refuse(RuleInvalidUser, "reason must be at most %d printable characters", MaxReasonLen)
	}
	return one(UserDeactivated{UserID: u.ID, Reason: reason, At: s.at(c.At)})
}

func decideActivate(s State, c ActivateUser) ([]Event, error) {
	u, err := s.user(c.UserID)
	if err != nil {
		return nil, err
	}
	if u.Status == StatusActive {
		return nil, nil
	}
	if s.Available() < 1 {
		return nil, noSeat(s, s.at(c.At))
	}
	return one(UserActivated{UserID: u.ID, At: s.at(c.At)})
}

func decideDelete(s State, c DeleteUser) ([]Event, error) {
	u, err := s.user(c.UserID)
	if err != nil {
		return nil, err
	}
	if c.Confirm != c.UserID {
		return nil, refuse(RuleConfirmationRequired,
			"deleting user %s is permanent and cannot be undone; confirm with the user's id, or deactivate the user instead to keep them", u.ID)
	}
	if s.lastActiveAdmin(u) {
		return nil, refuse(RuleLastActiveAdmin, "user %s is the last active admin: make another user admin first", u.ID)
	}
	if c.ReassignTo != "" {
		to, ok := s.Users[c.ReassignTo]
		if !ok || to.ID == u.ID || to.Status == StatusDeleted {
			return nil, refuse(RuleInvalidReassignment, "reassign_to must be another user of this account that is not deleted")
		}
	}
	return one(UserDeleted{UserID: u.ID, ReassignTo: c.ReassignTo, At: s.at(c.At)})
}

func decideActivity(s State, c RecordActivity) ([]Event, error) {
	if !ValidID(c.ActivityID) {
		return nil, refuse(RuleInvalidActivity, "activity id must match [A-Za-z0-9][A-Za-z0-9_-]{0,63}")
	}
	if !validKind(c.Kind) {
		return nil, refuse(RuleInvalidActivity, "kind must match [a-z0-9][a-z0-9_.-]{0,63}")
	}
	if c.Ref == "" || utf8.RuneCountInString(c.Ref) > MaxRefLen || !printable(c.Ref) {
		return nil, refuse(RuleInvalidActivity, "ref must be 1 to %d printable characters", MaxRefLen)
	}
	u, err := s.user(c.UserID)
	if err != nil {
		return nil, err
	}
	if u.Status != StatusActive {
		return nil, refuse(RuleUserDeactivated, "user %s is deactivated and cannot record activities", u.ID)
	}
	return one(ActivityRecorded{ActivityID: c.ActivityID, UserID: u.ID, Kind: c.Kind, Ref: c.Ref, At: s.at(c.At)})
}

func decideUpdate(s State, c UpdateUser) ([]Event, error) {
	u, err := s.user(c.UserID)
	if err != nil {
		return nil, err
	}
	var profile UserProfileUpdated
	if c.Name != nil {
		name := strings.TrimSpace(*c.Name)
		if name == "" || utf8.RuneCountInString(name) > MaxNameLen || !printable(name) {
			return nil, refuse(RuleInvalidUser, "name must be 1 to %d printable characters", MaxNameLen)
		}
		if name != u.Name {
			profile.Name = name
		}
	}
	if c.Email != nil {
		email := strings.TrimSpace(*c.Email)
		if !validEmail(email) {
			return nil, refuse(RuleInvalidUser, "email must look like name@example.com")
		}
		if id, taken := s.emailOwner(email); taken && id != u.ID {
			return nil, refuse(RuleDuplicateEmail, "another user of this account has that email")
		}
		if email != u.Email {
			profile.Email = email
		}
	}
	if c.ExternalID != nil {
		ext := strings.TrimSpace(*c.ExternalID)
		if ext == "" || !validExternalID(ext) {
			return nil, refuse(RuleInvalidUser, "an external id must be 1 to %d printable characters", MaxExternalIDLen)
		}
		if ext != u.ExternalID {
			profile.ExternalID = ext
		}
	}
	if c.Role != nil && !c.Role.Valid() {
		return nil, refuse(RuleInvalidUser, "role must be admin or member")
	}
	at := s.at(c.At)
	var events []Event
	if profile.Name != "" || profile.Email != "" || profile.ExternalID != "" {
		profile.UserID, profile.At = u.ID, at
		events = append(events, profile)
	}
	if c.Role != nil && *c.Role != u.Role {
		if s.lastActiveAdmin(u) {
			return nil, refuse(RuleLastActiveAdmin, "user %s is the last active admin: make another user admin first", u.ID)
		}
		events = append(events, UserRoleChanged{UserID: u.ID, Role: *c.Role, At: at})
	}
	return events, nil
}

func validExternalID(id string) bool {
	return utf8.RuneCountInString(id) <= MaxExternalIDLen && printable(id)
}

func validEmail(e string) bool {
	if len(e) > MaxEmailLen || !printable(e) || strings.ContainsAny(e, " \t<>,;\"") {
		return false
	}
	local, domain, ok := strings.Cut(e, "@")
	return ok && local != "" && domain != "" && !strings.Contains(domain, "@") &&
		strings.Contains(domain, ".") && !strings.HasPrefix(domain, ".") && !strings.HasSuffix(domain, ".")
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return utf8.ValidString(s)
}

func foldEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }
