package runner_test

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/cputime"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/projections/runner"
)

// folds counts the batches the read models fold.
type folds struct{ batches, events atomic.Int64 }

func (f *folds) Name() string              { return "folds" }
func (f *folds) Apply(codec.Decoded) error { f.batches.Add(1); f.events.Add(1); return nil }
func (f *folds) ApplyBatch(ds []codec.Decoded) error {
	f.batches.Add(1)
	f.events.Add(int64(len(ds)))
	return nil
}

// BenchmarkFollowLive measures following the store live, as the service
// does: 64 writers each record activities on an account of its own
// through accounts.Service over an embedded JetStream store (interval
// durability), and, like the API, waits for the read models (all of the
// service's, with its hooks) to reach each command's position before the
// next. "one" folds each live record alone, as following did before;
// "batched" folds together the records that arrived while the last ones
// folded; both in the same run. cpu-us/event is the process's CPU (store,
// commands, runner) per command; events/fold how many a fold took.
func BenchmarkFollowLive(b *testing.B) {
	for _, mode := range []struct {
		name  string
		batch int
	}{{"one", 1}, {"batched", 64}} {
		b.Run(mode.name, func(b *testing.B) {
			old := runner.SetLiveBatch(mode.batch)
			defer runner.SetLiveBatch(old)
			ctx := context.Background()
			s, err := jetstream.Embedded(ctx, jetstream.ServerConfig{DataDir: b.TempDir(), Port: -1, Durability: jetstream.DurabilityInterval}, jetstream.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			cdc := codec.New(pii.NewKeyring(pii.NewMemoryKeys(), crand.Reader))
			svc := accounts.New(accounts.Config{Store: s, Codec: cdc, Clock: time.Now, NewEventID: uuid.New, NewULID: ulid.Make})
			cfg := serviceRebuild(s, cdc)
			f := &folds{}
			cfg.Projections = append(cfg.Projections, f)
			r := runner.New(cfg)
			runUntilReady(b, r)
			defer stopRunner(r)
			const writers = 64
			at := time.Now()
			op := accounts.Request{Actor: codec.Actor{ID: "op", Role: "operator"}}
			for w := range writers {
				acct := fmt.Sprintf("acct%02d", w)
				if _, err := svc.Execute(ctx, acct, ledger.OpenAccount{Account: acct, Name: "Account " + acct, Seats: 5, At: at}, op); err != nil {
					b.Fatal(err)
				}
				if _, err := svc.Execute(ctx, acct, ledger.AddUser{UserID: "ada", Name: "Ada", Email: "ada@" + acct + ".test", Role: ledger.RoleMember, At: at}, op); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			cpu, batches, events := cputime.Process(), f.batches.Load(), f.events.Load()
			for w := range writers {
				acct := fmt.Sprintf("acct%02d", w)
				wg.Go(func() {
					for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
						id := fmt.Sprintf("a%d", i)
						res, err := svc.Execute(ctx, acct, ledger.RecordActivity{ActivityID: id, UserID: "ada", Kind: "note", Ref: "ref-" + id, At: at}, op)
						if err != nil {
							b.Error(err)
							return
						}
						wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
						err = r.Wait(wctx, res.Position)
						cancel()
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			used := cputime.Process() - cpu
			b.ReportMetric(float64(used.Microseconds())/float64(b.N), "cpu-us/event")
			if n := f.batches.Load() - batches; n > 0 {
				b.ReportMetric(float64(f.events.Load()-events)/float64(n), "events/fold")
			}
		})
	}
}
