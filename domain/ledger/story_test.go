package ledger_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
)

// TestSeedStory follows the support article on deactivating and deleting a
// license: deactivation frees a seat and can be undone, deletion is
// permanent.
func TestSeedStory(t *testing.T) {
	var s ledger.State
	var log []ledger.Event
	now := t0
	step := func(name string, cmd ledger.Command, want error) []ledger.Event {
		t.Helper()
		now = now.Add(time.Hour)
		es, err := ledger.Decide(s, cmd)
		if want == nil && err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want != nil {
			if !errors.Is(err, want) {
				t.Fatalf("%s: err = %v, want %v", name, err, want)
			}
			if len(es) != 0 {
				t.Fatalf("%s: refused with events %v", name, es)
			}
		}
		s = ledger.Fold(s, es...)
		log = append(log, es...)
		for _, bad := range checkInvariants(s) {
			t.Errorf("%s: %s", name, bad)
		}
		return es
	}
	status := func(id string) ledger.Status { u, _ := s.User(id); return u.Status }
	add := func(id, name, email string, role ledger.Role) ledger.AddUser {
		return ledger.AddUser{UserID: id, Name: name, Email: email, Role: role, At: now}
	}

	step("open with 2 seats", ledger.OpenAccount{Account: "crelate", Name: "Crelate", Seats: 2, At: now}, nil)
	step("add an admin", add("ann", "Ann Admin", "ann@example.com", ledger.RoleAdmin), nil)
	step("add a member", add("bob", "Bob Member", "bob@example.com", ledger.RoleMember), nil)
	if s.Available() != 0 {
		t.Fatalf("Available = %d with both seats taken", s.Available())
	}

	step("a third user needs a seat", add("cat", "Cat New", "cat@example.com", ledger.RoleMember), ledger.ErrNoSeatAvailable)
	step("the last admin cannot be deactivated", ledger.DeactivateUser{UserID: "ann", At: now}, ledger.ErrLastActiveAdmin)

	es := step("deactivate the member", ledger.DeactivateUser{UserID: "bob", Reason: "left the team", At: now}, nil)
	if len(es) != 1 || status("bob") != ledger.StatusDeactivated || s.Available() != 1 {
		t.Fatalf("deactivation: events %v, bob %s, available %d", es, status("bob"), s.Available())
	}
	if u, _ := s.User("bob"); u.Name != "Bob Member" {
		t.Errorf("a deactivated user keeps their name, got %q", u.Name)
	}
	if es := step("deactivating again changes nothing", ledger.DeactivateUser{UserID: "bob", At: now}, nil); len(es) != 0 {
		t.Errorf("second deactivation decided %v", es)
	}
	step("a deactivated user records nothing",
		ledger.RecordActivity{ActivityID: "act1", UserID: "bob", Kind: "note", Ref: "n/1", At: now}, ledger.ErrUserDeactivated)

	step("the freed seat goes to a third user", add("cat", "Cat New", "cat@example.com", ledger.RoleMember), nil)
	step("the member cannot come back without a seat", ledger.ActivateUser{UserID: "bob", At: now}, ledger.ErrNoSeatAvailable)
	step("buy a seat", ledger.PurchaseSeats{Count: 1, At: now}, nil)
	es = step("the member comes back", ledger.ActivateUser{UserID: "bob", At: now}, nil)
	if len(es) != 1 || status("bob") != ledger.StatusActive || s.Active != 3 {
		t.Fatalf("reactivation: events %v, bob %s, active %d", es, status("bob"), s.Active)
	}

	step("deletion needs confirmation", ledger.DeleteUser{UserID: "bob", At: now}, ledger.ErrConfirmationRequired)
	step("delete with confirmation", ledger.DeleteUser{UserID: "bob", Confirm: "bob", ReassignTo: "ann", At: now}, nil)
	if u, _ := s.User("bob"); u.Status != ledger.StatusDeleted || u.Name != "" || u.Email != "" || u.ReassignTo != "ann" {
		t.Fatalf("deleted user = %+v", u)
	}
	_, err := ledger.Decide(s, ledger.ActivateUser{UserID: "bob", At: now})
	if !errors.Is(err, ledger.ErrUserDeleted) || !strings.Contains(err.Error(), "cannot be recovered") {
		t.Fatalf("reactivating a deleted user: err = %v, want ErrUserDeleted saying it cannot be recovered", err)
	}
	step("a deleted user cannot be reactivated", ledger.ActivateUser{UserID: "bob", At: now}, ledger.ErrUserDeleted)
	step("nor deleted again", ledger.DeleteUser{UserID: "bob", Confirm: "bob", At: now}, ledger.ErrUserDeleted)
	step("the deleted user's email is free", add("bob2", "Bob Again", "BOB@example.com", ledger.RoleMember), nil)

	if s.Active != 3 || s.Deactivated != 0 || s.Deleted != 1 || s.PeakActive != 3 || s.Version != uint64(len(log)) {
		t.Errorf("final state: active %d deactivated %d deleted %d peak %d version %d (%d events)",
			s.Active, s.Deactivated, s.Deleted, s.PeakActive, s.Version, len(log))
	}
	wantTypes := []string{
		ledger.TypeAccountOpened, ledger.TypeUserAdded, ledger.TypeUserAdded, ledger.TypeUserDeactivated,
		ledger.TypeUserAdded, ledger.TypeSeatsPurchased, ledger.TypeUserActivated, ledger.TypeUserDeleted,
		ledger.TypeUserAdded,
	}
	var gotTypes []string
	for _, e := range log {
		gotTypes = append(gotTypes, e.EventType())
	}
	if strings.Join(gotTypes, ",") != strings.Join(wantTypes, ",") {
		t.Errorf("events = %v\nwant %v", gotTypes, wantTypes)
	}
}
