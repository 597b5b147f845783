package httpapi

import (
	"context"
	"sync"
	"time"

	"github.com/licenseledger/ledger/eventstore"
)

// Tracker is a [Progress] that a feeder advances after applying events to
// the read models. It is safe for concurrent use.
type Tracker struct {
	mu   sync.Mutex
	pos  eventstore.Position
	wake chan struct{}
}

var _ ProgressChanges = (*Tracker)(nil)

// NewTracker returns a Tracker at position 0.
func NewTracker() *Tracker { return &Tracker{wake: make(chan struct{})} }

// Advance records that the read models applied every event up to p and
// wakes the waiters. Going backwards is ignored.
func (t *Tracker) Advance(p eventstore.Position) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p <= t.pos {
		return
	}
	t.pos = p
	close(t.wake)
	t.wake = make(chan struct{})
}

// Position returns the last position advanced to.
func (t *Tracker) Position() eventstore.Position {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.pos
}

// Changed returns a channel closed when the position next moves.
func (t *Tracker) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.wake
}

// Wait returns when the position reaches p, or ctx's error.
func (t *Tracker) Wait(ctx context.Context, p eventstore.Position) error {
	for {
		t.mu.Lock()
		pos, wake := t.pos, t.wake
		t.mu.Unlock()
		if pos >= p {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ProgressChanges is a [Progress] that tells when its position moves. The
// API then waits for a position on Changed, without a context of its own
// per wait.
type ProgressChanges interface {
	Progress
	// Changed returns a channel closed when Position next changes: a
	// Position read after Changed returned is either the one to wait
	// past or already newer.
	Changed() <-chan struct{}
}

// timeouts hands out channels closed once a duration has passed, shared
// by the waits that ask within the same tick, so that a wait costs no
// timer of its own.
type timeouts struct {
	start time.Time // ticks count from it, on the monotonic clock
	mu    sync.Mutex
	due   map[int64]chan struct{} // by tick
}

func newTimeouts() *timeouts { return &timeouts{start: time.Now()} }

// timeoutTick is the resolution of a wait's timeout: a wait of d times
// out between d and d plus one tick.
const timeoutTick = 10 * time.Millisecond

// after returns a channel closed once d has passed.
func (t *timeouts) after(d time.Duration) <-chan struct{} {
	now := time.Since(t.start)
	tick := int64((now+d)/timeoutTick) + 1
	t.mu.Lock()
	defer t.mu.Unlock()
	if ch, ok := t.due[tick]; ok {
		return ch
	}
	if t.due == nil {
		t.due = make(map[int64]chan struct{})
	}
	ch := make(chan struct{})
	t.due[tick] = ch
	time.AfterFunc(time.Duration(tick)*timeoutTick-now, func() {
		t.mu.Lock()
		delete(t.due, tick)
		t.mu.Unlock()
		close(ch)
	})
	return ch
}
