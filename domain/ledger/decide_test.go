package ledger_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
)

var (
	// feb15 is the start of acme's second billing cycle.
	feb15 = time.Date(2025, time.February, 15, 0, 0, 0, 0, time.UTC)
	mar15 = time.Date(2025, time.March, 15, 0, 0, 0, 0, time.UTC)
	// paris is a zone other than UTC: decided times must come out in UTC.
	paris = time.FixedZone("CET", 3600)
)

func TestDecideOpenAccount(t *testing.T) {
	long := func(n int, s string) string { return strings.Repeat(s, n) }
	open := func(id, name string, seats int) ledger.OpenAccount {
		return ledger.OpenAccount{Account: id, Name: name, Seats: seats, At: t0}
	}
	runDecideCases(t, []decideCase{
		{name: "opens with trimmed name in UTC",
			cmd:  ledger.OpenAccount{Account: "acme", Name: "  Acme Ltd \t", Seats: 3, At: t0.In(paris)},
			want: events(ledger.AccountOpened{Account: "acme", Name: "Acme Ltd", Seats: 3, At: t0})},
		{name: "id of 63 characters", cmd: open("a"+long(62, "b"), "A", 1),
			want: events(ledger.AccountOpened{Account: "a" + long(62, "b"), Name: "A", Seats: 1, At: t0})},
		{name: "id with digits dash underscore", cmd: open("0a_b-c", "A", 1),
			want: events(ledger.AccountOpened{Account: "0a_b-c", Name: "A", Seats: 1, At: t0})},
		{name: "name of 200 runes", cmd: open("acme", long(200, "é"), 1),
			want: events(ledger.AccountOpened{Account: "acme", Name: long(200, "é"), Seats: 1, At: t0})},
		{name: "max seats", cmd: open("acme", "A", ledger.MaxSeats),
			want: events(ledger.AccountOpened{Account: "acme", Name: "A", Seats: ledger.MaxSeats, At: t0})},

		{name: "exists", given: events(opened(1)), cmd: open("acme", "A", 1), err: ledger.ErrAccountExists},
		{name: "exists under another id", given: events(opened(1)), cmd: open("other", "A", 1), err: ledger.ErrAccountExists},

		{name: "empty id", cmd: open("", "A", 1), err: ledger.ErrInvalidAccountID},
		{name: "id of 64 characters", cmd: open("a"+long(63, "b"), "A", 1), err: ledger.ErrInvalidAccountID},
		{name: "upper-case id", cmd: open("Acme", "A", 1), err: ledger.ErrInvalidAccountID},
		{name: "id starting with dash", cmd: open("-acme", "A", 1), err: ledger.ErrInvalidAccountID},
		{name: "id starting with underscore", cmd: open("_acme", "A", 1), err: ledger.ErrInvalidAccountID},
		{name: "id with space", cmd: open("ac me", "A", 1), err: ledger.ErrInvalidAccountID},
		{name: "id with dot", cmd: open("acme.io", "A", 1), err: ledger.ErrInvalidAccountID},
		{name: "id with slash", cmd: open("acme/x", "A", 1), err: ledger.ErrInvalidAccountID},
		{name: "id with trailing newline", cmd: open("acme\n", "A", 1), err: ledger.ErrInvalidAccountID},
		{name: "non-ascii id", cmd: open("acmé", "A", 1), err: ledger.ErrInvalidAccountID},

		{name: "empty name", cmd: open("acme", "", 1), err: ledger.ErrInvalidAccountName},
		{name: "blank name", cmd: open("acme", " \t ", 1), err: ledger.ErrInvalidAccountName},
		{name: "name of 201 runes", cmd: open("acme", long(201, "é"), 1), err: ledger.ErrInvalidAccountName},
		{name: "name with control character", cmd: open("acme", "Ac\x00me", 1), err: ledger.ErrInvalidAccountName},
		{name: "name with invalid utf-8", cmd: open("acme", "Ac\xffme", 1), err: ledger.ErrInvalidAccountName},

		{name: "zero seats", cmd: open("acme", "A", 0), err: ledger.ErrInvalidCount},
		{name: "negative seats", cmd: open("acme", "A", -1), err: ledger.ErrInvalidCount},
		{name: "more than max seats", cmd: open("acme", "A", ledger.MaxSeats+1), err: ledger.ErrInvalidCount},
		{name: "no time", cmd: ledger.OpenAccount{Account: "acme", Name: "A", Seats: 1}, err: ledger.ErrInvalidCommand},
	})
}

func TestDecidePurchaseSeats(t *testing.T) {
	given := events(opened(2), admin("u1", 1))
	runDecideCases(t, []decideCase{
		{name: "one seat", given: given, cmd: ledger.PurchaseSeats{Count: 1, At: at(2)},
			want: events(ledger.SeatsPurchased{Count: 1, At: at(2)})},
		{name: "max seats", given: given, cmd: ledger.PurchaseSeats{Count: ledger.MaxSeats, At: at(2)},
			want: events(ledger.SeatsPurchased{Count: ledger.MaxSeats, At: at(2)})},
		{name: "time before last event is clamped", given: given, cmd: ledger.PurchaseSeats{Count: 1, At: t0},
			want: events(ledger.SeatsPurchased{Count: 1, At: at(1)})},
		{name: "zero", given: given, cmd: ledger.PurchaseSeats{Count: 0, At: at(2)}, err: ledger.ErrInvalidCount},
		{name: "negative", given: given, cmd: ledger.PurchaseSeats{Count: -3, At: at(2)}, err: ledger.ErrInvalidCount},
		{name: "more than max", given: given, cmd: ledger.PurchaseSeats{Count: ledger.MaxSeats + 1, At: at(2)},
			err: ledger.ErrInvalidCount},
		{name: "no time", given: given, cmd: ledger.PurchaseSeats{Count: 1}, err: ledger.ErrInvalidCommand},
	})
}

func TestDecideScheduleSeatReduction(t *testing.T) {
	reduce := func(n int, t time.Time) ledger.ScheduleSeatReduction {
		return ledger.ScheduleSeatReduction{Count: n, At: t}
	}
	scheduled := func(n int, effective, t time.Time) ledger.SeatReductionScheduled {
		return ledger.SeatReductionScheduled{Count: n, EffectiveAt: effective, At: t}
	}
	fourSeatsTwoActive := events(opened(4), admin("u1", 1), member("u2", 2))
	runDecideCases(t, []decideCase{
		{name: "effective at next cycle start", given: fourSeatsTwoActive, cmd: reduce(2, at(3)),
			want: events(scheduled(2, feb15, at(3)))},
		{name: "just before a cycle start", given: fourSeatsTwoActive, cmd: reduce(1, feb15.Add(-time.Nanosecond)),
			want: events(scheduled(1, feb15, feb15.Add(-time.Nanosecond)))},
		{name: "exactly at a cycle start takes the following one", given: fourSeatsTwoActive, cmd: reduce(1, feb15),
			want: events(scheduled(1, mar15, feb15))},
		{name: "time in another zone", given: fourSeatsTwoActive, cmd: reduce(1, at(3).In(paris)),
			want: events(scheduled(1, feb15, at(3)))},
		{name: "time before last event is clamped", given: fourSeatsTwoActive, cmd: reduce(1, t0),
			want: events(scheduled(1, feb15, at(2)))},
		{name: "down to the active users", given: fourSeatsTwoActive, cmd: reduce(2, at(3)),
			want: events(scheduled(2, feb15, at(3)))},
		{name: "below the active users", given: fourSeatsTwoActive, cmd: reduce(3, at(3)),
			err: ledger.ErrReductionBelowActive, detail: "deactivate users first"},
		{name: "counts pending reductions",
			given: concat(fourSeatsTwoActive, events(scheduled(1, feb15, at(3)))),
			cmd:   reduce(2, at(4)), err: ledger.ErrReductionBelowActive},
		{name: "on top of a pending reduction down to the active users",
			given: concat(fourSeatsTwoActive, events(scheduled(1, feb15, at(3)))),
			cmd:   reduce(1, at(4)), want: events(scheduled(1, feb15, at(4)))},
		{name: "counts reductions already in effect",
			given: concat(fourSeatsTwoActive, events(scheduled(1, feb15, at(3)))),
			cmd:   reduce(2, mar15), err: ledger.ErrReductionBelowActive},
		{name: "deactivated users hold no seat",
			given: concat(fourSeatsTwoActive, events(deactivated("u2", 3))),
			cmd:   reduce(3, at(4)), want: events(scheduled(3, feb15, at(4)))},
		{name: "purchased seats count",
			given: concat(fourSeatsTwoActive, events(ledger.SeatsPurchased{Count: 5, At: at(3)})),
			cmd:   reduce(7, at(4)), want: events(scheduled(7, feb15, at(4)))},
		{name: "every seat of an empty account", given: events(opened(2)), cmd: reduce(2, at(1)),
			want: events(scheduled(2, feb15, at(1)))},
		{name: "more seats than the account has", given: events(opened(2)), cmd: reduce(3, at(1)),
			err: ledger.ErrReductionBelowActive},
		{name: "zero", given: fourSeatsTwoActive, cmd: reduce(0, at(3)), err: ledger.ErrInvalidCount},
		{name: "negative", given: fourSeatsTwoActive, cmd: reduce(-1, at(3)), err: ledger.ErrInvalidCount},
		{name: "more than max", given: fourSeatsTwoActive, cmd: reduce(ledger.MaxSeats+1, at(3)), err: ledger.ErrInvalidCount},
		{name: "no time", given: fourSeatsTwoActive, cmd: reduce(1, time.Time{}), err: ledger.ErrInvalidCommand},
	})
}

func TestDecideAddUser(t *testing.T) {
	add := func(id, name, email string, role ledger.Role) ledger.AddUser {
		return ledger.AddUser{UserID: id, Name: name, Email: email, Role: role, At: at(10)}
	}
	ok := func(id, email string) ledger.AddUser { return add(id, "Cy", email, ledger.RoleMember) }
	want := func(id, email string) []ledger.Event {
		return events(ledger.UserAdded{UserID: id, Name: "Cy", Email: email, Role: ledger.RoleMember, At: at(10)})
	}
	// Three seats: an admin and a member, one seat free.
	base := events(opened(3), admin("u1", 1), member("u2", 2))
	full := events(opened(2), admin("u1", 1), member("u2", 2))
	long := strings.Repeat("x", 250) + "@a.io" // 255 bytes
	runDecideCases(t, []decideCase{
		{name: "member", given: base, cmd: ok("u3", "cy@example.com"), want: want("u3", "cy@example.com")},
		{name: "admin", given: base, cmd: add("u3", "Cy", "cy@example.com", ledger.RoleAdmin),
			want: events(ledger.UserAdded{UserID: "u3", Name: "Cy", Email: "cy@example.com", Role: ledger.RoleAdmin, At: at(10)})},
		{name: "first user of a new account", given: events(opened(1)), cmd: ok("u1", "cy@example.com"),
			want: want("u1", "cy@example.com")},
		{name: "name and email trimmed", given: base, cmd: add("u3", "  Cy \t", " cy@example.com\n", ledger.RoleMember),
			want: want("u3", "cy@example.com")},
		{name: "email case kept", given: base, cmd: ok("u3", "Cy.Doe@Example.COM"), want: want("u3", "Cy.Doe@Example.COM")},
		{name: "email of 254 bytes", given: base, cmd: ok("u3", long[1:]), want: want("u3", long[1:])},
		{name: "id of 64 characters", given: base, cmd: ok("U"+strings.Repeat("9", 63), "cy@example.com"),
			want: want("U"+strings.Repeat("9", 63), "cy@example.com")},
		{name: "time before last event is clamped", given: base,
			cmd:  ledger.AddUser{UserID: "u3", Name: "Cy", Email: "cy@example.com", Role: ledger.RoleMember, At: t0},
			want: events(ledger.UserAdded{UserID: "u3", Name: "Cy", Email: "cy@example.com", Role: ledger.RoleMember, At: at(2)})},

		{name: "no seat", given: full, cmd: ok("u3", "cy@example.com"), err: ledger.ErrNoSeatAvailable,
			detail: "2 of 2 in use"},
		{name: "no seat counting a pending reduction",
			given: concat(base, events(ledger.SeatReductionScheduled{Count: 1, EffectiveAt: feb15, At: at(3)})),
			cmd:   ok("u3", "cy@example.com"), err: ledger.ErrNoSeatAvailable, detail: "pending reduction of 1"},
		{name: "no seat after a reduction took effect",
			given: concat(base, events(ledger.SeatReductionScheduled{Count: 1, EffectiveAt: feb15, At: at(3)})),
			cmd:   ledger.AddUser{UserID: "u3", Name: "Cy", Email: "cy@example.com", Role: ledger.RoleMember, At: mar15},
			err:   ledger.ErrNoSeatAvailable, detail: "2 of 2 in use", notDetail: "pending"},
		{name: "seat freed by a deactivation", given: concat(full, events(deactivated("u2", 3))),
			cmd: ok("u3", "cy@example.com"), want: want("u3", "cy@example.com")},
		{name: "seat freed by a deletion", given: concat(full, events(deleted("u2", 3))),
			cmd: ok("u3", "cy@example.com"), want: want("u3", "cy@example.com")},
		{name: "seat bought", given: concat(full, events(ledger.SeatsPurchased{Count: 1, At: at(3)})),
			cmd: ok("u3", "cy@example.com"), want: want("u3", "cy@example.com")},

		{name: "duplicate email", given: base, cmd: ok("u3", "u2@example.com"), err: ledger.ErrDuplicateEmail},
		{name: "duplicate email in other case", given: base, cmd: ok("u3", "U2@EXAMPLE.com"), err: ledger.ErrDuplicateEmail},
		{name: "duplicate email with spaces", given: base, cmd: ok("u3", " u2@example.com "), err: ledger.ErrDuplicateEmail},
		{name: "duplicate email of a deactivated user", given: concat(base, events(deactivated("u2", 3))),
			cmd: ok("u3", "U2@example.com"), err: ledger.ErrDuplicateEmail},
		{name: "email of a deleted user reused", given: concat(base, events(deleted("u2", 3))),
			cmd: ok("u3", "U2@Example.com"), want: want("u3", "U2@Example.com")},

		{name: "user id reused", given: base, cmd: ok("u2", "cy@example.com"), err: ledger.ErrUserExists},
		{name: "id of a deleted user reused", given: concat(base, events(deleted("u2", 3))),
			cmd: ok("u2", "cy@example.com"), err: ledger.ErrUserExists},
		{name: "empty id", given: base, cmd: ok("", "cy@example.com"), err: ledger.ErrInvalidUser},
		{name: "id of 65 characters", given: base, cmd: ok("U"+strings.Repeat("9", 64), "cy@example.com"),
			err: ledger.ErrInvalidUser},
		{name: "id with space", given: base, cmd: ok("u 3", "cy@example.com"), err: ledger.ErrInvalidUser},
		{name: "id starting with dash", given: base, cmd: ok("-u3", "cy@example.com"), err: ledger.ErrInvalidUser},

		{name: "empty name", given: base, cmd: add("u3", "", "cy@example.com", ledger.RoleMember), err: ledger.ErrInvalidUser},
		{name: "blank name", given: base, cmd: add("u3", "   ", "cy@example.com", ledger.RoleMember), err: ledger.ErrInvalidUser},
		{name: "name of 201 runes", given: base, cmd: add("u3", strings.Repeat("ü", 201), "cy@example.com", ledger.RoleMember),
			err: ledger.ErrInvalidUser},
		{name: "name with control character", given: base, cmd: add("u3", "C\ay", "cy@example.com", ledger.RoleMember),
			err: ledger.ErrInvalidUser},

		{name: "empty email", given: base, cmd: ok("u3", ""), err: ledger.ErrInvalidUser},
		{name: "email without at", given: base, cmd: ok("u3", "cy.example.com"), err: ledger.ErrInvalidUser},
		{name: "email without local part", given: base, cmd: ok("u3", "@example.com"), err: ledger.ErrInvalidUser},
		{name: "email without domain", given: base, cmd: ok("u3", "cy@"), err: ledger.ErrInvalidUser},
		{name: "email domain without dot", given: base, cmd: ok("u3", "cy@localhost"), err: ledger.ErrInvalidUser},
		{name: "email domain starting with dot", given: base, cmd: ok("u3", "cy@.example.com"), err: ledger.ErrInvalidUser},
		{name: "email domain ending with dot", given: base, cmd: ok("u3", "cy@example.com."), err: ledger.ErrInvalidUser},
		{name: "email with two ats", given: base, cmd: ok("u3", "cy@doe@example.com"), err: ledger.ErrInvalidUser},
		{name: "email with space", given: base, cmd: ok("u3", "cy doe@example.com"), err: ledger.ErrInvalidUser},
		{name: "email in angle brackets", given: base, cmd: ok("u3", "<cy@example.com>"), err: ledger.ErrInvalidUser},
		{name: "two emails", given: base, cmd: ok("u3", "cy@example.com,dy@example.com"), err: ledger.ErrInvalidUser},
		{name: "email of 255 bytes", given: base, cmd: ok("u3", long), err: ledger.ErrInvalidUser},

		{name: "empty role", given: base, cmd: add("u3", "Cy", "cy@example.com", ""), err: ledger.ErrInvalidUser},
		{name: "unknown role", given: base, cmd: add("u3", "Cy", "cy@example.com", "owner"), err: ledger.ErrInvalidUser},
		{name: "role in upper case", given: base, cmd: add("u3", "Cy", "cy@example.com", "Admin"), err: ledger.ErrInvalidUser},
	})
}

func TestDecideDeactivateUser(t *testing.T) {
	deactivate := func(id, reason string) ledger.DeactivateUser {
		return ledger.DeactivateUser{UserID: id, Reason: reason, At: at(10)}
	}
	base := events(opened(3), admin("u1", 1), member("u2", 2))
	twoAdmins := concat(base, events(admin("u3", 3)))
	runDecideCases(t, []decideCase{
		{name: "member with trimmed reason", given: base, cmd: deactivate("u2", "  left the company "),
			want: events(ledger.UserDeactivated{UserID: "u2", Reason: "left the company", At: at(10)})},
		{name: "without reason", given: base, cmd: deactivate("u2", ""),
			want: events(ledger.UserDeactivated{UserID: "u2", At: at(10)})},
		{name: "reason of 500 runes", given: base, cmd: deactivate("u2", strings.Repeat("ß", 500)),
			want: events(ledger.UserDeactivated{UserID: "u2", Reason: strings.Repeat("ß", 500), At: at(10)})},
		{name: "admin while another admin is active", given: twoAdmins, cmd: deactivate("u1", ""),
			want: events(ledger.UserDeactivated{UserID: "u1", At: at(10)})},
		{name: "time before last event is clamped", given: base,
			cmd:  ledger.DeactivateUser{UserID: "u2", At: at(1)},
			want: events(ledger.UserDeactivated{UserID: "u2", At: at(2)})},

		{name: "last active admin", given: base, cmd: deactivate("u1", ""), err: ledger.ErrLastActiveAdmin},
		{name: "last active admin with another admin deactivated",
			given: concat(twoAdmins, events(deactivated("u3", 4))),
			cmd:   deactivate("u1", ""), err: ledger.ErrLastActiveAdmin},
		{name: "last active admin with another admin deleted",
			given: concat(twoAdmins, events(deleted("u3", 4))),
			cmd:   deactivate("u1", ""), err: ledger.ErrLastActiveAdmin},
		{name: "deleted", given: concat(base, events(deleted("u2", 3))), cmd: deactivate("u2", ""),
			err: ledger.ErrUserDeleted, detail: "cannot be recovered"},
		{name: "already deactivated", given: concat(base, events(deactivated("u2", 3))), cmd: deactivate("u2", "again"),
			want: nil},
		{name: "already deactivated with a bad reason", given: concat(base, events(deactivated("u2", 3))),
			cmd: deactivate("u2", "\x00"), want: nil},
		{name: "unknown user", given: base, cmd: deactivate("u9", ""), err: ledger.ErrUserNotFound},
		{name: "reason of 501 runes", given: base, cmd: deactivate("u2", strings.Repeat("ß", 501)), err: ledger.ErrInvalidUser},
		{name: "reason with control character", given: base, cmd: deactivate("u2", "left\x1b[31m"), err: ledger.ErrInvalidUser},
		{name: "no time", given: base, cmd: ledger.DeactivateUser{UserID: "u2"}, err: ledger.ErrInvalidCommand},
	})
}

func TestDecideActivateUser(t *testing.T) {
	activate := func(id string) ledger.ActivateUser { return ledger.ActivateUser{UserID: id, At: at(10)} }
	base := events(opened(2), admin("u1", 1), member("u2", 2), deactivated("u2", 3))
	runDecideCases(t, []decideCase{
		{name: "with a free seat", given: base, cmd: activate("u2"),
			want: events(ledger.UserActivated{UserID: "u2", At: at(10)})},
		{name: "deactivated admin", given: events(opened(2), admin("u1", 1), admin("u2", 2), deactivated("u2", 3)),
			cmd: activate("u2"), want: events(ledger.UserActivated{UserID: "u2", At: at(10)})},
		{name: "time before last event is clamped", given: base, cmd: ledger.ActivateUser{UserID: "u2", At: t0},
			want: events(ledger.UserActivated{UserID: "u2", At: at(3)})},

		{name: "no seat", given: concat(base, events(member("u3", 4))), cmd: activate("u2"),
			err: ledger.ErrNoSeatAvailable},
		{name: "no seat counting a pending reduction",
			given: concat(base, events(ledger.SeatReductionScheduled{Count: 1, EffectiveAt: feb15, At: at(4)})),
			cmd:   activate("u2"), err: ledger.ErrNoSeatAvailable, detail: "pending reduction"},
		{name: "seat bought",
			given: concat(base, events(member("u3", 4), ledger.SeatsPurchased{Count: 1, At: at(5)})),
			cmd:   activate("u2"), want: events(ledger.UserActivated{UserID: "u2", At: at(10)})},
		{name: "deleted", given: concat(base, events(deleted("u2", 4))), cmd: activate("u2"),
			err: ledger.ErrUserDeleted, detail: "cannot be recovered"},
		{name: "deleted while active", given: events(opened(2), admin("u1", 1), member("u2", 2), deleted("u2", 3)),
			cmd: activate("u2"), err: ledger.ErrUserDeleted, detail: "cannot be recovered"},
		{name: "already active", given: base, cmd: activate("u1"), want: nil},
		{name: "already active with every seat taken", given: concat(base, events(member("u3", 4))),
			cmd: activate("u3"), want: nil},
		{name: "unknown user", given: base, cmd: activate("u9"), err: ledger.ErrUserNotFound},
		{name: "no time", given: base, cmd: ledger.ActivateUser{UserID: "u2"}, err: ledger.ErrInvalidCommand},
	})
}

func TestDecideDeleteUser(t *testing.T) {
	del := func(id, confirm, to string) ledger.DeleteUser {
		return ledger.DeleteUser{UserID: id, Confirm: confirm, ReassignTo: to, At: at(10)}
	}
	wantDel := func(id, to string) []ledger.Event {
		return events(ledger.UserDeleted{UserID: id, ReassignTo: to, At: at(10)})
	}
	base := events(opened(5), admin("u1", 1), member("u2", 2), member("u3", 3))
	runDecideCases(t, []decideCase{
		{name: "active member", given: base, cmd: del("u2", "u2", ""), want: wantDel("u2", "")},
		{name: "deactivated member", given: concat(base, events(deactivated("u2", 4))), cmd: del("u2", "u2", ""),
			want: wantDel("u2", "")},
		{name: "deactivated admin while another admin is active",
			given: concat(base, events(admin("a2", 4), deactivated("a2", 5))),
			cmd:   del("a2", "a2", ""), want: wantDel("a2", "")},
		{name: "deactivated admin of an account without active admin",
			given: events(opened(2), admin("a1", 1), admin("a2", 2), deactivated("a2", 3), deleted("a1", 4)),
			cmd:   del("a2", "a2", ""), want: wantDel("a2", "")},
		{name: "active admin while another admin is active", given: concat(base, events(admin("a2", 4))),
			cmd: del("u1", "u1", ""), want: wantDel("u1", "")},
		{name: "reassigned to an active user", given: base, cmd: del("u2", "u2", "u1"), want: wantDel("u2", "u1")},
		{name: "reassigned to a deactivated user", given: concat(base, events(deactivated("u3", 4))),
			cmd: del("u2", "u2", "u3"), want: wantDel("u2", "u3")},
		{name: "time before last event is clamped", given: base,
			cmd:  ledger.DeleteUser{UserID: "u2", Confirm: "u2", At: at(1)},
			want: events(ledger.UserDeleted{UserID: "u2", At: at(3)})},

		{name: "without confirmation", given: base, cmd: del("u2", "", ""), err: ledger.ErrConfirmationRequired,
			detail: "cannot be undone"},
		{name: "wrong confirmation", given: base, cmd: del("u2", "u3", ""), err: ledger.ErrConfirmationRequired},
		{name: "confirmation in other case", given: base, cmd: del("u2", "U2", ""), err: ledger.ErrConfirmationRequired},
		{name: "confirmation with space", given: base, cmd: del("u2", "u2 ", ""), err: ledger.ErrConfirmationRequired},
		{name: "deleted twice", given: concat(base, events(deleted("u2", 4))), cmd: del("u2", "u2", ""),
			err: ledger.ErrUserDeleted, detail: "cannot be recovered"},
		{name: "deleted twice without confirmation", given: concat(base, events(deleted("u2", 4))), cmd: del("u2", "", ""),
			err: ledger.ErrUserDeleted},
		{name: "unknown user", given: base, cmd: del("u9", "u9", ""), err: ledger.ErrUserNotFound},
		{name: "last active admin", given: base, cmd: del("u1", "u1", ""), err: ledger.ErrLastActiveAdmin},
		{name: "last active admin with reassignment", given: base, cmd: del("u1", "u1", "u2"), err: ledger.ErrLastActiveAdmin},
		{name: "last active admin with another admin deactivated",
			given: concat(base, events(admin("a2", 4), deactivated("a2", 5))),
			cmd:   del("u1", "u1", ""), err: ledger.ErrLastActiveAdmin},
		{name: "reassigned to self", given: base, cmd: del("u2", "u2", "u2"), err: ledger.ErrInvalidReassignment},
		{name: "reassigned to unknown user", given: base, cmd: del("u2", "u2", "u9"), err: ledger.ErrInvalidReassignment},
		{name: "reassigned to deleted user", given: concat(base, events(deleted("u3", 4))), cmd: del("u2", "u2", "u3"),
			err: ledger.ErrInvalidReassignment},
		{name: "no time", given: base, cmd: ledger.DeleteUser{UserID: "u2", Confirm: "u2"}, err: ledger.ErrInvalidCommand},
	})
}

func TestDeleteUserReassignmentIsRecorded(t *testing.T) {
	s := ledger.Fold(ledger.State{}, opened(3), admin("u1", 1), member("u2", 2))
	es, err := ledger.Decide(s, ledger.DeleteUser{UserID: "u2", Confirm: "u2", ReassignTo: "u1", At: at(5)})
	if err != nil {
		t.Fatal(err)
	}
	s = ledger.Fold(s, es...)
	u, ok := s.User("u2")
	if !ok {
		t.Fatal("deleted user gone from the state")
	}
	if u.Status != ledger.StatusDeleted || u.ReassignTo != "u1" || !u.ChangedAt.Equal(at(5)) {
		t.Fatalf("user = %+v, want deleted at %v reassigned to u1", u, at(5))
	}
}

func TestDecideRecordActivity(t *testing.T) {
	rec := func(user, kind, ref string) ledger.RecordActivity {
		return ledger.RecordActivity{ActivityID: "a1", UserID: user, Kind: kind, Ref: ref, At: at(10)}
	}
	want := func(user, kind, ref string) []ledger.Event {
		return events(ledger.ActivityRecorded{ActivityID: "a1", UserID: user, Kind: kind, Ref: ref, At: at(10)})
	}
	base := events(opened(3), admin("u1", 1), member("u2", 2))
	runDecideCases(t, []decideCase{
		{name: "active user", given: base, cmd: rec("u2", "note.created", "note/42"), want: want("u2", "note.created", "note/42")},
		{name: "kind of 64 characters", given: base, cmd: rec("u2", strings.Repeat("k", 64), "x"),
			want: want("u2", strings.Repeat("k", 64), "x")},
		{name: "ref of 200 runes", given: base, cmd: rec("u2", "call", strings.Repeat("→", 200)),
			want: want("u2", "call", strings.Repeat("→", 200))},
		{name: "reactivated user", given: concat(base, events(deactivated("u2", 3), activated("u2", 4))),
			cmd: rec("u2", "call", "c/1"), want: want("u2", "call", "c/1")},
		{name: "time before last event is clamped",
			given: concat(base, events(ledger.ActivityRecorded{ActivityID: "a0", UserID: "u2", Kind: "call", Ref: "c", At: at(20)})),
			cmd:   rec("u2", "call", "c/1"),
			want:  events(ledger.ActivityRecorded{ActivityID: "a1", UserID: "u2", Kind: "call", Ref: "c/1", At: at(20)})},

		{name: "deactivated user", given: concat(base, events(deactivated("u2", 3))), cmd: rec("u2", "call", "c/1"),
			err: ledger.ErrUserDeactivated},
		{name: "deleted user", given: concat(base, events(deleted("u2", 3))), cmd: rec("u2", "call", "c/1"),
			err: ledger.ErrUserDeleted},
		{name: "unknown user", given: base, cmd: rec("u9", "call", "c/1"), err: ledger.ErrUserNotFound},
		{name: "empty kind", given: base, cmd: rec("u2", "", "c/1"), err: ledger.ErrInvalidActivity},
		{name: "upper-case kind", given: base, cmd: rec("u2", "Call", "c/1"), err: ledger.ErrInvalidActivity},
		{name: "kind starting with dot", given: base, cmd: rec("u2", ".call", "c/1"), err: ledger.ErrInvalidActivity},
		{name: "kind with space", given: base, cmd: rec("u2", "phone call", "c/1"), err: ledger.ErrInvalidActivity},
		{name: "kind of 65 characters", given: base, cmd: rec("u2", strings.Repeat("k", 65), "c/1"), err: ledger.ErrInvalidActivity},
		{name: "empty ref", given: base, cmd: rec("u2", "call", ""), err: ledger.ErrInvalidActivity},
		{name: "ref of 201 runes", given: base, cmd: rec("u2", "call", strings.Repeat("→", 201)), err: ledger.ErrInvalidActivity},
		{name: "ref with newline", given: base, cmd: rec("u2", "call", "c\n1"), err: ledger.ErrInvalidActivity},
		{name: "ref with invalid utf-8", given: base, cmd: rec("u2", "call", "c\xfe1"), err: ledger.ErrInvalidActivity},
		{name: "empty activity id", given: base,
			cmd: ledger.RecordActivity{UserID: "u2", Kind: "call", Ref: "c", At: at(10)}, err: ledger.ErrInvalidActivity},
		{name: "activity id with slash", given: base,
			cmd: ledger.RecordActivity{ActivityID: "a/1", UserID: "u2", Kind: "call", Ref: "c", At: at(10)},
			err: ledger.ErrInvalidActivity},
		{name: "no time", given: base,
			cmd: ledger.RecordActivity{ActivityID: "a1", UserID: "u2", Kind: "call", Ref: "c"}, err: ledger.ErrInvalidCommand},
	})
}

func TestDecideOnUnopenedAccount(t *testing.T) {
	var cases []decideCase
	for _, cmd := range []ledger.Command{
		ledger.PurchaseSeats{Count: 1, At: at(1)},
		ledger.ScheduleSeatReduction{Count: 1, At: at(1)},
		ledger.AddUser{UserID: "u1", Name: "Ann", Email: "ann@example.com", Role: ledger.RoleAdmin, At: at(1)},
		ledger.DeactivateUser{UserID: "u1", At: at(1)},
		ledger.ActivateUser{UserID: "u1", At: at(1)},
		ledger.DeleteUser{UserID: "u1", Confirm: "u1", At: at(1)},
		ledger.RecordActivity{ActivityID: "a1", UserID: "u1", Kind: "call", Ref: "c", At: at(1)},
	} {
		cases = append(cases, decideCase{name: cmd.CommandName(), cmd: cmd, err: ledger.ErrAccountNotFound})
	}
	runDecideCases(t, cases)
}

func TestDecideNilCommand(t *testing.T) {
	for _, s := range []ledger.State{{}, ledger.Fold(ledger.State{}, opened(1))} {
		es, err := ledger.Decide(s, nil)
		if !errors.Is(err, ledger.ErrInvalidCommand) || es != nil {
			t.Errorf("Decide(opened=%v, nil) = %v, %v; want no event and ErrInvalidCommand", s.Opened(), es, err)
		}
	}
}

// TestDecideTimesNeverGoBack checks every command that decides an event
// against an account whose last event is later than the command.
func TestDecideTimesNeverGoBack(t *testing.T) {
	last := at(50)
	s := ledger.Fold(ledger.State{}, opened(5), admin("u1", 1), member("u2", 2), member("u3", 3),
		deactivated("u3", 4),
		ledger.ActivityRecorded{ActivityID: "a0", UserID: "u1", Kind: "call", Ref: "c", At: last})
	for _, tc := range []struct {
		early, late ledger.Command
	}{
		{ledger.PurchaseSeats{Count: 1, At: at(5)}, ledger.PurchaseSeats{Count: 1, At: at(60)}},
		{ledger.ScheduleSeatReduction{Count: 1, At: at(5)}, ledger.ScheduleSeatReduction{Count: 1, At: at(60)}},
		{ledger.AddUser{UserID: "u4", Name: "D", Email: "d@example.com", Role: ledger.RoleMember, At: at(5)},
			ledger.AddUser{UserID: "u4", Name: "D", Email: "d@example.com", Role: ledger.RoleMember, At: at(60)}},
		{ledger.DeactivateUser{UserID: "u2", At: at(5)}, ledger.DeactivateUser{UserID: "u2", At: at(60)}},
		{ledger.ActivateUser{UserID: "u3", At: at(5)}, ledger.ActivateUser{UserID: "u3", At: at(60)}},
		{ledger.DeleteUser{UserID: "u2", Confirm: "u2", At: at(5)}, ledger.DeleteUser{UserID: "u2", Confirm: "u2", At: at(60)}},
		{ledger.RecordActivity{ActivityID: "a1", UserID: "u1", Kind: "call", Ref: "c", At: at(5)},
			ledger.RecordActivity{ActivityID: "a1", UserID: "u1", Kind: "call", Ref: "c", At: at(60).In(paris)}},
	} {
		t.Run(tc.early.CommandName(), func(t *testing.T) {
			for _, c := range []struct {
				cmd  ledger.Command
				want time.Time
			}{{tc.early, last}, {tc.late, at(60)}} {
				es, err := ledger.Decide(s, c.cmd)
				if err != nil || len(es) != 1 {
					t.Fatalf("Decide = %v, %v; want one event", es, err)
				}
				got := es[0].OccurredAt()
				if !got.Equal(c.want) || got.Location() != time.UTC {
					t.Errorf("event time = %v, want %v in UTC", got, c.want)
				}
			}
		})
	}
}

func TestRuleErrorMatching(t *testing.T) {
	s := ledger.Fold(ledger.State{}, opened(1), admin("u1", 1))
	_, err := ledger.Decide(s, ledger.AddUser{UserID: "u2", Name: "B", Email: "b@example.com", Role: ledger.RoleMember, At: at(2)})
	if !errors.Is(err, ledger.ErrNoSeatAvailable) {
		t.Fatalf("err = %v, want ErrNoSeatAvailable", err)
	}
	if errors.Is(err, ledger.ErrDuplicateEmail) {
		t.Errorf("err %v matches another rule", err)
	}
	var re *ledger.RuleError
	if !errors.As(err, &re) || re.Rule != ledger.RuleNoSeatAvailable {
		t.Fatalf("errors.As: %v, rule %v", err, re)
	}
	if re.Error() == string(re.Rule) || re.Detail == "" {
		t.Errorf("refusal without a detail: %q", re.Error())
	}
	if got := ledger.ErrNoSeatAvailable.Error(); got != string(ledger.RuleNoSeatAvailable) {
		t.Errorf("sentinel message = %q, want the rule name", got)
	}
}
