package httpapi_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/projections/seats"
)

// Walking the accounts page by page while other accounts are opened at
// the same time sees every account opened before the walk exactly once,
// in the order of their ids, each with its name, seats, active users and
// opening time.
func TestAccountsWalkWhileOpening(t *testing.T) {
	e := newEnv(t)
	var before []string
	for i := range 30 {
		id := fmt.Sprintf("acct-%02d", (i*7)%30)
		e.open(id, i+1)
		before = append(before, id)
	}
	slices.Sort(before)
	e.addUser("acct-03", "Ada", "ada@acct.test", "admin")
	auditor := e.mint(auth.Auditor, "")

	// Accounts opened while the walk goes on, with ids before, among and
	// after those there at its start.
	stop, first := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer func() {
			select {
			case <-first:
			default:
				close(first)
			}
		}()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i == 1 {
				close(first)
			}
			for _, id := range []string{fmt.Sprintf("a-%03d", i), fmt.Sprintf("acct-%02d-%03d", i%30, i), fmt.Sprintf("zz-%03d", i)} {
				r := e.do(e.operator, "POST", "/v1/accounts", map[string]any{"id": id, "name": "Late " + id, "seats": 1})
				if r.Status != 201 {
					t.Errorf("open %s: %d %s", id, r.Status, r.Body)
					return
				}
			}
		}
	})
	var got []seats.Summary
	cursor := ""
	for n := 0; ; n++ {
		if n > 200 {
			t.Fatal("no end")
		}
		path := "/v1/accounts?limit=4"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var l httpapi.AccountList
		if err := json.Unmarshal(e.must(200, auditor, "GET", path, nil).Body, &l); err != nil {
			t.Fatal(err)
		}
		if len(l.Accounts) > 4 || (l.HasMore && len(l.Accounts) != 4) || l.NextCursor == "" {
			t.Fatalf("page of %d, has_more %v, next_cursor %q", len(l.Accounts), l.HasMore, l.NextCursor)
		}
		got = append(got, l.Accounts...)
		cursor = l.NextCursor
		if !l.HasMore {
			break
		}
		if n == 0 {
			// At least one round of openings lands during the walk.
			<-first
		}
	}
	close(stop)
	wg.Wait()
	seen := map[string]int{}
	for i, a := range got {
		seen[a.ID]++
		if i > 0 && a.ID <= got[i-1].ID {
			t.Errorf("%q after %q: not ordered by id", a.ID, got[i-1].ID)
		}
	}
	for _, id := range before {
		if seen[id] != 1 {
			t.Errorf("account %s seen %d times", id, seen[id])
		}
	}
	for _, a := range got {
		if !strings.HasPrefix(a.ID, "acct-") || strings.Count(a.ID, "-") > 1 {
			continue
		}
		if a.Name != "Acme "+a.ID || a.OpenedAt.IsZero() || a.Seats < 1 || a.Seats > 30 {
			t.Errorf("summary %+v", a)
		}
		if active := map[bool]int{true: 1}[a.ID == "acct-03"]; a.Active != active {
			t.Errorf("%s: %d active, want %d", a.ID, a.Active, active)
		}
	}
	// Coming back with the last cursor finds the accounts opened since
	// after the last one seen.
	e.open("zzz-last", 1)
	var l httpapi.AccountList
	if err := json.Unmarshal(e.must(200, e.operator, "GET", "/v1/accounts?cursor="+cursor, nil).Body, &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Accounts) == 0 || l.Accounts[len(l.Accounts)-1].ID != "zzz-last" || l.HasMore {
		t.Errorf("after the walk: %+v", l)
	}
}

// Only operators and auditors of every account list the accounts; every
// other token is 403 without a list, limits and cursors are checked as in
// every list.
func TestAccountsListRefusals(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 5)
	e.open("beta", 5)
	e.addUser("acme", "Ada", "ada@acme.test", "admin")
	for _, tc := range []struct {
		role    auth.Role
		account string
	}{
		{auth.Admin, "acme"}, {auth.Auditor, "acme"}, {auth.Service, "acme"}, {auth.Service, ""}, {auth.Provisioning, "acme"},
	} {
		r := e.must(403, e.mint(tc.role, tc.account), "GET", "/v1/accounts", nil)
		if r.Header.Get("Content-Type") != "application/problem+json" || strings.Contains(string(r.Body), "beta") {
			t.Errorf("%s@%q: %s %s", tc.role, tc.account, r.Header.Get("Content-Type"), r.Body)
		}
	}
	e.must(401, "", "GET", "/v1/accounts", nil)
	for _, limit := range []string{"0", "1001", "x"} {
		e.must(400, e.operator, "GET", "/v1/accounts?limit="+limit, nil)
	}
	var l httpapi.AccountList
	if err := json.Unmarshal(e.must(200, e.operator, "GET", "/v1/accounts?limit=1", nil).Body, &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Accounts) != 1 || l.Accounts[0].ID != "acme" || !l.HasMore {
		t.Fatalf("first page %+v", l)
	}
	users := e.getPage(e.operator, "/v1/accounts/acme/users?limit=1").cursor
	b := []byte(l.NextCursor)
	b[len(b)/2] ^= 1
	for _, c := range []string{string(b), users, l.NextCursor[:len(l.NextCursor)-3], "AAAA"} {
		r := e.must(400, e.operator, "GET", "/v1/accounts?cursor="+c, nil)
		if r.json(t)["type"] != httpapi.ProblemBase+httpapi.ProblemInvalidCursor {
			t.Errorf("cursor %q: %s", c, r.Body)
		}
	}
	e.must(400, e.operator, "GET", "/v1/accounts/acme/users?cursor="+l.NextCursor, nil)
	if err := json.Unmarshal(e.must(200, e.operator, "GET", "/v1/accounts?cursor="+l.NextCursor, nil).Body, &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Accounts) != 1 || l.Accounts[0].ID != "beta" || l.HasMore {
		t.Fatalf("second page %+v", l)
	}
}
