package relay_test

import (
	"crypto/rand"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/relay"
	"github.com/licenseledger/ledger/internal/telemetry"
)

// Each publish is a producer span continuing the trace its event's
// metadata records (the request that caused it), from the publish to the
// acknowledgement; the published envelope carries the same trace context
// as its distributed tracing extension. An event stored without one is
// published in a trace of its own.
func TestPublishSpansContinueTheEventsTrace(t *testing.T) {
	const (
		trace  = "4bf92f3577b34da6a3ce929d0e0e4736"
		parent = "00f067aa0ba902b7"
	)
	ctx := testCtx(t)
	srv := startNATS(t)
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	c := codec.New(nil)
	var head codec.Hash
	for i, e := range []ledger.Event{
		ledger.AccountOpened{Account: "acme", Name: "Acme", Seats: 2, At: epoch},
		ledger.SeatsPurchased{Count: 1, At: epoch},
	} {
		meta := codec.Metadata{
			EventID: uuid.New(), Time: epoch, Account: "acme", Actor: codec.Actor{ID: "admin-1", Role: "admin"},
			CorrelationID: ulid.MustNew(ulid.Timestamp(epoch), rand.Reader), CausationID: ulid.MustNew(ulid.Timestamp(epoch), rand.Reader),
			PrevHash: head,
		}
		if i == 0 {
			meta.Traceparent, meta.Tracestate = "00-"+trace+"-"+parent+"-01", "congo=t61rcWkgMzE"
		}
		p, err := c.Encode(ctx, e, meta)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.Append(ctx, eventstore.LedgerStream("acme"), eventstore.ExpectRevisionAfter(uint64(i)), p); err != nil {
			t.Fatal(err)
		}
		head = codec.NextHash(head, p)
	}
	tr, rec := telemetry.NewRecording()
	_, js := connect(t, srv, "relay")
	r := newRelay(t, relay.Config{Source: store, JS: js, Tracer: tr})
	stop := runRelay(ctx, r)
	defer stop()
	d := startDownstream(t, ctx, js, contract.Stream, "svc")
	waitFor(t, ctx, "2 events published", func() bool { return d.count() == 2 && len(rec.Spans()) == 2 })

	msgs, _ := d.snapshot()
	ev, err := eventstore.ParseCloudEvent(msgs[0].Data())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ev.Metadata), `"traceparent":"00-`+trace+`-`+parent+`-01"`) || !strings.Contains(string(ev.Metadata), `"tracestate":"congo=t61rcWkgMzE"`) {
		t.Errorf("published envelope without the stored trace context: %s", msgs[0].Data())
	}
	spans := rec.Spans()
	first, second := spans[0], spans[1]
	if first.Name != "publish EVENTS" || first.Kind != "producer" || first.TraceID != trace || first.ParentSpanID != parent || first.Failed {
		t.Errorf("publish span of the traced event: %+v", first)
	}
	if first.Attributes["messaging.destination.name"] != "events.ledger.acme.AccountOpened" || first.Attributes["messaging.system"] != "nats" ||
		first.Attributes["ledger.event_type"] != "AccountOpened" {
		t.Errorf("publish span attributes %v", first.Attributes)
	}
	if second.TraceID == trace || second.ParentSpanID != "" {
		t.Errorf("publish span of an event without trace context: %+v", second)
	}
}
