package accounts_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
)

// BenchmarkKeyedActivitiesMemory reports the live heap the service holds
// after 100,000 keyed activities on one account, and after a restart (a
// new service loading the account from the same in-memory store, whose
// own share is left out):
//
//	go test -run XXX -bench KeyedActivitiesMemory -benchtime 1x ./internal/accounts/
func BenchmarkKeyedActivitiesMemory(b *testing.B) {
	const n = 100_000
	heap := func() float64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return float64(m.HeapAlloc) / (1 << 20)
	}
	ctx := context.Background()
	for b.Loop() {
		e := newEnv(b)
		e.clock.step = time.Millisecond // every key within the window
		clock := e.clock.Now
		var withKeys float64
		func() { // the first process: gone when this returns
			svc := e.service(b)
			must(b)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 2, At: clock()}, admin))
			must(b)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "ada", Name: "Ada Lovelace", Email: "ada@acme.test", Role: ledger.RoleAdmin, At: clock()}, admin))
			for i := range n {
				req := admin
				req.IdempotencyKey = fmt.Sprintf("activity-%08d", i)
				must(b)(svc.Execute(ctx, "acme", ledger.RecordActivity{ActivityID: fmt.Sprintf("act%08d", i), UserID: "ada", Kind: "note", Ref: "r", At: clock()}, req))
			}
			withKeys = heap()
			runtime.KeepAlive(svc)
		}()
		storeOnly := heap()
		svc := e.service(b)
		// The first command after a restart loads the account.
		req := admin
		req.IdempotencyKey = "after-restart"
		must(b)(svc.Execute(ctx, "acme", ledger.RecordActivity{ActivityID: "act-restart", UserID: "ada", Kind: "note", Ref: "r", At: clock()}, req))
		restarted := heap()
		runtime.KeepAlive(svc)
		b.ReportMetric(withKeys-storeOnly, "service-MB")
		b.ReportMetric(restarted-storeOnly, "restarted-MB")
		b.ReportMetric(storeOnly, "store-MB")
	}
}
