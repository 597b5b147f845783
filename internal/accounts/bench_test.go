package accounts_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	storejs "github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/eventstore/jetstream/keys"
	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/cputime"
	"github.com/licenseledger/ledger/internal/pii"
)

// BenchmarkExecute runs licenseload's default mix of commands (activity
// 60, deactivate 12, activate 12, add 8, purchase 4, delete 4) through the
// service over 1,000 accounts of 5 users opened first, from 64
// goroutines, each owning its accounts, on two stores:
//
//   - jetstream: as licensed wires it, an embedded JetStream store with
//     fsync durability (group sync) and the JetStream key store;
//   - memory: the memory store and key store, which leaves the service's
//     own work (decide, seal, encode, the account's state) and little
//     else.
//
// It reports the CPU time of the whole process (service, client and
// embedded server) per command, and the allocations per command.
//
//	go test -run '^$' -bench BenchmarkExecute -benchtime 40000x -count 5 ./internal/accounts/
func BenchmarkExecute(b *testing.B) {
	b.Run("jetstream", func(b *testing.B) {
		ctx := context.Background()
		st, err := storejs.Embedded(ctx, storejs.ServerConfig{DataDir: b.TempDir(), Port: -1, Durability: storejs.DurabilityFsync},
			storejs.Config{Duplicates: storejs.ShortDuplicates})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		js, err := jetstream.New(st.Conn())
		if err != nil {
			b.Fatal(err)
		}
		ks, err := keys.Open(ctx, js, keys.Config{Sync: st.Sync})
		if err != nil {
			b.Fatal(err)
		}
		defer ks.Close(ctx)
		benchExecute(b, accounts.New(accounts.Config{
			Store: st, Codec: codec.New(pii.NewKeyring(ks, rand.Reader)),
			Clock: time.Now, NewEventID: uuid.New, NewULID: ulid.Make,
		}))
	})
	b.Run("memory", func(b *testing.B) {
		st := memory.New()
		defer st.Close()
		benchExecute(b, accounts.New(accounts.Config{
			Store: st, Codec: codec.New(pii.NewKeyring(pii.NewMemoryKeys(), rand.Reader)),
			Clock: time.Now, NewEventID: uuid.New, NewULID: ulid.Make,
		}))
	})
}

func benchExecute(b *testing.B, svc *accounts.Service) {
	const nAccounts, writers = 1000, 64
	ctx := context.Background()
	type acct struct {
		id     string
		users  []string
		active []bool
		seq    int
	}
	accts := make([]*acct, nAccounts)
	var ids atomic.Int64
	newUser := func() string { return fmt.Sprintf("u%07d", ids.Add(1)) }
	add := func(a *acct) error {
		id := newUser()
		_, err := svc.Execute(ctx, a.id, ledger.AddUser{UserID: id, Name: "User " + id, Email: id + "@example.test", Role: ledger.RoleMember, At: time.Now()}, admin)
		if err == nil {
			a.users, a.active = append(a.users, id), append(a.active, true)
		}
		return err
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < nAccounts; i += writers {
				a := &acct{id: fmt.Sprintf("acct%04d", i)}
				accts[i] = a
				if _, err := svc.Execute(ctx, a.id, ledger.OpenAccount{Account: a.id, Name: a.id, Seats: 1000, At: time.Now()}, admin); err != nil {
					b.Error(err)
					return
				}
				for range 5 {
					if err := add(a); err != nil {
						b.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if b.Failed() {
		return
	}
	pick := func(rng *mrand.Rand, a *acct, want func(bool) bool) int {
		var n, j int = 0, -1
		for i, on := range a.active {
			if i > 0 && want(on) { // the first user records the activities
				if n++; rng.IntN(n) == 0 {
					j = i
				}
			}
		}
		return j
	}
	var next atomic.Int64
	var refused atomic.Int64
	cpu := cputime.Process()
	b.ReportAllocs()
	b.ResetTimer()
	for w := range writers {
		wg.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(w), 7))
			for next.Add(1) <= int64(b.N) {
				a := accts[w+writers*rng.IntN(nAccounts/writers)]
				var cmd ledger.Command
				j := -1
				switch r := rng.IntN(100); {
				case r < 60:
				case r < 72:
					if j = pick(rng, a, func(on bool) bool { return on }); j >= 0 {
						cmd = ledger.DeactivateUser{UserID: a.users[j], Reason: "load cycle", At: time.Now()}
						a.active[j] = false
					}
				case r < 84:
					if j = pick(rng, a, func(on bool) bool { return !on }); j >= 0 {
						cmd = ledger.ActivateUser{UserID: a.users[j], At: time.Now()}
						a.active[j] = true
					}
				case r < 92:
					if err := add(a); err != nil {
						b.Error(err)
						return
					}
					continue
				case r < 96:
					cmd = ledger.PurchaseSeats{Count: 1, At: time.Now()}
				default:
					if j = pick(rng, a, func(bool) bool { return true }); j >= 0 {
						cmd = ledger.DeleteUser{UserID: a.users[j], Confirm: a.users[j], At: time.Now()}
						a.users, a.active = append(a.users[:j], a.users[j+1:]...), append(a.active[:j], a.active[j+1:]...)
					}
				}
				if cmd == nil {
					a.seq++
					cmd = ledger.RecordActivity{ActivityID: fmt.Sprintf("act%d", a.seq), UserID: a.users[0], Kind: "note", Ref: fmt.Sprintf("candidate-%d", a.seq), At: time.Now()}
				}
				if _, err := svc.Execute(ctx, a.id, cmd, admin); err != nil {
					var rule *ledger.RuleError
					if errors.As(err, &rule) {
						refused.Add(1)
						continue
					}
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	used := cputime.Process() - cpu
	b.ReportMetric(float64(used.Microseconds())/float64(b.N), "cpu-us/op")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commands/s")
	if n := refused.Load(); n > 0 {
		b.ReportMetric(float64(n)/float64(b.N), "refused/op")
	}
}
