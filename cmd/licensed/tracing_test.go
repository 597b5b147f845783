package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cenats "github.com/cloudevents/sdk-go/protocol/nats/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/nats-io/nats.go"

	"github.com/licenseledger/ledger/internal/telemetry"
)

// A write followed from the HTTP request to the message downstream
// services receive: the request's server span continues the caller's
// trace, the append to the store and the publisher's publish into EVENTS
// are its children, and the published CloudEvent carries the server
// span's context as its distributed tracing extension, so a consumer's
// span joins the same trace. The log line of the request
// carries its X-Request-Id.
func TestWriteFollowedFromRequestToPublishedEvent(t *testing.T) {
	const (
		trace  = "0af7651916cd43dd8448eb211c80319c"
		caller = "b7ad6b7169203331"
	)
	tr, rec := telemetry.NewRecording()
	dir := t.TempDir()
	cfg, err := ParseConfig([]string{"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Tracer = tr
	logs := &syncBuffer{}
	m := NewMain(cfg, slog.New(telemetry.LogHandler(slog.NewJSONHandler(logs, nil))))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		m.Close()
		t.Fatal(err)
	}
	svc := &running{t: t, m: m, base: "http://" + m.HTTPAddr()}
	defer svc.stop()
	svc.waitReady()
	b, _ := os.ReadFile(filepath.Join(dir, "operator.token"))
	op := strings.TrimSpace(string(b))
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 2})

	creds, err := nats.NkeyOptionFromSeed(filepath.Join(dir, "downstream.nk"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(m.NATSURL(), creds)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("ledger.acme.SeatsPurchased")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	rec.Reset()
	req, _ := http.NewRequest("POST", svc.base+"/v1/accounts/acme/seats", strings.NewReader(`{"count":1}`))
	req.Header.Set("Authorization", "Bearer "+op)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+trace+"-"+caller+"-01")
	req.Header.Set("X-Request-Id", "buy-one-seat")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") != "buy-one-seat" {
		t.Fatalf("status %d, X-Request-Id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}

	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := binding.ToEvent(context.Background(), cenats.NewMessage(msg))
	if err != nil {
		t.Fatalf("the CloudEvents NATS binding cannot read %s: %v", msg.Data, err)
	}

	var server, appended telemetry.RecordedSpan
	for _, s := range rec.Spans() {
		switch s.Name {
		case "POST /v1/accounts/{account}/seats":
			server = s
		case "ledger.append":
			appended = s
		}
	}
	if server.TraceID != trace || server.ParentSpanID != caller || server.Kind != "server" {
		t.Fatalf("server span %+v; spans %+v", server, rec.Spans())
	}
	if appended.TraceID != trace || appended.ParentSpanID != server.SpanID || appended.Attributes["ledger.stream"] != "ledger-acme" {
		t.Fatalf("append span %+v, want a child of %s", appended, server.SpanID)
	}
	if got, want := ev.Extensions()["traceparent"], "00-"+trace+"-"+server.SpanID+"-01"; got != want {
		t.Fatalf("published traceparent %v, want %s (extensions %v)", got, want, ev.Extensions())
	}
	// The publisher's span, ended when EVENTS acknowledged the message.
	var publish telemetry.RecordedSpan
	for deadline := time.Now().Add(10 * time.Second); publish.Name == "" && time.Now().Before(deadline); {
		for _, s := range rec.Spans() {
			if s.Name == "publish EVENTS" && s.Attributes["ledger.event_type"] == "SeatsPurchased" {
				publish = s
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if publish.TraceID != trace || publish.ParentSpanID != server.SpanID || publish.Kind != "producer" ||
		publish.Attributes["messaging.destination.name"] != "events.ledger.acme.SeatsPurchased" {
		t.Fatalf("publish span %+v, want a child of the server span %s", publish, server.SpanID)
	}

	// The console's pages carry a request id too.
	for _, path := range []string{"/console/signin", "/console"} {
		creq, _ := http.NewRequest("GET", svc.base+path, nil)
		creq.Header.Set("X-Request-Id", "console-"+strings.TrimPrefix(path, "/console"))
		cresp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(creq)
		if err != nil {
			t.Fatal(err)
		}
		cresp.Body.Close()
		if cresp.Header.Get("X-Request-Id") != creq.Header.Get("X-Request-Id") || cresp.StatusCode >= 400 {
			t.Errorf("%s: status %d, X-Request-Id %q", path, cresp.StatusCode, cresp.Header.Get("X-Request-Id"))
		}
	}

	found := false
	for _, line := range strings.Split(logs.String(), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) != nil || l["msg"] != "request" || l["request_id"] != "buy-one-seat" {
			continue
		}
		found = l["trace_id"] == trace && l["route"] == "POST /v1/accounts/{account}/seats"
	}
	if !found {
		t.Errorf("no request line with request_id buy-one-seat and the trace id:\n%s", logs.String())
	}
}
