package ledger_test

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
)

// t0 is when the test account "acme" opens: the 15th of January, so its
// billing cycles start on the 15th of each month.
var t0 = time.Date(2025, time.January, 15, 9, 30, 0, 0, time.UTC)

// at returns t0 plus h hours.
func at(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }

func opened(seats int) ledger.AccountOpened {
	return ledger.AccountOpened{Account: "acme", Name: "Acme", Seats: seats, At: t0}
}

func added(id, email string, role ledger.Role, t time.Time) ledger.UserAdded {
	return ledger.UserAdded{UserID: id, Name: "Name of " + id, Email: email, Role: role, At: t}
}

func admin(id string, h int) ledger.UserAdded {
	return added(id, id+"@example.com", ledger.RoleAdmin, at(h))
}

func member(id string, h int) ledger.UserAdded {
	return added(id, id+"@example.com", ledger.RoleMember, at(h))
}

func deactivated(id string, h int) ledger.UserDeactivated {
	return ledger.UserDeactivated{UserID: id, Reason: "left", At: at(h)}
}

func activated(id string, h int) ledger.UserActivated {
	return ledger.UserActivated{UserID: id, At: at(h)}
}

func deleted(id string, h int) ledger.UserDeleted {
	return ledger.UserDeleted{UserID: id, At: at(h)}
}

func events(es ...ledger.Event) []ledger.Event { return es }

// concat joins event lists without aliasing any of them.
func concat(lists ...[]ledger.Event) []ledger.Event {
	var out []ledger.Event
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// decideCase is one "given events, when command, then events or error" case.
type decideCase struct {
	name  string
	given []ledger.Event
	cmd   ledger.Command
	want  []ledger.Event // nil: no event
	err   error          // a ledger.Err* sentinel, or nil
	// detail, when set, must appear in the error's message.
	detail string
	// notDetail, when set, must not appear in the error's message.
	notDetail string
}

func runDecideCases(t *testing.T, cases []decideCase) {
	t.Helper()
	seen := make(map[string]bool)
	for _, tc := range cases {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			s := ledger.Fold(ledger.State{}, tc.given...)
			before := s.Clone()
			got, err := ledger.Decide(s, tc.cmd)
			if !reflect.DeepEqual(s, before) {
				t.Errorf("Decide changed the state it was given")
			}
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("err = %v, want %v", err, tc.err)
				}
				var re *ledger.RuleError
				if !errors.As(err, &re) {
					t.Fatalf("err %T is not a *ledger.RuleError", err)
				}
				if got != nil {
					t.Errorf("events = %#v alongside an error, want none", got)
				}
				if !strings.Contains(err.Error(), tc.detail) {
					t.Errorf("err = %q, want it to contain %q", err, tc.detail)
				}
				if tc.notDetail != "" && strings.Contains(err.Error(), tc.notDetail) {
					t.Errorf("err = %q, want it without %q", err, tc.notDetail)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v, want none", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("events =\n  %#v\nwant\n  %#v", got, tc.want)
			}
			// The decided events must apply cleanly on top of the state.
			after := ledger.Fold(s, got...)
			if len(got) > 0 && after.LastAt.Before(before.LastAt) {
				t.Errorf("LastAt went back from %v to %v", before.LastAt, after.LastAt)
			}
		})
	}
}

// checkInvariants checks what must hold of any state Decide and Evolve
// produce, returning a description of each broken one.
func checkInvariants(s ledger.State) []string {
	bad := checkCounters(s)
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	emails := make(map[string]string)
	for id, u := range s.Users {
		if u.Status != ledger.StatusDeleted {
			k := strings.ToLower(u.Email)
			if other, dup := emails[k]; dup {
				fail("users %s and %s share an email", other, id)
			}
			emails[k] = id
			if !s.EmailInUse(u.Email) || !s.EmailInUse(strings.ToUpper(u.Email)) {
				fail("email of user %s not in use", id)
			}
		}
	}
	if s.EmailInUse("") {
		fail("blank email in use")
	}
	if s.Opened() {
		if s.Active > s.SeatsAt(s.LastAt) {
			fail("active %d > Seats(now) %d", s.Active, s.SeatsAt(s.LastAt))
		}
		if s.Active > s.SeatsAfterReductions() {
			fail("active %d > seats after reductions %d", s.Active, s.SeatsAfterReductions())
		}
		if s.Available() < 0 {
			fail("Available %d < 0", s.Available())
		}
	}
	return bad
}

// checkCounters checks what holds of any state Evolve produces, whatever
// the events: the counters agree with the users, and deleted users keep no
// personal data.
func checkCounters(s ledger.State) []string {
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	var active, deact, del, admins int
	for id, u := range s.Users {
		if u.ID != id {
			fail("user keyed %q has id %q", id, u.ID)
		}
		switch u.Status {
		case ledger.StatusActive:
			active++
			if u.Role == ledger.RoleAdmin {
				admins++
			}
		case ledger.StatusDeactivated:
			deact++
		case ledger.StatusDeleted:
			del++
			if u.Name != "" || u.Email != "" || u.Reason != "" {
				fail("deleted user %s keeps personal data", id)
			}
		default:
			fail("user %s has status %q", id, u.Status)
		}
	}
	if active != s.Active || deact != s.Deactivated || del != s.Deleted || admins != s.ActiveAdmins {
		fail("counters active/deactivated/deleted/admins = %d/%d/%d/%d, users say %d/%d/%d/%d",
			s.Active, s.Deactivated, s.Deleted, s.ActiveAdmins, active, deact, del, admins)
	}
	if len(s.Order) != len(s.Users) {
		fail("Order has %d ids for %d users", len(s.Order), len(s.Users))
	}
	if s.PeakActive < s.Active {
		fail("PeakActive %d < Active %d", s.PeakActive, s.Active)
	}
	return bad
}

// sameState compares two states field by field, faster than
// reflect.DeepEqual. The unexported email index is compared through
// EmailInUse on the given emails and every user's email.
func sameState(a, b ledger.State, emails ...string) string {
	switch {
	case a.Account != b.Account || a.Name != b.Name || a.OpenedAt != b.OpenedAt || a.Seats != b.Seats:
		return "account fields differ"
	case a.Active != b.Active || a.Deactivated != b.Deactivated || a.Deleted != b.Deleted ||
		a.ActiveAdmins != b.ActiveAdmins || a.PeakActive != b.PeakActive:
		return "counters differ"
	case a.Version != b.Version || a.LastAt != b.LastAt:
		return "version or last time differ"
	case !slices.Equal(a.Reductions, b.Reductions):
		return "reductions differ"
	case !slices.Equal(a.Order, b.Order):
		return "order differs"
	case !maps.Equal(a.Users, b.Users) || (a.Users == nil) != (b.Users == nil):
		return "users differ"
	}
	for _, u := range a.Users {
		emails = append(emails, u.Email)
	}
	for _, e := range emails {
		if a.EmailInUse(e) != b.EmailInUse(e) {
			return "email index differs on " + e
		}
	}
	return ""
}
