package ledger_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
)

// account is one account of the property test: its state evolved event by
// event, every event decided for it, and what was seen so far.
type account struct {
	id       string
	s        ledger.State
	log      []ledger.Event
	now      time.Time
	deleted  map[string]bool
	hadAdmin bool
	acts     int
}

// gen makes random commands over a small pool of users and emails, so that
// collisions, refusals and every transition happen often.
type gen struct{ r *rand.Rand }

// poolEmails are the emails the generator uses, in lower case.
var poolEmails = []string{"p0@example.com", "p1@example.com", "p2@example.com", "p3@example.com",
	"p4@example.com", "p5@example.com", "not-an-email"}

func (g gen) user() string { return fmt.Sprintf("u%d", g.r.IntN(7)) }

// known returns, most of the time, a user the account has.
func (g gen) known(a *account) string {
	if len(a.s.Order) == 0 || g.r.IntN(5) == 0 {
		return g.user()
	}
	return a.s.Order[g.r.IntN(len(a.s.Order))]
}

func (g gen) email() string {
	e := fmt.Sprintf("p%d@example.com", g.r.IntN(6))
	if g.r.IntN(3) == 0 {
		e = strings.ToUpper(e)
	}
	if g.r.IntN(20) == 0 {
		e = "not-an-email"
	}
	return e
}

func (g gen) role() ledger.Role {
	switch n := g.r.IntN(20); {
	case n == 0:
		return "owner"
	case n < 8:
		return ledger.RoleAdmin
	default:
		return ledger.RoleMember
	}
}

// update is an UpdateUser of a known user giving each field or not.
func (g gen) update(a *account, t time.Time) ledger.UpdateUser {
	c := ledger.UpdateUser{UserID: g.known(a), At: t}
	if g.r.IntN(2) == 0 {
		name := [...]string{"Some Name", "Other Name", " Other Name ", " "}[g.r.IntN(4)]
		c.Name = &name
	}
	if g.r.IntN(2) == 0 {
		email := g.email()
		c.Email = &email
	}
	if g.r.IntN(2) == 0 {
		role := g.role()
		c.Role = &role
	}
	return c
}

func (g gen) count() int {
	switch g.r.IntN(30) {
	case 0:
		return 0
	case 1:
		return -1
	case 2:
		return ledger.MaxSeats + 1
	}
	return 1 + g.r.IntN(3)
}

func (g gen) command(a *account) ledger.Command {
	// Time moves forward by up to ten days, and now and then a command
	// comes in with a clock behind the account's.
	a.now = a.now.Add(time.Duration(g.r.Int64N(int64(240 * time.Hour))))
	t := a.now
	if g.r.IntN(10) == 0 {
		t = t.Add(-time.Duration(g.r.Int64N(int64(72 * time.Hour))))
	}
	if !a.s.Opened() && g.r.IntN(4) != 0 {
		return ledger.OpenAccount{Account: a.id, Name: "Account " + a.id, Seats: g.count(), At: t}
	}
	switch g.r.IntN(20) {
	case 0:
		return ledger.OpenAccount{Account: a.id, Name: "Again", Seats: 1, At: t}
	case 1, 2:
		return ledger.PurchaseSeats{Count: g.count(), At: t}
	case 3, 4:
		return ledger.ScheduleSeatReduction{Count: g.count(), At: t}
	case 5, 6, 7, 8:
		return ledger.AddUser{UserID: g.user(), Name: "Some Name", Email: g.email(), Role: g.role(), At: t}
	case 9, 10, 11:
		return ledger.DeactivateUser{UserID: g.known(a), Reason: "reason", At: t}
	case 12, 13:
		return ledger.ActivateUser{UserID: g.known(a), At: t}
	case 14, 15:
		id := g.known(a)
		confirm := id
		if g.r.IntN(6) == 0 {
			confirm = g.known(a)
		}
		to := ""
		if g.r.IntN(2) == 0 {
			to = g.known(a)
		}
		return ledger.DeleteUser{UserID: id, Confirm: confirm, ReassignTo: to, At: t}
	case 16:
		return g.update(a, t)
	default:
		a.acts++
		return ledger.RecordActivity{ActivityID: fmt.Sprintf("act%d", a.acts), UserID: g.known(a), Kind: "call", Ref: "c/1", At: t}
	}
}

// expect is an oracle written from DESIGN.md's rules table, independent of
// the State helpers Decide uses: the error the command must be refused with
// (nil to succeed) and whether it must decide an event.
func expect(s ledger.State, cmd ledger.Command) (error, bool) {
	var active, admins int
	for _, u := range s.Users {
		if u.Status == ledger.StatusActive {
			active++
			if u.Role == ledger.RoleAdmin {
				admins++
			}
		}
	}
	seats := s.Seats
	for _, r := range s.Reductions {
		seats -= r.Count
	}
	free := seats - active
	badCount := func(n int) bool { return n < 1 || n > ledger.MaxSeats }
	// target returns the refusal for a command on a user that is unknown or
	// deleted.
	target := func(id string) (ledger.User, error) {
		u, ok := s.Users[id]
		switch {
		case !ok:
			return u, ledger.ErrUserNotFound
		case u.Status == ledger.StatusDeleted:
			return u, ledger.ErrUserDeleted
		}
		return u, nil
	}
	lastAdmin := func(u ledger.User) bool {
		return u.Status == ledger.StatusActive && u.Role == ledger.RoleAdmin && admins == 1
	}
	if c, ok := cmd.(ledger.OpenAccount); ok {
		switch {
		case s.Opened():
			return ledger.ErrAccountExists, false
		case badCount(c.Seats):
			return ledger.ErrInvalidCount, false
		}
		return nil, true
	}
	if !s.Opened() {
		return ledger.ErrAccountNotFound, false
	}
	switch c := cmd.(type) {
	case ledger.PurchaseSeats:
		if badCount(c.Count) {
			return ledger.ErrInvalidCount, false
		}
		return nil, true
	case ledger.ScheduleSeatReduction:
		switch {
		case badCount(c.Count):
			return ledger.ErrInvalidCount, false
		case seats-c.Count < active:
			return ledger.ErrReductionBelowActive, false
		}
		return nil, true
	case ledger.AddUser:
		if _, ok := s.Users[c.UserID]; ok {
			return ledger.ErrUserExists, false
		}
		if !strings.Contains(c.Email, "@") || !c.Role.Valid() {
			return ledger.ErrInvalidUser, false
		}
		for _, u := range s.Users {
			if u.Status != ledger.StatusDeleted && strings.EqualFold(u.Email, c.Email) {
				return ledger.ErrDuplicateEmail, false
			}
		}
		if free < 1 {
			return ledger.ErrNoSeatAvailable, false
		}
		return nil, true
	case ledger.DeactivateUser:
		u, err := target(c.UserID)
		switch {
		case err != nil:
			return err, false
		case u.Status == ledger.StatusDeactivated:
			return nil, false
		case lastAdmin(u):
			return ledger.ErrLastActiveAdmin, false
		}
		return nil, true
	case ledger.ActivateUser:
		u, err := target(c.UserID)
		switch {
		case err != nil:
			return err, false
		case u.Status == ledger.StatusActive:
			return nil, false
		case free < 1:
			return ledger.ErrNoSeatAvailable, false
		}
		return nil, true
	case ledger.DeleteUser:
		u, err := target(c.UserID)
		switch {
		case err != nil:
			return err, false
		case c.Confirm != c.UserID:
			return ledger.ErrConfirmationRequired, false
		case lastAdmin(u):
			return ledger.ErrLastActiveAdmin, false
		}
		if c.ReassignTo != "" {
			to, ok := s.Users[c.ReassignTo]
			if !ok || to.ID == c.UserID || to.Status == ledger.StatusDeleted {
				return ledger.ErrInvalidReassignment, false
			}
		}
		return nil, true
	case ledger.RecordActivity:
		u, err := target(c.UserID)
		switch {
		case err != nil:
			return err, false
		case u.Status != ledger.StatusActive:
			return ledger.ErrUserDeactivated, false
		}
		return nil, true
	case ledger.UpdateUser:
		u, err := target(c.UserID)
		if err != nil {
			return err, false
		}
		changes := false
		if c.Name != nil {
			name := strings.TrimSpace(*c.Name)
			if name == "" {
				return ledger.ErrInvalidUser, false
			}
			changes = changes || name != u.Name
		}
		if c.Email != nil {
			email := strings.TrimSpace(*c.Email)
			if !strings.Contains(email, "@") {
				return ledger.ErrInvalidUser, false
			}
			for _, o := range s.Users {
				if o.ID != u.ID && o.Status != ledger.StatusDeleted && strings.EqualFold(o.Email, email) {
					return ledger.ErrDuplicateEmail, false
				}
			}
			changes = changes || email != u.Email
		}
		if c.Role != nil {
			switch {
			case !c.Role.Valid():
				return ledger.ErrInvalidUser, false
			case *c.Role != u.Role && lastAdmin(u):
				return ledger.ErrLastActiveAdmin, false
			}
			changes = changes || *c.Role != u.Role
		}
		return nil, changes
	}
	return ledger.ErrInvalidCommand, false
}

func commandTime(cmd ledger.Command) time.Time {
	return reflect.ValueOf(cmd).FieldByName("At").Interface().(time.Time)
}

// TestDecideEvolveProperties runs random command sequences over several
// accounts and checks, after every step, that Decide agrees with the rules
// table, that the invariants hold, and that folding every decided event
// from scratch gives the state evolved step by step.
func TestDecideEvolveProperties(t *testing.T) {
	rounds, steps := 500, 64
	if testing.Short() {
		rounds = 100
	}
	r := rand.New(rand.NewPCG(2024, 42))
	g := gen{r}
	var decided, refused, noops int
	rules := make(map[ledger.Rule]int)
	for round := range rounds {
		accounts := make([]*account, 4)
		for i := range accounts {
			accounts[i] = &account{id: fmt.Sprintf("acc%d", i), deleted: make(map[string]bool),
				now: t0.Add(time.Duration(r.Int64N(int64(24 * 365 * time.Hour))))}
		}
		for step := range steps {
			a := accounts[r.IntN(len(accounts))]
			cmd := g.command(a)
			where := func() string { return fmt.Sprintf("round %d step %d %s %+v", round, step, a.id, cmd) }
			before := a.s.Clone()
			wantErr, wantEvent := expect(a.s, cmd)

			es, err := ledger.Decide(a.s, cmd)
			if diff := sameState(a.s, before, poolEmails...); diff != "" {
				t.Fatalf("%s: Decide changed its state: %s", where(), diff)
			}
			if !errors.Is(err, wantErr) || (err != nil) != (wantErr != nil) {
				t.Fatalf("%s: err = %v, want %v", where(), err, wantErr)
			}
			most := 1
			if _, ok := cmd.(ledger.UpdateUser); ok {
				most = 2 // a profile and a role changed together
			}
			if wantEvent != (len(es) > 0) || len(es) > most {
				t.Fatalf("%s: events = %v, want an event: %v", where(), es, wantEvent)
			}
			switch {
			case err != nil:
				var re *ledger.RuleError
				if !errors.As(err, &re) {
					t.Fatalf("%s: err %T is not a *RuleError", where(), err)
				}
				rules[re.Rule]++
				refused++
			case len(es) == 0:
				noops++
			default:
				decided++
			}

			for _, e := range es {
				wantAt := commandTime(cmd).UTC()
				if wantAt.Before(a.s.LastAt) {
					wantAt = a.s.LastAt
				}
				if got := e.OccurredAt(); got != wantAt {
					t.Fatalf("%s: event at %v, want %v (the command's time, never before the last event)", where(), got, wantAt)
				}
				if id := ledger.UserOf(e); id != "" && id != reflect.ValueOf(cmd).FieldByName("UserID").String() {
					t.Fatalf("%s: event about user %q", where(), id)
				}
				a.s = ledger.Evolve(a.s, e)
				a.log = append(a.log, e)
			}

			s := a.s
			for _, bad := range checkInvariants(s) {
				t.Fatalf("%s: %s", where(), bad)
			}
			if s.Opened() {
				for _, when := range []time.Time{s.LastAt, a.now, a.now.AddDate(2, 0, 0)} {
					if s.Active > s.SeatsAt(when) {
						t.Fatalf("%s: %d active users > Seats(%v) = %d", where(), s.Active, when, s.SeatsAt(when))
					}
				}
			}
			for id := range a.deleted {
				if s.Users[id].Status != ledger.StatusDeleted {
					t.Fatalf("%s: deleted user %s is %s again", where(), id, s.Users[id].Status)
				}
			}
			for id, u := range s.Users {
				if u.Status == ledger.StatusDeleted {
					a.deleted[id] = true
				}
			}
			if a.hadAdmin && s.ActiveAdmins < 1 {
				t.Fatalf("%s: the last active admin was removed", where())
			}
			a.hadAdmin = a.hadAdmin || s.ActiveAdmins > 0
			if s.Version != uint64(countLedgerEvents(a.log)) {
				t.Fatalf("%s: Version %d for %d ledger events", where(), s.Version, countLedgerEvents(a.log))
			}
			if folded := ledger.Fold(ledger.State{}, a.log...); sameState(folded, s, poolEmails...) != "" {
				t.Fatalf("%s: folding the log gives\n%+v\nbut step by step\n%+v", where(), folded, s)
			}
		}
		for _, a := range accounts {
			if folded := ledger.Fold(ledger.State{}, a.log...); !reflect.DeepEqual(folded, a.s) {
				t.Fatalf("round %d %s: folding the log gives\n%+v\nbut step by step\n%+v", round, a.id, folded, a.s)
			}
		}
	}
	// The generator must reach every outcome often, or the test proves little.
	if decided < rounds*steps/5 || refused < rounds*steps/10 || noops == 0 {
		t.Errorf("decided %d, refused %d, no-ops %d: generator too narrow", decided, refused, noops)
	}
	for _, rule := range []ledger.Rule{
		ledger.RuleAccountExists, ledger.RuleAccountNotFound, ledger.RuleInvalidCount, ledger.RuleReductionBelowActive,
		ledger.RuleNoSeatAvailable, ledger.RuleDuplicateEmail, ledger.RuleInvalidUser, ledger.RuleUserExists,
		ledger.RuleUserNotFound, ledger.RuleLastActiveAdmin, ledger.RuleUserDeleted, ledger.RuleConfirmationRequired,
		ledger.RuleInvalidReassignment, ledger.RuleUserDeactivated,
	} {
		if rules[rule] == 0 {
			t.Errorf("no command was refused for %s: generator too narrow", rule)
		}
	}
	t.Logf("%d decided, %d refused, %d no-ops; refusals %v", decided, refused, noops, rules)
}

func countLedgerEvents(es []ledger.Event) int {
	n := 0
	for _, e := range es {
		if !ledger.IsActivity(e) {
			n++
		}
	}
	return n
}
