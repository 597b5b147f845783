package httpapi_test

import (
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/httpapi"
)

// TestUpdateUser covers PATCH of a user: a merge patch of name, email and
// role, the user as answer, nothing appended for values already held, and
// the refusals.
func TestUpdateUser(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 5)
	op := e.operator
	ada := e.addUser("acme", "Ada Admin", "ada@acme.test", "admin")
	bob := e.addUser("acme", "Bob Member", "bob@acme.test", "member")
	path := "/v1/accounts/acme/users/" + bob

	r := e.must(200, op, "PATCH", path, `{"name":" Robert Member ","email":"robert@acme.test"}`, "Content-Type", "application/merge-patch+json")
	u := r.json(t)
	if u["name"] != "Robert Member" || u["email"] != "robert@acme.test" || u["role"] != "member" || u["id"] != bob {
		t.Fatalf("patched user: %s", r.Body)
	}
	if r.Header.Get("ETag") == "" || r.Header.Get("Ledger-Position") == "" {
		t.Fatalf("headers: %v", r.Header)
	}
	got := e.must(200, op, "GET", path, nil).json(t)
	if got["name"] != "Robert Member" || got["email"] != "robert@acme.test" {
		t.Fatalf("read after patch: %v", got)
	}

	n := e.storeLen()
	e.must(200, op, "PATCH", path, map[string]string{"name": "Robert Member", "email": "robert@acme.test", "role": "member"})
	e.must(200, op, "PATCH", path, map[string]string{})
	if e.storeLen() != n {
		t.Fatalf("a patch of the current values appended %d events", e.storeLen()-n)
	}

	r = e.must(200, op, "PATCH", path, map[string]string{"role": "admin"})
	if r.json(t)["role"] != "admin" {
		t.Fatalf("promotion: %s", r.Body)
	}
	if e.storeLen() != n+1 {
		t.Fatalf("a promotion appended %d events, want 1", e.storeLen()-n)
	}

	for _, c := range []struct {
		body, rule string
		status     int
	}{
		{`{"name":null}`, "malformed-request", 400},
		{`{"role":7}`, "malformed-request", 400},
		{`{"nickname":"Bobby"}`, "malformed-request", 400},
		{`["name"]`, "malformed-request", 400},
		{`{"name":""}`, "invalid-user", 400},
		{`{"email":"nope"}`, "invalid-user", 400},
		{`{"role":"owner"}`, "invalid-user", 400},
		{`{"email":"ADA@acme.test"}`, "duplicate-email", 409},
	} {
		before := e.storeLen()
		r := e.must(c.status, op, "PATCH", path, c.body)
		if p := r.json(t); !strings.HasSuffix(p["type"].(string), "/"+c.rule) {
			t.Errorf("%s: problem %s, want rule %s", c.body, r.Body, c.rule)
		}
		if e.storeLen() != before {
			t.Errorf("%s: a refused patch appended", c.body)
		}
	}
	e.must(415, op, "PATCH", path, `{"name":"X"}`, "Content-Type", "text/plain")

	// If-Match guards a patch like every write.
	etag := e.must(200, op, "GET", "/v1/accounts/acme", nil).Header.Get("ETag")
	e.must(200, op, "PATCH", path, map[string]string{"name": "Rob"}, "If-Match", etag)
	e.must(412, op, "PATCH", path, map[string]string{"name": "Bob"}, "If-Match", etag)

	// The last active admin cannot be demoted: Ada is not alone any more,
	// Bob is admin too; demote Bob, then Ada is refused.
	e.must(200, op, "PATCH", path, map[string]string{"role": "member"})
	r = e.must(409, op, "PATCH", "/v1/accounts/acme/users/"+ada, map[string]string{"role": "member"})
	if !strings.HasSuffix(r.json(t)["type"].(string), "/last-active-admin") {
		t.Fatalf("last admin: %s", r.Body)
	}

	// A deleted user is gone.
	e.must(200, op, "DELETE", path+"?confirm="+bob, nil)
	e.must(410, op, "PATCH", path, map[string]string{"name": "Ghost"})
	e.must(404, op, "PATCH", "/v1/accounts/acme/users/nobody", map[string]string{"name": "Ghost"})
}

// TestUpdateUserIdempotent: a patch repeated under its key answers the
// first result and appends nothing; another patch under the same key is
// refused.
func TestUpdateUserIdempotent(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 5)
	op := e.operator
	bob := e.addUser("acme", "Bob Member", "bob@acme.test", "member")
	path := "/v1/accounts/acme/users/" + bob
	first := e.must(200, op, "PATCH", path, map[string]string{"name": "Robert"}, "Idempotency-Key", "k-1")
	n := e.storeLen()
	again := e.must(200, op, "PATCH", path, map[string]string{"name": "Robert"}, "Idempotency-Key", "k-1")
	if again.Header.Get("Idempotent-Replayed") != "true" || string(again.Body) != string(first.Body) || e.storeLen() != n {
		t.Fatalf("repeat: %v %s, %d events appended", again.Header, again.Body, e.storeLen()-n)
	}
	e.must(422, op, "PATCH", path, map[string]string{"name": "Bobby"}, "Idempotency-Key", "k-1")

	// A restarted API keeps no response: the service judges the repeat
	// from the fingerprint its events recorded.
	e.srv.Config.Handler = httpapi.New(e.cfg)
	again = e.must(200, op, "PATCH", path, map[string]string{"name": "Robert"}, "Idempotency-Key", "k-1")
	if again.json(t)["name"] != "Robert" || e.storeLen() != n {
		t.Fatalf("repeat after restart: %s, %d events appended", again.Body, e.storeLen()-n)
	}
	for _, other := range []map[string]string{{"name": "Bobby"}, {"role": "admin"}} {
		e.srv.Config.Handler = httpapi.New(e.cfg)
		r := e.must(422, op, "PATCH", path, other, "Idempotency-Key", "k-1")
		if r.json(t)["type"] != httpapi.ProblemBase+"idempotency-key-reused" || e.storeLen() != n {
			t.Fatalf("another patch under the key after restart: %s", r.Body)
		}
	}
	if m := string(e.must(200, "", "GET", "/metrics", nil).Body); !strings.Contains(m, `outcome="idempotency_key_reused"`) {
		t.Errorf("metrics do not count refused key reuses:\n%s", m)
	}
}

// TestPromoteThenLeave is the story of the last admin handing over: Ada,
// the only admin, cannot leave; she promotes Bob, leaves (deactivated),
// and Bob stays the account's admin, himself protected as the last one.
func TestPromoteThenLeave(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 2)
	ada := e.addUser("acme", "Ada Admin", "ada@acme.test", "admin")
	bob := e.addUser("acme", "Bob Member", "bob@acme.test", "member")
	adaToken := e.mint("admin", "acme")
	users := "/v1/accounts/acme/users/"

	e.must(409, adaToken, "POST", users+ada+"/deactivate", map[string]string{"reason": "leaving"})
	if r := e.must(200, adaToken, "PATCH", users+bob, map[string]string{"role": "admin"}); r.json(t)["role"] != "admin" {
		t.Fatalf("promote: %s", r.Body)
	}
	e.must(200, adaToken, "POST", users+ada+"/deactivate", map[string]string{"reason": "leaving"})

	list := e.must(200, e.operator, "GET", "/v1/accounts/acme/users?status=active", nil).json(t)["users"].([]any)
	if len(list) != 1 || list[0].(map[string]any)["id"] != bob || list[0].(map[string]any)["role"] != "admin" {
		t.Fatalf("active users after the handover: %v", list)
	}
	e.must(409, e.operator, "PATCH", users+bob, map[string]string{"role": "member"})
	e.must(409, e.operator, "POST", users+bob+"/deactivate", nil)

	audit := string(e.must(200, e.operator, "GET", "/v1/accounts/acme/audit", nil).Body)
	if !strings.Contains(audit, `"action":"UserRoleChanged"`) || strings.Contains(audit, "Bob Member") {
		t.Fatalf("audit of the handover: %s", audit)
	}
}

// TestStateAsOfShowsProfileThen: the state as of an instant shows the name
// and role a user had then, until the user is deleted.
func TestStateAsOfShowsProfileThen(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 5)
	op := e.operator
	e.addUser("acme", "Ada Admin", "ada@acme.test", "admin")
	bob := e.addUser("acme", "Bob Member", "bob@acme.test", "member")
	before := e.clock.Now()
	e.must(200, op, "PATCH", "/v1/accounts/acme/users/"+bob, map[string]string{"name": "Robert", "role": "admin"})
	after := e.clock.Now()
	userAt := func(at string) map[string]any {
		t.Helper()
		st := e.must(200, op, "GET", "/v1/accounts/acme/state?as_of="+at, nil).json(t)
		for _, u := range st["users"].([]any) {
			if u := u.(map[string]any); u["id"] == bob {
				return u
			}
		}
		t.Fatalf("no %s in state as of %s", bob, at)
		return nil
	}
	if u := userAt(before.Format(time.RFC3339Nano)); u["name"] != "Bob Member" || u["role"] != "member" {
		t.Errorf("as of before the patch: %v", u)
	}
	if u := userAt(after.Format(time.RFC3339Nano)); u["name"] != "Robert" || u["role"] != "admin" {
		t.Errorf("as of after the patch: %v", u)
	}
	e.must(200, op, "DELETE", "/v1/accounts/acme/users/"+bob+"?confirm="+bob, nil)
	if u := userAt(before.Format(time.RFC3339Nano)); u["name"] != "" && u["name"] != nil {
		t.Errorf("as of before the patch, once deleted: %v", u)
	}
}
