package accounts_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"iter"
	mrand "math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/runner"
)

// loader returns a service of a new process over the env's store, which
// loads accounts from states when it is not nil.
func (e *env) loader(states *accounts.ReadModel) *accounts.Service {
	store := e.store
	if e.reopen != nil {
		store = e.reopen()
	}
	return accounts.New(accounts.Config{
		Store: store, Codec: codec.New(pii.NewKeyring(e.keys, rand.Reader)),
		Clock: e.clock.Now, NewEventID: uuid.New, NewULID: ulid.Make, States: states,
	})
}

// feed runs a runner over the env's store with states as its only read
// model until it has applied every event stored, then stops it.
func (e *env) feed(t *testing.T, states *accounts.ReadModel) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := runner.New(runner.Config{Store: e.store, Codec: codec.New(pii.NewKeyring(e.keys, rand.Reader)),
		Projections: []projections.Projection{states}})
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var last eventstore.Position
	for rec, err := range e.store.ReadAll(ctx, 0) {
		if err != nil && !errors.Is(err, eventstore.ErrUnreadable) {
			t.Fatal(err)
		}
		last = rec.Position
	}
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	if err := r.Wait(wctx, last); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("runner: %v", err)
	}
}

// compareLoads checks that a service loading every account from states
// holds exactly what a service loading it from its streams holds: the
// state, the streams' chain heads and lengths (the activity stream's is
// what the exact activity check appends after), the last position and the
// idempotency keys remembered with their answers.
func compareLoads(t *testing.T, e *env, states *accounts.ReadModel, accts []string, when string) {
	t.Helper()
	ctx := context.Background()
	fromStreams, fromStates := e.loader(nil), e.loader(states)
	for _, acct := range accts {
		want, werr := fromStreams.State(ctx, acct)
		got, gerr := fromStates.State(ctx, acct)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%s: %s: loaded from the streams: %v, from the read model: %v", when, acct, werr, gerr)
		}
		if g, w := summary(got), summary(want); g != w {
			t.Fatalf("%s: %s: loaded from the read model\n%s\nfrom the streams\n%s", when, acct, g, w)
		}
		if g, w := accounts.Loaded(fromStates, acct), accounts.Loaded(fromStreams, acct); g != w {
			t.Fatalf("%s: %s: loaded from the read model\n%s\nfrom the streams\n%s", when, acct, g, w)
		}
	}
}

// Random histories over several accounts, with deletions (their keys
// erased), idempotency keys within and beyond the window and activities:
// an account loaded from the accounts' read model, fed by the runner and
// after a round trip through its snapshot, then caught up with what was
// appended since, is exactly the account loaded from its streams.
//
// On JetStream each loader opens a new store over the server (nothing
// cached, as in a new process), and loads from the read model take the
// store's confirmation of the streams' ends (ConfirmEnds) instead of
// reading them.
func TestLoadFromReadModel(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		steps := 1500
		if testing.Short() {
			steps = 600
		}
		testLoadFromReadModel(t, newEnv(t), steps)
	})
	t.Run("jetstream", func(t *testing.T) {
		steps := 750
		if testing.Short() {
			steps = 500
		}
		testLoadFromReadModel(t, newJetStreamEnv(t), steps)
	})
}

// newJetStreamEnv is newEnv over a JetStream store on an embedded server,
// whose loaders each open a store of their own over the same server.
func newJetStreamEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	e := newEnv(t)
	s, err := jetstream.Embedded(ctx, jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1, Durability: jetstream.DurabilityInterval}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e.store = s
	e.reopen = func() eventstore.Store {
		o, err := jetstream.Open(ctx, s.Conn(), jetstream.Config{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { o.Close() })
		return o
	}
	return e
}

func testLoadFromReadModel(t *testing.T, e *env, steps int) {
	ctx := context.Background()
	rng := mrand.New(mrand.NewPCG(3, 4))
	procs := []*accounts.Service{e.service(t), e.service(t)}
	accts := []string{"acme", "globex", "initech", "umbrella"}
	users := map[string][]string{}
	var states *accounts.ReadModel
	var deletions, repeats int
	type keyed struct {
		acct, key string
		cmd       ledger.Command
	}
	var given []keyed
	for _, acct := range accts {
		must(t)(procs[0].Execute(ctx, acct, ledger.OpenAccount{Account: acct, Name: acct, Seats: 40, At: e.clock.Now()}, admin))
	}
	for step := range steps {
		e.clock.advance(time.Duration(rng.IntN(60)) * time.Minute)
		acct := accts[rng.IntN(len(accts))]
		req := admin
		cmd := randomCommand(rng, acct, users[acct], e.clock.Now(), step)
		switch n := rng.IntN(8); {
		case n < 3:
			req.IdempotencyKey = fmt.Sprintf("k%d", step)
			given = append(given, keyed{acct, req.IdempotencyKey, cmd})
		case n < 5 && len(given) > 0:
			// A repeat, within the window or beyond it.
			g := given[len(given)-1-rng.IntN(min(len(given), 20))]
			acct, req.IdempotencyKey, cmd = g.acct, g.key, g.cmd
		case n < 6 && len(given) > 0:
			req.IdempotencyKey = given[rng.IntN(len(given))].key // reused for another command
		}
		res, err := procs[rng.IntN(len(procs))].Execute(ctx, acct, cmd, req)
		var rule *ledger.RuleError
		switch {
		case errors.As(err, &rule), errors.Is(err, accounts.ErrIdempotencyKeyReused):
			// Refused: nothing to note, but the read model is still fed
			// and compared below at its steps.
		case err != nil:
			t.Fatalf("step %d %T: %v", step, cmd, err)
		default:
			if res.Repeated {
				repeats++
			}
			if add, ok := cmd.(ledger.AddUser); ok && !res.Repeated {
				users[acct] = append(users[acct], add.UserID)
			}
			if _, ok := cmd.(ledger.DeleteUser); ok && len(res.Events) > 0 && !res.Repeated {
				deletions++
			}
		}
		if step%250 == 230 {
			// The runner folds what is stored so far; later steps append
			// what loads catch up with.
			states = accounts.NewReadModel(e.clock.Now, 0)
			e.feed(t, states)
		}
		if step%250 == 249 {
			when := fmt.Sprintf("step %d", step)
			compareLoads(t, e, states, accts, when)
			b, err := states.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			restored := accounts.NewReadModel(e.clock.Now, 0)
			if err := restored.Restore(b); err != nil {
				t.Fatal(err)
			}
			compareLoads(t, e, restored, accts, when+", read model restored from its snapshot")
			// A day later no idempotency key is still remembered: loads
			// from the read model read nothing from the streams when the
			// store confirms their ends (eventstore.EndConfirmer).
			e.clock.advance(accounts.DefaultIdempotencyWindow + time.Hour)
			compareLoads(t, e, states, accts, when+", a day later")
			current := accounts.NewReadModel(e.clock.Now, 0)
			e.feed(t, current)
			compareLoads(t, e, current, accts, when+", a day later, read model current")
		}
	}
	if deletions == 0 || repeats == 0 {
		t.Fatalf("%d deletions, %d repeats: the history does not exercise erasure and idempotency", deletions, repeats)
	}
}

// A record off an account's chain that the runner quarantined between two
// events it folded makes the read model step aside for that account: the
// account loads from its streams, and the others still from the model.
func TestLoadFromReadModelAfterQuarantine(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc := e.service(t)
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 2, At: t0}, admin))
	// In the chain but of a type this version does not know: a stream
	// load refuses the account.
	stream := eventstore.LedgerStream("acme")
	var head codec.Hash
	for rec, err := range e.store.ReadStream(ctx, stream, 0) {
		if err != nil {
			t.Fatal(err)
		}
		head = codec.RecordHash(head, rec)
	}
	meta := `{"time":"2026-03-10T09:00:00Z","schemaversion":1,"account":"acme","actorid":"op","actorrole":"operator","correlationid":"","causationid":"","prevhash":"` + head.String() + `"}`
	newer := eventstore.Proposed{ID: uuid.New(), Type: "UserTitleChanged", Data: []byte(`{}`), Metadata: []byte(meta)}
	if _, err := e.store.Append(ctx, stream, eventstore.Exact(0), newer); err != nil {
		t.Fatal(err)
	}
	head = codec.NextHash(head, newer)
	must(t)(svc.Execute(ctx, "globex", ledger.OpenAccount{Account: "globex", Name: "Globex", Seats: 1, At: t0}, admin))
	// A seats purchase chained after the unknown event: the runner folds
	// it, a stream load never reaches it.
	buy, err := codec.New(pii.NewKeyring(e.keys, rand.Reader)).Encode(ctx, ledger.SeatsPurchased{Count: 5, At: t0},
		codec.Metadata{EventID: uuid.New(), Time: t0, Account: "acme", Actor: admin.Actor, PrevHash: head})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Append(ctx, stream, eventstore.Exact(1), buy); err != nil {
		t.Fatal(err)
	}
	states := accounts.NewReadModel(e.clock.Now, 0)
	e.feed(t, states)
	fromStates := e.loader(states)
	if _, err := fromStates.Execute(ctx, "acme", ledger.PurchaseSeats{Count: 1, At: t0}, admin); !errors.Is(err, accounts.ErrUnreadableHistory) {
		t.Fatalf("a command after an event this version cannot decode, loaded with the read model: %v, want ErrUnreadableHistory", err)
	}
	compareLoads(t, e, states, []string{"globex"}, "after a quarantine")
}

// crashedDestroy is a key store whose Destroy fails, as a process that
// crashes between appending a deletion and destroying the key leaves it.
type crashedDestroy struct{ pii.KeyStore }

func (crashedDestroy) Destroy(context.Context, string) error {
	return errors.New("key store unreachable")
}

// A deletion whose key was never destroyed (the process stopped first) is
// finished by the next process that loads the account, also when it loads
// it from the read model rather than from the ledger stream.
func TestLoadFromReadModelFinishesDeletion(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	crashing := accounts.New(accounts.Config{
		Store: e.store, Codec: codec.New(pii.NewKeyring(crashedDestroy{e.keys}, rand.Reader)),
		Clock: e.clock.Now, NewEventID: uuid.New, NewULID: ulid.Make,
	})
	must(t)(crashing.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 2, At: t0}, admin))
	must(t)(crashing.Execute(ctx, "acme", ledger.AddUser{UserID: "ada", Name: "Ada", Email: "ada@acme.test", Role: ledger.RoleAdmin, At: t0}, admin))
	must(t)(crashing.Execute(ctx, "acme", ledger.AddUser{UserID: "bob", Name: "Bob", Email: "bob@acme.test", Role: ledger.RoleMember, At: t0}, admin))
	must(t)(crashing.Execute(ctx, "acme", ledger.DeleteUser{UserID: "bob", Confirm: "bob", At: t0}, admin))
	if _, err := e.keys.Get(ctx, pii.KeyID("acme", "bob")); err != nil {
		t.Fatalf("the key is already gone (%v): the test does not stop the deletion halfway", err)
	}
	states := accounts.NewReadModel(e.clock.Now, 0)
	e.feed(t, states)
	if _, err := e.loader(states).State(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := e.keys.Get(ctx, pii.KeyID("acme", "bob"))
		if errors.Is(err, pii.ErrErased) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deleted user's key after loading the account from the read model: %v, want it destroyed", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLoadFromReadModelAheadOfTheStore: a read model that applied events
// the store no longer holds (its history lost its last events) must not
// leave the account refusing every command as contended: after a second
// conflict the account is read again from its streams, and the command
// is appended after what the store holds.
func TestLoadFromReadModelAheadOfTheStore(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testLoadAheadOfTheStore(t, func(t *testing.T) *env { return newEnv(t) }) })
	t.Run("jetstream", func(t *testing.T) { testLoadAheadOfTheStore(t, newJetStreamEnv) })
}

func testLoadAheadOfTheStore(t *testing.T, newEnv func(*testing.T) *env) {
	ctx := context.Background()
	e := newEnv(t)
	svc := e.service(t)
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 2, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.PurchaseSeats{Count: 3, At: t0}, admin))
	states := accounts.NewReadModel(e.clock.Now, 0)
	e.feed(t, states)
	// The same store without its last event: a second env holding only
	// the account's first event, byte for byte.
	cut := newEnv(t)
	cut.keys = e.keys
	stream := eventstore.LedgerStream("acme")
	for rec, err := range e.store.ReadStream(ctx, stream, 0) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.Revision > 0 {
			break
		}
		p := eventstore.Proposed{ID: rec.ID, Type: rec.Type, Data: rec.Data, Metadata: rec.Metadata}
		if _, err := cut.store.Append(ctx, stream, eventstore.NoStream(), p); err != nil {
			t.Fatal(err)
		}
	}
	res, err := cut.loader(states).Execute(ctx, "acme", ledger.PurchaseSeats{Count: 1, At: t0}, admin)
	if err != nil {
		t.Fatalf("a command on a state the store is behind: %v", err)
	}
	if res.State.Seats != 3 || res.State.Version != 2 {
		t.Fatalf("after the command: %d seats at version %d, want 3 at 2 (the store's first event, then this one)", res.State.Seats, res.State.Version)
	}
}

// streamReads is a store that counts the reads of single streams.
type streamReads struct {
	*memory.Store
	n atomic.Int64
}

func (s *streamReads) ReadStream(ctx context.Context, stream eventstore.StreamID, from uint64) iter.Seq2[eventstore.Record, error] {
	s.n.Add(1)
	return s.Store.ReadStream(ctx, stream, from)
}

// An account whose streams the store confirms end where the read model
// (restored from its snapshot) folded them takes its first commands,
// refused or appended, without a read of its streams; once another process appended to it, its first
// command in a new process reads what followed.
func TestLoadFromReadModelReadsNoStream(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc := e.service(t)
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 2, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "ada", Name: "Ada", Email: "ada@acme.test", Role: ledger.RoleAdmin, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.RecordActivity{ActivityID: "a1", UserID: "ada", Kind: "note", Ref: "r1", At: t0}, admin))
	fed := accounts.NewReadModel(e.clock.Now, 0)
	e.feed(t, fed)
	// A new process's read model, restored from the snapshot.
	snap, err := fed.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	states := accounts.NewReadModel(e.clock.Now, 0)
	if err := states.Restore(snap); err != nil {
		t.Fatal(err)
	}
	counted := &streamReads{Store: e.store.(*memory.Store)}
	e.reopen = func() eventstore.Store { return counted }

	fresh := e.loader(states)
	var rule *ledger.RuleError
	if _, err := fresh.Execute(ctx, "acme", ledger.DeactivateUser{UserID: "nobody", At: t0}, admin); !errors.As(err, &rule) || rule.Rule != ledger.RuleUserNotFound {
		t.Fatalf("deactivating a user the account never had: %v, want %s", err, ledger.RuleUserNotFound)
	}
	if n := counted.n.Load(); n != 0 {
		t.Fatalf("a refused first command read %d streams, want none", n)
	}
	if _, err := e.loader(states).Execute(ctx, "acme", ledger.RecordActivity{ActivityID: "a2", UserID: "ada", Kind: "note", Ref: "r2", At: t0}, admin); err != nil {
		t.Fatal(err)
	}
	res, err := e.loader(states).Execute(ctx, "acme", ledger.PurchaseSeats{Count: 1, At: t0}, admin)
	if err != nil || res.State.Seats != 3 || res.Revision() != 2 {
		t.Fatalf("a seat bought: %d seats at revision %d, %v; want 3 at 2", res.State.Seats, res.Revision(), err)
	}
	// The read model stopped before the activity: the purchase's process
	// read both streams from the model's ends, and found the activity.
	if n := counted.n.Load(); n != 2 {
		t.Fatalf("first commands read %d streams, want 2 (both, after an activity another process appended)", n)
	}
	got, err := e.loader(states).State(ctx, "acme")
	if err != nil || got.Seats != 3 {
		t.Fatalf("state after another process bought a seat: %d seats, %v; want 3", got.Seats, err)
	}
}
