package eventstore

import (
	"context"
	"errors"
	"iter"
	"sync/atomic"
	"time"
)

// DefaultFeedSize is how many records a Feed holds for its follower.
const DefaultFeedSize = 8192

// Feed hands a follower of the store (the publisher, the transparency
// log) the records another reader of the store (the read models' runner)
// reads, in the store's order, so that the follower does not read the
// store a second time. It never blocks the reader: a record the follower
// has no room for is read again from the store, as is any record the
// reader skipped or read before the follower started, since each record
// comes with the position of the one read before it. The reader offers it
// every record it reads ([Feed.Offer]); the follower reads [Feed.Records]
// in place of [Store.Subscribe]. A Feed has one follower.
type Feed struct {
	ch   chan fedRecord
	last atomic.Uint64 // the position of the last record offered
}

type fedRecord struct {
	prev Position
	rec  Record
	err  error
}

// NewFeed returns a feed holding up to size records (DefaultFeedSize when
// size < 1).
func NewFeed(size int) *Feed {
	if size < 1 {
		size = DefaultFeedSize
	}
	return &Feed{ch: make(chan fedRecord, size)}
}

// Offer hands the follower rec, read with readErr (nil, or one wrapping
// ErrUnreadable), which the store holds right after the record
// at position prev (0 for the first record). It never blocks. rec must not
// change afterwards.
func (f *Feed) Offer(prev Position, rec Record, readErr error) {
	for {
		cur := f.last.Load()
		if uint64(rec.Position) <= cur || f.last.CompareAndSwap(cur, uint64(rec.Position)) {
			break
		}
	}
	select {
	case f.ch <- fedRecord{prev, rec, readErr}:
	default:
	}
}

// feedPoll is how often Records looks for records offered that the feed
// had no room for.
const feedPoll = 100 * time.Millisecond

// Records yields, as src.Subscribe would, every record of src after
// position after in the store's order, then each new one, until ctx ends:
// first those src holds now (src.ReadAll), then those the feed hands over
// that directly follow the last one yielded, and, read from src, those
// the feed lacks before them or had no room for.
func (f *Feed) Records(ctx context.Context, src Store, after Position) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		last := after
		// catchUp yields the records of src after last up to position to
		// (all of them when to is 0); false: stop.
		catchUp := func(to Position) bool {
			for rec, err := range src.ReadAll(ctx, last) {
				if err != nil && !errors.Is(err, ErrUnreadable) {
					yield(rec, err)
					return false
				}
				if !yield(rec, err) {
					return false
				}
				last = rec.Position
				if to != 0 && last >= to {
					break
				}
			}
			return ctx.Err() == nil
		}
		if !catchUp(0) {
			return
		}
		tick := time.NewTicker(feedPoll)
		defer tick.Stop()
		for {
			select {
			case m := <-f.ch:
				p := m.rec.Position
				if p <= last {
					continue // yielded already
				}
				if m.prev != last {
					// Records are missing before this one: read them, and
					// it, from the store.
					if !catchUp(p) {
						return
					}
					continue
				}
				if !yield(m.rec, m.err) {
					return
				}
				last = p
			case <-tick.C:
				// The last records offered, when the feed had no room for
				// them, are read from the store.
				if p := Position(f.last.Load()); p > last && len(f.ch) == 0 {
					if !catchUp(p) {
						return
					}
				}
			case <-ctx.Done():
				return
			}
		}
	}
}
