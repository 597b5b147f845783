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
