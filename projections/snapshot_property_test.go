package projections_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/audit"
	"github.com/licenseledger/ledger/projections/internal/fixture"
)

var snapshotSeed = flag.Uint64("snapshot-seed", 0,
	"seed of TestSnapshotRoundTripManyAccounts's first round (0: from the clock)")

// history is a random history of many accounts, as a store holds it.
type history struct {
	log      *fixture.Log
	accounts []string // every account the history opened
	end      time.Time
}

// randomHistory stores a random history of n accounts on a fixture log:
// each step picks an account at random and gives it a command a client
// could send, so accounts interleave in the global order as they do in a
// store. Every event type happens, deletions with and without
// reassignment among them, and each deletion destroys the user's data key.
// Refused commands store nothing.
func randomHistory(t *testing.T, rng *rand.Rand, n, steps int) history {
	t.Helper()
	ctx := context.Background()
	l := fixture.New()
	base := time.Date(2025, 1, 28, 9, 0, 0, 0, time.UTC)
	type acct struct {
		id    string
		now   time.Time
		users int
		acts  int
	}
	as := make([]*acct, n)
	h := history{log: l}
	for i := range as {
		// Ids of several lengths, so that their sorted order is not the
		// order they were opened in.
		as[i] = &acct{id: fmt.Sprintf("acct-%d", rng.IntN(1_000_000)*1000+i),
			now: base.Add(time.Duration(rng.Int64N(int64(40 * 24 * time.Hour))))}
	}
	admin := codec.Actor{ID: "admin-1", Role: "admin"}
	pick := func(s ledger.State, ok func(ledger.User) bool, not string) string {
		var ids []string
		for _, id := range s.Order {
			if u := s.Users[id]; id != not && ok(u) {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			return ""
		}
		return ids[rng.IntN(len(ids))]
	}
	status := func(st ledger.Status) func(ledger.User) bool {
		return func(u ledger.User) bool { return u.Status == st }
	}
	notDeleted := func(u ledger.User) bool { return u.Status != ledger.StatusDeleted }
	for range steps {
		a := as[rng.IntN(len(as))]
		a.now = a.now.Add(time.Duration(rng.Int64N(int64(36 * time.Hour))))
		at := a.now
		s := l.Peek(a.id)
		addUser := func(role ledger.Role) ledger.Command {
			id := fmt.Sprintf("u%d", a.users)
			a.users++
			return ledger.AddUser{UserID: id, Name: "Person " + id + " of " + a.id,
				Email: id + "@" + a.id + ".test", Role: role, At: at}
		}
		var cmd ledger.Command
		actor := admin
		switch r := rng.IntN(100); {
		case !s.Opened():
			cmd, actor = ledger.OpenAccount{Account: a.id, Name: "Account " + a.id, Seats: 1 + rng.IntN(4), At: at}, fixture.Operator
			h.accounts = append(h.accounts, a.id)
		case len(s.Order) == 0:
			cmd = addUser(ledger.RoleAdmin)
		case r < 40:
			user := pick(s, status(ledger.StatusActive), "")
			if user == "" {
				continue
			}
			a.acts++
			cmd, actor = ledger.RecordActivity{ActivityID: fmt.Sprintf("act-%d", a.acts), UserID: user,
				Kind: [...]string{"note", "call", "email"}[rng.IntN(3)], Ref: fmt.Sprintf("ref/%d", rng.IntN(50)), At: at}, fixture.Service
		case r < 54:
			role := ledger.RoleMember
			if rng.IntN(4) == 0 {
				role = ledger.RoleAdmin
			}
			cmd = addUser(role)
			if s.Available() < 1 {
				cmd = ledger.PurchaseSeats{Count: 1 + rng.IntN(3), At: at}
			}
		case r < 62:
			cmd = ledger.PurchaseSeats{Count: 1 + rng.IntN(3), At: at}
		case r < 72:
			cmd = ledger.DeactivateUser{UserID: pick(s, status(ledger.StatusActive), ""), Reason: "left the team", At: at}
		case r < 81:
			cmd = ledger.ActivateUser{UserID: pick(s, status(ledger.StatusDeactivated), ""), At: at}
		case r < 86:
			// A new name and email now and then, a role change otherwise.
			id := pick(s, notDeleted, "")
			upd := ledger.UpdateUser{UserID: id, At: at}
			if rng.IntN(2) == 0 {
				name, email := fmt.Sprintf("Renamed %s %d", id, rng.IntN(1000)), fmt.Sprintf("%s.%d@%s.test", id, rng.IntN(1000), a.id)
				upd.Name, upd.Email = &name, &email
			} else {
				role := [...]ledger.Role{ledger.RoleAdmin, ledger.RoleMember}[rng.IntN(2)]
				upd.Role = &role
			}
			cmd = upd
		case r < 93:
			id := pick(s, notDeleted, "")
			to := ""
			if rng.IntN(2) == 0 {
				to = pick(s, notDeleted, id)
			}
			cmd = ledger.DeleteUser{UserID: id, Confirm: id, ReassignTo: to, At: at}
		default:
			cmd, actor = ledger.ScheduleSeatReduction{Count: 1, At: at}, fixture.Operator
		}
		if _, err := l.Do(ctx, a.id, actor, cmd); err != nil {
			var rule *ledger.RuleError
			if !errors.As(err, &rule) {
				t.Fatal(err)
			}
		}
		h.end = maxTime(h.end, at)
	}
	return h
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// checkCoverage fails the test when the history lacks an event type, a
// deletion with or without reassignment, or an event decoded as erased.
func checkCoverage(t *testing.T, h history, rebuilt []codec.Decoded) {
	t.Helper()
	seen := map[string]int{}
	erased := 0
	for _, d := range rebuilt {
		seen[d.Record.Type]++
		if del, ok := d.Event.(ledger.UserDeleted); ok {
			if del.ReassignTo == "" {
				seen["UserDeleted without reassignment"]++
			} else {
				seen["UserDeleted with reassignment"]++
			}
		}
		if d.Erased {
			erased++
		}
	}
	for _, want := range append(slices.Clone(ledger.EventTypes), "UserDeleted without reassignment", "UserDeleted with reassignment") {
		if seen[want] == 0 {
			t.Fatalf("the random history has no %s: %v", want, seen)
		}
	}
	if erased == 0 {
		t.Fatal("no event of the random history decoded as erased")
	}
	if len(h.accounts) < 100 {
		t.Fatalf("the random history opened %d accounts, want at least 100", len(h.accounts))
	}
}

// accountView is everything the read models answer about one account,
// through their public read methods.
type accountView struct {
	Usage       any
	UsageEarly  any
	Users       any
	UserLookups map[string]any
	Activities  []any
	Owners      map[string]any
	Audit       any
	Heads       [2]codec.Hash
	Current     any
	Cycles      map[string]any
}

// answer is a read's result or its error, comparable with DeepEqual.
func answer(v any, err error) any {
	if err != nil {
		return "error: " + err.Error()
	}
	return v
}

// view reads everything the four models answer about account id at now.
// ids are the users to look up one by one (the account's, and one it does
// not have).
func view(m models, id string, ids []string, opened, now time.Time) accountView {
	v := accountView{UserLookups: map[string]any{}, Owners: map[string]any{}, Cycles: map[string]any{}}
	v.Usage = answer(m.seats.Usage(id, now))
	v.UsageEarly = answer(m.seats.Usage(id, opened.Add(20*24*time.Hour)))
	v.Users = answer(m.seats.Users(id, ""))
	for _, u := range ids {
		v.UserLookups[u] = answer(m.seats.User(id, u))
		v.Owners[u] = answer(m.attr.Owner(id, u))
	}
	// Pages of 7, so the cursor is exercised too.
	for after := 0; ; {
		p, err := m.attr.Activities(id, after, 7)
		v.Activities = append(v.Activities, answer(p, err))
		if err != nil || p.Next == 0 {
			break
		}
		after = p.Next
	}
	v.Audit = answer(m.audit.Entries(id, audit.Filter{}))
	v.Heads = [2]codec.Hash{m.audit.Head(eventstore.LedgerStream(id)), m.audit.Head(eventstore.ActivityStream(id))}
	v.Current = answer(m.bill.Current(id, now))
	for k := range ledger.CycleIndex(opened, now) + 2 {
		period := ledger.CycleStart(opened, k).Format("2006-01")
		v.Cycles[period] = answer(m.bill.Cycle(id, period, now))
	}
	return v
}

// sameModels fails the test when got answers anything about any account
// of h differently from want, or snapshots differently.
func sameModels(t *testing.T, what string, h history, want, got models) {
	t.Helper()
	if !slices.Equal(want.seats.Accounts(), got.seats.Accounts()) {
		t.Fatalf("%s: seats accounts differ: want %d accounts, got %d", what, len(want.seats.Accounts()), len(got.seats.Accounts()))
	}
	for i, w := range want.set() {
		if gp, wp := got.set()[i].(interface{ Position() eventstore.Position }).Position(),
			w.(interface{ Position() eventstore.Position }).Position(); gp != wp {
			t.Fatalf("%s: %s at position %d, want %d", what, w.Name(), gp, wp)
		}
	}
	now := h.end.Add(time.Hour)
	for _, id := range append(slices.Clone(h.accounts), "never-opened") {
		s := h.log.Peek(id)
		ids := append(slices.Clone(s.Order), "nobody")
		opened := s.OpenedAt
		if opened.IsZero() {
			opened = h.end
		}
		w, g := view(want, id, ids, opened, now), view(got, id, ids, opened, now)
		if !reflect.DeepEqual(w, g) {
			wj, _ := json.MarshalIndent(w, "", " ")
			gj, _ := json.MarshalIndent(g, "", " ")
			t.Fatalf("%s: account %s answers differently:\nwant %s\ngot  %s", what, id, wj, gj)
		}
	}
	// The snapshots, a canonical dump of each model's whole state, agree
	// byte for byte.
	ws, gs := want.snapshotters(), got.snapshotters()
	for i := range ws {
		wb, err := ws[i].Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		gb, err := gs[i].Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(wb, gb) {
			t.Fatalf("%s: %s snapshots differ (%d bytes, want %d)", what, ws[i].(projections.Projection).Name(), len(gb), len(wb))
		}
	}
}

func applyBatch(t *testing.T, m models, ds []codec.Decoded) {
	t.Helper()
	if err := m.set().ApplyBatch(ds); err != nil {
		t.Fatal(err)
	}
}

// TestSnapshotRoundTripManyAccounts folds random histories of over a
// hundred accounts, snapshots all four read models at random cuts,
// restores each snapshot into new models, applies the rest of the
// history and compares every answer with a fold from the first event. The
// events up to the cut are those the process that took the snapshot saw
// live; those after it, and the reference fold, are decoded afresh as a
// restarted process decodes them, with the keys of deleted users gone.
func TestSnapshotRoundTripManyAccounts(t *testing.T) {
	rounds, cuts := 2, 3
	if testing.Short() {
		rounds = 1
	}
	seed := *snapshotSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	for round := range rounds {
		seed := seed + uint64(round)
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Logf("seed %d: rerun with -run 'TestSnapshotRoundTripManyAccounts' -snapshot-seed=%d", seed, seed)
			rng := rand.New(rand.NewPCG(seed, 0x5eed))
			h := randomHistory(t, rng, 100+rng.IntN(40), 5000)
			rebuilt, err := h.log.Rebuild(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			live := h.log.Live()
			checkCoverage(t, h, rebuilt)

			ref := newModels()
			applyBatch(t, ref, rebuilt)
			// Control: the models hold every account the history opened.
			if got := len(ref.seats.Accounts()); got != len(h.accounts) {
				t.Fatalf("control: the fold holds %d accounts, the history opened %d", got, len(h.accounts))
			}
			for c := range cuts {
				cut := rng.IntN(len(rebuilt) + 1)
				if c == 0 {
					cut = len(rebuilt) // a snapshot of the whole history, as at a clean stop
				}
				half := newModels()
				applyBatch(t, half, live[:cut])
				restored := newModels()
				snapshotInto(t, half, restored)
				sameModels(t, fmt.Sprintf("restored at event %d of %d", cut, len(rebuilt)), h, half, restored)
				applyBatch(t, restored, rebuilt[cut:])
				sameModels(t, fmt.Sprintf("restored at event %d of %d then fed the rest", cut, len(rebuilt)), h, ref, restored)
			}
		})
	}
}
