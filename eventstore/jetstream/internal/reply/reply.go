// Package reply publishes messages to JetStream streams and waits for the
// server's acknowledgement on reply boxes of its own, which the store and
// the key store use for their writes.
//
// A publish waits for the server's acknowledgement on a reply box: an
// inbox subscribed with a channel of one message (a synchronous
// subscription would hold a queue of 65,536 pointers, 512 KiB, for the
// box's lifetime), kept for the next publish once it has received the one
// answer its publish gets. The
// connection's request call (RequestMsgWithContext) makes a channel, an
// inbox name and an entry of a map shared by every request for each call,
// and its answers pass through one more goroutine (the handler of the
// connection's wildcard response subscription) before they reach the
// caller's channel; a box's answer goes from the connection's read loop
// straight to the waiting caller.
//
// A box is taken by one publish at a time. Its publish gets exactly one
// answer from the server (the stream's acknowledgement, or a no-responders
// status when no stream listens), so a box that received it holds nothing
// more and can serve the next publish. A box whose publish was abandoned
// (the context ended before the answer) is unsubscribed and dropped: its
// late answer can never be taken for another publish's. An answer on
// another subject than the box's is skipped.
package reply

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// box is a reply inbox, its subscription and the channel its one answer
// arrives on; closed tells that the subscription was closed (the
// connection closed), which no message on ch would.
type box struct {
	subject string
	sub     *nats.Subscription
	ch      chan *nats.Msg
	closed  <-chan nats.SubStatus
}

// keptBoxes bounds the boxes kept between publishes: as many as appends
// ran at once, up to this many.
const keptBoxes = 4096

// Boxes is a pool of reply boxes on one connection. The zero value is
// not usable: see New.
type Boxes struct {
	nc     *nats.Conn
	mu     sync.Mutex
	free   []*box
	closed bool
}

// New returns a pool of reply boxes on nc.
func New(nc *nats.Conn) *Boxes { return &Boxes{nc: nc} }

// take returns a free box, or a new one subscribed on p's connection.
func (p *Boxes) take() (*box, error) {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		// Whatever reached the box while it was free is nobody's answer.
		select {
		case <-b.ch:
		default:
		}
		return b, nil
	}
	p.mu.Unlock()
	subject := p.nc.NewInbox()
	ch := make(chan *nats.Msg, 1)
	sub, err := p.nc.ChanSubscribe(subject, ch)
	if err != nil {
		return nil, fmt.Errorf("reply inbox: %w", err)
	}
	return &box{subject: subject, sub: sub, ch: ch, closed: sub.StatusChanged(nats.SubscriptionClosed)}, nil
}

// put returns a box whose publish got its answer.
func (p *Boxes) put(b *box) {
	p.mu.Lock()
	if p.closed || len(p.free) >= keptBoxes {
		p.mu.Unlock()
		_ = b.sub.Unsubscribe()
		return
	}
	p.free = append(p.free, b)
	p.mu.Unlock()
}

// drop unsubscribes a box whose publish was abandoned.
func (p *Boxes) drop(b *box) { _ = b.sub.Unsubscribe() }

// Close unsubscribes the free boxes; boxes put back after it are
// unsubscribed too.
func (p *Boxes) Close() {
	p.mu.Lock()
	free := p.free
	p.free, p.closed = nil, true
	p.mu.Unlock()
	for _, b := range free {
		_ = b.sub.Unsubscribe()
	}
}

// Request publishes m with a reply box as its reply subject and returns
// the answer, as nats.Conn.RequestMsgWithContext does
// (nats.ErrNoResponders when the server says nothing listens on m's
// subject). m is left as it was given.
func (p *Boxes) Request(ctx context.Context, m *nats.Msg) (*nats.Msg, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w, err := p.Send(m)
	if err != nil {
		return nil, err
	}
	return w.Wait(ctx)
}

// Pending is a request sent and not yet answered (see Send).
type Pending struct {
	p *Boxes
	b *box
}

// Send publishes m with a reply box as its reply subject and returns
// once m is handed to the connection, without waiting for the answer:
// the caller takes it with Wait, exactly once. Messages sent this way
// reach the server in the order of the calls, as every publish on one
// connection, whichever goroutines call it: the order is that in which
// the calls hand them to the connection, so callers on several
// goroutines that need an order (the store's sequenced appends) make
// their calls under one lock. m is left as it was given.
func (p *Boxes) Send(m *nats.Msg) (*Pending, error) {
	b, err := p.take()
	if err != nil {
		return nil, err
	}
	reply := m.Reply
	m.Reply = b.subject
	err = p.nc.PublishMsg(m)
	m.Reply = reply
	if err != nil {
		p.drop(b)
		return nil, err
	}
	return &Pending{p: p, b: b}, nil
}

// Wait returns the answer to the request Send sent, as Request does.
// When ctx ends first the box is dropped and the answer is lost.
func (w *Pending) Wait(ctx context.Context) (*nats.Msg, error) {
	p, b := w.p, w.b
	for {
		var resp *nats.Msg
		select {
		case resp = <-b.ch:
		case <-b.closed:
			p.drop(b)
			return nil, nats.ErrConnectionClosed
		case <-ctx.Done():
			p.drop(b)
			return nil, ctx.Err()
		}
		if resp.Subject != b.subject {
			continue
		}
		p.put(b)
		if len(resp.Data) == 0 && resp.Header.Get("Status") == "503" {
			return nil, nats.ErrNoResponders
		}
		return resp, nil
	}
}

// Retries of a publish the server answered with no responders (a stream
// leader being elected), as the JetStream client's.
const (
	noRespondersRetries = jetstream.DefaultPubRetryAttempts
	noRespondersWait    = jetstream.DefaultPubRetryWait
)

// Publish publishes m to a stream and returns the sequence the server
// stored it at and whether it was a duplicate, as the JetStream client's
// PublishMsg does (the same errors: jetstream.ErrNoStreamResponse after
// the same retries, the server's *jetstream.APIError wrapped,
// jetstream.ErrInvalidJSAck), but waits for the answer on a reply box and
// reads the server's usual acknowledgement without the reflection of
// encoding/json (see ParseAck), a few microseconds of every write.
func (p *Boxes) Publish(ctx context.Context, m *nats.Msg) (uint64, bool, error) {
	resp, err := p.Request(ctx, m)
	for r := 0; errors.Is(err, nats.ErrNoResponders) && r < noRespondersRetries; r++ {
		select {
		case <-ctx.Done():
		case <-time.After(noRespondersWait):
		}
		resp, err = p.Request(ctx, m)
	}
	if errors.Is(err, nats.ErrNoResponders) {
		return 0, false, jetstream.ErrNoStreamResponse
	}
	if err != nil {
		return 0, false, err
	}
	return Ack(resp.Data)
}

// Ack reads the server's answer to a publish to a stream as Publish
// does: the sequence the message was stored at and whether it was a
// duplicate, or the server's *jetstream.APIError wrapped.
func Ack(data []byte) (uint64, bool, error) {
	if seq, dup, ok := ParseAck(data); ok {
		return seq, dup, nil
	}
	var ack PubAck
	if err := json.Unmarshal(data, &ack); err != nil {
		return 0, false, jetstream.ErrInvalidJSAck
	}
	if ack.Error != nil {
		return 0, false, fmt.Errorf("nats: %w", ack.Error)
	}
	if ack.Stream == "" {
		return 0, false, jetstream.ErrInvalidJSAck
	}
	return ack.Sequence, ack.Duplicate, nil
}

// PubAck is the server's answer to a publish to a stream, as
// encoding/json reads it.
type PubAck struct {
	Error     *jetstream.APIError `json:"error,omitempty"`
	Stream    string              `json:"stream"`
	Sequence  uint64              `json:"seq"`
	Duplicate bool                `json:"duplicate,omitempty"`
}

// ParseAck reads the acknowledgement nats-server writes for a message
// stored: {"stream":"<name>"[,"domain":"<domain>"],"seq":<n>[,"duplicate": true]}
// and nothing else. ok is false for any other answer (an error, a
// member this does not know), which the caller decodes in full.
func ParseAck(b []byte) (seq uint64, dup bool, ok bool) {
	rest, found := bytes.CutPrefix(b, []byte(`{"stream":"`))
	if !found {
		return 0, false, false
	}
	i := bytes.IndexByte(rest, '"')
	if i <= 0 || bytes.IndexByte(rest[:i], '\\') >= 0 {
		return 0, false, false
	}
	rest = rest[i+1:]
	if r, found := bytes.CutPrefix(rest, []byte(`,"domain":"`)); found {
		j := bytes.IndexByte(r, '"')
		if j < 0 || bytes.IndexByte(r[:j], '\\') >= 0 {
			return 0, false, false
		}
		rest = r[j+1:]
	}
	rest, found = bytes.CutPrefix(rest, []byte(`,"seq":`))
	if !found {
		return 0, false, false
	}
	n := 0
	for n < len(rest) && rest[n] >= '0' && rest[n] <= '9' {
		n++
	}
	if n == 0 || n > 20 || (n > 1 && rest[0] == '0') {
		return 0, false, false
	}
	seq, err := strconv.ParseUint(string(rest[:n]), 10, 64)
	if err != nil {
		return 0, false, false
	}
	rest = rest[n:]
	if r, found := bytes.CutPrefix(rest, []byte(`,"duplicate":`)); found {
		r = bytes.TrimPrefix(r, []byte(" "))
		if r, found = bytes.CutPrefix(r, []byte("true")); !found {
			return 0, false, false
		}
		dup, rest = true, r
	}
	if string(rest) != "}" {
		return 0, false, false
	}
	return seq, dup, true
}
