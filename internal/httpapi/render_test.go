package httpapi

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/projections/seats"
)

// TestAnswersAsJSON: the answers appended member by member are the bytes
// json.Marshal writes with the answers' options, for strings that need
// quoting or are not UTF-8 and for times in any zone, and a time
// json.Marshal refuses fails the answer as before.
func TestAnswersAsJSON(t *testing.T) {
	strs := []string{"", "acme", "01JQ8ZK5W6X0A1B2C3D4E5F6G7", "Ann O'Neil", `say "hi"`, `back\slash`, "tab\there",
		"nl\n", "\x00\x1f\x7f", "Zoë Ångström", "名前", "emoji 🎉", "\u2028\u2029", "<b>&amp;</b>", "bad \xff utf8",
		"cut \xe2\x82", "ann@example.org", "/"}
	zones := []*time.Location{time.UTC, time.FixedZone("", 3600), time.FixedZone("", -(5*3600 + 30*60)),
		time.FixedZone("", 23*3600+59*60), time.FixedZone("far", 24*3600), time.FixedZone("", -25*3600)}
	times := []time.Time{{}, time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC), time.Date(2026, 3, 10, 9, 0, 0, 123456789, time.UTC),
		time.Date(2026, 3, 10, 9, 0, 0, 120000000, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(0, 1, 1, 0, 0, 0, 1, time.UTC)}
	rng := rand.New(rand.NewPCG(1, 2))
	str := func() string { return strs[rng.IntN(len(strs))] }
	tm := func() time.Time {
		t := times[rng.IntN(len(times))]
		if rng.IntN(2) == 0 {
			t = t.In(zones[rng.IntN(len(zones))])
		}
		return t
	}
	num := func() int { return []int{0, 1, -1, 7, 1 << 40, -1 << 62}[rng.IntN(6)] }
	marshal := func(v any) (b []byte, failed bool) {
		defer func() {
			if recover() != nil {
				failed = true
			}
		}()
		return mustJSON(v), false
	}
	appended := func(v any) (b []byte, failed bool) {
		defer func() {
			if recover() != nil {
				failed = true
			}
		}()
		return marshalAnswer(v), false
	}
	fails := 0
	for i := range 20_000 {
		var v any
		switch i % 3 {
		case 0:
			v = seats.User{ID: str(), Name: str(), Email: str(), Role: ledger.Role(str()), Status: ledger.Status(str()),
				AddedAt: tm(), ChangedAt: tm(), ReassignedTo: str(), ExternalID: str()}
		case 1:
			v = ActivityCreated{ID: str(), UserID: str(), Kind: str(), Ref: str(), At: tm()}
		default:
			v = seats.Usage{Account: str(), Name: str(), OpenedAt: tm(), At: tm(), Purchased: num(), Seats: num(),
				Active: num(), Deactivated: num(), Deleted: num(), Available: num(), PendingReduction: num(),
				PendingReductionAt: tm(), PeakActive: num(), Revision: uint64(rng.Uint32()) << rng.IntN(32),
				Position: eventstore.Position(rng.Uint64())}
		}
		want, wantFailed := marshal(v)
		got, gotFailed := appended(v)
		if wantFailed {
			fails++
		}
		if wantFailed != gotFailed || !bytes.Equal(got, want) {
			t.Fatalf("%s:\n got %s (failed %v)\nwant %s (failed %v)", fmt.Sprintf("%#v", v), got, gotFailed, want, wantFailed)
		}
	}
	if fails == 0 || fails > 15_000 {
		t.Fatalf("%d of the answers failed to marshal: the cases do not cover both", fails)
	}
}
