package ledger_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
)

func TestEvolveCounters(t *testing.T) {
	type counters struct{ active, deactivated, deleted, admins, peak int }
	activity := ledger.ActivityRecorded{ActivityID: "a1", UserID: "u1", Kind: "call", Ref: "c", At: at(30)}
	for _, tc := range []struct {
		name    string
		events  []ledger.Event
		want    counters
		version uint64
	}{
		{"nothing", nil, counters{}, 0},
		{"opened", events(opened(3)), counters{}, 1},
		{"admin and member", events(opened(3), admin("u1", 1), member("u2", 2)), counters{2, 0, 0, 1, 2}, 3},
		{"member deactivated", events(opened(3), admin("u1", 1), member("u2", 2), deactivated("u2", 3)),
			counters{1, 1, 0, 1, 2}, 4},
		{"member reactivated", events(opened(3), admin("u1", 1), member("u2", 2), deactivated("u2", 3), activated("u2", 4)),
			counters{2, 0, 0, 1, 2}, 5},
		{"admin deactivated", events(opened(3), admin("u1", 1), admin("u2", 2), deactivated("u2", 3)),
			counters{1, 1, 0, 1, 2}, 4},
		{"active admin deleted", events(opened(3), admin("u1", 1), admin("u2", 2), deleted("u2", 3)),
			counters{1, 0, 1, 1, 2}, 4},
		{"deactivated member deleted", events(opened(3), admin("u1", 1), member("u2", 2), deactivated("u2", 3), deleted("u2", 4)),
			counters{1, 0, 1, 1, 2}, 5},
		{"peak kept after users leave",
			events(opened(3), admin("u1", 1), member("u2", 2), member("u3", 3), deactivated("u2", 4), deleted("u3", 5)),
			counters{1, 1, 1, 1, 3}, 6},
		{"activity counts no version", events(opened(3), admin("u1", 1), activity), counters{1, 0, 0, 1, 1}, 2},
		{"seat events count a version",
			events(opened(3), ledger.SeatsPurchased{Count: 1, At: at(1)},
				ledger.SeatReductionScheduled{Count: 1, EffectiveAt: feb15, At: at(2)}),
			counters{}, 3},
		{"events on a missing user change nothing but the version",
			events(opened(3), deactivated("u9", 1), activated("u9", 2), deleted("u9", 3)), counters{}, 4},
		{"repeated deactivation ignored",
			events(opened(3), admin("u1", 1), member("u2", 2), deactivated("u2", 3), deactivated("u2", 4)),
			counters{1, 1, 0, 1, 2}, 5},
		{"activation of an active user ignored", events(opened(3), admin("u1", 1), activated("u1", 2)),
			counters{1, 0, 0, 1, 1}, 3},
		{"deleted user stays deleted",
			events(opened(3), admin("u1", 1), member("u2", 2), deleted("u2", 3), activated("u2", 4),
				deactivated("u2", 5), deleted("u2", 6), member("u2", 7)),
			counters{1, 0, 1, 1, 2}, 8},
		{"user added before the opening kept", events(admin("u1", 1), opened(3)), counters{1, 0, 0, 1, 1}, 2},
		{"second opening ignored", events(opened(3), admin("u1", 1), opened(9)), counters{1, 0, 0, 1, 1}, 3},
		{"user id added twice counted once", events(opened(3), admin("u1", 1), member("u1", 2)), counters{1, 0, 0, 1, 1}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ledger.Fold(ledger.State{}, tc.events...)
			got := counters{s.Active, s.Deactivated, s.Deleted, s.ActiveAdmins, s.PeakActive}
			if got != tc.want {
				t.Errorf("active/deactivated/deleted/admins/peak = %v, want %v", got, tc.want)
			}
			if s.Version != tc.version {
				t.Errorf("Version = %d, want %d", s.Version, tc.version)
			}
			for _, bad := range checkInvariants(s) {
				t.Error(bad)
			}
		})
	}
}

func TestEvolveOpenedAccount(t *testing.T) {
	s := ledger.Fold(ledger.State{}, ledger.AccountOpened{Account: "acme", Name: "Acme", Seats: 4, At: t0.In(paris)}, opened(9))
	if !s.Opened() || s.Account != "acme" || s.Name != "Acme" || s.Seats != 4 {
		t.Fatalf("state = %+v", s)
	}
	if s.OpenedAt != t0 || s.OpenedAt.Location() != time.UTC {
		t.Errorf("OpenedAt = %v, want %v in UTC", s.OpenedAt, t0)
	}
	if (ledger.State{}).Opened() {
		t.Error("zero State is opened")
	}
}

func TestEvolveUserLifecycle(t *testing.T) {
	s := ledger.Fold(ledger.State{}, opened(3), admin("u1", 1),
		ledger.UserAdded{UserID: "u2", Name: "Bob", Email: "Bob@Example.com", Role: ledger.RoleMember, At: at(2).In(paris)})
	u, ok := s.User("u2")
	want := ledger.User{ID: "u2", Name: "Bob", Email: "Bob@Example.com", Role: ledger.RoleMember,
		Status: ledger.StatusActive, AddedAt: at(2), ChangedAt: at(2)}
	if !ok || u != want {
		t.Fatalf("added user = %+v, want %+v", u, want)
	}
	if !s.EmailInUse("bob@example.COM") {
		t.Error("email of an active user not in use")
	}
	if !reflect.DeepEqual(s.Order, []string{"u1", "u2"}) {
		t.Errorf("Order = %v", s.Order)
	}

	s = ledger.Evolve(s, ledger.UserDeactivated{UserID: "u2", Reason: "on leave", At: at(3)})
	u, _ = s.User("u2")
	if u.Status != ledger.StatusDeactivated || u.Reason != "on leave" || u.Name != "Bob" || u.ChangedAt != at(3) {
		t.Errorf("deactivated user = %+v", u)
	}
	if !s.EmailInUse("BOB@example.com") {
		t.Error("email of a deactivated user not in use")
	}

	s = ledger.Evolve(s, ledger.UserDeleted{UserID: "u2", ReassignTo: "u1", At: at(4)})
	u, ok = s.User("u2")
	want = ledger.User{ID: "u2", Role: ledger.RoleMember, Status: ledger.StatusDeleted,
		AddedAt: at(2), ChangedAt: at(4), ReassignTo: "u1"}
	if !ok || u != want {
		t.Errorf("deleted user = %+v, want %+v (no name, email or reason)", u, want)
	}
	if s.EmailInUse("bob@example.com") {
		t.Error("email of a deleted user still in use")
	}
	if !reflect.DeepEqual(s.Order, []string{"u1", "u2"}) {
		t.Errorf("Order = %v, want deleted users kept", s.Order)
	}
	if _, ok := s.User("u9"); ok {
		t.Error("unknown user found")
	}
}

func TestEvolveLastAt(t *testing.T) {
	s := ledger.Fold(ledger.State{}, opened(3), admin("u1", 5))
	if s.LastAt != at(5) {
		t.Fatalf("LastAt = %v, want %v", s.LastAt, at(5))
	}
	s = ledger.Evolve(s, ledger.ActivityRecorded{ActivityID: "a", UserID: "u1", Kind: "k", Ref: "r", At: at(9).In(paris)})
	if s.LastAt != at(9) || s.Version != 2 {
		t.Errorf("after activity LastAt = %v Version = %d, want %v and 2", s.LastAt, s.Version, at(9))
	}
	s = ledger.Evolve(s, ledger.SeatsPurchased{Count: 1, At: at(7)})
	if s.LastAt != at(9) {
		t.Errorf("LastAt went back to %v", s.LastAt)
	}
}

func TestSeats(t *testing.T) {
	apr15 := time.Date(2025, time.April, 15, 0, 0, 0, 0, time.UTC)
	s := ledger.Fold(ledger.State{}, opened(10), admin("u1", 1), member("u2", 2), member("u3", 3), deactivated("u3", 4),
		ledger.SeatsPurchased{Count: 5, At: at(5)},
		ledger.SeatReductionScheduled{Count: 2, EffectiveAt: mar15.In(paris), At: feb15.Add(time.Hour).In(paris)},
		ledger.SeatReductionScheduled{Count: 3, EffectiveAt: feb15, At: at(6)},
		ledger.SeatReductionScheduled{Count: 4, EffectiveAt: apr15, At: mar15.Add(time.Hour)},
	)
	if s.Seats != 15 {
		t.Fatalf("Seats = %d, want 15 (opening plus purchases)", s.Seats)
	}
	for _, tc := range []struct {
		t       time.Time
		seats   int
		pending int
		first   time.Time
	}{
		{t0, 15, 9, feb15},
		{feb15.Add(-time.Nanosecond), 15, 9, feb15},
		{feb15, 12, 6, mar15},
		{mar15.Add(-time.Nanosecond), 12, 6, mar15},
		{mar15, 10, 4, apr15},
		{apr15, 6, 0, time.Time{}},
		{apr15.AddDate(5, 0, 0), 6, 0, time.Time{}},
	} {
		if got := s.SeatsAt(tc.t); got != tc.seats {
			t.Errorf("SeatsAt(%v) = %d, want %d", tc.t, got, tc.seats)
		}
		n, first := s.PendingReduction(tc.t)
		if n != tc.pending || !first.Equal(tc.first) {
			t.Errorf("PendingReduction(%v) = %d, %v; want %d, %v", tc.t, n, first, tc.pending, tc.first)
		}
	}
	if got := s.SeatsAfterReductions(); got != 6 {
		t.Errorf("SeatsAfterReductions = %d, want 6", got)
	}
	if got := s.Available(); got != 4 {
		t.Errorf("Available = %d, want 6 seats - 2 active = 4", got)
	}
	want := []ledger.Reduction{
		{Count: 2, ScheduledAt: feb15.Add(time.Hour), EffectiveAt: mar15},
		{Count: 3, ScheduledAt: at(6), EffectiveAt: feb15},
		{Count: 4, ScheduledAt: mar15.Add(time.Hour), EffectiveAt: apr15},
	}
	if !reflect.DeepEqual(s.Reductions, want) {
		t.Errorf("Reductions = %+v, want %+v", s.Reductions, want)
	}
}

func TestStateClone(t *testing.T) {
	s := ledger.Fold(ledger.State{}, opened(5), admin("u1", 1), member("u2", 2),
		ledger.SeatReductionScheduled{Count: 1, EffectiveAt: feb15, At: at(3)})
	c := s.Clone()
	snapshot := ledger.Fold(ledger.State{}, opened(5), admin("u1", 1), member("u2", 2),
		ledger.SeatReductionScheduled{Count: 1, EffectiveAt: feb15, At: at(3)})

	// Evolving the original in place leaves the clone alone.
	s = ledger.Fold(s, member("u3", 4), deactivated("u2", 5), deleted("u1", 6),
		ledger.SeatReductionScheduled{Count: 1, EffectiveAt: feb15, At: at(7)})
	if !reflect.DeepEqual(c, snapshot) {
		t.Fatalf("clone changed when the original evolved:\n%+v\nwant\n%+v", c, snapshot)
	}
	if !c.EmailInUse("u1@example.com") || c.EmailInUse("u3@example.com") {
		t.Error("clone's email index follows the original")
	}

	// Evolving the clone leaves the original alone.
	orig := s.Clone()
	c = ledger.Fold(c, member("u4", 8), ledger.SeatReductionScheduled{Count: 2, EffectiveAt: mar15, At: at(9)})
	c.Users["u1"] = ledger.User{ID: "u1", Status: ledger.StatusDeleted}
	c.Order[0] = "changed"
	c.Reductions[0].Count = 99
	if !reflect.DeepEqual(s, orig) {
		t.Fatal("original changed when its clone evolved")
	}
	if s.EmailInUse("u4@example.com") {
		t.Error("original's email index follows the clone")
	}

	var zero ledger.State
	if !reflect.DeepEqual(zero.Clone(), zero) {
		t.Error("clone of the zero State is not the zero State")
	}
}

// TestStateWithoutEmailIndex covers a State that was not built by Evolve,
// such as one restored from a snapshot of its exported fields.
func TestStateWithoutEmailIndex(t *testing.T) {
	full := ledger.Fold(ledger.State{}, opened(3), admin("u1", 1), member("u2", 2), member("u3", 3), deleted("u3", 4))
	s := ledger.State{
		Account: full.Account, Name: full.Name, OpenedAt: full.OpenedAt, Seats: full.Seats,
		Users: full.Clone().Users, Order: full.Order, Active: full.Active, Deleted: full.Deleted,
		ActiveAdmins: full.ActiveAdmins, PeakActive: full.PeakActive, Version: full.Version, LastAt: full.LastAt,
	}
	if !s.EmailInUse("U2@example.com") || s.EmailInUse("u3@example.com") {
		t.Error("EmailInUse without the index disagrees with the users")
	}
	_, err := ledger.Decide(s, ledger.AddUser{UserID: "u4", Name: "D", Email: "u2@EXAMPLE.com", Role: ledger.RoleMember, At: at(5)})
	if !errors.Is(err, ledger.ErrDuplicateEmail) {
		t.Errorf("adding a duplicate email: err = %v, want ErrDuplicateEmail", err)
	}
	s = ledger.Evolve(s, member("u4", 5))
	if !s.EmailInUse("u2@example.com") || !s.EmailInUse("u4@example.com") || s.EmailInUse("u3@example.com") {
		t.Error("email index rebuilt wrong")
	}
	for _, bad := range checkInvariants(s) {
		t.Error(bad)
	}
}

type unknownCommand struct{ ledger.Command }

func TestDecideUnknownCommand(t *testing.T) {
	for _, s := range []ledger.State{{}, ledger.Fold(ledger.State{}, opened(1))} {
		es, err := ledger.Decide(s, unknownCommand{})
		if !errors.Is(err, ledger.ErrInvalidCommand) || es != nil {
			t.Errorf("Decide(opened=%v, unknown) = %v, %v; want ErrInvalidCommand", s.Opened(), es, err)
		}
	}
}

func TestEventCatalogue(t *testing.T) {
	all := []ledger.Event{
		opened(1), ledger.SeatsPurchased{At: at(1)}, ledger.SeatReductionScheduled{At: at(2)}, member("u1", 3),
		deactivated("u1", 4), activated("u1", 5), deleted("u1", 6),
		ledger.ActivityRecorded{UserID: "u1", At: at(7)},
		ledger.UserProfileUpdated{UserID: "u1", Name: "N", At: at(8)}, ledger.UserRoleChanged{UserID: "u1", Role: ledger.RoleAdmin, At: at(9)},
	}
	if len(all) != len(ledger.EventTypes) {
		t.Fatalf("%d events for %d types", len(all), len(ledger.EventTypes))
	}
	for i, e := range all {
		if e.EventType() != ledger.EventTypes[i] {
			t.Errorf("event %d type %q, want %q", i, e.EventType(), ledger.EventTypes[i])
		}
		wantAt := t0
		if i > 0 {
			wantAt = at(i)
		}
		if !e.OccurredAt().Equal(wantAt) {
			t.Errorf("%s OccurredAt = %v, want %v", e.EventType(), e.OccurredAt(), wantAt)
		}
		wantUser := ""
		if i >= 3 {
			wantUser = "u1"
		}
		if got := ledger.UserOf(e); got != wantUser {
			t.Errorf("UserOf(%s) = %q, want %q", e.EventType(), got, wantUser)
		}
		if got := ledger.IsActivity(e); got != (i == 7) {
			t.Errorf("IsActivity(%s) = %v", e.EventType(), got)
		}
	}
	for _, c := range []struct {
		cmd  ledger.Command
		name string
	}{
		{ledger.OpenAccount{}, "OpenAccount"}, {ledger.PurchaseSeats{}, "PurchaseSeats"},
		{ledger.ScheduleSeatReduction{}, "ScheduleSeatReduction"}, {ledger.AddUser{}, "AddUser"},
		{ledger.DeactivateUser{}, "DeactivateUser"}, {ledger.ActivateUser{}, "ActivateUser"},
		{ledger.DeleteUser{}, "DeleteUser"}, {ledger.RecordActivity{}, "RecordActivity"},
		{ledger.UpdateUser{}, "UpdateUser"},
	} {
		if got := c.cmd.CommandName(); got != c.name {
			t.Errorf("CommandName = %q, want %q", got, c.name)
		}
	}
	if !ledger.RoleAdmin.Valid() || !ledger.RoleMember.Valid() || ledger.Role("owner").Valid() || ledger.Role("").Valid() {
		t.Error("Role.Valid wrong")
	}
}
