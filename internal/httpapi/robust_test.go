package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/projections/seats"
)

// TestTargetNotUTF8Is400: a path or query that is not UTF-8 once
// percent-decoded is 400 with a problem, before authentication, on every
// method, and the service keeps serving.
func TestTargetNotUTF8Is400(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 2)
	for _, c := range []struct {
		name, method, path, slug string
	}{
		{"account", "GET", "/v1/accounts/%ff", httpapi.ProblemInvalidPath},
		{"overlong encoding", "GET", "/v1/accounts/acme/users/%c0%af", httpapi.ProblemInvalidPath},
		{"cut sequence", "POST", "/v1/accounts/acme/users/%e2%82/deactivate", httpapi.ProblemInvalidPath},
		{"unknown route", "GET", "/nowhere/%fe", httpapi.ProblemInvalidPath},
		{"wrong method", "PUT", "/v1/accounts/%ff", httpapi.ProblemInvalidPath},
		{"token id", "DELETE", "/v1/tokens/%ff", httpapi.ProblemInvalidPath},
		{"query value", "GET", "/v1/accounts/acme/users?status=%ff", httpapi.ProblemInvalidQuery},
		{"query name", "GET", "/v1/accounts/acme/audit?%ff=1", httpapi.ProblemInvalidQuery},
		{"bad escape", "GET", "/v1/accounts/acme/audit?user=%zz", httpapi.ProblemInvalidQuery},
	} {
		for _, token := range []string{"", e.operator} {
			r := e.must(400, token, c.method, c.path, nil)
			if r.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%s: %s %s: content type %q", c.name, c.method, c.path, r.Header.Get("Content-Type"))
			}
			p := r.json(t)
			if p["type"] != httpapi.ProblemBase+c.slug || p["status"] != float64(400) {
				t.Fatalf("%s: %s %s: problem %v", c.name, c.method, c.path, p)
			}
			// The instance is the path as sent, percent-encoded.
			if in, _ := p["instance"].(string); in == "" || !strings.HasPrefix(strings.ToLower(c.path), strings.ToLower(in)) {
				t.Fatalf("%s: %s %s: instance %q", c.name, c.method, c.path, in)
			}
		}
	}
	e.must(200, e.operator, "GET", "/v1/accounts/acme", nil)
}

// TestWrongMethodIs405: a method a known path does not take is 405 with
// Allow listing the methods it takes, as a problem; an unknown path stays
// 404.
func TestWrongMethodIs405(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 2)
	u := e.addUser("acme", "Ann", "ann@acme.test", "admin")
	for _, c := range []struct {
		method, path, allow string
	}{
		{"PUT", "/v1/accounts/acme", "GET, HEAD"},
		{"DELETE", "/v1/accounts", "GET, HEAD, POST"},
		{"POST", "/v1/accounts/acme/users/" + u, "DELETE, GET, HEAD, PATCH"},
		{"GET", "/v1/accounts/acme/users/" + u + "/deactivate", "POST"},
		{"PATCH", "/v1/accounts/acme/seats", "GET, HEAD, POST"},
		{"POST", "/healthz", "GET, HEAD"},
		{"OPTIONS", "/v1/tokens", "POST"},
	} {
		for _, token := range []string{"", e.operator} {
			r := e.must(405, token, c.method, c.path, nil)
			if got := r.Header.Get("Allow"); got != c.allow {
				t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
			}
			if r.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s %s: content type %q", c.method, c.path, r.Header.Get("Content-Type"))
			}
			if p := r.json(t); p["type"] != httpapi.ProblemBase+httpapi.ProblemMethodNotAllowed || p["status"] != float64(405) {
				t.Errorf("%s %s: problem %v", c.method, c.path, p)
			}
		}
	}
	for _, path := range []string{"/v1/nowhere", "/v1/accounts/acme/users/" + u + "/x", "/"} {
		r := e.must(404, e.operator, "GET", path, nil)
		if r.Header.Get("Allow") != "" || r.json(t)["type"] != httpapi.ProblemBase+httpapi.ProblemNotFound {
			t.Errorf("GET %s: %v %s", path, r.Header, r.Body)
		}
	}
	m := string(e.must(200, "", "GET", "/metrics", nil).Body)
	if !strings.Contains(m, `licensed_http_requests_total{route="unmatched",status="405"} 14`) {
		t.Errorf("405s not counted as unmatched:\n%s", m)
	}
}

// TestUnreachableMinPositionIs400: a min position above the store's last
// position is refused at once with 400, in the query or the header; one
// the store holds but the read models have not applied still waits.
func TestUnreachableMinPositionIs400(t *testing.T) {
	e := newEnv(t, options{noFeed: true, adjust: func(c *httpapi.Config) { c.WaitTimeout, c.NoWriteWait = 2*time.Second, true }})
	w := e.must(201, e.operator, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 1})
	last, err := strconv.ParseUint(w.Header.Get("Ledger-Position"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	for _, pos := range []string{"18446744073709551615", strconv.FormatUint(last+1, 10), strconv.FormatUint(last+1000, 10)} {
		for _, where := range []string{"query", "header"} {
			path, headers := "/v1/accounts/acme", []string{}
			if where == "query" {
				path += "?min_position=" + pos
			} else {
				headers = []string{httpapi.HeaderMinPosition, pos}
			}
			// Refused at once: the old answer was 503 after the wait timeout.
			r := e.must(400, e.operator, "GET", path, nil, headers...)
			p := r.json(t)
			if p["type"] != httpapi.ProblemBase+httpapi.ProblemUnreachable || !strings.Contains(p["detail"].(string), pos) {
				t.Fatalf("min position %s in the %s: %v", pos, where, p)
			}
		}
	}
	for _, bad := range []string{"-1", "1e3", "abc", "18446744073709551616", "0x1", "1 2", strings.Repeat("9", 1000)} {
		r := e.must(400, e.operator, "GET", "/v1/accounts/acme", nil, httpapi.HeaderMinPosition, bad)
		if p := r.json(t); p["type"] != httpapi.ProblemBase+httpapi.ProblemMalformedRequest || len(p["detail"].(string)) > 200 {
			t.Fatalf("min position %q: %v", bad, p)
		}
	}
	// The store holds last: a read asking for it waits for the read models.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	req := e.request(ctx, e.operator, "GET", "/v1/accounts/acme?min_position="+strconv.FormatUint(last, 10))
	if resp, err := e.srv.Client().Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a reachable min position answered %d before the read models applied it", resp.StatusCode)
	}
}

func (e *env) request(ctx context.Context, token, method, path string) *http.Request {
	e.t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return req
}

// panicky is a seat reader that panics on account "boom".
type panicky struct{ httpapi.SeatReader }

func (p panicky) Usage(account string, now time.Time) (seats.Usage, error) {
	if account == "boom" {
		var m map[string]int
		m["x"]++ // a nil map write: a real runtime panic
	}
	return p.SeatReader.Usage(account, now)
}

// TestPanicIsRecovered: a panic in a handler answers 500 with a problem,
// is logged once with its stack and counted, and the service keeps
// serving.
func TestPanicIsRecovered(t *testing.T) {
	e := newEnv(t, options{adjust: func(c *httpapi.Config) { c.Seats = panicky{c.Seats} }})
	e.open("acme", 2)
	r := e.must(500, e.operator, "GET", "/v1/accounts/boom", nil)
	if r.Header.Get("Content-Type") != "application/problem+json" || r.Header.Get("ETag") != "" {
		t.Fatalf("500 headers: %v", r.Header)
	}
	if p := r.json(t); p["type"] != httpapi.ProblemBase+httpapi.ProblemInternal || strings.Contains(string(r.Body), "nil map") {
		t.Fatalf("500 body: %s", r.Body)
	}
	logs := e.logs.String()
	if strings.Count(logs, "panic while answering") != 1 || !strings.Contains(logs, "assignment to entry in nil map") ||
		!strings.Contains(logs, "robust_test.go") {
		t.Fatalf("panic not logged once with its stack:\n%s", logs)
	}
	e.must(200, e.operator, "GET", "/v1/accounts/acme", nil)
	if m := string(e.must(200, "", "GET", "/metrics", nil).Body); !strings.Contains(m, "licensed_http_panics_total 1\n") {
		t.Fatalf("panic not counted:\n%s", m)
	}
}

// explosive runs commands, but panics on account "boom".
type explosive struct{ httpapi.Commands }

func (x explosive) Execute(ctx context.Context, account string, cmd ledger.Command, req accounts.Request) (accounts.Result, error) {
	if account == "boom" {
		panic("boom")
	}
	return x.Commands.Execute(ctx, account, cmd, req)
}

// TestPanicReleasesIdempotencyKey: a keyed write that panics answers 500
// and releases its key: a retry is decided again rather than waiting for
// an answer that never comes.
func TestPanicReleasesIdempotencyKey(t *testing.T) {
	e := newEnv(t, options{adjust: func(c *httpapi.Config) { c.Commands = explosive{c.Commands} }})
	for range 2 {
		// A retry that waited for the first would hang until the client
		// gives up; a minute is far beyond any answer.
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		req := e.request(ctx, e.operator, "POST", "/v1/accounts/boom/seats")
		req.Body = io.NopCloser(strings.NewReader(`{"count":1}`))
		req.Header.Set(httpapi.HeaderIdemKey, "k-1")
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatalf("keyed write after a panic: %v", err)
		}
		resp.Body.Close()
		cancel()
		if resp.StatusCode != http.StatusInternalServerError {
			t.Fatalf("keyed write that panics: %d", resp.StatusCode)
		}
	}
}

// TestRequestWithoutBody: a request handed to the API in process may have
// no body at all (a nil Body, which a server never passes); a write then
// reads as an empty body, refused as such, not a recovered panic.
func TestRequestWithoutBody(t *testing.T) {
	e := newEnv(t)
	req, err := http.NewRequest("POST", "/v1/accounts", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e.operator)
	req.Header.Set("Content-Type", "application/json")
	if req.Body != nil {
		t.Fatal("control: the request has a body")
	}
	rec := httptest.NewRecorder()
	e.api.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Fatalf("POST without a body answered %d, want 400: %s", rec.Code, rec.Body)
	}
}

// TestUnmatchedAnswers: what the mux answers itself for a request no
// route takes goes out as the API's answer: 404 and 405 as problems
// without the mux's plain-text headers, a redirect to the cleaned path as
// it is, "*" as a redirect too; none reaching a route's handler.
func TestUnmatchedAnswers(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 2)
	serve := func(method, target string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, target, nil)
		req.Header.Set("Authorization", "Bearer "+e.operator)
		rec := httptest.NewRecorder()
		e.api.ServeHTTP(rec, req)
		if rec.Header().Get(httpapi.HeaderRequestID) == "" {
			t.Errorf("%s %s: no request id", method, target)
		}
		return rec
	}
	for _, c := range []struct {
		method, target string
		status         int
		location       string
	}{
		{"GET", "/v1//accounts/acme", http.StatusTemporaryRedirect, "/v1/accounts/acme"},
		{"GET", "/v1/accounts/acme/../acme/seats?x=1", http.StatusTemporaryRedirect, "/v1/accounts/acme/seats?x=1"},
		{"GET", "/v1/./nowhere", http.StatusTemporaryRedirect, "/v1/nowhere"},
		{"OPTIONS", "*", http.StatusTemporaryRedirect, "/%2A"},
	} {
		rec := serve(c.method, c.target)
		if rec.Code != c.status || rec.Header().Get("Location") != c.location {
			t.Errorf("%s %s: %d to %q, want %d to %q", c.method, c.target, rec.Code, rec.Header().Get("Location"), c.status, c.location)
		}
	}
	for _, c := range []struct {
		method, target string
		status         int
	}{
		{"GET", "/v1/nowhere", http.StatusNotFound},
		{"PUT", "/v1/accounts/acme", http.StatusMethodNotAllowed},
	} {
		rec := serve(c.method, c.target)
		if rec.Code != c.status || rec.Header().Get("Content-Type") != "application/problem+json" ||
			rec.Header().Get("X-Content-Type-Options") != "" {
			t.Errorf("%s %s: %d %v %s", c.method, c.target, rec.Code, rec.Header(), rec.Body)
		}
	}
	m := string(e.must(200, "", "GET", "/metrics", nil).Body)
	// A redirect to a path a route takes counts under that route.
	for _, want := range []string{`route="unmatched",status="307"} 2`, `route="GET /v1/accounts/{account}",status="307"} 1`,
		`route="GET /v1/accounts/{account}/seats",status="307"} 1`,
		`route="unmatched",status="404"} 1`, `route="unmatched",status="405"} 1`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics without %s:\n%s", want, m)
		}
	}
}
