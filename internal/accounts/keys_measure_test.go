package accounts_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
)

// TestMeasureIdempotencyKeys reports the live heap the service holds after
// LEDGER_MEASURE_KEYS keyed activities on one account, and after a
// restart (a new service loading the account from the same store). It
// runs only when the variable is set:
//
//	LEDGER_MEASURE_KEYS=100000 go test -run TestMeasureIdempotencyKeys -v ./internal/accounts/
func TestMeasureIdempotencyKeys(t *testing.T) {
	var n int
	if _, err := fmt.Sscan(os.Getenv("LEDGER_MEASURE_KEYS"), &n); err != nil || n <= 0 {
		t.Skip("set LEDGER_MEASURE_KEYS to the number of keyed activities")
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	ctx := context.Background()
	e := newEnv(t)
	e.clock.step = time.Millisecond // every key recent
	clock := e.clock.Now
	var base, withKeys uint64
	func() { // the first process: gone when this returns
		svc := e.service(t)
		must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 2, At: clock()}, admin))
		must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "ada", Name: "Ada Lovelace", Email: "ada@acme.test", Role: ledger.RoleAdmin, At: clock()}, admin))
		base = heap()
		for i := range n {
			req := admin
			req.IdempotencyKey = fmt.Sprintf("activity-%08d", i)
			must(t)(svc.Execute(ctx, "acme", ledger.RecordActivity{ActivityID: fmt.Sprintf("act%08d", i), UserID: "ada", Kind: "note", Ref: "r", At: clock()}, req))
		}
		withKeys = heap()
		runtime.KeepAlive(svc)
	}()
	storeOnly := heap()
	svc := e.service(t)
	// The first command after a restart loads the account.
	req := admin
	req.IdempotencyKey = "after-restart"
	must(t)(svc.Execute(ctx, "acme", ledger.RecordActivity{ActivityID: "act-restart", UserID: "ada", Kind: "note", Ref: "r", At: clock()}, req))
	restarted := heap()
	t.Logf("%d keyed activities: live heap (HeapAlloc after GC) %.1f MB before, %.1f MB after (store and service), %.1f MB store alone; after a restart %.1f MB: service %.1f MB before, %.1f MB after the restart",
		n, mb(base), mb(withKeys), mb(storeOnly), mb(restarted), mb(withKeys-storeOnly), mb(restarted-storeOnly))
	runtime.KeepAlive(svc)
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }
