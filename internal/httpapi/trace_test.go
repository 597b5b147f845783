package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/internal/telemetry"
)

const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
	callerTP    = "00-" + callerTrace + "-" + callerSpan + "-01"
)

// Every answer carries X-Request-Id: the request's own when it sent one
// valid id, a new one otherwise; problem answers and the request's log
// line carry the same id.
func TestRequestID(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 2)

	a := e.must(200, e.operator, "GET", "/v1/accounts/acme", nil)
	b := e.must(200, e.operator, "GET", "/v1/accounts/acme", nil)
	ida, idb := a.Header.Get(httpapi.HeaderRequestID), b.Header.Get(httpapi.HeaderRequestID)
	if !httpapi.ValidRequestID(ida) || !httpapi.ValidRequestID(idb) || ida == idb {
		t.Fatalf("drawn request ids %q and %q", ida, idb)
	}

	for _, id := range []string{"abc-123_DEF", "3f1c2a9e-5b7d-4e8f-9a01-23456789abcd", "Root=1-67891233-abcdef012345678912345678", strings.Repeat("x", 128)} {
		r := e.must(200, e.operator, "GET", "/v1/accounts/acme", nil, httpapi.HeaderRequestID, id)
		if got := r.Header.Get(httpapi.HeaderRequestID); got != id {
			t.Errorf("request id %q answered as %q", id, got)
		}
	}
	for _, id := range []string{strings.Repeat("x", 129), "has space", "a\"b", "é", "a,b", "<script>", "a\tb"} {
		r := e.must(200, e.operator, "GET", "/v1/accounts/acme", nil, httpapi.HeaderRequestID, id)
		if got := r.Header.Get(httpapi.HeaderRequestID); got == id || !httpapi.ValidRequestID(got) {
			t.Errorf("invalid request id %q answered as %q, want a new one", id, got)
		}
	}
	// Two ids: which is meant is ambiguous, so neither.
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/accounts/acme", nil)
	req.Header.Set("Authorization", "Bearer "+e.operator)
	req.Header.Add(httpapi.HeaderRequestID, "one")
	req.Header.Add(httpapi.HeaderRequestID, "two")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(httpapi.HeaderRequestID); got == "one" || got == "two" || !httpapi.ValidRequestID(got) {
		t.Errorf("two request ids answered as %q", got)
	}

	// Problems: unauthenticated, unknown path, method not allowed, a rule.
	for _, p := range []struct {
		token, method, path string
		body                any
		status              int
	}{
		{"", "GET", "/v1/accounts/acme", nil, 401},
		{e.operator, "GET", "/v1/nowhere", nil, 404},
		{e.operator, "PUT", "/v1/accounts/acme/seats", nil, 405},
		{e.operator, "POST", "/v1/accounts/acme/seat-reductions", map[string]any{"count": 99}, 409},
	} {
		r := e.must(p.status, p.token, p.method, p.path, p.body, httpapi.HeaderRequestID, "req-"+p.method)
		if r.Header.Get(httpapi.HeaderRequestID) != "req-"+p.method || r.json(t)["request_id"] != "req-"+p.method {
			t.Errorf("%s %s: header %q, problem %s", p.method, p.path, r.Header.Get(httpapi.HeaderRequestID), r.Body)
		}
	}
	r := e.must(400, e.operator, "GET", "/v1/accounts/acme/users?limit=0", nil)
	if id := r.Header.Get(httpapi.HeaderRequestID); id == "" || r.json(t)["request_id"] != id {
		t.Errorf("drawn id %q, problem %s", id, r.Body)
	}

	// The request's log line.
	found := 0
	sc := bufio.NewScanner(strings.NewReader(e.logs.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		if line["msg"] != "request" {
			continue
		}
		if _, ok := line["request_id"].(string); !ok {
			t.Errorf("request line without request_id: %s", sc.Text())
		}
		if line["request_id"] == "req-POST" {
			found++
		}
	}
	if found != 1 {
		t.Errorf("%d request lines with request_id req-POST, want 1:\n%s", found, e.logs.String())
	}
}

// storedTrace returns the trace context of every event the store holds
// after position from.
func storedTrace(t *testing.T, e *env, from eventstore.Position) (parents, states []string) {
	t.Helper()
	for rec, err := range e.store.ReadAll(context.Background(), from) {
		if err != nil {
			t.Fatal(err)
		}
		m, err := codec.DecodeMetadata(rec)
		if err != nil {
			t.Fatal(err)
		}
		parents, states = append(parents, m.Traceparent), append(states, m.Tracestate)
	}
	return parents, states
}

// Without tracing, the events of a command record the trace context the
// request came with, as it came; an invalid one is not recorded.
func TestTraceparentRecordedInEvents(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 2)
	from := eventstore.Position(e.storeLen())
	e.must(201, e.operator, "POST", "/v1/accounts/acme/users", map[string]string{"name": "Ada Lovelace", "email": "ada@example.org", "role": "admin"},
		"traceparent", callerTP, "tracestate", "congo=t61rcWkgMzE")
	parents, states := storedTrace(t, e, from)
	if len(parents) == 0 {
		t.Fatal("no event appended")
	}
	for i := range parents {
		if parents[i] != callerTP || states[i] != "congo=t61rcWkgMzE" {
			t.Errorf("event %d records %q, %q", i, parents[i], states[i])
		}
	}
	from = eventstore.Position(e.storeLen())
	e.must(200, e.operator, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 1}, "traceparent", "00-"+callerTrace+"-0000000000000000-01")
	e.must(200, e.operator, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 1})
	parents, _ = storedTrace(t, e, from)
	if len(parents) != 2 || parents[0] != "" || parents[1] != "" {
		t.Errorf("commands without a valid trace context record %q", parents)
	}
}

// With tracing, a write is one trace from the caller's span: the server
// span of the route pattern, its append to the store as a child, and the
// events recording the server span's context, which a publisher
// continues. Spans hold no personal data, query value or credential.
func TestOneTraceFromRequestToAppend(t *testing.T) {
	tr, rec := telemetry.NewRecording()
	e := newEnv(t, options{tracer: tr})
	e.open("acme", 2)
	rec.Reset()
	from := eventstore.Position(e.storeLen())
	r := e.must(201, e.operator, "POST", "/v1/accounts/acme/users", map[string]string{"name": "Ada Lovelace", "email": "ada@example.org", "role": "admin"},
		"traceparent", callerTP, httpapi.HeaderRequestID, "req-ada")
	user := r.json(t)["id"].(string)
	e.must(200, e.operator, "GET", "/v1/accounts/acme/audit?user="+user+"&limit=5", nil)

	spans := rec.Spans()
	var server, appended, read telemetry.RecordedSpan
	for _, s := range spans {
		switch s.Name {
		case "POST /v1/accounts/{account}/users":
			server = s
		case "ledger.append":
			appended = s
		case "GET /v1/accounts/{account}/audit":
			read = s
		}
	}
	if server.Kind != "server" || server.TraceID != callerTrace || server.ParentSpanID != callerSpan {
		t.Fatalf("server span %+v, want a server span of the caller's trace; spans %+v", server, spans)
	}
	if server.Attributes["http.route"] != "/v1/accounts/{account}/users" || server.Attributes["http.response.status_code"] != "201" ||
		server.Attributes["http.request.method"] != "POST" || server.Attributes["ledger.account"] != "acme" {
		t.Errorf("server span attributes %v", server.Attributes)
	}
	if appended.TraceID != callerTrace || appended.ParentSpanID != server.SpanID || appended.Attributes["ledger.stream"] != "ledger-acme" ||
		appended.Attributes["ledger.event_type"] != "UserAdded" || appended.Failed {
		t.Errorf("append span %+v, want a child of the server span %s", appended, server.SpanID)
	}
	if read.Kind != "server" || read.TraceID == callerTrace || read.ParentSpanID != "" {
		t.Errorf("a request without trace context: span %+v, want the root of a trace of its own", read)
	}
	parents, _ := storedTrace(t, e, from)
	if len(parents) == 0 {
		t.Fatal("no event appended")
	}
	want := "00-" + callerTrace + "-" + server.SpanID + "-01"
	for i, p := range parents {
		if p != want {
			t.Errorf("event %d records %q, want the server span's %q", i, p, want)
		}
	}
	for _, s := range spans {
		for k, v := range s.Attributes {
			for _, bad := range []string{"Ada", "Lovelace", "ada@", "example.org", e.operator, "ll_", "?", "limit=", user} {
				if strings.Contains(v, bad) {
					t.Errorf("span %s attribute %s=%q holds %q", s.Name, k, v, bad)
				}
			}
			if strings.Contains(k, "header") || strings.HasPrefix(k, "url.") || strings.HasPrefix(k, "client.") {
				t.Errorf("span %s has attribute %s", s.Name, k)
			}
		}
	}
}

// BenchmarkCommandTraceContext is BenchmarkCommand with the caller's
// trace context, recorded in the event, and tracing off or on (spans kept
// in memory, exported nowhere).
func BenchmarkCommandTraceContext(b *testing.B) {
	h := http.Header{"Traceparent": {callerTP}}
	b.Run("tracing=off", func(b *testing.B) { benchCommand(b, newEnv(b), h) })
	b.Run("tracing=on", func(b *testing.B) {
		tr, _ := telemetry.NewRecording()
		benchCommand(b, newEnv(b, options{tracer: tr}), h)
	})
}

// A page served beside the API (the console's) gets a request id as the
// API's answers do, and a request it makes to the API in process with its
// context shares that id, in the API's answer and log line.
func TestWithRequestIDSharedInProcess(t *testing.T) {
	e := newEnv(t)
	var inner string
	page := e.api.WithRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), "GET", "/v1/accounts", nil)
		req.Header.Set("Authorization", "Bearer "+e.operator)
		req.Header.Set(httpapi.HeaderRequestID, "ignored-inner")
		rec := httptest.NewRecorder()
		e.api.ServeHTTP(rec, req)
		inner = rec.Header().Get(httpapi.HeaderRequestID)
	}))
	for _, sent := range []string{"page-1", ""} {
		req := httptest.NewRequest("GET", "/console/accounts", nil)
		if sent != "" {
			req.Header.Set(httpapi.HeaderRequestID, sent)
		}
		rec := httptest.NewRecorder()
		page.ServeHTTP(rec, req)
		got := rec.Header().Get(httpapi.HeaderRequestID)
		if sent != "" && got != sent || !httpapi.ValidRequestID(got) || inner != got {
			t.Errorf("sent %q: page answered %q, the API in process %q", sent, got, inner)
		}
	}
	if !strings.Contains(e.logs.String(), `"request_id":"page-1"`) {
		t.Errorf("the API's log line lacks the page's request id:\n%s", e.logs.String())
	}
}
