package accounts_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/accounts"
)

// openWithUser opens acme with one admin, ada, who records the activities.
func openWithUser(t *testing.T, svc *accounts.Service) {
	t.Helper()
	ctx := context.Background()
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 2, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "ada", Name: "Ada Lovelace", Email: "ada@acme.test", Role: ledger.RoleAdmin, At: t0}, admin))
}

// keyedActivity records activity id under idempotency key key.
func keyedActivity(t *testing.T, svc *accounts.Service, key, id string) accounts.Result {
	t.Helper()
	req := admin
	req.IdempotencyKey = key
	return must(t)(svc.Execute(context.Background(), "acme", ledger.RecordActivity{ActivityID: id, UserID: "ada", Kind: "note", Ref: key, At: t0}, req))
}

func activityCount(t *testing.T, e *env) int {
	t.Helper()
	n := 0
	for _, err := range e.store.ReadStream(context.Background(), eventstore.ActivityStream("acme"), 0) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// A key is remembered for the window (24 hours by the service's clock):
// within it a repeat appends nothing, after it the command is decided and
// appended as a new one.
func TestIdempotencyKeyForgottenAfterWindow(t *testing.T) {
	e := newEnv(t)
	svc := e.service(t)
	openWithUser(t, svc)
	first := keyedActivity(t, svc, "note-1", "act1")
	e.clock.advance(accounts.DefaultIdempotencyWindow - time.Minute)
	if r := keyedActivity(t, svc, "note-1", "act1-again"); !r.Repeated || r.Events[0].Meta.EventID != first.Events[0].Meta.EventID {
		t.Fatalf("a repeat within the window: repeated %v", r.Repeated)
	}
	if n := activityCount(t, e); n != 1 {
		t.Fatalf("%d activities stored after a repeat within the window, want 1", n)
	}
	e.clock.advance(2 * time.Minute)
	if r := keyedActivity(t, svc, "note-1", "act1-later"); r.Repeated {
		t.Fatal("a key older than the window still deduplicates")
	}
	if n := activityCount(t, e); n != 2 {
		t.Fatalf("%d activities stored after the window, want 2: the command is new", n)
	}
	// The key now stands for the new command, for a new window.
	if r := keyedActivity(t, svc, "note-1", "act1-third"); !r.Repeated {
		t.Fatal("the key given again after the window is not remembered anew")
	}
}

// An account remembers at most DefaultIdempotencyKeys keys: the oldest are
// forgotten first.
func TestIdempotencyKeysBoundedPerAccount(t *testing.T) {
	const extra = 5
	e := newEnv(t)
	e.clock.step = time.Millisecond
	svc := e.service(t)
	openWithUser(t, svc)
	for i := range accounts.DefaultIdempotencyKeys + extra {
		keyedActivity(t, svc, fmt.Sprintf("k%05d", i), fmt.Sprintf("a%05d", i))
	}
	stored := activityCount(t, e)
	// The newest keys, up to the bound, are remembered...
	for _, i := range []int{extra, accounts.DefaultIdempotencyKeys / 2, accounts.DefaultIdempotencyKeys + extra - 1} {
		if r := keyedActivity(t, svc, fmt.Sprintf("k%05d", i), "again"); !r.Repeated {
			t.Fatalf("key %d of the newest %d forgotten", i, accounts.DefaultIdempotencyKeys)
		}
	}
	if n := activityCount(t, e); n != stored {
		t.Fatalf("repeats of remembered keys stored %d activities", n-stored)
	}
	// ...the oldest are not.
	for i := range extra {
		if r := keyedActivity(t, svc, fmt.Sprintf("k%05d", i), fmt.Sprintf("b%05d", i)); r.Repeated {
			t.Fatalf("key %d still remembered beyond the bound", i)
		}
	}
	// Loading the account rebuilds the same newest keys: those just given
	// again and the newest others; keys 5 to 9 are now the oldest.
	restarted := e.service(t)
	stored = activityCount(t, e)
	for _, i := range []int{0, extra - 1, 2 * extra, accounts.DefaultIdempotencyKeys + extra - 1} {
		if r := keyedActivity(t, restarted, fmt.Sprintf("k%05d", i), "again"); !r.Repeated {
			t.Fatalf("after a reload, key %d of the newest %d forgotten", i, accounts.DefaultIdempotencyKeys)
		}
	}
	if n := activityCount(t, e); n != stored {
		t.Fatalf("after a reload, repeats of remembered keys stored %d activities", n-stored)
	}
	if r := keyedActivity(t, restarted, fmt.Sprintf("k%05d", extra), "c"); r.Repeated {
		t.Fatalf("after a reload, key %d remembered beyond the bound", extra)
	}
}

// A service loading an account (after a restart, or another process)
// rebuilds only the keys recorded within the window, and at most the
// bound.
func TestIdempotencyKeysOlderThanWindowNotReloaded(t *testing.T) {
	e := newEnv(t)
	svc := e.service(t)
	openWithUser(t, svc)
	keyedActivity(t, svc, "old", "act-old")
	e.clock.advance(accounts.DefaultIdempotencyWindow - time.Hour)
	keyedActivity(t, svc, "recent", "act-recent")
	e.clock.advance(2 * time.Hour) // "old" is now past the window, "recent" is not

	restarted := e.service(t)
	if r := keyedActivity(t, restarted, "recent", "act-recent-again"); !r.Repeated {
		t.Fatal("a key within the window was not reloaded")
	}
	if n := activityCount(t, e); n != 2 {
		t.Fatalf("%d activities stored, want 2", n)
	}
	if r := keyedActivity(t, restarted, "old", "act-old-again"); r.Repeated {
		t.Fatal("a key older than the window was reloaded")
	}
	if n := activityCount(t, e); n != 3 {
		t.Fatalf("%d activities stored, want 3", n)
	}
}
