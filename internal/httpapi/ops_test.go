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
