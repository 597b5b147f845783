package httpapi_test

import (
	"strings"
	"sync/atomic"
	"testing"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/httpapi"
)

// Until the read models have caught up with the store's position at their
// start, every read answers 503 not-ready with Retry-After, never a 404 or
// a partial answer; writes are served; once ready, reads answer.
func TestReadsRefusedUntilReadModelsReady(t *testing.T) {
	var ready atomic.Bool
	ready.Store(true)
	e := newEnv(t, options{adjust: func(c *httpapi.Config) { c.ReadModelsReady = ready.Load }})
	e.open("acme", 3)
	user := e.addUser("acme", "Ada Lovelace", "ada@acme.test", "admin")
	activity := e.must(201, e.operator, "POST", "/v1/accounts/acme/activities", map[string]string{"user_id": user, "kind": "note", "ref": "r1"}).json(t)["id"].(string)
	tokenID := e.must(201, e.operator, "POST", "/v1/tokens", map[string]string{"role": "auditor"}).json(t)["id"].(string)
	hook := freshHook(e)

	// Every read route of the API, its path values filled in, and one
	// account that does not exist.
	fill := strings.NewReplacer("{account}", "acme", "{user}", user, "{activity}", activity, "{token}", tokenID, "{webhook}", hook)
	reads := []string{"/v1/accounts/nobody"}
	for _, r := range e.api.Routes() {
		if r.Method == "GET" && strings.HasPrefix(r.Path, "/v1/") {
			path := fill.Replace(r.Path)
			switch {
			case strings.HasSuffix(path, "/state"):
				path += "?as_of=2100-01-01T00:00:00Z"
			case strings.HasSuffix(path, "/log/consistency"):
				path += "?old=1&new=1"
			case strings.HasSuffix(path, "/log/inclusion"):
				path += "?index=0&size=1"
			}
			reads = append(reads, path)
		}
	}
	if len(reads) < 12 {
		t.Fatalf("control: only %d reads found: %v", len(reads), reads)
	}

	ready.Store(false)
	for _, path := range reads {
		r := e.must(503, e.operator, "GET", path, nil)
		if r.Header.Get("Content-Type") != "application/problem+json" || r.Header.Get("Retry-After") == "" ||
			r.json(t)["type"] != httpapi.ProblemBase+httpapi.ProblemNotReady {
			t.Fatalf("GET %s before ready: %s %q %s", path, r.Header.Get("Content-Type"), r.Header.Get("Retry-After"), r.Body)
		}
	}
	// Minting a token for an account checks that the account exists in
	// the read models: refused too. Without a token, still 401.
	e.must(503, e.operator, "POST", "/v1/tokens", map[string]string{"role": string(auth.Admin), "account": "acme"})
	e.must(401, "", "GET", "/v1/accounts/acme", nil)
	// Writes are decided on the account as loaded from the store.
	e.must(201, e.operator, "POST", "/v1/accounts/acme/activities", map[string]string{"user_id": user, "kind": "note", "ref": "r2"})
	e.must(200, "", "GET", "/healthz", nil)

	ready.Store(true)
	e.waitLog()
	for _, path := range reads {
		want := 200
		if path == "/v1/accounts/nobody" {
			want = 404
		}
		e.must(want, e.operator, "GET", path, nil)
	}
}
