package audit

import (
	"testing"

	"github.com/licenseledger/ledger/domain/ledger"
)

func TestActionOf(t *testing.T) {
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
