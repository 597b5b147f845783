package esdb

import (
	"sync"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
)

// writtenCap bounds how many recent appends a store remembers.
const writtenCap = 16384

// written remembers the recent appends of one store, keyed by the id of
// their first event.
//
// The server recognises a retried append only at the revision it was first
// appended at (or, with expected revision any, from a bounded id cache):
// appended again with an expectation that matches the stream's current
// revision, the same events are stored a second time. A writer that reloads
// its stream and retries with a fresh expectation would do exactly that. The
// store answers such retries from memory with the first result, as the
// contract requires. This covers retries made through the same store; a
// retry from another process still relies on the server's check alone.
type written struct {
	mu   sync.Mutex
	byID map[uuid.UUID]*writtenBatch
	ring []uuid.UUID
	next int
}

type writtenBatch struct {
	stream eventstore.StreamID
	ids    []uuid.UUID
	result eventstore.AppendResult
}

func newWritten() *written {
	return &written{byID: make(map[uuid.UUID]*writtenBatch), ring: make([]uuid.UUID, writtenCap)}
}

// lookup returns the result of an earlier append of exactly events to
// stream.
func (w *written) lookup(stream eventstore.StreamID, events []eventstore.Proposed) (eventstore.AppendResult, bool) {
	if len(events) == 0 || events[0].ID == uuid.Nil {
		return eventstore.AppendResult{}, false
	}
	w.mu.Lock()
	b := w.byID[events[0].ID]
	w.mu.Unlock()
	if b == nil || b.stream != stream || len(b.ids) != len(events) {
		return eventstore.AppendResult{}, false
	}
	for i, e := range events {
		if b.ids[i] != e.ID {
			return eventstore.AppendResult{}, false
		}
	}
	return b.result, true
}

// add remembers a successful append.
func (w *written) add(stream eventstore.StreamID, events []eventstore.Proposed, res eventstore.AppendResult) {
	if len(events) == 0 {
		return
	}
	for _, e := range events {
		if e.ID == uuid.Nil {
			return // the client made up an id; no retry can repeat it
		}
	}
	ids := make([]uuid.UUID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	b := &writtenBatch{stream: stream, ids: ids, result: res}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.byID[ids[0]]; ok {
		w.byID[ids[0]] = b
		return
	}
	if old := w.ring[w.next]; old != uuid.Nil {
		delete(w.byID, old)
	}
	w.ring[w.next] = ids[0]
	w.next = (w.next + 1) % len(w.ring)
	w.byID[ids[0]] = b
}
