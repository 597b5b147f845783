package jetstream

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
)

// A publish waits for the server's acknowledgement on a reply box of the
// store: an inbox of its own with a synchronous subscription, kept for the
// next publish once it has received the one answer its publish gets. The
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
type replyBox struct {
	subject string
	sub     *nats.Subscription
}

// keptBoxes bounds the boxes kept between publishes: as many as appends
// ran at once, up to this many.
const keptBoxes = 4096

// replyBoxes is the store's pool of reply boxes.
type replyBoxes struct {
	mu     sync.Mutex
	free   []*replyBox
	closed bool
}

// take returns a free box, or a new one subscribed on nc.
func (p *replyBoxes) take(nc *nats.Conn) (*replyBox, error) {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return b, nil
	}
	p.mu.Unlock()
	subject := nc.NewInbox()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		return nil, fmt.Errorf("reply inbox: %w", err)
	}
	return &replyBox{subject: subject, sub: sub}, nil
}

// put returns a box whose publish got its answer.
func (p *replyBoxes) put(b *replyBox) {
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
func (p *replyBoxes) drop(b *replyBox) { _ = b.sub.Unsubscribe() }

// close unsubscribes the free boxes; boxes put back after it are
// unsubscribed too.
func (p *replyBoxes) close() {
	p.mu.Lock()
	free := p.free
	p.free, p.closed = nil, true
	p.mu.Unlock()
	for _, b := range free {
		_ = b.sub.Unsubscribe()
	}
}

// request publishes m with a reply box of the store's as its reply
// subject and returns the answer, as nats.Conn.RequestMsgWithContext does
// (nats.ErrNoResponders when the server says nothing listens on m's
// subject). m is left as it was given.
func (s *Store) request(ctx context.Context, m *nats.Msg) (*nats.Msg, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := s.boxes.take(s.nc)
	if err != nil {
		return nil, err
	}
	reply := m.Reply
	m.Reply = b.subject
	err = s.nc.PublishMsg(m)
	m.Reply = reply
	if err != nil {
		s.boxes.drop(b)
		return nil, err
	}
	for {
		resp, err := b.sub.NextMsgWithContext(ctx)
		if err != nil {
			s.boxes.drop(b)
			return nil, err
		}
		if resp.Subject != b.subject {
			continue
		}
		s.boxes.put(b)
		if len(resp.Data) == 0 && resp.Header.Get("Status") == "503" {
			return nil, nats.ErrNoResponders
		}
		return resp, nil
	}
}
