// Package memory is an event store kept in the memory of the process, for
// tests and benchmarks of the code above the store.
//
// It implements the whole [eventstore.Store] contract: optimistic
// concurrency per stream, idempotent retries by event id, reading a stream
// or the global order, and live subscriptions. It also appends on
// condition that another stream is at a given revision
// ([eventstore.ConditionalAppender]), checked under the same lock.
// Positions are dense: the first event stored is at position 1, the next
// at 2, and so on.
//
// # Sharing
//
// Records read back share their Data and Metadata with the store, so that
// reading a million events does not copy a million payloads: callers must
// not modify them. The store copies what it is given on [Store.Append].
package memory

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
)

var (
	_ eventstore.Store               = (*Store)(nil)
	_ eventstore.ConditionalAppender = (*Store)(nil)
	_ eventstore.EndConfirmer        = (*Store)(nil)
)

const (
	// chunkSize is how many records one block of the log holds. The log
	// grows by blocks so that appending never moves stored records.
	chunkSize = 1 << 12
	// readBatch is how many records a reader copies under the read lock
	// before it releases the lock and yields them.
	readBatch = 256

	maxInt = int(^uint(0) >> 1)
)

// errNoEvents is returned by [Store.Append] when it is given no event.
var errNoEvents = errors.New("memory: no events to append")

// errDuplicateID is returned by [Store.Append] when one append holds the
// same event id twice.
var errDuplicateID = errors.New("memory: event id appears twice in one append")

// Store is an in-memory event store, safe for concurrent use. Use [New].
type Store struct {
	mu      sync.RWMutex
	chunks  [][]eventstore.Record
	n       int // records stored; the record at index i is at Position i+1
	streams map[eventstore.StreamID]*stream
	closed  bool
	// wake is closed, and replaced, whenever events are stored or the store
	// closes: live subscribers wait on it.
	wake chan struct{}
}

// stream indexes the records of one stream.
type stream struct {
	index []int                // global index of the record at each revision
	ids   map[uuid.UUID]uint64 // revision of each event id
}

// New returns an empty store.
func New() *Store {
	return &Store{streams: map[eventstore.StreamID]*stream{}, wake: make(chan struct{})}
}

// at returns the record at global index i. The caller holds s.mu.
func (s *Store) at(i int) *eventstore.Record {
	return &s.chunks[i/chunkSize][i%chunkSize]
}

// push stores r at the end of the log. The caller holds s.mu for writing.
func (s *Store) push(r eventstore.Record) {
	if s.n%chunkSize == 0 {
		s.chunks = append(s.chunks, make([]eventstore.Record, 0, chunkSize))
	}
	last := len(s.chunks) - 1
	s.chunks[last] = append(s.chunks[last], r)
	s.n++
}

// Append stores events at the end of stream if the stream matches expected,
// all or none. It returns an error matching [eventstore.ErrConflict] when
// the stream does not match, or when some of the event ids are already
// stored in stream but not as this same batch at a place expected allows.
// Appending a batch whose ids are all stored in stream, in order, at a place
// expected allows returns the first append's result and stores nothing. It
// returns [eventstore.ErrClosed] after [Store.Close] and ctx's error when ctx
// has ended.
func (s *Store) Append(ctx context.Context, id eventstore.StreamID, expected eventstore.ExpectedRevision, events ...eventstore.Proposed) (eventstore.AppendResult, error) {
	return s.append(ctx, id, expected, nil, events)
}

// AppendIf implements [eventstore.ConditionalAppender]: it appends as
// [Store.Append] does, and only if cond's stream matches cond's expected
// revision, both checked under the store's lock. A retry of a stored batch
// returns the first result whatever cond's stream did since.
func (s *Store) AppendIf(ctx context.Context, id eventstore.StreamID, expected eventstore.ExpectedRevision, cond eventstore.Condition, events ...eventstore.Proposed) (eventstore.AppendResult, error) {
	if cond.Stream == id {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", id, eventstore.ErrSelfCondition)
	}
	return s.append(ctx, id, expected, &cond, events)
}

// append is Append, with a condition on another stream when cond is not
// nil.
func (s *Store) append(ctx context.Context, id eventstore.StreamID, expected eventstore.ExpectedRevision, cond *eventstore.Condition, events []eventstore.Proposed) (eventstore.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", id, err)
	}
	if len(events) == 0 {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", id, errNoEvents)
	}
	if len(events) > 1 {
		seen := make(map[uuid.UUID]struct{}, len(events))
		for _, e := range events {
			if _, dup := seen[e.ID]; dup {
				return eventstore.AppendResult{}, fmt.Errorf("append to %s: event %s: %w", id, e.ID, errDuplicateID)
			}
			seen[e.ID] = struct{}{}
		}
	}
	// Copy outside the lock: the store keeps the bytes, not the caller's
	// buffers.
	recs := make([]eventstore.Record, len(events))
	for i, e := range events {
		recs[i] = eventstore.Record{ID: e.ID, Stream: id, Type: e.Type, Data: bytes.Clone(e.Data), Metadata: bytes.Clone(e.Metadata)}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s: %w", id, eventstore.ErrClosed)
	}
	st := s.streams[id]
	var have uint64
	if st != nil {
		have = uint64(len(st.index))
		if res, stored, err := s.stored(st, id, expected, events); stored || err != nil {
			return res, err
		}
	}
	if !expected.Matches(have) {
		return eventstore.AppendResult{}, fmt.Errorf("append to %s at %s: the stream holds %d events: %w", id, expected, have, eventstore.ErrConflict)
	}
	if cond != nil {
		var n uint64
		if c := s.streams[cond.Stream]; c != nil {
			n = uint64(len(c.index))
		}
		if !cond.Expected.Matches(n) {
			return eventstore.AppendResult{}, fmt.Errorf("append to %s if %s: %s holds %d events: %w", id, cond, cond.Stream, n, eventstore.ErrConflict)
		}
	}
	if st == nil {
		st = &stream{ids: map[uuid.UUID]uint64{}}
		s.streams[id] = st
	}
	now := time.Now()
	for i := range recs {
		rev := have + uint64(i)
		recs[i].Revision = rev
		recs[i].Position = eventstore.Position(s.n + 1)
		recs[i].Stored = now
		st.index = append(st.index, s.n)
		st.ids[recs[i].ID] = rev
		s.push(recs[i])
	}
	close(s.wake)
	s.wake = make(chan struct{})
	return eventstore.AppendResult{NextRevision: have + uint64(len(recs)) - 1, Position: eventstore.Position(s.n)}, nil
}

// stored checks whether events are already in st: it reports true with the
// original result for a retry of a stored batch, an error for ids stored
// elsewhere, and false when none of the ids is stored. The caller holds
// s.mu.
func (s *Store) stored(st *stream, id eventstore.StreamID, expected eventstore.ExpectedRevision, events []eventstore.Proposed) (eventstore.AppendResult, bool, error) {
	first, ok := st.ids[events[0].ID]
	if !ok {
		for _, e := range events[1:] {
			if rev, ok := st.ids[e.ID]; ok {
				return eventstore.AppendResult{}, false, fmt.Errorf("append to %s: event %s is already stored at revision %d: %w", id, e.ID, rev, eventstore.ErrConflict)
			}
		}
		return eventstore.AppendResult{}, false, nil
	}
	last := first + uint64(len(events)) - 1
	same := last < uint64(len(st.index))
	for i := 0; same && i < len(events); i++ {
		same = s.at(st.index[first+uint64(i)]).ID == events[i].ID
	}
	if !same {
		return eventstore.AppendResult{}, false, fmt.Errorf("append to %s: event %s is already stored at revision %d, in another batch: %w", id, events[0].ID, first, eventstore.ErrConflict)
	}
	// The retry must name the place the batch went to, as the first append
	// did: the stream then held first events.
	if !expected.Matches(first) {
		return eventstore.AppendResult{}, false, fmt.Errorf("append to %s at %s: the events are already stored from revision %d: %w", id, expected, first, eventstore.ErrConflict)
	}
	return eventstore.AppendResult{NextRevision: last, Position: s.at(st.index[last]).Position}, true, nil
}

// ReadStream returns the events of stream from revision from, up to the
// last one stored when the read began. It yields an error matching
// [eventstore.ErrStreamNotFound] when the stream holds no event,
// [eventstore.ErrClosed] once the store is closed, and ctx's error when ctx
// ends.
func (s *Store) ReadStream(ctx context.Context, id eventstore.StreamID, from uint64) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		var buf []eventstore.Record
		next, end := from, uint64(0)
		for started := false; ; started = true {
			if err := ctx.Err(); err != nil {
				yield(eventstore.Record{}, fmt.Errorf("read %s: %w", id, err))
				return
			}
			s.mu.RLock()
			if s.closed {
				s.mu.RUnlock()
				yield(eventstore.Record{}, fmt.Errorf("read %s: %w", id, eventstore.ErrClosed))
				return
			}
			st := s.streams[id]
			if st == nil {
				s.mu.RUnlock()
				yield(eventstore.Record{}, fmt.Errorf("read %s: %w", id, eventstore.ErrStreamNotFound))
				return
			}
			if !started {
				end = uint64(len(st.index))
			}
			buf = buf[:0]
			for ; next < end && len(buf) < readBatch; next++ {
				buf = append(buf, *s.at(st.index[next]))
			}
			s.mu.RUnlock()
			if len(buf) == 0 {
				return
			}
			for _, r := range buf {
				if !yield(r, nil) {
					return
				}
			}
		}
	}
}

// ReadAll returns the events of every stream in global order, from the one
// after position after up to the last one stored when the read began. It
// yields [eventstore.ErrClosed] once the store is closed and ctx's error
// when ctx ends.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) { s.read(ctx, after, false, yield) }
}

// Subscribe yields every event after position after in global order, then
// each event as it is stored, until ctx ends (it then yields ctx's error) or
// the store closes (it then yields [eventstore.ErrClosed]).
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) { s.read(ctx, after, true, yield) }
}

// ConfirmEnds implements [eventstore.EndConfirmer]: it reports whether the
// ledger and activity streams of account hold exactly ledger.Revisions and
// activity.Revisions events, the last of each at the position given, and
// the store at least after. It never caches anything: every append reads
// the stream's length under the store's lock.
func (s *Store) ConfirmEnds(_ context.Context, account string, after eventstore.Position, ledger, activity eventstore.StreamEnd) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false, eventstore.ErrClosed
	}
	if uint64(s.n) < uint64(after) {
		return false, nil
	}
	for id, end := range map[eventstore.StreamID]eventstore.StreamEnd{
		eventstore.LedgerStream(account): ledger, eventstore.ActivityStream(account): activity,
	} {
		var n uint64
		st := s.streams[id]
		if st != nil {
			n = uint64(len(st.index))
		}
		if n != end.Revisions || end.Position > after {
			return false, nil
		}
		if n > 0 && s.at(st.index[n-1]).Position != end.Position {
			return false, nil
		}
	}
	return true, nil
}

// LastPosition returns the global position of the last event stored, 0
// when the store is empty. It returns [eventstore.ErrClosed] after
// [Store.Close].
func (s *Store) LastPosition(context.Context) (eventstore.Position, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, eventstore.ErrClosed
	}
	return eventstore.Position(s.n), nil
}

// read yields the log from the record after position after, in batches
// copied under the read lock so that no lock is held while the caller's
// loop runs (it may append). Without live it stops at the end of the log as
// it was when the read began; with live it then waits for more.
func (s *Store) read(ctx context.Context, after eventstore.Position, live bool, yield func(eventstore.Record, error) bool) {
	next := int(min(uint64(after), uint64(maxInt)))
	end := -1
	var buf []eventstore.Record
	for {
		if err := ctx.Err(); err != nil {
			yield(eventstore.Record{}, fmt.Errorf("read all after %d: %w", after, err))
			return
		}
		s.mu.RLock()
		if s.closed {
			s.mu.RUnlock()
			yield(eventstore.Record{}, fmt.Errorf("read all after %d: %w", after, eventstore.ErrClosed))
			return
		}
		if live || end < 0 {
			end = s.n
		}
		if buf == nil {
			buf = make([]eventstore.Record, 0, min(readBatch, max(end-next, 1)))
		}
		buf = buf[:0]
		for ; next < end && len(buf) < readBatch; next++ {
			buf = append(buf, *s.at(next))
		}
		// Taken under the same lock as the length: an append after the
		// unlock closes this very channel, so no wake-up is lost.
		wake := s.wake
		s.mu.RUnlock()
		if len(buf) == 0 {
			if !live {
				return
			}
			select {
			case <-ctx.Done():
			case <-wake:
			}
			continue
		}
		for _, r := range buf {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// Tamper changes the stored event at revision of stream in place, for tests
// that must show that verification (such as a hash chain) detects a
// changed byte. change gets a copy of the record whose Data and Metadata are
// its own, so records read earlier keep their bytes; changes to Stream,
// Revision and Position are ignored. Tamper returns an error matching
// [eventstore.ErrStreamNotFound] when there is no such event.
func (s *Store) Tamper(id eventstore.StreamID, revision uint64, change func(*eventstore.Record)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("tamper with %s/%d: %w", id, revision, eventstore.ErrClosed)
	}
	st := s.streams[id]
	if st == nil || revision >= uint64(len(st.index)) {
		return fmt.Errorf("tamper with %s/%d: no such event: %w", id, revision, eventstore.ErrStreamNotFound)
	}
	rec := s.at(st.index[revision])
	c := *rec
	c.Data, c.Metadata = bytes.Clone(rec.Data), bytes.Clone(rec.Metadata)
	change(&c)
	c.Stream, c.Revision, c.Position = rec.Stream, rec.Revision, rec.Position
	if c.ID != rec.ID {
		delete(st.ids, rec.ID)
		st.ids[c.ID] = revision
	}
	*rec = c
	return nil
}

// Close closes the store: later calls return [eventstore.ErrClosed] and
// live subscriptions end with it. Closing again does nothing.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.wake)
	s.chunks, s.streams = nil, nil
	return nil
}
