package ledger_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/domain/ledger"
)

func ptr[T any](v T) *T { return &v }

func TestDecideUpdateUser(t *testing.T) {
	upd := func(id string, name, email *string, role *ledger.Role) ledger.UpdateUser {
		return ledger.UpdateUser{UserID: id, Name: name, Email: email, Role: role, At: at(20)}
	}
	admins := events(opened(3), admin("ann", 1), member("bob", 2))
	adminRole, memberRole := ptr(ledger.RoleAdmin), ptr(ledger.RoleMember)
	runDecideCases(t, []decideCase{
		{name: "new name", given: admins, cmd: upd("bob", ptr("  Robert Member "), nil, nil),
			want: events(ledger.UserProfileUpdated{UserID: "bob", Name: "Robert Member", At: at(20)})},
		{name: "new email", given: admins, cmd: upd("bob", nil, ptr("robert@example.com"), nil),
			want: events(ledger.UserProfileUpdated{UserID: "bob", Email: "robert@example.com", At: at(20)})},
		{name: "name and email and role together", given: admins,
			cmd: upd("bob", ptr("Robert"), ptr("robert@example.com"), adminRole),
			want: events(ledger.UserProfileUpdated{UserID: "bob", Name: "Robert", Email: "robert@example.com", At: at(20)},
				ledger.UserRoleChanged{UserID: "bob", Role: ledger.RoleAdmin, At: at(20)})},
		{name: "values equal to the current ones change nothing", given: admins,
			cmd: upd("bob", ptr("Name of bob"), ptr("bob@example.com"), memberRole)},
		{name: "only the changed field is recorded", given: admins,
			cmd:  upd("bob", ptr("Name of bob"), ptr("bobby@example.com"), memberRole),
			want: events(ledger.UserProfileUpdated{UserID: "bob", Email: "bobby@example.com", At: at(20)})},
		{name: "a change of case of the own email is allowed", given: admins,
			cmd:  upd("bob", nil, ptr("Bob@Example.com"), nil),
			want: events(ledger.UserProfileUpdated{UserID: "bob", Email: "Bob@Example.com", At: at(20)})},
		{name: "nothing given changes nothing", given: admins, cmd: upd("bob", nil, nil, nil)},
		{name: "promote a member", given: admins, cmd: upd("bob", nil, nil, adminRole),
			want: events(ledger.UserRoleChanged{UserID: "bob", Role: ledger.RoleAdmin, At: at(20)})},
		{name: "demote an admin when another is active", given: concat(admins, events(admin("cy", 3))),
			cmd:  upd("ann", nil, nil, memberRole),
			want: events(ledger.UserRoleChanged{UserID: "ann", Role: ledger.RoleMember, At: at(20)})},
		{name: "the last active admin cannot be demoted", given: admins, cmd: upd("ann", nil, nil, memberRole),
			err: ledger.ErrLastActiveAdmin, detail: "last active admin"},
		{name: "a refused demotion records no profile change either", given: admins,
			cmd: upd("ann", ptr("Ann B"), nil, memberRole), err: ledger.ErrLastActiveAdmin},
		{name: "a deactivated admin can be demoted", given: concat(admins, events(admin("cy", 3), deactivated("ann", 4))),
			cmd:  upd("ann", nil, nil, memberRole),
			want: events(ledger.UserRoleChanged{UserID: "ann", Role: ledger.RoleMember, At: at(20)})},
		{name: "a deactivated user can be renamed", given: concat(admins, events(deactivated("bob", 4))),
			cmd:  upd("bob", ptr("Robert"), nil, nil),
			want: events(ledger.UserProfileUpdated{UserID: "bob", Name: "Robert", At: at(20)})},
		{name: "email of another user", given: admins, cmd: upd("bob", nil, ptr("ANN@example.com"), nil),
			err: ledger.ErrDuplicateEmail},
		{name: "email of a deleted user is free", given: concat(admins, events(member("cy", 3), deleted("cy", 4))),
			cmd:  upd("bob", nil, ptr("cy@example.com"), nil),
			want: events(ledger.UserProfileUpdated{UserID: "bob", Email: "cy@example.com", At: at(20)})},
		{name: "blank name", given: admins, cmd: upd("bob", ptr("  "), nil, nil), err: ledger.ErrInvalidUser},
		{name: "malformed email", given: admins, cmd: upd("bob", nil, ptr("bob"), nil), err: ledger.ErrInvalidUser},
		{name: "unknown role", given: admins, cmd: upd("bob", nil, nil, ptr(ledger.Role("owner"))), err: ledger.ErrInvalidUser},
		{name: "deleted user", given: concat(admins, events(deleted("bob", 4))), cmd: upd("bob", ptr("X"), nil, nil),
			err: ledger.ErrUserDeleted},
		{name: "unknown user", given: admins, cmd: upd("zed", ptr("X"), nil, nil), err: ledger.ErrUserNotFound},
	})
}

func TestEvolveProfileAndRole(t *testing.T) {
	s := ledger.Fold(ledger.State{}, opened(3), admin("ann", 1), member("bob", 2),
		ledger.UserProfileUpdated{UserID: "bob", Email: "robert@example.com", At: at(3)},
		ledger.UserProfileUpdated{UserID: "bob", Name: "Robert", At: at(4)},
		ledger.UserRoleChanged{UserID: "bob", Role: ledger.RoleAdmin, At: at(5)})
	bob, _ := s.User("bob")
	if bob.Name != "Robert" || bob.Email != "robert@example.com" || bob.Role != ledger.RoleAdmin {
		t.Fatalf("bob = %+v", bob)
	}
	if s.ActiveAdmins != 2 {
		t.Errorf("ActiveAdmins = %d, want 2", s.ActiveAdmins)
	}
	if s.EmailInUse("bob@example.com") || !s.EmailInUse("ROBERT@example.com") {
		t.Errorf("email index not moved to the new email")
	}
	for _, bad := range checkInvariants(s) {
		t.Error(bad)
	}
	// A role change of a deactivated user moves no active admin count.
	s = ledger.Fold(s, deactivated("bob", 6), ledger.UserRoleChanged{UserID: "bob", Role: ledger.RoleMember, At: at(7)})
	if s.ActiveAdmins != 1 {
		t.Errorf("ActiveAdmins = %d after demoting a deactivated admin, want 1", s.ActiveAdmins)
	}
	s = ledger.Fold(s, activated("bob", 8))
	if s.ActiveAdmins != 1 {
		t.Errorf("ActiveAdmins = %d after activating a demoted member, want 1", s.ActiveAdmins)
	}
	// Changes to a deleted user change nothing.
	s = ledger.Fold(s, deleted("bob", 9), ledger.UserProfileUpdated{UserID: "bob", Name: "Ghost", Email: "g@example.com", At: at(10)},
		ledger.UserRoleChanged{UserID: "bob", Role: ledger.RoleAdmin, At: at(11)})
	if bob, _ := s.User("bob"); bob.Name != "" || bob.Email != "" || bob.Role != ledger.RoleMember || s.EmailInUse("g@example.com") {
		t.Errorf("deleted bob changed: %+v", bob)
	}
	for _, bad := range checkInvariants(s) {
		t.Error(bad)
	}
}

// TestPromoteThenLeave is the story of the last admin handing over: an
// admin cannot leave alone, promotes a member, then leaves, and the new
// admin stays the account's admin.
func TestPromoteThenLeave(t *testing.T) {
	s := ledger.Fold(ledger.State{}, opened(2), admin("ann", 1), member("bob", 2))
	if _, err := ledger.Decide(s, ledger.DeactivateUser{UserID: "ann", At: at(3)}); !errors.Is(err, ledger.ErrLastActiveAdmin) {
		t.Fatalf("the only admin leaving: err = %v, want last active admin", err)
	}
	es, err := ledger.Decide(s, ledger.UpdateUser{UserID: "bob", Role: ptr(ledger.RoleAdmin), At: at(4)})
	if err != nil || len(es) != 1 {
		t.Fatalf("promote bob: %v %v", es, err)
	}
	s = ledger.Fold(s, es...)
	es, err = ledger.Decide(s, ledger.DeactivateUser{UserID: "ann", Reason: "left the company", At: at(5)})
	if err != nil || len(es) != 1 {
		t.Fatalf("ann leaves: %v %v", es, err)
	}
	s = ledger.Fold(s, es...)
	if bob, _ := s.User("bob"); bob.Role != ledger.RoleAdmin || bob.Status != ledger.StatusActive || s.ActiveAdmins != 1 {
		t.Fatalf("bob %+v, active admins %d", bob, s.ActiveAdmins)
	}
	if _, err := ledger.Decide(s, ledger.UpdateUser{UserID: "bob", Role: ptr(ledger.RoleMember), At: at(6)}); !errors.Is(err, ledger.ErrLastActiveAdmin) {
		t.Fatalf("demoting the new last admin: err = %v, want last active admin", err)
	}
}

// An identity provider's identifier of a user is recorded when the user
// is added or given a new one, held in the state, and blanked when the
// user is deleted.
func TestExternalID(t *testing.T) {
	base := events(opened(3), admin("ann", 1))
	runDecideCases(t, []decideCase{
		{name: "added with an external id", given: base,
			cmd:  ledger.AddUser{UserID: "bob", Name: "Bob", Email: "bob@example.com", Role: ledger.RoleMember, ExternalID: " 00u1 ", At: at(20)},
			want: events(ledger.UserAdded{UserID: "bob", Name: "Bob", Email: "bob@example.com", Role: ledger.RoleMember, ExternalID: "00u1", At: at(20)})},
		{name: "an external id too long", given: base,
			cmd: ledger.AddUser{UserID: "bob", Name: "Bob", Email: "bob@example.com", Role: ledger.RoleMember, ExternalID: strings.Repeat("x", ledger.MaxExternalIDLen+1), At: at(20)},
			err: ledger.ErrInvalidUser},
		{name: "a new external id", given: base,
			cmd:  ledger.UpdateUser{UserID: "ann", ExternalID: ptr("00u2"), At: at(20)},
			want: events(ledger.UserProfileUpdated{UserID: "ann", ExternalID: "00u2", At: at(20)})},
		{name: "an empty external id is refused", given: base,
			cmd: ledger.UpdateUser{UserID: "ann", ExternalID: ptr(" "), At: at(20)}, err: ledger.ErrInvalidUser},
	})
	s := ledger.State{}
	for _, e := range events(opened(3), admin("ann", 1), member("bob", 2),
		ledger.UserProfileUpdated{UserID: "bob", ExternalID: "ext-bob", At: at(3)}) {
		s = ledger.Evolve(s, e)
	}
	if u, _ := s.User("bob"); u.ExternalID != "ext-bob" {
		t.Fatalf("external id %q", u.ExternalID)
	}
	s = ledger.Evolve(s, deleted("bob", 4))
	if u, _ := s.User("bob"); u.ExternalID != "" {
		t.Fatalf("a deleted user keeps the external id %q", u.ExternalID)
	}
}
