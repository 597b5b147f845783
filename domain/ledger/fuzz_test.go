package ledger_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
)

// eventsFrom turns fuzz bytes into events, five bytes an event: type, user,
// role and email, a signed count, a signed time step in hours. The events
// need not be ones Decide would allow.
func eventsFrom(data []byte) []ledger.Event {
	var es []ledger.Event
	now := t0
	for len(data) >= 5 {
		b := data[:5]
		data = data[5:]
		user := fmt.Sprintf("u%d", b[1]%6)
		role := ledger.RoleMember
		if b[2]&1 == 1 {
			role = ledger.RoleAdmin
		}
		email := fmt.Sprintf("E%d@example.com", (b[2]>>1)%4)
		count := int(int8(b[3]))
		now = now.Add(time.Duration(int8(b[4])) * time.Hour)
		var e ledger.Event
		switch b[0] % 9 {
		case 0:
			e = ledger.AccountOpened{Account: "acme", Name: "Acme", Seats: count, At: now}
		case 1:
			e = ledger.SeatsPurchased{Count: count, At: now}
		case 2:
			e = ledger.SeatReductionScheduled{Count: count, EffectiveAt: now.Add(time.Duration(b[2]) * 24 * time.Hour), At: now}
		case 3:
			e = ledger.UserAdded{UserID: user, Name: "N", Email: email, Role: role, At: now}
		case 4:
			e = ledger.UserDeactivated{UserID: user, Reason: "r", At: now}
		case 5:
			e = ledger.UserActivated{UserID: user, At: now}
		case 6:
			to := ""
			if b[2]&1 == 1 {
				to = fmt.Sprintf("u%d", b[3]%6)
			}
			e = ledger.UserDeleted{UserID: user, ReassignTo: to, At: now}
		case 7:
			e = ledger.ActivityRecorded{ActivityID: "a", UserID: user, Kind: "k", Ref: "r", At: now}
		case 8:
			e = ledger.UserAdded{UserID: user, Name: "", Email: "", Role: ledger.Role("x"), At: now}
		}
		es = append(es, e)
	}
	return es
}

// FuzzEvolve folds arbitrary event sequences: Evolve must not panic, its
// counters must stay non-negative and agree with the users, a deleted user
// must stay deleted, and a clone taken midway must be unaffected by the rest.
func FuzzEvolve(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 1, 3, 0, 1, 0, 1, 3, 1, 2, 0, 1, 4, 0, 0, 0, 1, 6, 1, 0, 0, 1, 5, 1, 0, 0, 1})
	f.Add([]byte{3, 0, 1, 0, 1, 6, 0, 0, 0, 1, 3, 0, 0, 0, 1, 5, 0, 0, 0, 1, 4, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 1, 0, 2, 0, 9, 2, 5, 0, 0, 0, 0, 0, 7, 1, 0, 0, 200, 8, 3, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		es := eventsFrom(data)
		var s, mid ledger.State
		var ledgerEvents uint64
		var last time.Time
		deleted := make(map[string]bool)
		for i, e := range es {
			if i == len(es)/2 {
				mid = s.Clone()
			}
			s = ledger.Evolve(s, e)
			if !ledger.IsActivity(e) {
				ledgerEvents++
			}
			if e.OccurredAt().After(last) {
				last = e.OccurredAt()
			}
			if s.Active < 0 || s.Deactivated < 0 || s.Deleted < 0 || s.ActiveAdmins < 0 || s.PeakActive < 0 {
				t.Fatalf("event %d: negative counter in %+v", i, s)
			}
			for _, bad := range checkCounters(s) {
				t.Fatalf("event %d %#v: %s", i, e, bad)
			}
			for id := range deleted {
				if s.Users[id].Status != ledger.StatusDeleted {
					t.Fatalf("event %d: deleted user %s is %s again", i, id, s.Users[id].Status)
				}
			}
			for id, u := range s.Users {
				if u.Status == ledger.StatusDeleted {
					deleted[id] = true
				}
			}
		}
		if s.Version != ledgerEvents || !s.LastAt.Equal(last) {
			t.Fatalf("Version %d LastAt %v, want %d and %v", s.Version, s.LastAt, ledgerEvents, last)
		}
		if want := ledger.Fold(ledger.State{}, es[:len(es)/2]...); len(es) > 0 && !reflect.DeepEqual(mid, want) {
			t.Fatalf("clone taken midway changed:\n%+v\nwant\n%+v", mid, want)
		}
		if folded := ledger.Fold(ledger.State{}, es...); !reflect.DeepEqual(folded, s) {
			t.Fatal("Fold differs from Evolve step by step")
		}
	})
}

// FuzzDecide gives Decide random commands on states reached by earlier
// random commands: it must not panic, must refuse only with a *RuleError
// and no event, and the states it leads to must keep every invariant.
func FuzzDecide(f *testing.F) {
	f.Add([]byte{0, 2, 3, 1, 3, 4, 3, 5, 4, 1, 5, 1, 6, 1, 7, 1}, uint8(3), "u9", "Name", "x@example.com", 1, int64(3600))
	f.Add([]byte{0, 1, 3, 0}, uint8(6), "u0", "u0", "u0", 0, int64(-86400))
	f.Add([]byte{}, uint8(0), "acme", "Acme", "", 1, int64(0))
	f.Add([]byte{0, 5, 3, 0, 3, 1, 2, 2}, uint8(2), "", "", "", 3, int64(1<<40))
	f.Fuzz(func(t *testing.T, prefix []byte, kind uint8, id, a, b string, n int, sec int64) {
		var s ledger.State
		now := t0
		try := func(cmd ledger.Command) {
			es, err := ledger.Decide(s, cmd)
			if err != nil {
				var re *ledger.RuleError
				if !errors.As(err, &re) || es != nil {
					t.Fatalf("Decide(%#v) = %v, %v; want a *RuleError and no event", cmd, es, err)
				}
				return
			}
			for _, e := range es {
				if e.OccurredAt().Before(s.LastAt) {
					t.Fatalf("Decide(%#v): event at %v before the last one at %v", cmd, e.OccurredAt(), s.LastAt)
				}
				s = ledger.Evolve(s, e)
			}
			for _, bad := range checkInvariants(s) {
				t.Fatalf("after %#v: %s", cmd, bad)
			}
		}
		// The prefix drives commands over a small pool, two bytes each.
		for i := 0; i+1 < len(prefix); i += 2 {
			op, arg := prefix[i], prefix[i+1]
			now = now.Add(time.Duration(arg) * time.Hour)
			user := fmt.Sprintf("u%d", arg%4)
			a, b := "Name", fmt.Sprintf("p%d@example.com", arg%3)
			switch op % 8 {
			case 6: // confirmed, reassigned to the next user
				a, b = user, fmt.Sprintf("u%d", (arg+1)%4)
			case 7:
				a, b = fmt.Sprintf("act%d", i), "call"
			}
			try(fuzzCommand(op, user, a, b, int(arg%4), now))
		}
		at := time.Time{}
		if sec != 0 {
			at = now.Add(time.Duration(sec) * time.Second)
		}
		try(fuzzCommand(kind, id, a, b, n, at))
		try(fuzzCommand(kind>>4, id, a, b, n, at))
	})
}

// fuzzCommand builds one of the commands from op, putting id, a and b
// where each command takes strings.
func fuzzCommand(op uint8, id, a, b string, n int, at time.Time) ledger.Command {
	switch op % 8 {
	case 0:
		return ledger.OpenAccount{Account: id, Name: a, Seats: n, At: at}
	case 1:
		return ledger.PurchaseSeats{Count: n, At: at}
	case 2:
		return ledger.ScheduleSeatReduction{Count: n, At: at}
	case 3:
		role := ledger.RoleMember
		if n%2 == 1 {
			role = ledger.RoleAdmin
		} else if n%5 == 4 {
			role = ledger.Role(a)
		}
		return ledger.AddUser{UserID: id, Name: a, Email: b, Role: role, At: at}
	case 4:
		return ledger.DeactivateUser{UserID: id, Reason: a, At: at}
	case 5:
		if op&8 != 0 {
			return fuzzUpdate(id, a, b, n, at)
		}
		return ledger.ActivateUser{UserID: id, At: at}
	case 6:
		return ledger.DeleteUser{UserID: id, Confirm: a, ReassignTo: b, At: at}
	default:
		return ledger.RecordActivity{ActivityID: a, UserID: id, Kind: b, Ref: a, At: at}
	}
}

// fuzzUpdate is an UpdateUser giving a as name, b as email and a role
// chosen by n, each field left out now and then.
func fuzzUpdate(id, a, b string, n int, at time.Time) ledger.UpdateUser {
	c := ledger.UpdateUser{UserID: id, At: at}
	if n%2 == 0 {
		c.Name = &a
	}
	if n%3 != 1 {
		c.Email = &b
	}
	roles := []ledger.Role{ledger.RoleAdmin, ledger.RoleMember, ledger.Role(a)}
	if r := uint(n/6) % 4; r < uint(len(roles)) {
		c.Role = &roles[r]
	}
	return c
}
