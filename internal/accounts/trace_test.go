package accounts_test

import (
	"context"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/telemetry"
)

// Every event of a command records the trace context the command was
// given in, and each append is a span of the command's trace.
func TestEventsRecordTraceContext(t *testing.T) {
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := context.Background()
	e := newEnv(t)
	svc := e.service(t)
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 3, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "ada", Name: "Ada", Email: "ada@acme.test", Role: ledger.RoleAdmin, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "cy", Name: "Cy", Email: "cy@acme.test", Role: ledger.RoleMember, At: t0}, admin))

	req := admin
	req.Traceparent, req.Tracestate = parent, "congo=t61rcWkgMzE"
	name, role := "Cy Quill", ledger.RoleAdmin
	res := must(t)(svc.Execute(ctx, "acme", ledger.UpdateUser{UserID: "cy", Name: &name, Role: &role, At: t0}, req))
	if len(res.Events) < 2 {
		t.Fatalf("a change of name and role appended %d events, want two", len(res.Events))
	}
	for _, d := range res.Events {
		m, err := codec.DecodeMetadata(d.Record)
		if err != nil {
			t.Fatal(err)
		}
		if m.Traceparent != parent || m.Tracestate != "congo=t61rcWkgMzE" || d.Meta.Traceparent != parent {
			t.Errorf("%s records %q, %q", d.Meta.Type, m.Traceparent, m.Tracestate)
		}
	}

	bad := admin
	bad.Traceparent = "not a traceparent"
	if _, err := svc.Execute(ctx, "acme", ledger.PurchaseSeats{Count: 1, At: t0}, bad); err == nil {
		t.Error("a command with an invalid traceparent was appended")
	}
}

// Each append is a span, child of the command's, naming the stream, the
// first event's type and the count; a lost race marks it failed as a
// conflict. No personal data is in it.
func TestAppendSpan(t *testing.T) {
	tr, rec := telemetry.NewRecording()
	e := newEnv(t)
	svc := e.serviceOn(t, e.store, func(c *accounts.Config) { c.Tracer = tr })
	other := e.service(t) // another process, untraced
	ctx, parent := tr.Start(context.Background(), "command")
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 3, At: t0}, admin))
	// The other process appends: this one's state is stale and its next
	// append conflicts, then succeeds after catching up.
	must(t)(other.Execute(context.Background(), "acme", ledger.PurchaseSeats{Count: 1, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "ada", Name: "Ada Lovelace", Email: "ada@acme.test", Role: ledger.RoleAdmin, At: t0}, admin))
	parent.End(nil)

	var appends []telemetry.RecordedSpan
	var cmd telemetry.RecordedSpan
	for _, s := range rec.Spans() {
		switch s.Name {
		case "ledger.append":
			appends = append(appends, s)
		case "command":
			cmd = s
		}
	}
	if len(appends) != 3 {
		t.Fatalf("%d append spans, want 3 (one lost to a conflict): %+v", len(appends), appends)
	}
	want := []struct {
		typ    string
		failed bool
	}{{"AccountOpened", false}, {"UserAdded", true}, {"UserAdded", false}}
	for i, s := range appends {
		if s.ParentSpanID != cmd.SpanID || s.TraceID != cmd.TraceID || s.Attributes["ledger.stream"] != "ledger-acme" ||
			s.Attributes["ledger.event_type"] != want[i].typ || s.Failed != want[i].failed || s.Attributes["ledger.events"] != "1" {
			t.Errorf("append span %d: %+v", i, s)
		}
		if want[i].failed && s.Attributes["error.type"] != "conflict" {
			t.Errorf("the lost append is failed as %q", s.Attributes["error.type"])
		}
		if !want[i].failed && s.Attributes["ledger.position"] == "" {
			t.Errorf("append span %d without the position reached", i)
		}
		for k, v := range s.Attributes {
			if strings.Contains(v, "Ada") || strings.Contains(v, "@") {
				t.Errorf("append span holds %s=%s", k, v)
			}
		}
	}
}
