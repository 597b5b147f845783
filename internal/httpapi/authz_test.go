package httpapi_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/auth"
)

type principal struct {
	name    string
	role    auth.Role // "" for none or bad
	account string    // scope; "" for all
	bad     bool
}

var principals = []principal{
	{name: "no token"},
	{name: "bad token", bad: true},
	{name: "operator", role: auth.Operator},
	{name: "admin@acme", role: auth.Admin, account: "acme"},
	{name: "admin@beta", role: auth.Admin, account: "beta"},
	{name: "auditor@acme", role: auth.Auditor, account: "acme"},
	{name: "auditor@all", role: auth.Auditor},
	{name: "auditor@beta", role: auth.Auditor, account: "beta"},
	{name: "service@acme", role: auth.Service, account: "acme"},
	{name: "service@all", role: auth.Service},
	{name: "service@beta", role: auth.Service, account: "beta"},
	// A provisioning token serves SCIM only: every /v1 route refuses it
	// (403 on its account, 404 on another, as for every scoped token).
	{name: "provisioning@acme", role: auth.Provisioning, account: "acme"},
	{name: "provisioning@beta", role: auth.Provisioning, account: "beta"},
}

// endpoint is one route of the API: how to make a request that succeeds
// for an allowed principal, the status of that success and the roles
// allowed.
type endpoint struct {
	route   string // "METHOD pattern", as registered
	ok      int
	roles   []auth.Role
	prepare func(e *env, n int) (path string, body any)
}

// allAccountsOnly are the routes only tokens for every account may call.
var allAccountsOnly = map[string]bool{"GET /v1/quarantine": true, "GET /v1/accounts": true, "GET /v1/billing": true}

var (
	everyone = []auth.Role{auth.Operator, auth.Admin, auth.Auditor, auth.Service}
	history  = []auth.Role{auth.Operator, auth.Admin, auth.Auditor}
	writers  = []auth.Role{auth.Operator, auth.Admin}
)

func fixed(path string, body any) func(*env, int) (string, any) {
	return func(*env, int) (string, any) { return path, body }
}

func freshHook(e *env) string {
	r := e.must(201, e.operator, "POST", "/v1/accounts/acme/webhooks", map[string]any{"url": publicHook})
	return r.json(e.t)["id"].(string)
}

func freshUser(e *env, n int) string {
	return e.addUser("acme", fmt.Sprintf("User %d", n), fmt.Sprintf("u%d@acme.test", n), "member")
}

var endpoints = []endpoint{
	{"POST /v1/accounts", 201, []auth.Role{auth.Operator}, func(_ *env, n int) (string, any) {
		return "/v1/accounts", map[string]any{"id": fmt.Sprintf("new-%d", n), "name": "New", "seats": 1}
	}},
	{"GET /v1/accounts", 200, []auth.Role{auth.Operator, auth.Auditor}, fixed("/v1/accounts?limit=1", nil)},
	{"GET /v1/accounts/{account}", 200, everyone, fixed("/v1/accounts/acme", nil)},
	{"POST /v1/accounts/{account}/seats", 200, writers, fixed("/v1/accounts/acme/seats", map[string]int{"count": 1})},
	{"GET /v1/accounts/{account}/seats", 200, everyone, fixed("/v1/accounts/acme/seats", nil)},
	{"POST /v1/accounts/{account}/seat-reductions", 200, []auth.Role{auth.Operator}, fixed("/v1/accounts/acme/seat-reductions", map[string]int{"count": 1})},
	{"POST /v1/accounts/{account}/users", 201, writers, func(_ *env, n int) (string, any) {
		return "/v1/accounts/acme/users", map[string]string{"name": "N", "email": fmt.Sprintf("n%d@acme.test", n), "role": "member"}
	}},
	{"GET /v1/accounts/{account}/users", 200, everyone, fixed("/v1/accounts/acme/users?status=active", nil)},
	{"GET /v1/accounts/{account}/users/{user}", 200, everyone, func(e *env, n int) (string, any) {
		return "/v1/accounts/acme/users/" + freshUser(e, n), nil
	}},
	{"POST /v1/accounts/{account}/users/{user}/deactivate", 200, writers, func(e *env, n int) (string, any) {
		return "/v1/accounts/acme/users/" + freshUser(e, n) + "/deactivate", map[string]string{"reason": "r"}
	}},
	{"POST /v1/accounts/{account}/users/{user}/activate", 200, writers, func(e *env, n int) (string, any) {
		u := freshUser(e, n)
		e.must(200, e.operator, "POST", "/v1/accounts/acme/users/"+u+"/deactivate", nil)
		return "/v1/accounts/acme/users/" + u + "/activate", nil
	}},
	{"PATCH /v1/accounts/{account}/users/{user}", 200, writers, func(e *env, n int) (string, any) {
		return "/v1/accounts/acme/users/" + freshUser(e, n), map[string]string{"name": fmt.Sprintf("Renamed %d", n)}
	}},
	{"DELETE /v1/accounts/{account}/users/{user}", 200, writers, func(e *env, n int) (string, any) {
		u := freshUser(e, n)
		return "/v1/accounts/acme/users/" + u + "?confirm=" + u, nil
	}},
	{"POST /v1/accounts/{account}/activities", 201, []auth.Role{auth.Operator, auth.Admin, auth.Service}, func(e *env, n int) (string, any) {
		return "/v1/accounts/acme/activities", map[string]string{"user_id": freshUser(e, n), "kind": "note", "ref": "r"}
	}},
	{"GET /v1/accounts/{account}/activities", 200, everyone, fixed("/v1/accounts/acme/activities", nil)},
	{"GET /v1/accounts/{account}/activities/{activity}", 200, everyone, func(e *env, n int) (string, any) {
		r := e.must(201, e.operator, "POST", "/v1/accounts/acme/activities", map[string]string{"user_id": freshUser(e, n), "kind": "note", "ref": "r"})
		return r.Header.Get("Location"), nil
	}},
	{"GET /v1/accounts/{account}/audit", 200, history, fixed("/v1/accounts/acme/audit?since=2026-01-01T00:00:00Z", nil)},
	{"GET /v1/accounts/{account}/audit/verify", 200, history, fixed("/v1/accounts/acme/audit/verify", nil)},
	{"GET /v1/accounts/{account}/state", 200, history, fixed("/v1/accounts/acme/state?as_of=2030-01-01T00:00:00Z", nil)},
	{"GET /v1/accounts/{account}/billing", 200, history, fixed("/v1/accounts/acme/billing?period=2026-03", nil)},
	{"GET /v1/accounts/{account}/events", 200, history, fixed("/v1/accounts/acme/events", nil)},
	{"POST /v1/tokens", 201, []auth.Role{auth.Operator}, fixed("/v1/tokens", map[string]string{"role": "service", "account": "acme"})},
	{"GET /v1/tokens/{token}", 200, []auth.Role{auth.Operator}, func(e *env, _ int) (string, any) {
		r := e.must(201, e.operator, "POST", "/v1/tokens", map[string]string{"role": "auditor"})
		return "/v1/tokens/" + r.json(e.t)["id"].(string), nil
	}},
	{"DELETE /v1/tokens/{token}", 204, []auth.Role{auth.Operator}, func(e *env, _ int) (string, any) {
		r := e.must(201, e.operator, "POST", "/v1/tokens", map[string]string{"role": "auditor"})
		return "/v1/tokens/" + r.json(e.t)["id"].(string), nil
	}},
	{"GET /v1/billing", 200, []auth.Role{auth.Operator, auth.Auditor}, fixed("/v1/billing?period=2026-03", nil)},
	{"POST /v1/accounts/{account}/webhooks", 201, writers, fixed("/v1/accounts/acme/webhooks", map[string]any{"url": publicHook})},
	{"GET /v1/accounts/{account}/webhooks", 200, writers, fixed("/v1/accounts/acme/webhooks", nil)},
	{"GET /v1/accounts/{account}/webhooks/{webhook}", 200, writers, func(e *env, _ int) (string, any) {
		return "/v1/accounts/acme/webhooks/" + freshHook(e), nil
	}},
	{"DELETE /v1/accounts/{account}/webhooks/{webhook}", 204, writers, func(e *env, _ int) (string, any) {
		return "/v1/accounts/acme/webhooks/" + freshHook(e), nil
	}},
	{"POST /v1/accounts/{account}/webhooks/{webhook}/enable", 200, writers, func(e *env, _ int) (string, any) {
		return "/v1/accounts/acme/webhooks/" + freshHook(e) + "/enable", nil
	}},
	{"POST /v1/accounts/{account}/webhooks/{webhook}/replay", 202, writers, func(e *env, _ int) (string, any) {
		return "/v1/accounts/acme/webhooks/" + freshHook(e) + "/replay", map[string]any{"from_sequence": 1}
	}},
	{"GET /v1/accounts/{account}/webhooks/{webhook}/deliveries", 200, writers, func(e *env, _ int) (string, any) {
		return "/v1/accounts/acme/webhooks/" + freshHook(e) + "/deliveries", nil
	}},
	{"GET /v1/quarantine", 200, []auth.Role{auth.Operator, auth.Auditor}, fixed("/v1/quarantine", nil)},
	{"GET /v1/log/checkpoint", 200, everyone, fixed("/v1/log/checkpoint", nil)},
	{"GET /v1/log/key", 200, everyone, fixed("/v1/log/key", nil)},
	{"GET /v1/log/consistency", 200, []auth.Role{auth.Operator, auth.Auditor}, fixed("/v1/log/consistency?old=1&new=2", nil)},
	{"GET /v1/log/inclusion", 200, []auth.Role{auth.Operator, auth.Auditor}, fixed("/v1/log/inclusion?index=0&size=2", nil)},
	{"GET /v1/accounts/{account}/export", 200, history, fixed("/v1/accounts/acme/export?keys=true", nil)},
	{"GET /healthz", 200, nil, fixed("/healthz", nil)},
	{"GET /readyz", 200, nil, fixed("/readyz", nil)},
	{"GET /metrics", 200, nil, fixed("/metrics", nil)},
	{"GET /openapi.json", 200, nil, fixed("/openapi.json", nil)},
	{"GET /asyncapi.json", 200, nil, fixed("/asyncapi.json", nil)},
	{"GET /schemas/{name}", 200, nil, fixed("/schemas/dev.licenseledger.user.deactivated.v1.json", nil)},
}

// TestEveryEndpointEveryRole walks every registered route with every kind
// of principal and checks the exact status: 401 (with WWW-Authenticate)
// without a valid token, 404 for a token scoped to another account (as if
// the account did not exist), 403 for a role not allowed, success
// otherwise. Public operations answer everyone.
func TestEveryEndpointEveryRole(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 1000)
	e.open("beta", 10)
	e.addUser("acme", "Ada", "ada@acme.test", "admin")
	tokens := map[string]string{"operator": e.operator, "bad token": auth.Prefix + strings.Repeat("x", 43)}
	for _, p := range principals {
		if p.role != "" && p.role != auth.Operator {
			tokens[p.name] = e.mint(p.role, p.account)
		}
	}

	var covered []string
	n := 0
	for _, ep := range endpoints {
		covered = append(covered, ep.route)
		method, _, _ := strings.Cut(ep.route, " ")
		for _, p := range principals {
			n++
			path, body := ep.prepare(e, n)
			want := ep.ok
			public := ep.roles == nil
			onAccount := strings.Contains(ep.route, "{account}")
			switch {
			case public:
			case p.role == "":
				want = 401
			case onAccount && p.account != "" && p.account != "acme":
				want = 404
			case !slices.Contains(ep.roles, p.role), allAccountsOnly[ep.route] && p.account != "":
				want = 403
			}
			t.Run(ep.route+"/"+p.name, func(t *testing.T) {
				r := e.do(tokens[p.name], method, path, body)
				if r.Status != want {
					t.Fatalf("%s %s as %s: status %d, want %d: %s", method, path, p.name, r.Status, want, r.Body)
				}
				if want == 401 && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer ") {
					t.Fatalf("401 without a Bearer challenge: %v", r.Header)
				}
				if want >= 400 && r.Header.Get("Content-Type") != "application/problem+json" {
					t.Fatalf("error as %q", r.Header.Get("Content-Type"))
				}
			})
		}
	}
	// A scoped token gets the same 404 for another account that exists and
	// for one that does not: it cannot tell them apart.
	a := e.do(tokens["admin@beta"], "GET", "/v1/accounts/acme", nil, "X-Request-Id", "probe")
	b := e.do(tokens["admin@beta"], "GET", "/v1/accounts/nosuch", nil, "X-Request-Id", "probe")
	if a.Status != 404 || b.Status != 404 || strings.ReplaceAll(string(a.Body), "acme", "X") != strings.ReplaceAll(string(b.Body), "nosuch", "X") {
		t.Fatalf("scoped 404s differ:\n%s\n%s", a.Body, b.Body)
	}

	var registered []string
	for _, r := range e.api.Routes() {
		registered = append(registered, r.Method+" "+r.Path)
	}
	slices.Sort(registered)
	slices.Sort(covered)
	if !slices.Equal(registered, covered) {
		t.Fatalf("routes walked differ from routes registered:\nregistered %v\nwalked     %v", registered, covered)
	}
}
