package relay_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	storejs "github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/relay"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// runRelay runs r until the returned stop is called, which returns Run's
// error.
func runRelay(ctx context.Context, r *relay.Relay) (stop func() error) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return sync.OnceValue(func() error {
		cancel()
		return <-done
	})
}

func newRelay(t testing.TB, cfg relay.Config) *relay.Relay {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// checkMessage checks that m is the published message of rec: its
// subject, the envelope of contract v2, and the headers: Content-Type, the
// event id, the position, and none of the store's internal headers.
func checkMessage(t *testing.T, rec eventstore.Record, subj string, h nats.Header, body []byte) {
	t.Helper()
	if want := contract.Subject(rec.Stream, rec.Type); subj != want || relay.Subject(rec.Stream, rec.Type) != want {
		t.Errorf("event at %d on subject %q, want %q", rec.Position, subj, want)
	}
	want, err := contract.Envelope(rec, "")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, want) {
		t.Errorf("event at %d: body\n%s\nwant\n%s", rec.Position, body, want)
	}
	var ce cloudevents.Event
	if err := ce.UnmarshalJSON(body); err != nil {
		t.Errorf("event at %d: %v", rec.Position, err)
	} else if ce.ID() != rec.ID.String() || !strings.HasPrefix(ce.Type(), contract.TypePrefix) || ce.Source() != contract.Source(rec.Stream.Account) {
		t.Errorf("event at %d: envelope id %s type %s source %s", rec.Position, ce.ID(), ce.Type(), ce.Source())
	}
	if bytes.Contains(body, []byte("idempotencykey")) || bytes.Contains(body, []byte("commandfingerprint")) {
		t.Errorf("event at %d: the client's idempotency key is published: %s", rec.Position, body)
	}
	for name, want := range map[string]string{
		"Content-Type":         contract.ContentType,
		jetstream.MsgIDHeader:  rec.ID.String(),
		relay.PositionHeader:   strconv.FormatUint(uint64(rec.Position), 10),
		storejs.RevisionHeader: "",
		storejs.MetadataHeader: "",
		"Ce-Id":                "",
		"Nats-Expected-Stream": "",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("event at %d: header %s = %q, want %q", rec.Position, name, got, want)
		}
	}
}

// TestEveryEventOnceInOrder relays a store's history while it grows and
// checks what two downstream services see: a core subscription and a
// durable consumer, each on its own connection.
func TestEveryEventOnceInOrder(t *testing.T) {
	ctx := testCtx(t)
	srv := startNATS(t)
	store, h := filledStore(t, 20, 2) // 20 * (2 + 2*4) = 200 events
	nc, js := connect(t, srv, "downstream")
	core := make(chan *nats.Msg, 1000)
	for _, subj := range []string{"events.ledger.>", "events.activity.>"} {
		sub, err := nc.ChanSubscribe(subj, core)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	_, rjs := connect(t, srv, "relay")
	var published atomic.Int64
	var lastPublished atomic.Uint64
	r := newRelay(t, relay.Config{
		Source: store, JS: rjs,
		OnPublished: func(p eventstore.Position) {
			if uint64(p) <= lastPublished.Swap(uint64(p)) {
				t.Errorf("OnPublished(%d) after %d", p, lastPublished.Load())
			}
			published.Add(1)
		},
		Head: func(context.Context) (eventstore.Position, error) {
			recs := records(t, store)
			return recs[len(recs)-1].Position, nil
		},
	})
	stop := runRelay(ctx, r)
	defer stop()
	d := startDownstream(t, ctx, js, contract.Stream, "svc")

	// The store keeps growing while the relay runs: it follows live.
	for a := range 5 {
		if err := h.account(ctx, "live"+strconv.Itoa(a), 1); err != nil {
			t.Fatal(err)
		}
	}
	recs := records(t, store)
	waitFor(t, ctx, "every event relayed", func() bool {
		return d.count() >= len(recs) && r.Status().Relayed == recs[len(recs)-1].Position
	})
	lag, err := r.Lag(ctx)
	if err != nil || lag.Behind != 0 || lag.Relayed != recs[len(recs)-1].Position {
		t.Errorf("Lag = %+v, %v; want nothing behind at %d", lag, err, recs[len(recs)-1].Position)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := published.Load(); got != int64(len(recs)) {
		t.Errorf("OnPublished called %d times, want %d", got, len(recs))
	}

	msgs, dups := d.snapshot()
	if len(dups) > 0 || len(msgs) != len(recs) {
		t.Fatalf("durable consumer got %d messages (duplicates %v), want %d", len(msgs), dups, len(recs))
	}
	for i, m := range msgs {
		checkMessage(t, recs[i], m.Subject(), m.Headers(), m.Data())
		md, err := m.Metadata()
		if err != nil || md.Sequence.Stream != uint64(i+1) {
			t.Errorf("message %d at stream sequence %v, %v", i, md, err)
		}
	}
	// The core subscription saw the same, in the same order.
	for i, rec := range recs {
		select {
		case m := <-core:
			checkMessage(t, rec, m.Subject, m.Header, m.Data)
		case <-ctx.Done():
			t.Fatalf("core subscription got %d of %d events", i, len(recs))
		}
	}
	select {
	case m := <-core:
		t.Errorf("core subscription got an extra message %s", m.Header.Get(jetstream.MsgIDHeader))
	default:
	}
	// Personal data never appears in a published message.
	for _, m := range msgs {
		for _, name := range h.names {
			if bytes.Contains(m.Data(), []byte(name)) {
				t.Fatalf("message %s holds personal data in plaintext", m.Headers().Get(jetstream.MsgIDHeader))
			}
		}
	}
}

// TestSameMessagesFromEveryStore appends the same events to the JetStream
// store and to a memory store and publishes both: subscribers get the same
// subjects, bodies and headers (but the position, the store's own) from
// either, on a stream with the same configuration.
func TestSameMessagesFromEveryStore(t *testing.T) {
	ctx := testCtx(t)
	js1, err := storejs.Embedded(ctx, storejs.ServerConfig{DataDir: t.TempDir(), Port: -1, Durability: storejs.DurabilityInterval}, storejs.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js1.Close() })
	src := memory.New()
	t.Cleanup(func() { _ = src.Close() })
	both := newHistory(multiStore{src, js1})
	if err := both.account(ctx, "acme", 2); err != nil {
		t.Fatal(err)
	}

	// The JetStream store publishes into EVENTS on its own server.
	njs, err := jetstream.New(js1.Conn())
	if err != nil {
		t.Fatal(err)
	}
	rn := newRelay(t, relay.Config{Source: js1, JS: njs})
	stopN := runRelay(ctx, rn)
	// The memory store publishes into EVENTS on another.
	srv := startNATS(t)
	_, rjs := connect(t, srv, "relay")
	rm := newRelay(t, relay.Config{Source: src, JS: rjs})
	stopM := runRelay(ctx, rm)

	recs := records(t, src)
	nrecs := records(t, js1)
	waitFor(t, ctx, "every event relayed", func() bool {
		return rm.Status().Relayed == recs[len(recs)-1].Position && rn.Status().Relayed == nrecs[len(nrecs)-1].Position
	})
	for _, stop := range []func() error{stopN, stopM} {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	mst, err := rjs.Stream(ctx, contract.Stream)
	if err != nil {
		t.Fatal(err)
	}
	nst, err := njs.Stream(ctx, contract.Stream)
	if err != nil {
		t.Fatal(err)
	}
	mi, err := mst.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ni, err := nst.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if mi.State.Msgs != uint64(len(recs)) || ni.State.Msgs != uint64(len(recs)) {
		t.Fatalf("streams hold %d and %d messages, want %d", mi.State.Msgs, ni.State.Msgs, len(recs))
	}
	if !slices.Equal(mi.Config.Subjects, ni.Config.Subjects) || mi.Config.Duplicates != ni.Config.Duplicates {
		t.Errorf("stream configs differ: %+v and %+v", mi.Config, ni.Config)
	}
	for i := range recs {
		m, err := mst.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		n, err := nst.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		checkMessage(t, recs[i], m.Subject, m.Header, m.Data)
		checkMessage(t, nrecs[i], n.Subject, n.Header, n.Data)
		if m.Subject != n.Subject || !bytes.Equal(m.Data, n.Data) {
			t.Errorf("message %d: from memory %s %s, from JetStream %s %s", i+1, m.Subject, m.Data, n.Subject, n.Data)
		}
	}
}

// multiStore appends to several stores, returning the first one's result.
type multiStore []eventstore.Store

func (m multiStore) Append(ctx context.Context, s eventstore.StreamID, e eventstore.ExpectedRevision, evs ...eventstore.Proposed) (eventstore.AppendResult, error) {
	var first eventstore.AppendResult
	for i, st := range m {
		res, err := st.Append(ctx, s, e, evs...)
		if err != nil {
			return res, err
		}
		if i == 0 {
			first = res
		}
	}
	return first, nil
}

// TestRestartsExactlyOnce stops the relay at random points (its context
// cancelled, a publish failing, an acknowledgement lost) while the store
// grows, and starts a new one on a new connection each time: the durable
// consumer sees every event exactly once, in order.
func TestRestartsExactlyOnce(t *testing.T) {
	ctx := testCtx(t)
	srv := startNATS(t)
	store, h := filledStore(t, 30, 2) // 300 events to start with
	_, djs := connect(t, srv, "downstream")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))

	var d *downstream
	var faults, resyncs uint64
	for round := range 8 {
		_, rjs := connect(t, srv, "relay")
		js := jetstream.JetStream(rjs)
		switch round % 3 {
		case 1:
			js = &flakyJS{JetStream: rjs, failAfter: int64(rng.IntN(60))}
		case 2:
			js = &flakyJS{JetStream: rjs, failAfter: int64(rng.IntN(60)), lostAck: true}
		}
		r := newRelay(t, relay.Config{Source: store, JS: js, MaxInFlight: 1 + rng.IntN(64), AckTimeout: 2 * time.Second})
		before := r.Status()
		stop := runRelay(ctx, r)
		if d == nil {
			d = startDownstream(t, ctx, djs, contract.Stream, "svc")
		}
		// More events arrive while the relay runs.
		if err := h.account(ctx, "r"+strconv.Itoa(round), 1+rng.IntN(3)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		if f, ok := js.(*flakyJS); ok && f.fired.Load() {
			// Let the relay notice its fault before it is stopped.
			waitFor(t, ctx, "the relay resuming after its fault", func() bool { return r.Status().Resyncs > 0 })
		}
		if err := stop(); err != nil {
			t.Fatalf("round %d: Run: %v", round, err)
		}
		st := r.Status()
		if round > 0 && st.Received < before.Received {
			t.Fatalf("round %d went backwards: %+v", round, st)
		}
		if f, ok := js.(*flakyJS); ok && f.fired.Load() {
			// A round stopped right after its fault ends without resuming.
			faults++
			resyncs += st.Resyncs
		}
	}
	if faults > 1 && resyncs == 0 {
		t.Errorf("%d publishes failed and the relay never resumed from its checkpoint", faults)
	}
	// A last relay runs to the end.
	_, rjs := connect(t, srv, "relay")
	r := newRelay(t, relay.Config{Source: store, JS: rjs})
	stop := runRelay(ctx, r)
	recs := records(t, store)
	waitFor(t, ctx, "every event relayed", func() bool { return d.count() >= len(recs) })
	time.Sleep(50 * time.Millisecond) // let a duplicate show if there is one
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	msgs, dups := d.snapshot()
	if len(dups) > 0 {
		t.Fatalf("duplicates delivered: %v", dups)
	}
	if len(msgs) != len(recs) {
		t.Fatalf("consumer got %d events, store holds %d", len(msgs), len(recs))
	}
	for i, m := range msgs {
		if got := m.Headers().Get(jetstream.MsgIDHeader); got != recs[i].ID.String() {
			t.Fatalf("message %d is event %s, want %s (position %d)", i, got, recs[i].ID, recs[i].Position)
		}
	}
}

// TestCheckpointAndDeduplication shows that a restarted relay resumes
// after the last message of the stream (it publishes nothing again), and
// that a message re-sent within the duplicate window is dropped by the
// server even without the relay's checkpoint.
func TestCheckpointAndDeduplication(t *testing.T) {
	ctx := testCtx(t)
	srv := startNATS(t)
	store, h := filledStore(t, 5, 1)
	_, rjs := connect(t, srv, "relay")
	r1 := newRelay(t, relay.Config{Source: store, JS: rjs})
	stop := runRelay(ctx, r1)
	recs := records(t, store)
	waitFor(t, ctx, "first run", func() bool { return r1.Status().Relayed == recs[len(recs)-1].Position })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Restart: nothing is published again, only what is new.
	if err := h.account(ctx, "late", 1); err != nil {
		t.Fatal(err)
	}
	all := records(t, store)
	var counted atomic.Int64
	r2 := newRelay(t, relay.Config{Source: store, JS: rjs, OnPublished: func(eventstore.Position) { counted.Add(1) }})
	stop = runRelay(ctx, r2)
	waitFor(t, ctx, "second run", func() bool { return r2.Status().Relayed == all[len(all)-1].Position })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := counted.Load(), int64(len(all)-len(recs)); got != want {
		t.Errorf("restarted relay published %d events, want only the %d new ones", got, want)
	}
	st, err := rjs.Stream(ctx, contract.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs != uint64(len(all)) {
		t.Fatalf("stream holds %d messages, %v; want %d", info.State.Msgs, err, len(all))
	}

	// A re-send of a relayed message (as a relay without checkpoint would
	// do) within the window is dropped.
	_, other := connect(t, srv, "resender")
	m, err := st.GetMsg(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	again := nats.NewMsg(m.Subject)
	again.Data = m.Data
	for k, v := range m.Header {
		if k != jetstream.ExpectedLastSeqHeader && k != jetstream.ExpectedLastMsgIDHeader {
			again.Header[k] = v
		}
	}
	ack, err := other.PublishMsg(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if !ack.Duplicate || ack.Sequence != 3 {
		t.Errorf("re-send acknowledged as %+v, want a duplicate of sequence 3", ack)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != uint64(len(all)) {
		t.Errorf("after the re-send the stream holds %d messages, %v; want %d", info.State.Msgs, err, len(all))
	}
	// A stale relay's publish (expecting an older end of the stream) is
	// refused, so it cannot append behind another one.
	stale := nats.NewMsg(m.Subject)
	stale.Data = m.Data
	stale.Header.Set(jetstream.MsgIDHeader, uuid.NewString())
	stale.Header.Set(jetstream.ExpectedLastSeqHeader, "3")
	var apiErr *jetstream.APIError
	if _, err := other.PublishMsg(ctx, stale); !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
		t.Errorf("publish expecting sequence 3 of %d: %v, want wrong last sequence", len(all), err)
	}
}

// TestForeignStream refuses to relay into a stream whose last message a
// relay did not write.
func TestForeignStream(t *testing.T) {
	ctx := testCtx(t)
	srv := startNATS(t)
	store, _ := filledStore(t, 1, 1)
	_, js := connect(t, srv, "relay")
	r := newRelay(t, relay.Config{Source: store, JS: js})
	if _, err := js.CreateOrUpdateStream(ctx, r.StreamConfig()); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "events.ledger.acme.AccountOpened", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx); !errors.Is(err, relay.ErrForeignMessage) {
		t.Errorf("Run on a foreign stream: %v, want ErrForeignMessage", err)
	}
}

// TestUnpublishableSkipped skips an event that cannot be a message, the
// service never writes one, and goes on with the next.
func TestUnpublishableSkipped(t *testing.T) {
	ctx := testCtx(t)
	srv := startNATS(t)
	store := memory.New()
	t.Cleanup(func() { _ = store.Close() })
	h := newHistory(store)
	if err := h.append(ctx, "acme", ledger.AccountOpened{Account: "acme", Name: "Acme", Seats: 1, At: epoch}); err != nil {
		t.Fatal(err)
	}
	// First of its stream and chained (no previous hash), but its type
	// cannot be a subject token.
	bad := eventstore.Proposed{ID: uuid.New(), Type: "Seats.Purchased", Data: []byte(`{}`), Metadata: []byte(`{}`)}
	if _, err := store.Append(ctx, eventstore.LedgerStream("other"), eventstore.NoStream(), bad); err != nil {
		t.Fatal(err)
	}
	if err := h.append(ctx, "acme", ledger.SeatsPurchased{Count: 1, At: epoch}); err != nil {
		t.Fatal(err)
	}
	recs := records(t, store)
	_, js := connect(t, srv, "relay")
	r := newRelay(t, relay.Config{Source: store, JS: js})
	stop := runRelay(ctx, r)
	waitFor(t, ctx, "every record done with", func() bool { return r.Status().Relayed == recs[2].Position })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := r.Status(); st.Published != 2 || st.Skipped != 1 {
		t.Errorf("published %d and skipped %d, want 2 and 1", st.Published, st.Skipped)
	}
	if n := streamMsgs(t, ctx, js); n != 2 {
		t.Errorf("the stream holds %d messages, want the 2 events", n)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// TestBillingNotificationsInterleaved publishes billing notifications into
// the published stream while the publisher runs, as the cycle closer
// does: the publisher resumes after each and every event is published
// once, in order; the notifications stay.
func TestBillingNotificationsInterleaved(t *testing.T) {
	ctx := testCtx(t)
	srv := startNATS(t)
	store, h := filledStore(t, 10, 1)
	_, rjs := connect(t, srv, "relay")
	r := newRelay(t, relay.Config{Source: store, JS: rjs, MaxInFlight: 4})
	if err := r.EnsureStream(ctx); err != nil {
		t.Fatal(err)
	}
	stop := runRelay(ctx, r)
	defer stop()
	_, bjs := connect(t, srv, "billing")
	for i := range 5 {
		if _, err := bjs.Publish(ctx, contract.BillingSubject("acct000"), []byte(`{}`), jetstream.WithMsgID("cycle-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		if err := h.account(ctx, "late"+strconv.Itoa(i), 1); err != nil {
			t.Fatal(err)
		}
	}
	recs := records(t, store)
	waitFor(t, ctx, "every event published", func() bool { return r.Status().Relayed == recs[len(recs)-1].Position })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st, err := rjs.Stream(ctx, contract.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	billing := 0
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(m.Subject, "events.billing.") {
			billing++
			continue
		}
		events = append(events, m.Header.Get(jetstream.MsgIDHeader))
	}
	if billing != 5 || len(events) != len(recs) {
		t.Fatalf("the stream holds %d notifications and %d events, want 5 and %d", billing, len(events), len(recs))
	}
	for i, rec := range recs {
		if events[i] != rec.ID.String() {
			t.Fatalf("event %d is %s, want %s", i, events[i], rec.ID)
		}
	}
}

// lostAnswerJS wraps a JetStream client whose first stream lookup gets no
// answer: it waits until its context ends, as a request whose reply was
// lost does.
type lostAnswerJS struct {
	jetstream.JetStream
	lost atomic.Bool
}

func (j *lostAnswerJS) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	if j.lost.CompareAndSwap(false, true) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return j.JetStream.Stream(ctx, name)
}

// TestLostAnswerAtStart checks that a request of the relay's start whose
// answer never comes is given up after the request timeout and
// tried again, whatever time the caller's context leaves: the relay then
// creates the stream and relays, long before that context ends.
func TestLostAnswerAtStart(t *testing.T) {
	ctx := testCtx(t)
	srv := startNATS(t)
	store, h := filledStore(t, 2, 1)
	_, rjs := connect(t, srv, "relay")
	js := &lostAnswerJS{JetStream: rjs}
	r := newRelay(t, relay.Config{Source: store, JS: js, RequestTimeout: 200 * time.Millisecond})
	stop := runRelay(ctx, r)
	defer stop()
	_, djs := connect(t, srv, "downstream")
	soon, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d := startDownstream(t, soon, djs, contract.Stream, "svc")
	waitFor(t, soon, "every event relayed", func() bool { return d.count() >= int(h.n) })
	if !js.lost.Load() {
		t.Fatal("control: no stream lookup went unanswered")
	}
	if st := r.Status(); st.Resyncs == 0 {
		t.Errorf("the relay relayed without retrying its start: %+v", st)
	}
}
