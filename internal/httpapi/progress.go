package httpapi

import (
	"context"
	"sync"

	"github.com/licenseledger/ledger/eventstore"
)

// Tracker is a [Progress] that a feeder advances after applying events to
// the read models. It is safe for concurrent use.
type Tracker struct {
	mu   sync.Mutex
	pos  eventstore.Position
	wake chan struct{}
}

var _ Progress = (*Tracker)(nil)

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
