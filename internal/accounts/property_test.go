package accounts_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
)

// Random command sequences over several accounts, given alternately to two
// services sharing one store: after every step the rules of DESIGN.md
// section 3 hold, and folding the stored events from scratch gives exactly
// the state the services hold.
func TestRandomCommandSequences(t *testing.T) {
	ctx := context.Background()
	steps := 4000
	if testing.Short() {
		steps = 800
	}
	rng := rand.New(rand.NewPCG(1, 2))
	e := newEnv(t)
	procs := []*accounts.Service{e.service(t), e.service(t)}
	accts := []string{"acme", "globex", "initech", "umbrella"}
	now := t0
	users := map[string][]string{}
	deletedEver := map[string]bool{}
	var refused, applied int
	for step := range steps {
		now = now.Add(time.Duration(rng.IntN(72)) * time.Hour)
		acct := accts[rng.IntN(len(accts))]
		svc := procs[rng.IntN(len(procs))]
		cmd := randomCommand(rng, acct, users[acct], now, step)
		res, err := svc.Execute(ctx, acct, cmd, admin)
		var rule *ledger.RuleError
		switch {
		case errors.As(err, &rule):
			refused++
			continue
		case err != nil:
			t.Fatalf("step %d %T: %v", step, cmd, err)
		}
		applied++
		if add, ok := cmd.(ledger.AddUser); ok {
			users[acct] = append(users[acct], add.UserID)
		}
		s := res.State
		checkInvariants(t, step, s, now)
		for id, u := range s.Users {
			key := acct + "/" + id
			if deletedEver[key] && u.Status != ledger.StatusDeleted {
				t.Fatalf("step %d: deleted user %s is %s again", step, key, u.Status)
			}
			if u.Status == ledger.StatusDeleted {
				deletedEver[key] = true
			}
		}
	}
	if refused == 0 || applied < steps/3 {
		t.Fatalf("%d applied, %d refused: the generator does not exercise both paths", applied, refused)
	}
	// Fold every stored event from scratch, as a fresh reader would.
	cdc := codec.New(pii.NewKeyring(e.keys, nil))
	folded := map[string]ledger.State{}
	for r, err := range e.store.ReadAll(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		d, err := cdc.Decode(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		folded[r.Stream.Account] = ledger.Evolve(folded[r.Stream.Account], d.Event)
	}
	for _, acct := range accts {
		for i, svc := range procs {
			held, err := svc.State(ctx, acct)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := summary(folded[acct]), summary(held); got != want {
				t.Fatalf("%s: process %d holds\n%s\nfolding the store gives\n%s", acct, i, want, got)
			}
		}
	}
}

func checkInvariants(t *testing.T, step int, s ledger.State, now time.Time) {
	t.Helper()
	var active, deact, deleted, admins int
	for _, u := range s.Users {
		switch u.Status {
		case ledger.StatusActive:
			active++
			if u.Role == ledger.RoleAdmin {
				admins++
			}
		case ledger.StatusDeactivated:
			deact++
		case ledger.StatusDeleted:
			deleted++
			if u.Name != "" || u.Email != "" {
				t.Fatalf("step %d: deleted user %s keeps personal data", step, u.ID)
			}
		}
	}
	if active != s.Active || deact != s.Deactivated || deleted != s.Deleted || admins != s.ActiveAdmins {
		t.Fatalf("step %d: counters %d/%d/%d/%d, users say %d/%d/%d/%d", step,
			s.Active, s.Deactivated, s.Deleted, s.ActiveAdmins, active, deact, deleted, admins)
	}
	for _, at := range []time.Time{now, now.AddDate(0, 1, 0), now.AddDate(0, 3, 0)} {
		if s.Active > s.SeatsAt(at) {
			t.Fatalf("step %d: %d active users on %d seats at %s", step, s.Active, s.SeatsAt(at), at)
		}
	}
	if s.Available() < 0 {
		t.Fatalf("step %d: available %d", step, s.Available())
	}
}

// summary renders what matters of a state, with users in a stable order.
func summary(s ledger.State) string {
	out := fmt.Sprintf("%s seats=%d red=%v active=%d deact=%d del=%d admins=%d peak=%d v=%d last=%s\n",
		s.Account, s.Seats, s.Reductions, s.Active, s.Deactivated, s.Deleted, s.ActiveAdmins, s.PeakActive, s.Version, s.LastAt)
	for _, id := range s.Order {
		out += fmt.Sprintf("  %+v\n", s.Users[id])
	}
	return out
}

func randomCommand(rng *rand.Rand, acct string, users []string, now time.Time, step int) ledger.Command {
	pick := func() string {
		if len(users) == 0 || rng.IntN(20) == 0 {
			return "nobody"
		}
		return users[rng.IntN(len(users))]
	}
	switch n := rng.IntN(100); {
	case n < 4:
		return ledger.OpenAccount{Account: acct, Name: "Account " + acct, Seats: 1 + rng.IntN(4), At: now}
	case n < 12:
		return ledger.PurchaseSeats{Count: rng.IntN(3), At: now}
	case n < 17:
		return ledger.ScheduleSeatReduction{Count: 1 + rng.IntN(2), At: now}
	case n < 40:
		id := fmt.Sprintf("u%d", step)
		role := ledger.RoleMember
		if rng.IntN(3) == 0 {
			role = ledger.RoleAdmin
		}
		email := fmt.Sprintf("%s@%s.test", id, acct)
		if rng.IntN(10) == 0 && len(users) > 0 {
			email = fmt.Sprintf("%s@%s.test", users[rng.IntN(len(users))], acct) // a duplicate, unless deleted
		}
		return ledger.AddUser{UserID: id, Name: "Person " + id, Email: email, Role: role, At: now}
	case n < 58:
		return ledger.DeactivateUser{UserID: pick(), Reason: "rotation", At: now}
	case n < 74:
		return ledger.ActivateUser{UserID: pick(), At: now}
	case n < 80:
		u := pick()
		confirm := u
		if rng.IntN(5) == 0 {
			confirm = ""
		}
		reassign := ""
		if rng.IntN(2) == 0 {
			reassign = pick()
		}
		return ledger.DeleteUser{UserID: u, Confirm: confirm, ReassignTo: reassign, At: now}
	default:
		return ledger.RecordActivity{ActivityID: fmt.Sprintf("act%d", step), UserID: pick(), Kind: "note", Ref: "ref", At: now}
	}
}
