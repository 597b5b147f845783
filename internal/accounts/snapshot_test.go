package accounts_test

import (
	"context"
	"fmt"
	"math/rand/v2"
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

// Results share the account's maps and slices until an event changes
// them, which the account copies first: every result's state stays as it
// was given while later commands of every kind (seats, users added,
// deactivated, activated, updated, deleted, activities) evolve the
// account, also while other goroutines read the results (go test -race
// sees a write to a map a result holds). Each result's state is compared
// with a deep copy taken when it was given.
func TestResultStatesStayAsGiven(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc := e.service(t)
	rng := rand.New(rand.NewPCG(5, 6))
	type given struct {
		state, copy ledger.State
	}
	var results []given
	var users []string
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 8, At: t0}, admin))
	readers := make(chan ledger.State, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for st := range readers {
			for id, u := range st.Users {
				if u.ID != id {
					t.Errorf("user %q under id %q", u.ID, id)
				}
			}
			_ = st.EmailInUse("nobody@acme.test")
			_ = st.SeatsAfterReductions()
		}
	}()
	for step := range 600 {
		now := t0.Add(time.Duration(step) * time.Minute)
		var cmd ledger.Command
		if n := rng.IntN(10); n == 0 && len(users) > 0 {
			u := users[rng.IntN(len(users))]
			role, name := ledger.RoleAdmin, fmt.Sprintf("Renamed %d", step)
			if rng.IntN(2) == 0 {
				role = ledger.RoleMember
			}
			email := fmt.Sprintf("%s-%d@acme.test", u, step)
			cmd = ledger.UpdateUser{UserID: u, Role: &role, Name: &name, Email: &email, At: now}
		} else {
			cmd = randomCommand(rng, "acme", users, now, step)
		}
		res, err := svc.Execute(ctx, "acme", cmd, admin)
		if err != nil {
			continue // refused: changes nothing
		}
		if add, ok := cmd.(ledger.AddUser); ok {
			users = append(users, add.UserID)
		}
		results = append(results, given{res.State, res.State.Clone()})
		select {
		case readers <- res.State:
		default:
		}
	}
	close(readers)
	<-done
	if len(results) < 300 {
		t.Fatalf("only %d commands accepted", len(results))
	}
	for i, r := range results {
		if !reflect.DeepEqual(r.state, r.copy) {
			t.Fatalf("result %d changed after it was given:\n%+v\nwhen given\n%+v", i, r.state, r.copy)
		}
	}
}
