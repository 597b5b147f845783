package accounts_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
)

// hookStore runs a hook before appending an activity: another process's
// command landing between the service's decision and its append.
type hookStore struct {
	eventstore.Store
	mu   sync.Mutex
	hook func()
}

func (s *hookStore) before(stream eventstore.StreamID) {
	if stream.Category != eventstore.Activity {
		return
	}
	s.mu.Lock()
	h := s.hook
	s.hook = nil
	s.mu.Unlock()
	if h != nil {
		h()
	}
}

func (s *hookStore) Append(ctx context.Context, stream eventstore.StreamID, expected eventstore.ExpectedRevision, events ...eventstore.Proposed) (eventstore.AppendResult, error) {
	s.before(stream)
	return s.Store.Append(ctx, stream, expected, events...)
}

// condHookStore is hookStore over a store that appends on condition.
type condHookStore struct{ *hookStore }

func (s condHookStore) AppendIf(ctx context.Context, stream eventstore.StreamID, expected eventstore.ExpectedRevision, cond eventstore.Condition, events ...eventstore.Proposed) (eventstore.AppendResult, error) {
	s.before(stream)
	return s.Store.(eventstore.ConditionalAppender).AppendIf(ctx, stream, expected, cond, events...)
}

// activitiesAfterDeactivation reads the account's streams in global order
// and returns the activities of user stored after the user's deactivation.
func activitiesAfterDeactivation(t *testing.T, e *env, store eventstore.Store, account, user string) []eventstore.Position {
	t.Helper()
	ctx := context.Background()
	var recs []eventstore.Record
	for _, stream := range []eventstore.StreamID{eventstore.LedgerStream(account), eventstore.ActivityStream(account)} {
		for r, err := range store.ReadStream(ctx, stream, 0) {
			if errors.Is(err, eventstore.ErrStreamNotFound) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r)
		}
	}
	slices.SortFunc(recs, func(a, b eventstore.Record) int { return int(a.Position) - int(b.Position) })
	c := codec.New(pii.NewKeyring(e.keys, rand.NewChaCha8([32]byte{9})))
	deactivated := false
	var after []eventstore.Position
	for _, r := range recs {
		d, err := c.Decode(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		switch ev := d.Event.(type) {
		case ledger.UserDeactivated:
			deactivated = deactivated || ev.UserID == user
		case ledger.ActivityRecorded:
			if deactivated && ev.UserID == user {
				after = append(after, r.Position)
			}
		}
	}
	return after
}

// TestDeactivationBetweenDecisionAndAppend has another process deactivate
// a user right before this process appends an activity the user recorded,
// decided from the state it held. Appended on condition, the activity is
// refused; read-then-append (the path of stores without conditional
// appends) stores it after the deactivation: the limit the condition
// removes.
func TestDeactivationBetweenDecisionAndAppend(t *testing.T) {
	for _, conditional := range []bool{true, false} {
		t.Run(fmt.Sprintf("conditional=%v", conditional), func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			hs := &hookStore{Store: e.store}
			var view eventstore.Store = hs
			if conditional {
				view = condHookStore{hs}
			}
			a, b := e.serviceOn(t, view), e.service(t)
			must(t)(a.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 5, At: t0}, admin))
			must(t)(a.Execute(ctx, "acme", ledger.AddUser{UserID: "ada", Name: "Ada", Email: "ada@acme.test", Role: ledger.RoleMember, At: t0}, admin))
			record := func(id string) ledger.RecordActivity {
				return ledger.RecordActivity{ActivityID: id, UserID: "ada", Kind: "note", Ref: "ref-" + id, At: t0}
			}
			must(t)(a.Execute(ctx, "acme", record("act1"), admin))
			hs.mu.Lock()
			hs.hook = func() { must(t)(b.Execute(ctx, "acme", ledger.DeactivateUser{UserID: "ada", At: t0}, admin)) }
			hs.mu.Unlock()
			_, err := a.Execute(ctx, "acme", record("act2"), admin)
			after := activitiesAfterDeactivation(t, e, e.store, "acme", "ada")
			if conditional {
				if !errors.Is(err, ledger.ErrUserDeactivated) || len(after) > 0 {
					t.Fatalf("activity decided before a deactivation appended after it: %v; activities after the deactivation at %v", err, after)
				}
				return
			}
			if err != nil || len(after) != 1 {
				t.Fatalf("read-then-append: %v, activities after the deactivation at %v; want the one the window lets through", err, after)
			}
		})
	}
}

// raceDeactivation runs rounds in which one service records activities for
// a user from the state it holds while another deactivates the user: no
// activity may follow the deactivation in the global order.
func raceDeactivation(t *testing.T, e *env, a, b *accounts.Service, store eventstore.Store, rounds int) {
	t.Helper()
	ctx := context.Background()
	const acct = "acme"
	must(t)(a.Execute(ctx, acct, ledger.OpenAccount{Account: acct, Name: "Acme", Seats: rounds + 1, At: t0}, admin))
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range rounds {
		user := fmt.Sprintf("u%d", round)
		must(t)(a.Execute(ctx, acct, ledger.AddUser{UserID: user, Name: "User", Email: user + "@acme.test", Role: ledger.RoleMember, At: t0}, admin))
		if _, err := b.State(ctx, acct); err != nil { // b catches up: it knows the user
			t.Fatal(err)
		}
		delay := time.Duration(rng.IntN(2000)) * time.Microsecond
		var wg sync.WaitGroup
		var deactivated atomic.Bool
		recorded := 0
		wg.Go(func() {
			// Records until refused; an activity begun after the
			// deactivation was answered must be refused.
			for i := 0; ; i++ {
				done := deactivated.Load()
				_, err := a.Execute(ctx, acct, ledger.RecordActivity{ActivityID: fmt.Sprintf("%s-%d", user, i), UserID: user, Kind: "note", Ref: "r", At: t0}, admin)
				if errors.Is(err, ledger.ErrUserDeactivated) {
					return
				}
				if err != nil {
					t.Errorf("round %d: record: %v", round, err)
					return
				}
				recorded++
				if done {
					t.Errorf("round %d: an activity begun after the deactivation was answered was recorded", round)
					return
				}
			}
		})
		time.Sleep(delay)
		must(t)(b.Execute(ctx, acct, ledger.DeactivateUser{UserID: user, At: t0}, admin))
		deactivated.Store(true)
		wg.Wait()
		if after := activitiesAfterDeactivation(t, e, store, acct, user); len(after) > 0 {
			t.Fatalf("round %d: %d activities of %s after the deactivation, the first at %d (%d recorded)", round, len(after), user, after[0], recorded)
		}
	}
}

func TestNoActivityAfterDeactivationMemory(t *testing.T) {
	e := newEnv(t)
	raceDeactivation(t, e, e.service(t), e.service(t), e.store, 30)
}

// TestNoActivityAfterDeactivationJetStream runs the race on two JetStream
// stores over one server, as two processes do, each with its own cache of
// stream heads.
func TestNoActivityAfterDeactivationJetStream(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	one, err := jetstream.Embedded(ctx, jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1, Durability: jetstream.DurabilityInterval}, jetstream.Config{MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { one.Close() })
	two, err := jetstream.Connect(ctx, one.Server().ClientURL(), jetstream.Config{MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { two.Close() })
	raceDeactivation(t, e, e.serviceOn(t, one), e.serviceOn(t, two), one, 15)
}
