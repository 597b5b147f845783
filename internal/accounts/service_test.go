package accounts_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
)

var t0 = time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)

// clock is a test clock that moves forward a second (or step) at each
// reading.
type clock struct {
	mu   sync.Mutex
	now  time.Time
	step time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.step == 0 {
		c.now = c.now.Add(time.Second)
	} else {
		c.now = c.now.Add(c.step)
	}
	return c.now
}

// advance moves the clock forward by d.
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type env struct {
	store eventstore.Store
	keys  pii.KeyStore
	clock *clock
	// reopen, when set, returns a new view of store for each loader: a
	// new process's, with nothing cached.
	reopen func() eventstore.Store
}

func newEnv(t testing.TB) *env {
	t.Helper()
	s := memory.New()
	t.Cleanup(func() { s.Close() })
	return &env{store: s, keys: pii.NewMemoryKeys(), clock: &clock{now: t0}}
}

var seed atomic.Uint64

// service returns a new service over the env's store and key store: a
// second call is a second process sharing them.
func (e *env) service(t testing.TB) *accounts.Service {
	t.Helper()
	return e.serviceOn(t, e.store)
}

// serviceOn is service with another view of the env's store.
func (e *env) serviceOn(t testing.TB, store eventstore.Store, adjust ...func(*accounts.Config)) *accounts.Service {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed.Add(1), 7))
	var mu sync.Mutex
	cfg := accounts.Config{
		Store: store,
		Codec: codec.New(pii.NewKeyring(e.keys, rand.NewChaCha8([32]byte{byte(seed.Add(1))}))),
		Clock: e.clock.Now,
		NewEventID: func() uuid.UUID {
			mu.Lock()
			defer mu.Unlock()
			var u uuid.UUID
			for i := range u {
				u[i] = byte(rng.Uint32())
			}
			u[6] = u[6]&0x0f | 0x40
			u[8] = u[8]&0x3f | 0x80
			return u
		},
		NewULID: func() ulid.ULID {
			mu.Lock()
			defer mu.Unlock()
			var u ulid.ULID
			for i := range u {
				u[i] = byte(rng.Uint32())
			}
			return u
		},
	}
	for _, f := range adjust {
		f(&cfg)
	}
	return accounts.New(cfg)
}

var admin = accounts.Request{Actor: codec.Actor{ID: "tok_admin", Role: "admin"}}

func must(t testing.TB) func(accounts.Result, error) accounts.Result {
	return func(r accounts.Result, err error) accounts.Result {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
}

func TestSeedStory(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc := e.service(t)
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 2, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "ada", Name: "Ada Lovelace", Email: "ada@acme.test", Role: ledger.RoleAdmin, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "bob", Name: "Bob Byte", Email: "bob@acme.test", Role: ledger.RoleMember, At: t0}, admin))
	_, err := svc.Execute(ctx, "acme", ledger.AddUser{UserID: "cy", Name: "Cy Young", Email: "cy@acme.test", Role: ledger.RoleMember, At: t0}, admin)
	if !errors.Is(err, ledger.ErrNoSeatAvailable) {
		t.Fatalf("third user on 2 seats: %v, want no seat", err)
	}
	r := must(t)(svc.Execute(ctx, "acme", ledger.DeactivateUser{UserID: "bob", Reason: "Bob Byte left", At: t0}, admin))
	if r.State.Available() != 1 || len(r.Events) != 1 {
		t.Fatalf("after deactivation: available %d, %d events", r.State.Available(), len(r.Events))
	}
	again := must(t)(svc.Execute(ctx, "acme", ledger.DeactivateUser{UserID: "bob", At: t0}, admin))
	if len(again.Events) != 0 || again.Revision() != r.Revision() {
		t.Fatalf("repeated deactivation appended %d events, revision %d -> %d", len(again.Events), r.Revision(), again.Revision())
	}
	must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "cy", Name: "Cy Young", Email: "cy@acme.test", Role: ledger.RoleMember, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.RecordActivity{ActivityID: "a1", UserID: "cy", Kind: "note", Ref: "note-1", At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.DeleteUser{UserID: "cy", Confirm: "cy", ReassignTo: "ada", At: t0}, admin))
	_, err = svc.Execute(ctx, "acme", ledger.ActivateUser{UserID: "cy", At: t0}, admin)
	if !errors.Is(err, ledger.ErrUserDeleted) || !strings.Contains(err.Error(), "cannot be recovered") {
		t.Fatalf("activating a deleted user: %v", err)
	}
	// Another process loading the account from the store sees the same state.
	got, err := e.service(t).State(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := svc.State(ctx, "acme")
	if got.Active != want.Active || got.Deactivated != 1 || got.Deleted != 1 || got.Version != want.Version {
		t.Fatalf("reloaded state %+v, want %+v", got, want)
	}
	if u, _ := got.User("cy"); u.Name != "" || u.Email != "" {
		t.Fatalf("deleted user reloaded with name %q email %q", u.Name, u.Email)
	}
	if u, _ := got.User("bob"); u.Name != "Bob Byte" || u.Reason != "Bob Byte left" {
		t.Fatalf("deactivated user reloaded as %+v, want name and reason kept", u)
	}
}

func TestIdempotencyKey(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc := e.service(t)
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 5, At: t0}, admin))
	req := admin
	req.IdempotencyKey = "buy-1"
	first := must(t)(svc.Execute(ctx, "acme", ledger.PurchaseSeats{Count: 3, At: t0}, req))
	second := must(t)(svc.Execute(ctx, "acme", ledger.PurchaseSeats{Count: 3, At: t0}, req))
	if !second.Repeated || first.Repeated {
		t.Fatalf("repeated flags: first %v second %v", first.Repeated, second.Repeated)
	}
	if second.State.Seats != 8 || second.Events[0].Meta.EventID != first.Events[0].Meta.EventID {
		t.Fatalf("repeat bought again or returned other events: seats %d", second.State.Seats)
	}
	// A new process knows the key from the stored metadata.
	third := must(t)(e.service(t).Execute(ctx, "acme", ledger.PurchaseSeats{Count: 3, At: t0}, req))
	if !third.Repeated || third.State.Seats != 8 || third.Events[0].Meta.EventID != first.Events[0].Meta.EventID {
		t.Fatalf("repeat in another process: repeated %v seats %d", third.Repeated, third.State.Seats)
	}
	if n := countEvents(t, e.store); n != 2 {
		t.Fatalf("store holds %d events, want 2", n)
	}
}

func countEvents(t *testing.T, s eventstore.Store) int {
	t.Helper()
	n := 0
	for _, err := range s.ReadAll(context.Background(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

func TestIfMatch(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc := e.service(t)
	r := must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 5, At: t0}, admin))
	seen := r.Revision()
	must(t)(e.service(t).Execute(ctx, "acme", ledger.PurchaseSeats{Count: 1, At: t0}, admin))
	req := admin
	req.IfMatch = &seen
	_, err := svc.Execute(ctx, "acme", ledger.PurchaseSeats{Count: 1, At: t0}, req)
	if !errors.Is(err, accounts.ErrPreconditionFailed) {
		t.Fatalf("stale If-Match: %v", err)
	}
	now := seen + 1
	req.IfMatch = &now
	if r := must(t)(svc.Execute(ctx, "acme", ledger.PurchaseSeats{Count: 1, At: t0}, req)); r.State.Seats != 7 {
		t.Fatalf("seats %d, want 7", r.State.Seats)
	}
}

// Two processes sharing one store race for the last seat: exactly one
// wins, whatever their cached state says.
func TestRaceForLastSeat(t *testing.T) {
	ctx := context.Background()
	for round := range 20 {
		e := newEnv(t)
		a, b := e.service(t), e.service(t)
		must(t)(a.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 1, At: t0}, admin))
		if _, err := b.State(ctx, "acme"); err != nil { // b caches the account with its seat free
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var wins, noSeat atomic.Int32
		for i := range 8 {
			svc := a
			if i%2 == 1 {
				svc = b
			}
			wg.Go(func() {
				id := "u" + string(rune('a'+i))
				_, err := svc.Execute(ctx, "acme", ledger.AddUser{UserID: id, Name: "User " + id, Email: id + "@acme.test", Role: ledger.RoleMember, At: t0}, admin)
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, ledger.ErrNoSeatAvailable):
					noSeat.Add(1)
				default:
					t.Errorf("round %d: %v", round, err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || noSeat.Load() != 7 {
			t.Fatalf("round %d: %d winners, %d refused, want 1 and 7", round, wins.Load(), noSeat.Load())
		}
		fresh, err := e.service(t).State(ctx, "acme")
		if err != nil {
			t.Fatal(err)
		}
		if fresh.Active != 1 {
			t.Fatalf("round %d: store holds %d active users on 1 seat", round, fresh.Active)
		}
	}
}

// Deleting a user destroys their key: their name and email appear in no
// stored byte, and reads show them blank, while the events still decode.
func TestDeleteShredsPersonalData(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc := e.service(t)
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 3, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "ada", Name: "Ada Admin", Email: "ada@acme.test", Role: ledger.RoleAdmin, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "zed", Name: "Zed Zebulon", Email: "zed.z@acme.test", Role: ledger.RoleMember, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.DeactivateUser{UserID: "zed", Reason: "Zed Zebulon on leave", At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.ActivateUser{UserID: "zed", At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.RecordActivity{ActivityID: "n1", UserID: "zed", Kind: "note", Ref: "cand-7", At: t0}, admin))
	scan := func(stage string) {
		for r, err := range e.store.ReadAll(ctx, 0) {
			if err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{"Zed", "Zebulon", "zed.z@acme.test", "Ada Admin"} {
				if bytes.Contains(r.Data, []byte(secret)) || bytes.Contains(r.Metadata, []byte(secret)) {
					t.Fatalf("%s: %s event holds %q in plaintext", stage, r.Type, secret)
				}
			}
		}
	}
	scan("before deletion")
	must(t)(svc.Execute(ctx, "acme", ledger.DeleteUser{UserID: "zed", Confirm: "zed", At: t0}, admin))
	scan("after deletion")
	if _, err := e.keys.Get(ctx, pii.KeyID("acme", "zed")); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("key of deleted user: %v, want erased", err)
	}
	st, err := e.service(t).State(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := st.User("zed"); u.Name != "" || u.Email != "" || u.Status != ledger.StatusDeleted {
		t.Fatalf("deleted user reads as %+v", u)
	}
	if u, _ := st.User("ada"); u.Name != "Ada Admin" {
		t.Fatalf("other user's name %q, want kept", u.Name)
	}
}

// failingDestroy fails the first Destroy, as a crash between the append of
// UserDeleted and the key's destruction would leave it.
type failingDestroy struct {
	*pii.MemoryKeys
	failed atomic.Bool
}

func (f *failingDestroy) Destroy(ctx context.Context, id string) error {
	if f.failed.CompareAndSwap(false, true) {
		return errors.New("key store unreachable")
	}
	return f.MemoryKeys.Destroy(ctx, id)
}

func TestInterruptedDeletionFinishesOnLoad(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	keys := &failingDestroy{MemoryKeys: pii.NewMemoryKeys()}
	e.keys = keys
	svc := e.service(t)
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 3, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "zed", Name: "Zed", Email: "zed@acme.test", Role: ledger.RoleMember, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.DeleteUser{UserID: "zed", Confirm: "zed", At: t0}, admin))
	if _, err := keys.Get(ctx, pii.KeyID("acme", "zed")); err != nil {
		t.Fatalf("the failed destroy should have left the key: %v", err)
	}
	if _, err := e.service(t).State(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Get(ctx, pii.KeyID("acme", "zed")); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("after reload the key is %v, want erased", err)
	}
}

// A destroy that fails in a process that goes on running is retried by
// that process, and the request's context does not cancel it.
func TestFailedDestroyRetriedInSameProcess(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	keys := &failingDestroy{MemoryKeys: pii.NewMemoryKeys()}
	e.keys = keys
	svc := e.service(t)
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 3, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "zed", Name: "Zed", Email: "zed@acme.test", Role: ledger.RoleMember, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.DeleteUser{UserID: "zed", Confirm: "zed", At: t0}, admin))
	if _, err := keys.Get(ctx, pii.KeyID("acme", "zed")); err != nil {
		t.Fatalf("control: the failed destroy should have left the key: %v", err)
	}
	if _, err := svc.State(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Get(ctx, pii.KeyID("acme", "zed")); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("after the next read in the same process the key is %v, want erased", err)
	}
}

// cancelAfterAppend cancels the request's context as soon as an append
// returns, as a client hanging up at that moment would.
type cancelAfterAppend struct {
	eventstore.Store
	cancel context.CancelFunc
}

func (c cancelAfterAppend) Append(ctx context.Context, s eventstore.StreamID, e eventstore.ExpectedRevision, ev ...eventstore.Proposed) (eventstore.AppendResult, error) {
	r, err := c.Store.Append(ctx, s, e, ev...)
	c.cancel()
	return r, err
}

// ctxKeys refuses to destroy with a cancelled context, as a networked key
// store does.
type ctxKeys struct{ *pii.MemoryKeys }

func (k ctxKeys) Destroy(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return k.MemoryKeys.Destroy(ctx, id)
}

func TestDeleteSurvivesClientHangingUp(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	keys := ctxKeys{pii.NewMemoryKeys()}
	e.keys = keys
	svc := e.service(t)
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 3, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "zed", Name: "Zed", Email: "zed@acme.test", Role: ledger.RoleMember, At: t0}, admin))

	reqCtx, cancel := context.WithCancel(ctx)
	hangsUp := e.serviceOn(t, cancelAfterAppend{Store: e.store, cancel: cancel})
	must(t)(hangsUp.Execute(reqCtx, "acme", ledger.DeleteUser{UserID: "zed", Confirm: "zed", At: t0}, admin))
	if _, err := keys.Get(ctx, pii.KeyID("acme", "zed")); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("key after a deletion whose client hung up: %v, want erased", err)
	}
}

// The first result kept for an idempotent repeat holds no personal data
// of a user deleted since.
func TestRepeatAfterDeletionHoldsNoName(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc := e.service(t)
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 3, At: t0}, admin))
	req := admin
	req.IdempotencyKey = "add-zed"
	first := must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "zed", Name: "Zed Zebulon", Email: "zed@acme.test", Role: ledger.RoleMember, At: t0}, req))
	if first.Events[0].Event.(ledger.UserAdded).Name != "Zed Zebulon" {
		t.Fatal("control: the first result carries the name")
	}
	must(t)(svc.Execute(ctx, "acme", ledger.DeleteUser{UserID: "zed", Confirm: "zed", At: t0}, admin))
	again := must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "zed2", Name: "Zed Zebulon", Email: "zed@acme.test", Role: ledger.RoleMember, At: t0}, req))
	added := again.Events[0].Event.(ledger.UserAdded)
	if !again.Repeated || added.Name != "" || added.Email != "" {
		t.Fatalf("repeat after deletion: repeated %v, name %q, email %q", again.Repeated, added.Name, added.Email)
	}
}

// TestRepeatedProfileUpdateAfterDeletionHoldsNoName: the result kept for
// a profile update's idempotency key forgets the new name and email once
// the user is deleted.
func TestRepeatedProfileUpdateAfterDeletionHoldsNoName(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc := e.service(t)
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 3, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "zed", Name: "Zed Zebulon", Email: "zed@acme.test", Role: ledger.RoleMember, At: t0}, admin))
	req := admin
	req.IdempotencyKey = "rename-zed"
	name, email := "Zora Zebulon", "zora@acme.test"
	update := ledger.UpdateUser{UserID: "zed", Name: &name, Email: &email, At: t0}
	first := must(t)(svc.Execute(ctx, "acme", update, req))
	if p := first.Events[0].Event.(ledger.UserProfileUpdated); p.Name != name || p.Email != email {
		t.Fatalf("control: the first result carries the new profile: %+v", p)
	}
	must(t)(svc.Execute(ctx, "acme", ledger.DeleteUser{UserID: "zed", Confirm: "zed", At: t0}, admin))
	again, err := svc.Execute(ctx, "acme", update, req)
	if err != nil {
		t.Fatal(err)
	}
	p := again.Events[0].Event.(ledger.UserProfileUpdated)
	if !again.Repeated || !again.Events[0].Erased || p.Name != "" || p.Email != "" {
		t.Fatalf("repeat after deletion: repeated %v, erased %v, name %q, email %q", again.Repeated, again.Events[0].Erased, p.Name, p.Email)
	}
}

// A user deleted by another process is forgotten here once the read
// models tell of the deletion (ForgetDeletedUser): the result kept for an
// idempotent repeat of their addition, and the account's state, no longer
// hold their name or email, and the account goes on taking commands.
func TestRepeatAfterDeletionElsewhereHoldsNoName(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	here, elsewhere := e.service(t), e.service(t)
	must(t)(here.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 3, At: t0}, admin))
	req := admin
	req.IdempotencyKey = "add-zed"
	add := ledger.AddUser{UserID: "zed", Name: "Zed Zebulon", Email: "zed@acme.test", Role: ledger.RoleMember, At: t0}
	must(t)(here.Execute(ctx, "acme", add, req))
	must(t)(elsewhere.Execute(ctx, "acme", ledger.DeleteUser{UserID: "zed", Confirm: "zed", At: t0}, admin))
	here.ForgetDeletedUser("acme", "zed")

	add.UserID = "zed2"
	again := must(t)(here.Execute(ctx, "acme", add, req))
	added := again.Events[0].Event.(ledger.UserAdded)
	if !again.Repeated || added.Name != "" || added.Email != "" {
		t.Fatalf("repeat after deletion elsewhere: repeated %v, name %q, email %q", again.Repeated, added.Name, added.Email)
	}
	if u := again.State.Users["zed"]; u.Status != ledger.StatusDeleted || u.Name != "" || u.Email != "" {
		t.Errorf("state after deletion elsewhere: %+v", u)
	}
	// The email is free again, here too.
	must(t)(here.Execute(ctx, "acme", ledger.AddUser{UserID: "zoe", Name: "Zoe", Email: "zed@acme.test", Role: ledger.RoleMember, At: t0}, admin))
}
