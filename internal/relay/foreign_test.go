package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/esdbtest"
	"github.com/licenseledger/ledger/internal/relay"
)

// rawESDB returns a client of the EventStoreDB double that writes what it
// is given, as any client of the node could.
func rawESDB(t testing.TB, srv *esdbtest.Server) *esdb.Client {
	t.Helper()
	conf, err := esdb.ParseConnectionString(srv.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	conf.Logger = esdb.NoopLogging()
	c, err := esdb.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// writeRaw appends one event to the named stream, whatever it holds, and
// returns its id.
func writeRaw(t testing.TB, ctx context.Context, c *esdb.Client, stream, typ string, ct esdb.ContentType, data, meta []byte) uuid.UUID {
	t.Helper()
	id := uuid.New()
	ev := esdb.EventData{EventID: id, EventType: typ, ContentType: ct, Data: data, Metadata: meta}
	if _, err := c.AppendToStream(ctx, stream, esdb.AppendToStreamOptions{ExpectedRevision: esdb.Any{}}, ev); err != nil {
		t.Fatal(err)
	}
	return id
}

// Records written into an EventStoreDB store by another client are not
// relayed: garbage in an account's ledger stream, a copy of one of its
// events (which does not chain), an event of a stream without an account
// and one whose account cannot be a subject. The relay skips them, counts
// each once, goes on with the events written after them, and a relay
// started later, which meets the stream mid-way, still tells a copy from
// an event.
func TestESDBForeignRecordsSkipped(t *testing.T) {
	ctx := testCtx(t)
	began := time.Now()
	// Where the test's time went, shown if it fails.
	defer func() { t.Logf("the test ran %v", time.Since(began)) }()
	esrv, err := esdbtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(esrv.Close)
	nsrv := startNATS(t)
	wstore := openESDB(t, ctx, esrv)
	t.Cleanup(func() { _ = wstore.Close() })
	h := newHistory(wstore)
	if err := h.account(ctx, "acme", 1); err != nil {
		t.Fatal(err)
	}
	first := records(t, wstore)[0] // acme's AccountOpened

	raw := rawESDB(t, esrv)
	acme := eventstore.LedgerStream("acme")
	foreign := map[string]bool{}
	copyOf := func(rec eventstore.Record) {
		id := writeRaw(t, ctx, raw, rec.Stream.String(), rec.Type, esdb.ContentTypeJson, rec.Data, rec.Metadata)
		foreign[id.String()] = true
		h.revs[rec.Stream]++ // it takes a revision of the stream
	}
	foreign[writeRaw(t, ctx, raw, acme.String(), "SeatsPurchased", esdb.ContentTypeBinary, []byte{0xff, 0, '{'}, []byte("not json")).String()] = true
	h.revs[acme]++
	copyOf(first)
	foreign[writeRaw(t, ctx, raw, "ledger-", first.Type, esdb.ContentTypeJson, first.Data, first.Metadata).String()] = true
	foreign[writeRaw(t, ctx, raw, "ledger-a.b", first.Type, esdb.ContentTypeJson, first.Data, first.Metadata).String()] = true
	if err := h.append(ctx, "acme", ledger.SeatsPurchased{Count: 1, At: epoch}); err != nil {
		t.Fatal(err)
	}

	t.Logf("history and foreign records written after %v", time.Since(began))
	_, djs := connect(t, nsrv, "downstream")
	check := func(r *relay.Relay, skipped uint64) {
		t.Helper()
		recs := records(t, wstore)
		last := recs[len(recs)-1].Position
		waitFor(t, ctx, "every record done with", func() bool { return r.Status().Relayed == last })
		if st := r.Status(); st.Skipped != skipped {
			t.Errorf("relay skipped %d records, want %d", st.Skipped, skipped)
		}
		if n := streamMsgs(t, ctx, djs); n != h.n {
			t.Errorf("the stream holds %d messages, want the %d events", n, h.n)
		}
	}

	src := openESDB(t, ctx, esrv)
	t.Cleanup(func() { _ = src.Close() })
	nc, rjs := connect(t, nsrv, "relay")
	r := newRelay(t, relay.Config{Source: src, JS: rjs})
	stop := runRelay(ctx, r)
	t.Logf("relay started after %v", time.Since(began))
	d := startDownstream(t, ctx, djs, contract.Stream, "svc")
	t.Logf("downstream consumer started after %v", time.Since(began))
	check(r, 4)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	nc.Close()

	// While no relay runs: a copy of acme's last event, then an event.
	recs := records(t, wstore)
	copyOf(recs[len(recs)-1])
	if err := h.append(ctx, "acme", ledger.SeatsPurchased{Count: 2, At: epoch}); err != nil {
		t.Fatal(err)
	}
	_, rjs = connect(t, nsrv, "relay")
	r = newRelay(t, relay.Config{Source: src, JS: rjs})
	stop = runRelay(ctx, r)
	check(r, 1)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	waitFor(t, ctx, "the consumer got every event", func() bool { return d.count() >= int(h.n) })
	msgs, dups := d.snapshot()
	if len(dups) > 0 || len(msgs) != int(h.n) {
		t.Fatalf("consumer got %d messages (duplicates %v), want the %d events", len(msgs), dups, h.n)
	}
	for _, m := range msgs {
		if id := m.Headers().Get(jetstream.MsgIDHeader); foreign[id] {
			t.Fatalf("a foreign record was relayed as %s", m.Subject())
		}
	}
}
