package accounts_test

import (
	"context"
	"errors"
	"testing"

	"github.com/licenseledger/ledger/domain/ledger"
)

// Two processes record activities on one account in turn: each one's
// activity head is stale at every other command, and a key one process
// used is recognised by the other; a deactivation by one process stops
// the other from recording for that user.
func TestActivitiesFromTwoProcesses(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	a, b := e.service(t), e.service(t)
	must(t)(a.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 5, At: t0}, admin))
	for _, id := range []string{"ada", "bob"} {
		must(t)(a.Execute(ctx, "acme", ledger.AddUser{UserID: id, Name: "User " + id, Email: id + "@acme.test", Role: ledger.RoleAdmin, At: t0}, admin))
	}
	record := func(id string) ledger.RecordActivity {
		return ledger.RecordActivity{ActivityID: id, UserID: "ada", Kind: "note", Ref: "ref-" + id, At: t0}
	}
	for i := range 6 {
		svc := a
		if i%2 == 1 {
			svc = b
		}
		id := "act" + string(rune('a'+i))
		r := must(t)(svc.Execute(ctx, "acme", record(id), admin))
		if got := r.Events[0].Record.Revision; got != uint64(i) {
			t.Fatalf("activity %d appended at revision %d", i, got)
		}
	}
	req := admin
	req.IdempotencyKey = "note-once"
	first := must(t)(a.Execute(ctx, "acme", record("actx"), req))
	// The repeat carries a newly drawn activity id, as every request does.
	repeat := record("actx")
	repeat.ActivityID = "acty"
	again := must(t)(b.Execute(ctx, "acme", repeat, req))
	if first.Repeated || !again.Repeated || again.Events[0].Meta.EventID != first.Events[0].Meta.EventID {
		t.Fatalf("repeat in the other process: repeated %v, same event %v", again.Repeated, again.Events[0].Meta.EventID == first.Events[0].Meta.EventID)
	}
	must(t)(b.Execute(ctx, "acme", ledger.DeactivateUser{UserID: "ada", At: t0}, admin))
	_, err := a.Execute(ctx, "acme", record("actz"), admin)
	if !errors.Is(err, ledger.ErrUserDeactivated) {
		t.Fatalf("activity of a user the other process deactivated: %v", err)
	}
	// open, 2 adds, 6 activities, 1 keyed activity, 1 deactivation
	if n := countEvents(t, e.store); n != 11 {
		t.Fatalf("store holds %d events, want 11", n)
	}
	st, err := e.service(t).State(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if u, _ := st.User("ada"); u.Status != ledger.StatusDeactivated {
		t.Fatalf("ada is %s in a fresh process", u.Status)
	}
}
