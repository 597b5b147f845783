package accounts_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
)

// A result's state is the account as the command left it: later commands,
// activities or ledger changes, leave it alone, and each result shows
// what was current when it was given, as a fresh load of the store would.
func TestResultStateIsThatOfItsCommand(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc := e.service(t)
	at := func(h int) time.Time { return t0.Add(time.Duration(h) * time.Hour) }
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 3, At: at(0)}, admin))
	for _, id := range []string{"ada", "bob"} {
		must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: id, Name: "User " + id, Email: id + "@acme.test", Role: ledger.RoleAdmin, At: at(0)}, admin))
	}
	activity := func(id string, h int) ledger.RecordActivity {
		return ledger.RecordActivity{ActivityID: id, UserID: "ada", Kind: "note", Ref: "ref-" + id, At: at(h)}
	}
	first := must(t)(svc.Execute(ctx, "acme", activity("a1", 1), admin))
	second := must(t)(svc.Execute(ctx, "acme", activity("a2", 2), admin))
	if !first.State.LastAt.Equal(at(1)) || !second.State.LastAt.Equal(at(2)) {
		t.Fatalf("activity results last at %v and %v, want %v and %v", first.State.LastAt, second.State.LastAt, at(1), at(2))
	}
	deactivated := must(t)(svc.Execute(ctx, "acme", ledger.DeactivateUser{UserID: "bob", At: at(3)}, admin))
	for name, r := range map[string]ledger.State{"first activity": first.State, "second activity": second.State} {
		if u, _ := r.User("bob"); u.Status != ledger.StatusActive || r.Active != 2 {
			t.Fatalf("%s's state changed by a later deactivation: bob %s, %d active", name, u.Status, r.Active)
		}
	}
	third := must(t)(svc.Execute(ctx, "acme", activity("a3", 4), admin))
	for name, r := range map[string]ledger.State{"deactivation": deactivated.State, "third activity": third.State} {
		if u, _ := r.User("bob"); u.Status != ledger.StatusDeactivated || r.Active != 1 {
			t.Fatalf("%s's state does not show the deactivation: bob %s, %d active", name, u.Status, r.Active)
		}
	}
	if !third.State.LastAt.Equal(at(4)) || !deactivated.State.LastAt.Equal(at(3)) {
		t.Fatalf("last at %v after the third activity, %v after the deactivation", third.State.LastAt, deactivated.State.LastAt)
	}
	fresh, err := e.service(t).State(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fresh, third.State) {
		t.Fatalf("state after the last command\n%+v\nloaded afresh\n%+v", third.State, fresh)
	}
}
