package httpapi_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/httpapi"
)

// Who sends a request of the router's fuzz target.
const (
	anonymous = iota
	asOperator
	asAdmin // an admin of account acme
	asForged
)

// routerInput is one request of the router's fuzz target: the request
// line, one extra header, a body and whose token it carries.
type routerInput struct {
	method, target string
	header, value  string
	body           []byte
	who            uint8
}

// routerHarness is the real API (memory store, read models fed live, real
// tokens) with an account, a user and tokens to aim at.
type routerHarness struct {
	e            *env
	admin, user  string
	requestCount int
	statuses     map[int]int // answers by status
}

func newRouterHarness(tb testing.TB) *routerHarness {
	tb.Helper()
	e := newEnv(tb, options{adjust: func(c *httpapi.Config) { c.WaitTimeout = 100 * time.Millisecond }})
	e.open("acme", 3)
	h := &routerHarness{e: e, admin: e.mint(auth.Admin, "acme"), statuses: map[int]int{}}
	h.user = e.addUser("acme", "Ann", "ann@acme.test", "admin")
	return h
}

// check sends in through the API as the HTTP server would hand it over
// and fails on a panic, a 5xx other than a 503 problem of the read models
// or of contention, an error that is not a problem, or a 405 without
// Allow.
func (h *routerHarness) check(t testing.TB, in routerInput) {
	t.Helper()
	target := strings.NewReplacer("{user}", h.user).Replace(in.target)
	var raw strings.Builder
	raw.WriteString(in.method + " " + target + " HTTP/1.1\r\nHost: ledger.test\r\n")
	switch in.who % 4 {
	case asOperator:
		raw.WriteString("Authorization: Bearer " + h.e.operator + "\r\n")
	case asAdmin:
		raw.WriteString("Authorization: Bearer " + h.admin + "\r\n")
	case asForged:
		raw.WriteString("Authorization: Bearer ll_forged0000000000000000000000000000\r\n")
	}
	if in.header != "" {
		raw.WriteString(in.header + ": " + in.value + "\r\n")
	}
	if len(in.body) > 0 {
		raw.WriteString("Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(in.body)) + "\r\n")
	}
	raw.WriteString("\r\n")
	raw.Write(in.body)
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw.String())))
	if err != nil || !serverAccepts(req) {
		return // the HTTP server answers 400 itself; no handler runs
	}
	h.requestCount++
	rec := httptest.NewRecorder()
	func() {
		defer func() {
			if v := recover(); v != nil {
				t.Fatalf("%s %q: panic %v", in.method, target, v)
			}
		}()
		h.e.api.ServeHTTP(rec, req)
	}()
	desc := in.method + " " + strconv.Quote(target)
	status := rec.Code
	h.statuses[status]++
	ct := rec.Header().Get("Content-Type")
	if status < 400 {
		if ct == "application/json" && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s: %d with invalid JSON %q", desc, status, rec.Body.Bytes())
		}
		return
	}
	if ct != "application/problem+json" {
		t.Fatalf("%s: %d as %q: %q", desc, status, ct, rec.Body.Bytes())
	}
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Rule   string `json:"rule"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatalf("%s: %d with a body that is not a problem: %v: %q", desc, status, err, rec.Body.Bytes())
	}
	if p.Status != status || p.Type != httpapi.ProblemBase+p.Rule || p.Rule == "" || p.Title == "" {
		t.Fatalf("%s: %d with problem %+v", desc, status, p)
	}
	switch {
	case status == http.StatusServiceUnavailable && (p.Rule == httpapi.ProblemNotCaughtUp || p.Rule == httpapi.ProblemNotReady || p.Rule == httpapi.ProblemContention):
	case status >= 500:
		t.Fatalf("%s: %d %s", desc, status, rec.Body.Bytes())
	case status == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "":
		t.Fatalf("%s: 405 without Allow", desc)
	}
}

// serverAccepts applies the checks net/http's server makes after parsing
// a request and before calling the handler.
func serverAccepts(r *http.Request) bool {
	if len(r.Header["Host"]) > 1 {
		return false
	}
	for k, vs := range r.Header {
		if k == "" {
			return false
		}
		for _, v := range vs {
			for i := 0; i < len(v); i++ {
				if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
					return false
				}
			}
		}
	}
	return true
}

// hostileInputs are requests meant to break the router: targets that are
// not UTF-8, NUL bytes, overlong paths, odd methods, huge and broken
// headers, JSON bombs and bodies of the wrong shape, each with and without
// tokens.
func hostileInputs() []routerInput {
	methods := []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "get", "M-SEARCH", strings.Repeat("X", 5000)}
	targets := []string{
		"/", "*", "/v1", "/v1/", "/v1/accounts", "/v1/accounts/", "/v1/accounts/acme",
		"/v1/accounts/%ff", "/v1/accounts/%00", "/v1/accounts/%c0%af", "/v1/accounts/%ed%a0%80", "/v1/accounts/a%2fb",
		"/v1/accounts/acme/users/{user}", "/v1/accounts/acme/users/{user}/deactivate", "/v1/accounts/acme/users/%ff/activate",
		"/v1/accounts/acme/users/{user}?confirm=%ff", "/v1/accounts/acme/users/{user}?confirm={user}&reassign_to=%00",
		"/v1/accounts/" + strings.Repeat("a", 70000), "/v1/accounts/acme/" + strings.Repeat("%ff", 1000),
		"/v1/accounts/acme/../../healthz", "//v1//accounts//acme", "/v1/./accounts/acme", "/v1/accounts/acme;x=1",
		"http://evil.test/v1/accounts/acme", "/v1/accounts/acme?a=1;b=2", "/v1/accounts/acme?%zz", "/v1/accounts/acme?min_position=%ff",
		"/v1/accounts/acme?min_position=18446744073709551615", "/v1/accounts/acme?min_position=-1", "/v1/accounts/acme?min_position=99999999999999999999",
		"/v1/accounts/acme/seats", "/v1/accounts/acme/seat-reductions", "/v1/accounts/acme/users?status=%ff", "/v1/accounts/acme/users?status=zombie",
		"/v1/accounts/acme/activities?limit=-1&after=99999999999999999999", "/v1/accounts/acme/activities/%00",
		"/v1/accounts/acme/audit?since=%ff", "/v1/accounts/acme/audit?since=notatime&until=9999-99-99T99:99:99Z", "/v1/accounts/acme/audit?user=" + strings.Repeat("u", 10000),
		"/v1/accounts/acme/audit/verify", "/v1/accounts/acme/state?as_of=%00", "/v1/accounts/acme/state?as_of=-999999999-01-01T00:00:00Z",
		"/v1/accounts/acme/billing?period=0000-00", "/v1/accounts/acme/billing?period=99999-12", "/v1/accounts/acme/events?format=%00",
		"/v1/quarantine", "/v1/quarantine?limit=%ff", "/v1/quarantine?cursor=%00",
		"/v1/billing", "/v1/billing?period=%ff", "/v1/billing?period=0000-00", "/v1/billing?period=99999-12&cursor=" + strings.Repeat("A", 5000),
		"/v1/billing?period=2026-03&limit=0", "/v1/billing?period=-0001-01", "/v1/quarantine?cursor=" + strings.Repeat("A", 5000),
		"/v1/accounts?cursor=%00", "/v1/accounts?limit=%ff&cursor=AAAA", "/v1/accounts?cursor=" + strings.Repeat("A", 5000), "/v1/accounts?cursor=AQMA_____wE",
		"/v1/accounts/acme/users?cursor=%00&limit=99999999999999999999", "/v1/accounts/acme/users?limit=0", "/v1/accounts/acme/activities?cursor=" + strings.Repeat("A", 5000),
		"/v1/accounts/acme/audit?format=jsonl&limit=1&cursor=x", "/v1/accounts/acme/events?cursor=AAAA", "/v1/accounts/acme/events?limit=-5",
		"/v1/tokens", "/v1/tokens/%ff", "/v1/tokens/" + strings.Repeat("t", 5000), "/healthz", "/readyz", "/metrics", "/openapi.json", "/metrics?x=%ff",
	}
	bomb := strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)
	bodies := []string{
		"", "{", "}", "null", "[]", "0", `"x"`, "\xff", "\x00", "{\"id\":\"\xff\"}", `{"id":"a\u0000b","name":"x","seats":1}`,
		bomb, strings.Repeat(`{"a":`, 20_000) + "1" + strings.Repeat("}", 20_000), `{"name":"` + strings.Repeat("n", 70_000) + `"}`,
		`{"count":1,"count":2}`, `{"count":1e400}`, `{"count":-1}`, `{"count":18446744073709551616}`, `{"seats":1.5}`,
		`{"id":"zz","name":"Z","seats":1}`, `{"name":"Bo","email":"bo@acme.test","role":"member"}`, `{"name":"\ud800","email":"x@y","role":"member"}`,
		`{"user_id":"` + "\xff" + `","kind":"note","ref":"r"}`, `{"role":"operator"}`, `{"role":"admin","account":"%ff"}`, `{"reason":` + strings.Repeat(" ", 1000) + `"x"}`,
	}
	headers := [][2]string{
		{httpapi.HeaderMinPosition, "18446744073709551615"}, {httpapi.HeaderMinPosition, "-1"}, {httpapi.HeaderMinPosition, "\xff"},
		{httpapi.HeaderMinPosition, strings.Repeat("9", 70_000)}, {httpapi.HeaderIdemKey, "\xff\xfe"}, {httpapi.HeaderIdemKey, strings.Repeat("k", 70_000)},
		{httpapi.HeaderIdemKey, "key-1"}, {"If-Match", "\"\xff\""}, {"If-Match", `"99999999999999999999"`}, {"If-Match", `W/"1"`}, {"If-Match", `"`},
		{"Content-Type", "application/json; charset=\xff"}, {"Content-Type", "text/plain"}, {"Content-Type", "application/json; ====="},
		{"Authorization", "Bearer \xff"}, {"Authorization", "Bearer " + strings.Repeat("a", 70_000)}, {"Authorization", "Basic YTpi"}, {"Authorization", "Bearer"},
		{"Accept", "application/x-ndjson"}, {"Content-Length", "99999999999"}, {"Transfer-Encoding", "chunked"}, {"Expect", "100-continue"},
		{"X-\xff", "v"}, {"Host", "other.test"},
	}
	var ins []routerInput
	for _, m := range methods {
		for _, target := range targets {
			for _, who := range []uint8{anonymous, asOperator} {
				ins = append(ins, routerInput{method: m, target: target, who: who})
			}
		}
	}
	reads := []string{"/v1/accounts", "/v1/accounts/acme", "/v1/accounts/acme/audit", "/v1/accounts/acme/events", "/v1/tokens/x"}
	writes := []string{"/v1/accounts", "/v1/accounts/acme/seats", "/v1/accounts/acme/users", "/v1/accounts/acme/users/{user}/deactivate", "/v1/accounts/acme/activities", "/v1/tokens"}
	for _, hv := range headers {
		for _, who := range []uint8{anonymous, asOperator, asAdmin, asForged} {
			for _, path := range reads {
				ins = append(ins, routerInput{method: "GET", target: path, header: hv[0], value: hv[1], who: who})
			}
			for _, path := range writes {
				ins = append(ins, routerInput{method: "POST", target: path, header: hv[0], value: hv[1], body: []byte(`{"count":1}`), who: who})
			}
		}
	}
	for _, b := range bodies {
		for _, who := range []uint8{anonymous, asOperator, asAdmin} {
			for _, path := range writes {
				ins = append(ins, routerInput{method: "POST", target: path, body: []byte(b), who: who})
			}
			ins = append(ins, routerInput{method: "DELETE", target: "/v1/accounts/acme/users/{user}", body: []byte(b), who: who})
		}
	}
	return ins
}

// TestRouterHostileInputs runs the router's fuzz target over the hostile
// inputs, so that every run of the tests tries them, not only fuzzing.
func TestRouterHostileInputs(t *testing.T) {
	h := newRouterHarness(t)
	ins := hostileInputs()
	for _, in := range ins {
		h.check(t, in)
	}
	// Most inputs reach the API: the harness is not testing the parser.
	if h.requestCount < len(ins)*3/4 {
		t.Fatalf("only %d of %d inputs reached the API", h.requestCount, len(ins))
	}
	t.Logf("%d hostile requests, %d reached the API; answers by status: %v", len(ins), h.requestCount, h.statuses)
	if h.statuses[http.StatusOK]+h.statuses[http.StatusCreated] == 0 {
		t.Fatal("no hostile request was served: the harness tests only refusals")
	}
}

// FuzzRouter sends fuzzed requests through the real router: never a panic,
// never a 5xx but a 503 of the read models, every error a problem.
func FuzzRouter(f *testing.F) {
	for i, in := range hostileInputs() {
		if i%7 == 0 { // a sample: the whole list is TestRouterHostileInputs
			f.Add(in.method, in.target, in.header, in.value, in.body, in.who)
		}
	}
	f.Add("GET", "/v1/accounts/acme/users/{user}", "", "", []byte(nil), uint8(asAdmin))
	f.Add("POST", "/v1/accounts/acme/activities", httpapi.HeaderIdemKey, "k1", []byte(`{"user_id":"{user}","kind":"note","ref":"r"}`), uint8(asAdmin))
	h := newRouterHarness(f)
	f.Fuzz(func(t *testing.T, method, target, header, value string, body []byte, who uint8) {
		h.check(t, routerInput{method: method, target: target, header: header, value: value, body: body, who: who})
	})
}
