package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/httpapi"
)

// TestOpenAPIMatchesRoutes fails when the router and the OpenAPI document
// disagree on any path or method, and checks every $ref resolves.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	e := newEnv(t)
	var doc struct {
		OpenAPI    string                    `json:"openapi"`
		Paths      map[string]map[string]any `json:"paths"`
		Components map[string]map[string]any `json:"components"`
	}
	body := e.must(200, "", "GET", "/openapi.json", nil).Body
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	var inDoc, inRouter []string
	for path, ops := range doc.Paths {
		for method := range ops {
			inDoc = append(inDoc, strings.ToUpper(method)+" "+path)
		}
	}
	for _, r := range e.api.Routes() {
		inRouter = append(inRouter, r.Method+" "+r.Path)
	}
	slices.Sort(inDoc)
	slices.Sort(inRouter)
	if !slices.Equal(inDoc, inRouter) {
		t.Fatalf("OpenAPI paths differ from routes:\ndocument %v\nrouter   %v", inDoc, inRouter)
	}
	for _, m := range regexp.MustCompile(`"\$ref": "#/components/(\w+)/([\w-]+)"`).FindAllStringSubmatch(string(httpapi.OpenAPI()), -1) {
		if _, ok := doc.Components[m[1]][m[2]]; !ok {
			t.Errorf("dangling $ref %s/%s", m[1], m[2])
		}
	}
}

func TestOperations(t *testing.T) {
	var down atomic.Bool
	e := newEnv(t, options{adjust: func(c *httpapi.Config) {
		c.Ready["store"] = func(context.Context) error {
			if down.Load() {
				return errors.New("store unreachable")
			}
			return nil
		}
	}})
	down.Store(true)
	r := e.must(503, "", "GET", "/readyz", nil)
	if !strings.Contains(string(r.Body), "store unreachable") {
		t.Fatalf("readyz: %s", r.Body)
	}
	down.Store(false)
	e.open("acme", 2)
	e.must(200, "", "GET", "/healthz", nil)
	e.must(200, "", "GET", "/readyz", nil)
	r = e.must(404, "", "GET", "/nowhere", nil)
	if r.json(t)["type"] != httpapi.ProblemBase+"not-found" {
		t.Fatalf("unknown route: %s", r.Body)
	}
	m := string(e.must(200, "", "GET", "/metrics", nil).Body)
	for _, want := range []string{
		`licensed_commands_total{command="OpenAccount",outcome="ok"} 1`,
		`licensed_append_duration_seconds_count 1`,
		`licensed_http_requests_total{route="POST /v1/accounts",status="201"} 1`,
		`# TYPE licensed_projection_lag_positions gauge`,
		`licensed_events_published_total 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q:\n%s", want, m)
		}
	}
}

// TestRevokeToken revokes tokens through the API: a revoked token is
// refused on its next request, a second revocation and an unknown id are
// 404, and the last operator token is refused with 409 until another
// operator token exists.
func TestRevokeToken(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 5)
	r := e.must(201, e.operator, "POST", "/v1/tokens", map[string]string{"role": "service", "account": "acme"})
	id, secret := r.json(t)["id"].(string), r.json(t)["token"].(string)
	e.must(200, secret, "GET", "/v1/accounts/acme", nil)

	del := e.must(204, e.operator, "DELETE", "/v1/tokens/"+id, nil)
	if len(del.Body) != 0 {
		t.Fatalf("204 with a body: %q", del.Body)
	}
	refused := e.must(401, secret, "GET", "/v1/accounts/acme", nil)
	if !strings.HasPrefix(refused.Header.Get("WWW-Authenticate"), "Bearer ") {
		t.Fatalf("401 without a Bearer challenge: %v", refused.Header)
	}
	e.must(404, e.operator, "GET", "/v1/tokens/"+id, nil)
	for _, path := range []string{"/v1/tokens/" + id, "/v1/tokens/tok_nosuch"} {
		if p := e.must(404, e.operator, "DELETE", path, nil).json(t); p["type"] != httpapi.ProblemBase+httpapi.ProblemNotFound {
			t.Fatalf("DELETE %s: problem %v", path, p)
		}
	}

	// The bootstrap operator token is the only one.
	first, err := e.tokens.ByHash(t.Context(), auth.HashSecret(e.operator))
	if err != nil {
		t.Fatal(err)
	}
	last := e.must(409, e.operator, "DELETE", "/v1/tokens/"+first.ID, nil)
	if last.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("409 as %q", last.Header.Get("Content-Type"))
	}
	p := last.json(t)
	if p["type"] != httpapi.ProblemBase+httpapi.ProblemLastOperator ||
		p["detail"] != "the last operator token cannot be revoked: mint another first" {
		t.Fatalf("last operator problem: %v", p)
	}
	e.must(200, e.operator, "GET", "/v1/accounts/acme", nil)

	second := e.must(201, e.operator, "POST", "/v1/tokens", map[string]string{"role": "operator"}).json(t)["token"].(string)
	e.must(204, second, "DELETE", "/v1/tokens/"+first.ID, nil)
	e.must(401, e.operator, "GET", "/v1/accounts/acme", nil)
	e.must(200, second, "GET", "/v1/accounts/acme", nil)
}

// TestOpenAPIEventTypes: the document names every event type of the
// catalogue, and no other.
func TestOpenAPIEventTypes(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas struct {
				EventType struct {
					Enum []string `json:"enum"`
				} `json:"EventType"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(httpapi.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, e := range codec.Events() {
		want = append(want, e.Type)
	}
	if got := doc.Components.Schemas.EventType.Enum; !slices.Equal(got, want) {
		t.Fatalf("OpenAPI event types %v, catalogue %v", got, want)
	}
}
