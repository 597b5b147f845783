package telemetry_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/telemetry"
)

const (
	traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	parent  = "00-" + traceID + "-00f067aa0ba902b7-01"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestExporting(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want bool
	}{
		{nil, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, false},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, false},
		{map[string]string{"OTEL_SERVICE_NAME": "licensed"}, false},
	} {
		if got := telemetry.Exporting(env(tc.env)); got != tc.want {
			t.Errorf("Exporting(%v) = %v, want %v", tc.env, got, tc.want)
		}
	}
}

// collector counts the OTLP/HTTP trace requests it receives.
func collector(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/v1/traces" && len(b) > 0 {
			n.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, spans reach the collector over
// OTLP/HTTP; without it Setup makes no tracer and nothing is sent.
func TestSetupExportsOnlyWhenAsked(t *testing.T) {
	srv, n := collector(t)
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	off, err := telemetry.Setup(t.Context(), telemetry.Config{ServiceName: "licensed", Getenv: os.Getenv})
	if err != nil || off.Enabled() {
		t.Fatalf("Setup without an endpoint: %v enabled=%v", err, off.Enabled())
	}
	_, s := off.Start(t.Context(), "ledger.append")
	s.End(nil)
	if err := off.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}

	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	on, err := telemetry.Setup(t.Context(), telemetry.Config{ServiceName: "licensed", Getenv: os.Getenv})
	if err != nil || !on.Enabled() {
		t.Fatalf("Setup with an endpoint: %v enabled=%v", err, on.Enabled())
	}
	if n.Load() != 0 {
		t.Fatalf("%d exports before any span with an endpoint, and while off", n.Load())
	}
	_, s = on.Start(t.Context(), "ledger.append")
	s.End(nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := on.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n.Load() == 0 {
		t.Fatal("the span was not exported at shutdown")
	}
}

// A tracer that is off (nil) still carries the trace context a request
// came with: the events it causes record the caller's traceparent.
func TestOffTracerCarriesTraceContext(t *testing.T) {
	var off *telemetry.Tracer
	h := http.Header{}
	h.Set("traceparent", parent)
	h.Set("tracestate", "congo=t61rcWkgMzE")
	ctx, s := off.StartServer(t.Context(), h, "POST")
	s.SetRoute("POST", "/v1/accounts", 201)
	s.End(nil)
	if p, st := telemetry.TraceContext(ctx); p != parent || st != "congo=t61rcWkgMzE" {
		t.Fatalf("TraceContext = %q, %q", p, st)
	}
	for _, bad := range []string{"", "00-" + traceID + "-0000000000000000-01", "garbage"} {
		h.Set("traceparent", bad)
		ctx, _ := off.StartServer(t.Context(), h, "POST")
		if p, st := telemetry.TraceContext(ctx); p != "" || st != "" {
			t.Errorf("traceparent %q: TraceContext = %q, %q, want none", bad, p, st)
		}
	}
}

// One trace from the request through the append to the publish: the
// server span continues the caller's trace, the append is its child, and
// the publish, started from the traceparent the event stored, is a child
// of the server span.
func TestSpansFormOneTrace(t *testing.T) {
	tr, rec := telemetry.NewRecording()
	h := http.Header{}
	h.Set("traceparent", parent)
	h.Set("Authorization", "Bearer ll_secret")
	ctx, srv := tr.StartServer(t.Context(), h, "POST")
	stored, _ := telemetry.TraceContext(ctx)
	actx, app := tr.Start(ctx, "ledger.append", telemetry.String("ledger.stream", "ledger-acme"))
	_ = actx
	app.End(nil)
	srv.SetRoute("POST", "/v1/accounts/{account}/users", 201)
	srv.End(nil)
	_, pub := tr.StartProducer(context.Background(), stored, "", "events publish")
	pub.End(nil)

	spans := rec.Spans()
	if len(spans) != 3 {
		t.Fatalf("%d spans: %+v", len(spans), spans)
	}
	app2, server, publish := spans[0], spans[1], spans[2]
	if server.Name != "POST /v1/accounts/{account}/users" || server.Kind != "server" || server.ParentSpanID != "00f067aa0ba902b7" {
		t.Errorf("server span %+v", server)
	}
	if server.Attributes["http.route"] != "/v1/accounts/{account}/users" || server.Attributes["http.response.status_code"] != "201" {
		t.Errorf("server span attributes %v", server.Attributes)
	}
	if app2.ParentSpanID != server.SpanID || publish.ParentSpanID != server.SpanID || publish.Kind != "producer" {
		t.Errorf("append %+v and publish %+v are not children of the server span %s", app2, publish, server.SpanID)
	}
	for _, s := range spans {
		if s.TraceID != traceID {
			t.Errorf("span %s in trace %s, want the caller's %s", s.Name, s.TraceID, traceID)
		}
		for k, v := range s.Attributes {
			if strings.Contains(v, "ll_secret") || strings.Contains(strings.ToLower(k), "authorization") {
				t.Errorf("span %s holds %s=%s", s.Name, k, v)
			}
		}
	}
	if stored != "00-"+traceID+"-"+server.SpanID+"-01" {
		t.Errorf("stored traceparent %s, want the server span's", stored)
	}
}

func TestServerErrorMarksSpanFailed(t *testing.T) {
	tr, rec := telemetry.NewRecording()
	_, s := tr.StartServer(t.Context(), http.Header{}, "GET")
	s.SetRoute("GET", "/v1/accounts", 503)
	s.End(nil)
	_, s = tr.Start(t.Context(), "ledger.append")
	s.Fail("conflict")
	s.End(io.EOF)
	_, s = tr.Start(t.Context(), "ledger.append")
	s.End(io.EOF)
	spans := rec.Spans()
	if len(spans) != 3 || !spans[0].Failed || spans[0].Attributes["error.type"] != "503" || spans[0].ParentSpanID != "" {
		t.Fatalf("spans %+v", spans)
	}
	if !spans[1].Failed || spans[1].Attributes["error.type"] != "conflict" || spans[2].Attributes["error.type"] != "error" {
		t.Fatalf("failed spans %+v", spans[1:])
	}
}

func TestLogHandlerAddsRequestAndTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	h := telemetry.LogHandler(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil)))
	log := slog.New(h).With("component", "api")
	hdr := http.Header{}
	hdr.Set("traceparent", parent)
	ctx, _ := (*telemetry.Tracer)(nil).StartServer(telemetry.WithRequestID(t.Context(), "req-1"), hdr, "GET")
	log.InfoContext(ctx, "request")
	log.Info("no context")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("log: %s", buf.String())
	}
	if strings.Count(lines[0], `"request_id":"req-1"`) != 1 || strings.Count(lines[0], `"trace_id":"`+traceID+`"`) != 1 {
		t.Errorf("line logged with the request's context: %s", lines[0])
	}
	if strings.Contains(lines[1], "request_id") || strings.Contains(lines[1], "trace_id") {
		t.Errorf("line logged without a context: %s", lines[1])
	}
}
