package accounts

import (
	"container/heap"
	"iter"
	"time"

	"github.com/licenseledger/ledger/internal/codec"
)

// Defaults of the idempotency keys an account remembers.
const (
	// DefaultIdempotencyWindow is how long a key is remembered after its
	// command was recorded: as long as the HTTP API keeps the answer.
	DefaultIdempotencyWindow = 24 * time.Hour
	// DefaultIdempotencyKeys is how many keys an account remembers at most.
	DefaultIdempotencyKeys = 10_000
)

// keyMemory holds an account's idempotency keys recorded within the
// window, at most max of them, and forgets the oldest first. A heap orders
// the keys by the time of their command whatever the order they were
// remembered in (loading reads the ledger stream, then the activity
// stream). A key remembered again after it was forgotten is pushed again;
// its older heap entry, recognised by its sequence number, is dropped
// when it comes up.
type keyMemory struct {
	window time.Duration
	max    int
	byKey  map[string]*keyed
	oldest keyHeap
	seq    uint64
}

// keyed is what a key answers: the first result, without the stored bytes
// of its events, and when its command was recorded.
type keyed struct {
	result Result
	at     time.Time
	seq    uint64
}

func newKeyMemory(window time.Duration, max int) *keyMemory {
	return &keyMemory{window: window, max: max, byKey: make(map[string]*keyed)}
}

// lookup returns the result first given under key, if the key was recorded
// within the window before now.
func (m *keyMemory) lookup(key string, now time.Time) (Result, bool) {
	k, ok := m.byKey[key]
	if !ok || !m.recent(k.at, now) {
		return Result{}, false
	}
	return k.result, true
}

// recent reports whether a command recorded at at is within the window
// at now.
func (m *keyMemory) recent(at, now time.Time) bool { return now.Sub(at) < m.window }

// remember records an event appended under key, at its command's time. The
// events of one command (one correlation id) are remembered one after the
// other under the same key. Events older than the window at now are not
// remembered.
func (m *keyMemory) remember(key string, d codec.Decoded, now time.Time) {
	at := d.Meta.Time
	if !m.recent(at, now) {
		return
	}
	d.Record.Data, d.Record.Metadata = nil, nil // a repeat needs the event, not its bytes
	k, ok := m.byKey[key]
	// Another command under a remembered key (its events share no
	// correlation id with the first) was appended after the key had been
	// forgotten, or by a process that had not seen it: the later one is
	// the one a repeat now stands for.
	if !ok || !m.recent(k.at, now) || k.result.Events[0].Meta.CorrelationID != d.Meta.CorrelationID {
		m.seq++
		k = &keyed{at: at, seq: m.seq}
		m.byKey[key] = k
		heap.Push(&m.oldest, heapEntry{key: key, at: at, seq: m.seq})
	}
	k.result.Events = append(k.result.Events, d)
	if d.Record.Position > k.result.Position {
		k.result.Position = d.Record.Position
	}
	m.prune(now)
}

// prune forgets the oldest keys beyond the count and every key older than
// the window.
func (m *keyMemory) prune(now time.Time) {
	for m.oldest.Len() > 0 {
		e := m.oldest[0]
		k, ok := m.byKey[e.key]
		switch {
		case !ok || k.seq != e.seq: // forgotten, or remembered again since
		case len(m.byKey) > m.max || !m.recent(k.at, now):
			delete(m.byKey, e.key)
		default:
			return
		}
		heap.Pop(&m.oldest)
	}
}

// len returns how many keys are remembered.
func (m *keyMemory) len() int { return len(m.byKey) }

// results returns every remembered result, for scrubbing.
func (m *keyMemory) results() iter.Seq[Result] {
	return func(yield func(Result) bool) {
		for _, k := range m.byKey {
			if !yield(k.result) {
				return
			}
		}
	}
}

type heapEntry struct {
	key string
	at  time.Time
	seq uint64
}

// keyHeap is a min-heap of keys by the time of their command, then by
// the order they were remembered in.
type keyHeap []heapEntry

func (h keyHeap) Len() int { return len(h) }
func (h keyHeap) Less(i, j int) bool {
	if c := h[i].at.Compare(h[j].at); c != 0 {
		return c < 0
	}
	return h[i].seq < h[j].seq
}
func (h keyHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *keyHeap) Push(x any)   { *h = append(*h, x.(heapEntry)) }
func (h *keyHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = heapEntry{}
	*h = old[:len(old)-1]
	return e
}
