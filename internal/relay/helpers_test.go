package relay_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	storejs "github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
)

// startNATS starts an embedded nats-server with JetStream in a temporary
// directory. Writes are not fsynced one by one: the tests stop no server.
func startNATS(t testing.TB) *server.Server {
	t.Helper()
	srv, err := storejs.StartServer(storejs.ServerConfig{DataDir: t.TempDir(), Port: -1, Durability: storejs.DurabilityInterval})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { storejs.StopServer(srv) })
	return srv
}

// connect opens a connection of its own, as a separate service would.
func connect(t testing.TB, srv *server.Server, name string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL(), nats.Name(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// history writes realistic ledger histories into a store: events decided
// by hand, encoded by the codec with personal data sealed and each stream's
// hash chain linked.
type history struct {
	codec *codec.Codec
	store appender
	heads map[eventstore.StreamID]codec.Hash
	revs  map[eventstore.StreamID]uint64
	n     uint64
	names []string // plaintext personal data written, for leak checks
}

// appender is the part of a store a history writes to.
type appender interface {
	Append(ctx context.Context, stream eventstore.StreamID, expected eventstore.ExpectedRevision, events ...eventstore.Proposed) (eventstore.AppendResult, error)
}

func newHistory(store appender) *history {
	return &history{
		codec: codec.New(pii.NewKeyring(pii.NewMemoryKeys(), rand.Reader)),
		store: store,
		heads: map[eventstore.StreamID]codec.Hash{},
		revs:  map[eventstore.StreamID]uint64{},
	}
}

var epoch = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

func (h *history) append(ctx context.Context, account string, e ledger.Event) error {
	stream := eventstore.LedgerStream(account)
	if _, ok := e.(ledger.ActivityRecorded); ok {
		stream = eventstore.ActivityStream(account)
	}
	h.n++
	at := epoch.Add(time.Duration(h.n) * time.Second)
	meta := codec.Metadata{
		EventID:       uuid.New(),
		Time:          at,
		Account:       account,
		Actor:         codec.Actor{ID: "admin-1", Role: "admin"},
		CorrelationID: ulid.MustNew(ulid.Timestamp(at), rand.Reader),
		CausationID:   ulid.MustNew(ulid.Timestamp(at), rand.Reader),
		PrevHash:      h.heads[stream],
	}
	p, err := h.codec.Encode(ctx, e, meta)
	if err != nil {
		return err
	}
	if _, err := h.store.Append(ctx, stream, eventstore.ExpectRevisionAfter(h.revs[stream]), p); err != nil {
		return err
	}
	h.heads[stream] = codec.NextHash(h.heads[stream], p)
	h.revs[stream]++
	return nil
}

// account writes one account's opening, a user with sealed personal
// data, seats, activities and a deactivation: 2+users*3 ledger events and
// users activities.
func (h *history) account(ctx context.Context, account string, users int) error {
	if err := h.append(ctx, account, ledger.AccountOpened{Account: account, Name: "Company " + account, Seats: users, At: epoch}); err != nil {
		return err
	}
	if err := h.append(ctx, account, ledger.SeatsPurchased{Count: 2, At: epoch}); err != nil {
		return err
	}
	for u := range users {
		user := fmt.Sprintf("u%d", u)
		if err := h.codec.Keys().Create(ctx, pii.KeyID(account, user)); err != nil {
			return err
		}
		name := fmt.Sprintf("Grace Hopper %s %d", account, u)
		email := fmt.Sprintf("grace.%s.%d@example.com", account, u)
		h.names = append(h.names, name, email)
		steps := []ledger.Event{
			ledger.UserAdded{UserID: user, Name: name, Email: email, Role: ledger.RoleMember, At: epoch},
			ledger.ActivityRecorded{ActivityID: fmt.Sprintf("a%d", u), UserID: user, Kind: "document.edited", Ref: "doc-1", At: epoch},
			ledger.UserDeactivated{UserID: user, Reason: "left the team " + name, At: epoch},
			ledger.UserActivated{UserID: user, At: epoch},
		}
		for _, e := range steps {
			if err := h.append(ctx, account, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// records returns every event of the store in global order, without
// the records it cannot read.
func records(t testing.TB, s eventstore.Store) []eventstore.Record {
	t.Helper()
	var out []eventstore.Record
	for rec, err := range s.ReadAll(context.Background(), 0) {
		if errors.Is(err, eventstore.ErrUnreadable) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

// filledStore returns a memory store holding accounts accounts' histories.
func filledStore(t testing.TB, accounts, users int) (*memory.Store, *history) {
	t.Helper()
	s := memory.New()
	t.Cleanup(func() { _ = s.Close() })
	h := newHistory(s)
	for a := range accounts {
		if err := h.account(context.Background(), fmt.Sprintf("acct%03d", a), users); err != nil {
			t.Fatal(err)
		}
	}
	return s, h
}

// downstream is a service consuming the stream durably, as a subscriber
// of license events would: a durable pull consumer from the first message,
// acknowledging each.
type downstream struct {
	mu   sync.Mutex
	msgs []jetstream.Msg
	ids  map[string]int
	dups []string
	cc   jetstream.ConsumeContext
}

func startDownstream(t testing.TB, ctx context.Context, js jetstream.JetStream, stream, durable string) *downstream {
	t.Helper()
	var cons jetstream.Consumer
	var err error
	// The relay creates the stream; wait for it.
	for {
		cons, err = js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
			Durable:       durable,
			AckPolicy:     jetstream.AckExplicitPolicy,
			DeliverPolicy: jetstream.DeliverAllPolicy,
		})
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the stream %s was not created in time: %v", stream, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err != nil {
		t.Fatalf("consumer %s on %s: %v", durable, stream, err)
	}
	d := &downstream{ids: map[string]int{}}
	d.cc, err = cons.Consume(func(m jetstream.Msg) {
		d.mu.Lock()
		id := m.Headers().Get(jetstream.MsgIDHeader)
		if _, seen := d.ids[id]; seen {
			d.dups = append(d.dups, id)
		}
		d.ids[id] = len(d.msgs)
		d.msgs = append(d.msgs, m)
		d.mu.Unlock()
		_ = m.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.cc.Stop)
	return d
}

func (d *downstream) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.msgs)
}

func (d *downstream) snapshot() ([]jetstream.Msg, []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]jetstream.Msg(nil), d.msgs...), append([]string(nil), d.dups...)
}

// waitFor polls cond until it holds or the test's deadline nears.
func waitFor(t testing.TB, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// flakyJS wraps a JetStream client and breaks publishes: after failAfter
// successful publishes, the next one either fails to be sent (lostAck
// false) or is sent but its acknowledgement reported lost (lostAck true),
// once.
type flakyJS struct {
	jetstream.JetStream
	failAfter int64
	lostAck   bool
	n         atomic.Int64
	fired     atomic.Bool
}

var errInjected = errors.New("injected publish failure")

func (f *flakyJS) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if f.n.Add(1) <= f.failAfter || !f.fired.CompareAndSwap(false, true) {
		return f.JetStream.PublishMsgAsync(m, opts...)
	}
	if !f.lostAck {
		return nil, errInjected
	}
	real, err := f.JetStream.PublishMsgAsync(m, opts...)
	if err != nil {
		return nil, err
	}
	select { // stored; the answer gets lost on the way back
	case <-real.Ok():
	case <-real.Err():
	}
	errc := make(chan error, 1)
	errc <- errInjected
	return lostFuture{msg: m, err: errc}, nil
}

type lostFuture struct {
	msg *nats.Msg
	err chan error
}

func (l lostFuture) Ok() <-chan *jetstream.PubAck { return nil }
func (l lostFuture) Err() <-chan error            { return l.err }
func (l lostFuture) Msg() *nats.Msg               { return l.msg }
