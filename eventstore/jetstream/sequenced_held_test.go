package jetstream_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	njs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// heldConn is a connection to the server whose writes can be held back:
// while held, what the client writes is kept, in order, and reaches the
// server on release.
type heldConn struct {
	net.Conn
	mu   sync.Mutex
	held bool
	kept []byte
}

func (c *heldConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held {
		c.kept = append(c.kept, p...)
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *heldConn) hold() {
	c.mu.Lock()
	c.held = true
	c.mu.Unlock()
}

// holds reports whether the writes held back contain s.
func (c *heldConn) holds(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Contains(c.kept, []byte(s))
}

func (c *heldConn) release() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = false
	_, err := c.Conn.Write(c.kept)
	c.kept = nil
	return err
}

type heldDialer struct {
	mu   sync.Mutex
	conn *heldConn
}

func (d *heldDialer) Dial(network, address string) (net.Conn, error) {
	nc, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.conn = &heldConn{Conn: nc}
	return d.conn, nil
}

// heldStore opens a store with sequenced appends on an embedded server
// over a connection whose writes can be held back (see heldConn).
func heldStore(ctx context.Context, t *testing.T) (*jetstream.Store, *heldConn) {
	t.Helper()
	d := &heldDialer{}
	a, err := jetstream.Embedded(ctx, jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1}, jetstream.Config{},
		nats.InProcessServer(nil), nats.SetCustomDialer(d))
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return a, d.conn
}

// streamIDs returns the ids of the events of stream, in order.
func streamIDs(ctx context.Context, t *testing.T, s *jetstream.Store, stream eventstore.StreamID) []string {
	t.Helper()
	var ids []string
	for r, err := range s.ReadStream(ctx, stream, 0) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.ID.String())
	}
	return ids
}

// answer is what an append answered.
type answer struct {
	res eventstore.AppendResult
	err error
}

// appendAsync appends events to stream in a goroutine of its own and
// delivers the answer on the returned channel.
func appendAsync(ctx context.Context, s *jetstream.Store, stream eventstore.StreamID, expected eventstore.ExpectedRevision, evs ...eventstore.Proposed) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		res, err := s.Append(ctx, stream, expected, evs...)
		ch <- answer{res, err}
	}()
	return ch
}

// TestSequencedAppendBehindARefusedOne makes the case the chain's rules
// are there for: an append A1 is refused because another process stored
// a message just before it, a message of the very stream the next append
// writes to, at the sequence that append expects to follow A1's. A single
// event sent behind A1 is refused by its expectation of A1's message id;
// an atomic batch, which cannot carry that expectation, is not sent
// before A1's answer. Without either rule the second append would be
// stored at a revision its stream already has.
func TestSequencedAppendBehindARefusedOne(t *testing.T) {
	for name, size := range map[string]int{"one event": 1, "a batch": 2} {
		t.Run(name, func(t *testing.T) { appendBehindARefusedOne(t, size) })
	}
}

func appendBehindARefusedOne(t *testing.T, size int) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	a, conn := heldStore(ctx, t)
	defer a.Close()
	if _, _, ok := jetstream.ChainStats(a); !ok {
		t.Fatal("the store does not sequence its appends")
	}
	b, err := jetstream.Connect(ctx, a.Server().ClientURL(), jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	x, y := eventstore.LedgerStream("acme"), eventstore.LedgerStream("globex")
	if _, err := a.Append(ctx, x, eventstore.NoStream(), events(1)...); err != nil {
		t.Fatal(err)
	}
	// The store knows globex has no event (as the accounts' read model
	// tells it), so the second append below reads nothing first.
	if ok, err := a.ConfirmEnds(ctx, "globex", 1, eventstore.StreamEnd{}, eventstore.StreamEnd{}); err != nil || !ok {
		t.Fatalf("ConfirmEnds: %v, %v", ok, err)
	}
	conn.hold()
	e1, e2 := events(1), events(size)
	first := appendAsync(ctx, a, x, eventstore.Exact(0), e1...)
	waitFor(t, func() bool { return conn.holds(e1[0].ID.String()) })
	second := appendAsync(ctx, a, y, eventstore.NoStream(), e2...)
	if size == 1 {
		waitFor(t, func() bool { return conn.holds(e2[0].ID.String()) })
		if p, _, _ := jetstream.ChainStats(a); p == 0 {
			t.Fatal("the second append was not sent behind the first")
		}
	} else {
		// A batch waits for the first append's answer: give it the time
		// it would take to be sent.
		time.Sleep(200 * time.Millisecond)
	}
	// The other process stores the first event of globex, at the sequence
	// the first append expected to follow.
	other := events(1)
	if _, err := b.Append(ctx, y, eventstore.NoStream(), other...); err != nil {
		t.Fatal(err)
	}
	if err := conn.release(); err != nil {
		t.Fatal(err)
	}
	if got := <-first; got.err != nil || got.res.NextRevision != 1 {
		t.Errorf("first append: %+v, %v; want it stored at revision 1 once the chain is read again", got.res, got.err)
	}
	if got := <-second; !errors.Is(got.err, eventstore.ErrConflict) {
		t.Errorf("second append: %+v, %v; want ErrConflict: globex already holds the other process's event", got.res, got.err)
	}
	ids := streamIDs(ctx, t, a, y)
	if len(ids) != 1 || ids[0] != other[0].ID.String() {
		t.Fatalf("globex holds %v, want only the other process's event %s", ids, other[0].ID)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSequencedAppendBehindACopiedID makes another process store, just
// before a held append A1, a message whose Nats-Msg-Id is A1's event id,
// on a subject of another stream. A1 is refused; A2, appended to the same
// stream behind A1 and checked against A1's predicted head, expects the
// stream's last message id to be A1's: it must be refused too, since the
// message there is not A1. Sequenced appends qualify their message ids
// with their stream for that reason.
func TestSequencedAppendBehindACopiedID(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	a, conn := heldStore(ctx, t)
	defer a.Close()
	nc, err := nats.Connect(a.Server().ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	x := eventstore.LedgerStream("acme")
	if _, err := a.Append(ctx, x, eventstore.NoStream(), events(1)...); err != nil {
		t.Fatal(err)
	}
	conn.hold()
	e1, e2 := events(1), events(1)
	first := appendAsync(ctx, a, x, eventstore.Exact(0), e1...)
	waitFor(t, func() bool { return conn.holds(e1[0].ID.String()) })
	second := appendAsync(ctx, a, x, eventstore.Exact(1), e2...)
	waitFor(t, func() bool { return conn.holds(e2[0].ID.String()) })
	if p, _, _ := jetstream.ChainStats(a); p == 0 {
		t.Fatal("the second append was not sent behind the first")
	}
	// The other process stores a message with A1's event id as its
	// message id, on another stream's subject, where A1 was to be stored.
	js, err := njs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg("activity.globex.ActivityRecorded")
	m.Header.Set(nats.MsgIdHdr, e1[0].ID.String())
	m.Data = []byte("{}")
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	if err := conn.release(); err != nil {
		t.Fatal(err)
	}
	got1, got2 := <-first, <-second
	if got1.err != nil || got1.res.NextRevision != 1 {
		t.Errorf("first append: %+v, %v; want it stored at revision 1: acme held one event", got1.res, got1.err)
	}
	ids := streamIDs(ctx, t, a, x)
	switch {
	case got2.err == nil:
		// Stored after A1, checked again: the stream holds both, in order.
		if got2.res.NextRevision != 2 || len(ids) != 3 || ids[1] != e1[0].ID.String() || ids[2] != e2[0].ID.String() {
			t.Errorf("second append stored at %+v, acme holds %v; want it after the first", got2.res, ids)
		}
	case errors.Is(got2.err, eventstore.ErrConflict):
		if len(ids) != 2 || ids[1] != e1[0].ID.String() {
			t.Errorf("acme holds %v, want its first event and the first append's", ids)
		}
	default:
		t.Errorf("second append: %v", got2.err)
	}
}

// TestSequencedRetryAfterLostAck retries, through the same store, an
// append whose caller gave up before its answer came, with Any: the
// server takes the qualified ids for the stored ones and the retry
// answers with the first append's place, storing nothing.
func TestSequencedRetryAfterLostAck(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	a, conn := heldStore(ctx, t)
	defer a.Close()
	x := eventstore.LedgerStream("acme")
	if _, err := a.Append(ctx, x, eventstore.NoStream(), events(1)...); err != nil {
		t.Fatal(err)
	}
	before := uint64(1) // events in x
	for _, size := range []int{1, 2} {
		conn.hold()
		evs := events(size)
		lost, give := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, err := a.Append(lost, x, eventstore.Any(), evs...)
			done <- err
		}()
		waitFor(t, func() bool { return conn.holds(evs[size-1].ID.String()) })
		give()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("append given up: %v", err)
		}
		if err := conn.release(); err != nil {
			t.Fatal(err)
		}
		res, err := a.Append(ctx, x, eventstore.Any(), evs...)
		if err != nil {
			t.Fatal(err)
		}
		ids := streamIDs(ctx, t, a, x)
		if n := uint64(len(ids)); res.NextRevision != n-1 || n != before+uint64(size) || ids[n-1] != evs[size-1].ID.String() {
			t.Fatalf("retry of %d events: %+v, stream holds %v; want the first append's place, stored once", size, res, ids)
		}
		// The duplicate broke the chain and dropped the stream's head:
		// read both again now, not through the connection held next.
		res, err = a.Append(ctx, x, eventstore.Any(), events(1)...)
		if err != nil {
			t.Fatal(err)
		}
		before = res.NextRevision + 1
	}
}

// TestSequencedAnswerLost holds back a single event's append until its
// answer is overdue: the append fails instead of holding the chain, the
// next appends (a batch waits for nothing in flight) go through once the
// connection writes again, and Close returns.
func TestSequencedAnswerLost(t *testing.T) {
	defer jetstream.SetAnswerTimeout(jetstream.SetAnswerTimeout(300 * time.Millisecond))
	ctx := t.Context() // no deadline: only the store's bound ends the wait
	a, conn := heldStore(ctx, t)
	closed := false
	defer func() {
		if !closed {
			a.Close()
		}
	}()
	x := eventstore.LedgerStream("acme")
	if _, err := a.Append(ctx, x, eventstore.NoStream(), events(1)...); err != nil {
		t.Fatal(err)
	}
	conn.hold()
	done := make(chan error, 1)
	go func() {
		_, err := a.Append(ctx, x, eventstore.Exact(0), events(1)...)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("an append whose answer never came succeeded")
		}
	case <-time.After(30 * time.Second):
		_ = conn.release()
		t.Fatal("an append whose answer never comes still waits")
	}
	if err := conn.release(); err != nil {
		t.Fatal(err)
	}
	// The held event reached the server on release; the chain reads the
	// stream again and the batch goes after it.
	res, err := a.Append(ctx, x, eventstore.Any(), events(2)...)
	if err != nil || res.NextRevision != 3 {
		t.Fatalf("batch after the lost answer: %+v, %v; want it at revisions 2 and 3", res, err)
	}
	closing := make(chan error, 1)
	go func() { closing <- a.Close() }()
	select {
	case err := <-closing:
		closed = true
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close still waits")
	}
}
