package httpapi

import (
	"container/heap"
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

// waiters are the waits for a position of a ProgressChanges: one
// goroutine follows its changes while there are waits, and closes each
// wait's channel once the position reaches it, so that a wait is woken
// once rather than at every change (the read models advance many times
// while a write waits).
type waiters struct {
	mu       sync.Mutex
	h        waitHeap
	watching bool
}

// add returns a channel closed once c's position reaches pos.
func (w *waiters) add(c ProgressChanges, pos eventstore.Position) <-chan struct{} {
	ch := make(chan struct{})
	w.mu.Lock()
	defer w.mu.Unlock()
	// The watcher may have looked at the position last before it reached
	// pos, and waits for the change after: no wait of a position reached
	// is left to it.
	if c.Position() >= pos {
		close(ch)
		return ch
	}
	heap.Push(&w.h, wait{pos: pos, ch: ch})
	if !w.watching {
		w.watching = true
		go w.watch(c)
	}
	return ch
}

// remove drops the wait of channel ch, one that ended otherwise.
func (w *waiters) remove(ch <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range w.h {
		if w.h[i].ch == ch {
			heap.Remove(&w.h, i)
			return
		}
	}
}

// len returns how many waits are held.
func (w *waiters) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.h)
}

// watch closes the channels of the waits c's position reached, at every
// change of c, until no wait is left.
func (w *waiters) watch(c ProgressChanges) {
	for {
		changed := c.Changed()
		at := c.Position()
		w.mu.Lock()
		for len(w.h) > 0 && w.h[0].pos <= at {
			close(heap.Pop(&w.h).(wait).ch)
		}
		if len(w.h) == 0 {
			w.watching = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		<-changed
	}
}

type wait struct {
	pos eventstore.Position
	ch  chan struct{}
}

// waitHeap is a container/heap of waits, the lowest position first.
type waitHeap []wait

func (h waitHeap) Len() int           { return len(h) }
func (h waitHeap) Less(i, j int) bool { return h[i].pos < h[j].pos }
func (h waitHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *waitHeap) Push(x any)        { *h = append(*h, x.(wait)) }
func (h *waitHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = wait{}
	*h = old[:len(old)-1]
	return x
}
