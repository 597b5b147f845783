package runner_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/runner"
)

// hostile is a ledger on a real embedded JetStream store into which the
// tests publish messages the store did not write, over the store's own
// connection (the rights the service itself has).
type hostile struct {
	*fixture
	js natsjs.JetStream
}

func newHostile(t *testing.T) *hostile {
	t.Helper()
	st, err := jetstream.Embedded(context.Background(), jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	js, err := natsjs.New(st.Conn())
	if err != nil {
		t.Fatal(err)
	}
	keys := pii.NewMemoryKeys()
	cdc := codec.New(pii.NewKeyring(keys, rand.Reader))
	f := &fixture{store: st, keys: keys, codec: cdc, svc: accounts.New(accounts.Config{
		Store: st, Codec: cdc, Clock: time.Now, NewEventID: uuid.New, NewULID: ulid.Make,
	})}
	return &hostile{fixture: f, js: js}
}

// publish publishes m as a foreign client would and returns its position.
func (h *hostile) publish(t *testing.T, m *nats.Msg) eventstore.Position {
	t.Helper()
	ack, err := h.js.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return eventstore.Position(ack.Sequence)
}

// copyOf returns a copy of the stored message at position p, to publish
// again with a new message id, its body changed by edit and its revision
// header set to rev ("" keeps the original's). With expect it carries the
// expectation the server checks, set to the account's ledger stream as it
// is, as a publisher following the store's protocol would; without, none.
func (h *hostile) copyOf(t *testing.T, p eventstore.Position, rev string, expect bool, edit func([]byte) []byte) *nats.Msg {
	t.Helper()
	st, err := h.js.Stream(context.Background(), "LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(context.Background(), uint64(p))
	if err != nil {
		t.Fatal(err)
	}
	out := nats.NewMsg(m.Subject)
	for k, v := range m.Header {
		if !strings.HasPrefix(k, "Nats-") {
			out.Header[k] = v
		}
	}
	out.Header.Set(natsjs.MsgIDHeader, uuid.NewString())
	if rev != "" {
		out.Header.Set(jetstream.RevisionHeader, rev)
	}
	out.Data = edit(bytes.Clone(m.Data))
	if expect {
		last, err := st.GetLastMsgForSubject(context.Background(), "ledger.victim.*")
		if err != nil {
			t.Fatal(err)
		}
		out.Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(last.Sequence, 10))
		out.Header.Set(natsjs.ExpectedLastSubjSeqSubjHeader, "ledger.victim.*")
	}
	return out
}

func (h *hostile) run(t *testing.T, acct string, cmd ledger.Command) accounts.Result {
	t.Helper()
	r, err := h.svc.Execute(context.Background(), acct, cmd, accounts.Request{Actor: codec.Actor{ID: "op", Role: "operator"}})
	if err != nil {
		t.Fatalf("%T: %v", cmd, err)
	}
	return r
}

// syncBuf collects log output written from several goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Foreign records in the store are quarantined, not folded, and do not stop
// the runner, whether it catches up over them or follows them live; a
// restart, from a snapshot or from the first event, quarantines the same
// records; the account goes on taking commands, chained to its last event
// that verified.
func TestForeignRecordsQuarantined(t *testing.T) {
	h := newHostile(t)
	now := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	h.run(t, "victim", ledger.OpenAccount{Account: "victim", Name: "Victim", Seats: 2, At: now})
	bought := h.run(t, "victim", ledger.PurchaseSeats{Count: 1, At: now}).Position
	h.run(t, "victim", ledger.AddUser{UserID: "u1", Name: "Secret Person", Email: "u1@victim.test", Role: ledger.RoleAdmin, At: now})

	var logs syncBuf
	snaps := runner.FileSnapshots{Dir: t.TempDir()}
	tl := newTally()
	cfg := runner.Config{Store: h.store, Codec: h.codec, Projections: []projections.Projection{tl}, Snapshots: snaps,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	r, stop := start(t, cfg)

	// Caught up over: a message that is not an event at all.
	garbage := h.publish(t, &nats.Msg{Subject: "ledger.victim.SeatsPurchased", Data: []byte("{not json")})
	// Followed live: copies of the purchase with 500 seats. One published
	// plainly, without an expectation; one placed with the expectation
	// and its own revision header (a duplicate revision); one placed at
	// the stream's next revision, whose previous hash is not the chain's.
	more := func(b []byte) []byte { return bytes.Replace(b, []byte(`"count":1`), []byte(`"count":500`), 1) }
	plain := h.publish(t, h.copyOf(t, bought, "", false, more))
	dup := h.publish(t, h.copyOf(t, bought, "", true, more))
	next := h.publish(t, h.copyOf(t, bought, "3", true, more))
	// The account takes commands after them, chained to its last event.
	h.run(t, "victim", ledger.PurchaseSeats{Count: 1, At: now})
	last := h.run(t, "victim", ledger.RecordActivity{ActivityID: "a1", UserID: "u1", Kind: "note", Ref: "r", At: now}).Position
	state, err := h.svc.State(context.Background(), "victim")
	if err != nil {
		t.Fatal(err)
	}
	if state.Seats != 4 || state.Version != 5 {
		t.Fatalf("account decided on %d seats at version %d, want 4 seats (2+1+1, no forged 500) at 5 (the copy at revision 3 takes its place)", state.Seats, state.Version)
	}
	r.Observe(last)
	waitFor(t, r, last)

	want := []eventstore.Position{garbage, plain, dup, next}
	check := func(t *testing.T, r *runner.Runner, tl *tally) {
		t.Helper()
		types, _ := tl.snapshot()
		if types["SeatsPurchased"] != 2 || types["AccountOpened"] != 1 || types["UserAdded"] != 1 {
			t.Fatalf("read models applied %v, want the two genuine purchases only", types)
		}
		q := r.Quarantined("", 0, 0)
		if len(q) != len(want) || r.QuarantinedCount() != uint64(len(want)) {
			t.Fatalf("quarantined %+v (count %d), want positions %v", q, r.QuarantinedCount(), want)
		}
		for i, e := range q {
			if e.Position != want[i] || e.Stream != "ledger-victim" || e.Account != "victim" || e.Reason == "" || e.RecordedAt.IsZero() {
				t.Fatalf("quarantined record %d: %+v, want position %d of ledger-victim", i, e, want[i])
			}
		}
		if q[0].Revision != nil || q[1].Revision != nil || q[2].Revision == nil || *q[2].Revision != 1 || q[3].Revision == nil || *q[3].Revision != 3 {
			t.Fatalf("revisions of the quarantined records: %+v", q)
		}
		if got := r.Quarantined("other", 0, 0); len(got) != 0 {
			t.Fatalf("another account's quarantine lists %+v", got)
		}
		if got := r.Quarantined("victim", dup, 1); len(got) != 1 || got[0].Position != next {
			t.Fatalf("page after %d: %+v", dup, got)
		}
	}
	check(t, r, tl)
	for _, p := range want {
		n := 0
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "record quarantined") && strings.Contains(line, "position="+strconv.FormatUint(uint64(p), 10)+" ") {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("record at %d logged %d times:\n%s", p, n, logs.String())
		}
	}
	if strings.Contains(logs.String(), "not json") || strings.Contains(logs.String(), "Secret Person") {
		t.Fatalf("a quarantine log quotes a record:\n%s", logs.String())
	}
	if err := r.SaveSnapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop()

	t.Run("restart from the snapshot", func(t *testing.T) {
		tl := newTally()
		cfg := cfg
		cfg.Projections = []projections.Projection{tl}
		r, stop := start(t, cfg)
		defer stop()
		waitFor(t, r, last)
		check(t, r, tl)
	})
	t.Run("restart from the first event", func(t *testing.T) {
		tl := newTally()
		cfg := cfg
		cfg.Projections, cfg.Snapshots = []projections.Projection{tl}, nil
		r, stop := start(t, cfg)
		defer stop()
		waitFor(t, r, last)
		check(t, r, tl)
	})
}
