package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/licenseledger/ledger/eventstore"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore/eventstoretest"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// newStore starts an embedded server on a random port with its files in a
// temporary directory and opens a store on it.
func newStore(t testing.TB, cfg jetstream.Config) *jetstream.Store {
	t.Helper()
	s, err := jetstream.Embedded(context.Background(), jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// storeStream returns the JetStream stream holding s's events, asked of
// the server through s's connection.
func storeStream(t testing.TB, s *jetstream.Store) natsjs.Stream {
	t.Helper()
	js, err := natsjs.New(s.Conn())
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(t.Context(), jetstream.StreamName(s))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// newServerStore starts a server on its own with the default durability
// (SyncAlways) and opens a store over a connection to it, as on an
// external server: the store coalesces appends into atomic batches (unless
// cfg.MaxBatch is 1) and leaves the syncing to the server. The connection
// is in-process, as [jetstream.Embedded]'s.
func newServerStore(t testing.TB, cfg jetstream.Config) *jetstream.Store {
	t.Helper()
	srv, err := jetstream.StartServer(jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jetstream.StopServer(srv) })
	nc, err := nats.Connect(srv.ClientURL(), nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s, err := jetstream.Open(context.Background(), nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the suite on an embedded server with fsync
// durability: group sync, appends published one by one.
func TestConformance(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store { return newStore(t, jetstream.Config{}) }, eventstoretest.DensePositions())
}

// TestConformanceCoalesced runs the suite on a server that syncs every
// write itself, appends coalesced into atomic batches.
func TestConformanceCoalesced(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store { return newServerStore(t, jetstream.Config{}) }, eventstoretest.DensePositions())
}

func TestConformanceWithoutCoalescing(t *testing.T) {
	if testing.Short() {
		t.Skip("the other stores run the suite already")
	}
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store { return newServerStore(t, jetstream.Config{MaxBatch: 1}) }, eventstoretest.DensePositions())
}

func events(n int) []eventstore.Proposed {
	out := make([]eventstore.Proposed, n)
	for i := range out {
		out[i] = eventstore.Proposed{
			ID:       uuid.New(),
			Type:     "SeatsPurchased",
			Data:     fmt.Appendf(nil, `{"seats":%d}`, i+1),
			Metadata: []byte(`{"time":"2026-01-02T03:04:05.123Z","schemaversion":1}`),
		}
	}
	return out
}

// TestMessages checks what downstream consumers of the stream see: the
// subject, the CloudEvents envelope and the headers.
func TestMessages(t *testing.T) {
	s := newStore(t, jetstream.Config{})
	ctx := t.Context()
	ev := events(1)[0]
	if _, err := s.Append(ctx, eventstore.LedgerStream("acme"), eventstore.NoStream(), ev); err != nil {
		t.Fatal(err)
	}
	act := eventstore.Proposed{ID: uuid.New(), Type: "ActivityRecorded", Data: []byte(`{}`)}
	if _, err := s.Append(ctx, eventstore.ActivityStream("acme"), eventstore.NoStream(), act); err != nil {
		t.Fatal(err)
	}
	js := jsContext(t, s.Conn())
	for i, want := range []struct {
		subject string
		id      string
		body    []byte
	}{
		// Sequenced appends qualify the message id with the stream.
		{"ledger.acme.SeatsPurchased", ev.ID.String() + "@ledger-acme", mustEnvelope(t, eventstore.LedgerStream("acme"), ev)},
		{"activity.acme.ActivityRecorded", act.ID.String() + "@activity-acme", mustEnvelope(t, eventstore.ActivityStream("acme"), act)},
	} {
		m, err := js.GetMsg("LEDGER", uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != want.subject {
			t.Errorf("subject %q, want %q", m.Subject, want.subject)
		}
		// No header a reader does not need (the published stream's
		// messages carry a Content-Type; the store's need none). The
		// server keeps the append's expectation headers.
		for k := range m.Header {
			if k != "Nats-Msg-Id" && k != jetstream.RevisionHeader && !strings.HasPrefix(k, "Nats-Expected-") {
				t.Errorf("header %s: %q", k, m.Header.Get(k))
			}
		}
		if got := m.Header.Get("Nats-Msg-Id"); got != want.id {
			t.Errorf("Nats-Msg-Id %q, want %s", got, want.id)
		}
		if got := m.Header.Get(jetstream.RevisionHeader); got != "0" {
			t.Errorf("revision header %q, want 0", got)
		}
		if string(m.Data) != string(want.body) {
			t.Errorf("body %s\nwant %s", m.Data, want.body)
		}
	}
}

func mustEnvelope(t *testing.T, stream eventstore.StreamID, p eventstore.Proposed) []byte {
	b, err := eventstore.CloudEvent(stream, p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsContext(t *testing.T, nc *nats.Conn) nats.JetStreamManager {
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestTwoStoresOneServer shows that the per-stream check works across
// processes: a second store with a stale view conflicts, then recovers.
func TestTwoStoresOneServer(t *testing.T) {
	a := newStore(t, jetstream.Config{})
	ctx := t.Context()
	b, err := jetstream.Connect(ctx, a.Server().ClientURL(), jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	acme := eventstore.LedgerStream("acme")
	if _, err := a.Append(ctx, acme, eventstore.NoStream(), events(1)...); err != nil {
		t.Fatal(err)
	}
	// b caches the head at revision 0.
	if _, err := b.Append(ctx, acme, eventstore.Exact(0), events(1)...); err != nil {
		t.Fatal(err)
	}
	// a's cache says revision 0; the server knows better.
	if _, err := a.Append(ctx, acme, eventstore.Exact(0), events(1)...); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("stale writer: err = %v, want ErrConflict", err)
	}
	res, err := a.Append(ctx, acme, eventstore.Exact(1), events(2)...)
	if err != nil {
		t.Fatal(err)
	}
	if res.NextRevision != 3 {
		t.Fatalf("NextRevision %d, want 3", res.NextRevision)
	}
	// Any from the stale store b still gets dense revisions.
	res, err = b.Append(ctx, acme, eventstore.Any(), events(1)...)
	if err != nil || res.NextRevision != 4 {
		t.Fatalf("Any from stale store: %+v, %v", res, err)
	}
	var revs []uint64
	for rec, err := range a.ReadStream(ctx, acme, 0) {
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, rec.Revision)
	}
	if fmt.Sprint(revs) != "[0 1 2 3 4]" {
		t.Fatalf("revisions %v", revs)
	}
}

// TestRetryAfterLostAck appends from a second store that never saw the
// first append's acknowledgement, after other writers moved the stream on.
// Both check their stream's expectation: a store with sequenced appends
// qualifies its message ids, which a retry through a store without
// them does not match (an Any retry of a lost append goes through the
// store that lost it: see TestSequencedRetryAfterLostAck).
func TestRetryAfterLostAck(t *testing.T) {
	a := newStore(t, jetstream.Config{PerSubjectChecks: true})
	ctx := t.Context()
	acme := eventstore.LedgerStream("acme")
	first := events(3)
	res1, err := a.Append(ctx, acme, eventstore.NoStream(), first...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, acme, eventstore.Exact(2), events(1)...); err != nil {
		t.Fatal(err)
	}
	b, err := jetstream.Connect(ctx, a.Server().ClientURL(), jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for name, expected := range map[string]eventstore.ExpectedRevision{"NoStream": eventstore.NoStream(), "Any": eventstore.Any()} {
		res, err := b.Append(ctx, acme, expected, first...)
		if err != nil || res != res1 {
			t.Errorf("%s retry: %+v, %v; want %+v", name, res, err, res1)
		}
	}
	if _, err := b.Append(ctx, acme, eventstore.NoStream(), first[1:]...); !errors.Is(err, eventstore.ErrConflict) {
		t.Errorf("retry of part of an append at the wrong place: %v, want ErrConflict", err)
	}
	n := 0
	for _, err := range a.ReadStream(ctx, acme, 0) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 4 {
		t.Fatalf("stream holds %d events, want 4", n)
	}
}

// TestCoalescedConflict races many writers over many streams so appends
// share batches, some with wrong expectations; each must get its own answer.
func TestCoalescedConflict(t *testing.T) {
	s := newServerStore(t, jetstream.Config{MaxBatch: 50})
	ctx := t.Context()
	const accounts, rounds = 40, 5
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := map[eventstore.StreamID]int{}
	for a := range accounts {
		stream := eventstore.LedgerStream(fmt.Sprintf("a%d", a))
		for range 2 { // two writers per stream, racing on each revision
			wg.Go(func() {
				for r := range rounds {
					_, err := s.Append(ctx, stream, eventstore.ExpectRevisionAfter(uint64(r)), events(1)...)
					switch {
					case err == nil:
						mu.Lock()
						wins[stream]++
						mu.Unlock()
					case errors.Is(err, eventstore.ErrConflict):
					default:
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	if batches, _ := jetstream.BatchStats(s); batches == 0 {
		t.Error("no appends were coalesced")
	}
	for a := range accounts {
		stream := eventstore.LedgerStream(fmt.Sprintf("a%d", a))
		n := uint64(0)
		for rec, err := range s.ReadStream(ctx, stream, 0) {
			if err != nil {
				t.Fatal(err)
			}
			if rec.Revision != n {
				t.Fatalf("%s: revision %d at index %d", stream, rec.Revision, n)
			}
			n++
		}
		if n != rounds || wins[stream] != rounds {
			t.Errorf("%s holds %d events, %d wins; want %d", stream, n, wins[stream], rounds)
		}
	}
}

func TestRefusesBadNames(t *testing.T) {
	s := newStore(t, jetstream.Config{})
	ctx := t.Context()
	for _, stream := range []eventstore.StreamID{
		{Category: "other", Account: "acme"},
		eventstore.LedgerStream("a.b"),
		eventstore.LedgerStream("a*"),
		eventstore.LedgerStream(""),
	} {
		if _, err := s.Append(ctx, stream, eventstore.Any(), events(1)...); err == nil {
			t.Errorf("append to %v accepted", stream)
		}
	}
	ev := events(1)
	ev[0].Type = "Seats.Purchased"
	if _, err := s.Append(ctx, eventstore.LedgerStream("acme"), eventstore.Any(), ev...); err == nil {
		t.Error("type with a dot accepted")
	}
	ev[0].Type = "T"
	ev[0].Metadata = []byte(`{"id":"x"}`)
	if _, err := s.Append(ctx, eventstore.LedgerStream("acme"), eventstore.Any(), ev...); !errors.Is(err, eventstore.ErrInvalidCloudEvent) {
		t.Errorf("metadata naming a core attribute: %v", err)
	}
}
