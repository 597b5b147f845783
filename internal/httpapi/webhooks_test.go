package httpapi_test

import (
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/httpapi"
)

// publicHook is an https URL on a public address literal: registration
// needs no name resolution.
const publicHook = "https://93.184.215.14/hooks/ledger"

// TestWebhookRegistrationAndScopes registers endpoints as an account's
// admin and an operator, and checks that the secret is shown once, that
// a tenant admin can neither see nor register another account's
// endpoints, and that other roles are refused.
func TestWebhookRegistrationAndScopes(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 3)
	e.open("beta", 3)
	acme, beta := e.mint(auth.Admin, "acme"), e.mint(auth.Admin, "beta")

	r := e.must(201, acme, "POST", "/v1/accounts/acme/webhooks", map[string]any{
		"url": publicHook, "event_types": []string{"dev.licenseledger.user.deactivated.v1"}, "description": "revoke sessions"})
	created := r.json(t)
	id, secret := created["id"].(string), created["secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") || !strings.HasPrefix(id, "wh_") || r.Header.Get("Location") != "/v1/accounts/acme/webhooks/"+id ||
		created["enabled"] != true || created["account"] != "acme" {
		t.Fatalf("created: %s", r.Body)
	}
	e.must(201, e.operator, "POST", "/v1/accounts/beta/webhooks", map[string]any{"url": publicHook})

	for _, path := range []string{"/v1/accounts/acme/webhooks", "/v1/accounts/acme/webhooks/" + id, "/v1/accounts/acme/webhooks/" + id + "/deliveries"} {
		got := e.must(200, acme, "GET", path, nil)
		if strings.Contains(string(got.Body), secret) || strings.Contains(string(got.Body), "whsec_") {
			t.Fatalf("GET %s shows the secret: %s", path, got.Body)
		}
	}
	list := e.must(200, acme, "GET", "/v1/accounts/acme/webhooks", nil).json(t)
	if hooks := list["webhooks"].([]any); len(hooks) != 1 || hooks[0].(map[string]any)["id"] != id {
		t.Fatalf("acme's list: %v", list)
	}

	// beta's admin: acme's endpoints are not found, as acme itself is not.
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/accounts/acme/webhooks"}, {"POST", "/v1/accounts/acme/webhooks"},
		{"GET", "/v1/accounts/acme/webhooks/" + id}, {"DELETE", "/v1/accounts/acme/webhooks/" + id},
		{"GET", "/v1/accounts/acme/webhooks/" + id + "/deliveries"},
		{"POST", "/v1/accounts/acme/webhooks/" + id + "/replay"}, {"POST", "/v1/accounts/acme/webhooks/" + id + "/enable"},
		// acme's endpoint under beta's account is not beta's.
		{"GET", "/v1/accounts/beta/webhooks/" + id}, {"DELETE", "/v1/accounts/beta/webhooks/" + id},
	} {
		var body any
		if c.method == "POST" {
			body = map[string]any{"url": publicHook, "from_sequence": 1}
		}
		r := e.do(beta, c.method, c.path, body)
		if r.Status != 404 {
			t.Fatalf("%s %s as beta's admin: %d %s", c.method, c.path, r.Status, r.Body)
		}
	}
	if hooks := e.must(200, beta, "GET", "/v1/accounts/beta/webhooks", nil).json(t)["webhooks"].([]any); len(hooks) != 1 {
		t.Fatalf("beta's list: %v", hooks)
	}
	// Other roles of the account may not manage its endpoints.
	for _, role := range []auth.Role{auth.Auditor, auth.Service, auth.Provisioning} {
		e.must(403, e.mint(role, "acme"), "GET", "/v1/accounts/acme/webhooks", nil)
	}
	e.must(404, e.operator, "GET", "/v1/accounts/nosuch/webhooks", nil)
	e.must(404, acme, "GET", "/v1/accounts/acme/webhooks/wh_00000000000000000000000000", nil)
	e.must(404, acme, "GET", "/v1/accounts/acme/webhooks/..%2Fbeta", nil)

	e.must(200, acme, "POST", "/v1/accounts/acme/webhooks/"+id+"/enable", nil)
	e.must(202, acme, "POST", "/v1/accounts/acme/webhooks/"+id+"/replay", map[string]any{"from_time": "2026-01-01T00:00:00Z"})
	e.must(204, acme, "DELETE", "/v1/accounts/acme/webhooks/"+id, nil)
	e.must(404, acme, "GET", "/v1/accounts/acme/webhooks/"+id, nil)
}

// TestWebhookRefusals checks that bad registrations and replays are
// problems naming the rule, and register nothing.
func TestWebhookRefusals(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 3)
	for _, c := range []struct {
		body any
		rule string
	}{
		{map[string]any{"url": "http://93.184.215.14/x"}, "webhook-url-not-https"},
		{map[string]any{"url": "https://127.0.0.1/x"}, "webhook-url-private-address"},
		{map[string]any{"url": "https://[::1]/x"}, "webhook-url-private-address"},
		{map[string]any{"url": "https://[::ffff:10.0.0.1]/x"}, "webhook-url-private-address"},
		{map[string]any{"url": "https://169.254.169.254/latest"}, "webhook-url-private-address"},
		{map[string]any{"url": "https://localhost:8443/x"}, "webhook-url-private-address"},
		{map[string]any{"url": "not a url"}, "webhook-url-invalid"},
		{map[string]any{"url": publicHook, "event_types": []string{"UserDeactivated"}}, "webhook-event-type-unknown"},
		{map[string]any{"url": publicHook, "secret": "whsec_mine"}, httpapi.ProblemMalformedRequest},
		{map[string]any{}, "webhook-url-invalid"},
	} {
		r := e.must(400, e.operator, "POST", "/v1/accounts/acme/webhooks", c.body)
		p := r.json(t)
		if r.Header.Get("Content-Type") != "application/problem+json" || p["type"] != httpapi.ProblemBase+c.rule || p["detail"] == "" {
			t.Fatalf("%v: %s", c.body, r.Body)
		}
	}
	if hooks := e.must(200, e.operator, "GET", "/v1/accounts/acme/webhooks", nil).json(t)["webhooks"].([]any); len(hooks) != 0 {
		t.Fatalf("refused registrations left %v", hooks)
	}
	id := e.must(201, e.operator, "POST", "/v1/accounts/acme/webhooks", map[string]any{"url": publicHook}).json(t)["id"].(string)
	for _, body := range []any{map[string]any{}, map[string]any{"from_sequence": 3, "from_time": "2026-01-01T00:00:00Z"}, map[string]any{"from": "x"}} {
		e.must(400, e.operator, "POST", "/v1/accounts/acme/webhooks/"+id+"/replay", body)
	}
	e.must(400, e.operator, "GET", "/v1/accounts/acme/webhooks/"+id+"/deliveries?cursor=garbage", nil)
	e.must(400, e.operator, "GET", "/v1/accounts/acme/webhooks/"+id+"/deliveries?limit=0", nil)
}

// TestWebhookListPages registers more endpoints than a page holds and
// walks the list by its cursor.
func TestWebhookListPages(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 3)
	want := map[string]bool{}
	for range 5 {
		want[e.must(201, e.operator, "POST", "/v1/accounts/acme/webhooks", map[string]any{"url": publicHook}).json(t)["id"].(string)] = true
	}
	seen := map[string]bool{}
	cursor, pages := "", 0
	for {
		p := e.must(200, e.operator, "GET", "/v1/accounts/acme/webhooks?limit=2&cursor="+cursor, nil).json(t)
		pages++
		for _, h := range p["webhooks"].([]any) {
			seen[h.(map[string]any)["id"].(string)] = true
		}
		cursor = p["next_cursor"].(string)
		if p["has_more"] != true {
			break
		}
	}
	if pages != 3 || len(seen) != 5 {
		t.Fatalf("%d pages, %d endpoints", pages, len(seen))
	}
	for id := range want {
		if !seen[id] {
			t.Fatalf("%s not listed", id)
		}
	}
}

// TestWebhookRegistrationIdempotent: a registration repeated with its
// Idempotency-Key answers the first endpoint and its secret again and
// registers nothing more; another registration under the key is 422.
func TestWebhookRegistrationIdempotent(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 3)
	body := map[string]any{"url": publicHook, "description": "crm"}
	first := e.must(201, e.operator, "POST", "/v1/accounts/acme/webhooks", body, httpapi.HeaderIdemKey, "reg-1")
	again := e.must(201, e.operator, "POST", "/v1/accounts/acme/webhooks", body, httpapi.HeaderIdemKey, "reg-1")
	if string(first.Body) != string(again.Body) || again.Header.Get(httpapi.HeaderReplayed) != "true" {
		t.Fatalf("first %s\nagain %s (%v)", first.Body, again.Body, again.Header)
	}
	e.must(422, e.operator, "POST", "/v1/accounts/acme/webhooks", map[string]any{"url": publicHook}, httpapi.HeaderIdemKey, "reg-1")
	if hooks := e.must(200, e.operator, "GET", "/v1/accounts/acme/webhooks", nil).json(t)["webhooks"].([]any); len(hooks) != 1 {
		t.Fatalf("%d endpoints registered", len(hooks))
	}
}
