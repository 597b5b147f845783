package audit

import (
	"testing"

	"github.com/licenseledger/ledger/domain/ledger"
)

// TestActionOf pins the index of every event type: snapshots store it,
// so a type keeps its index for good and new types come after.
func TestActionOf(t *testing.T) {
	stored := []string{"AccountOpened", "SeatsPurchased", "SeatReductionScheduled", "UserAdded",
		"UserDeactivated", "UserActivated", "UserDeleted", "ActivityRecorded", "UserProfileUpdated", "UserRoleChanged"}
	for i, typ := range stored {
		if a, ok := actionOf(typ); !ok || int(a) != i {
			t.Errorf("actionOf(%q) = %d, %v; want %d, the index snapshots hold", typ, a, ok, i)
		}
	}
	if len(actions) > maxActions {
		t.Errorf("%d event types; a snapshot entry names at most %d", len(actions), maxActions)
	}
	for _, typ := range ledger.EventTypes {
		if a, ok := actionOf(typ); !ok || actions[a] != typ {
			t.Errorf("actionOf(%q) = %d, %v", typ, a, ok)
		}
	}
	for i, typ := range ledger.EventTypes {
		if a, ok := actionOf(typ); !ok || int(a) != i {
			t.Errorf("actionOf(%q) = %d, %v; want %d", typ, a, ok, i)
		}
	}
	if _, ok := actionOf("NoSuchEvent"); ok {
		t.Error("an unknown type has an action")
	}
}

func TestIdemOf(t *testing.T) {
	a := newAccount(nil)
	a.idem = []idemKey{{0, "k0"}, {3, "k3"}, {4, "k4"}, {9, "k9"}}
	for i, want := range map[int]string{0: "k0", 1: "", 2: "", 3: "k3", 4: "k4", 5: "", 9: "k9", 10: ""} {
		if got := a.idemOf(i); got != want {
			t.Errorf("idemOf(%d) = %q, want %q", i, got, want)
		}
	}
}
