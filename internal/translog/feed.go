package translog

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/licenseledger/ledger/eventstore"
)

// DefaultFeedSize is how many records a Feed holds for the log.
const DefaultFeedSize = 8192

// Feed hands the log the records another reader of the store (the read
// models' runner) reads, in the store's order, so that the log does not
// follow the store a second time. It never blocks the reader: a record
// the log has no room for is read again from the store, as is any record
// the reader skipped, since each record comes with the position of the
// one read before it.
type Feed struct {
	ch   chan fedRecord
	last atomic.Uint64 // the position of the last record offered
}

type fedRecord struct {
	prev eventstore.Position
	leaf Leaf
}

// NewFeed returns a feed holding up to size records (DefaultFeedSize
// when size < 1).
func NewFeed(size int) *Feed {
	if size < 1 {
		size = DefaultFeedSize
	}
	return &Feed{ch: make(chan fedRecord, size)}
}

// Offer hands the log rec, read with readErr (nil, or one wrapping
// eventstore.ErrUnreadable), which the store holds right after the
// record at position prev (0 for the first record). It never blocks.
func (f *Feed) Offer(prev eventstore.Position, rec eventstore.Record, readErr error) {
	for {
		cur := f.last.Load()
		if uint64(rec.Position) <= cur || f.last.CompareAndSwap(cur, uint64(rec.Position)) {
			break
		}
	}
	select {
	case f.ch <- fedRecord{prev, Leaf{rec, readErr}}:
	default:
	}
}

// followFeed appends the records of the feed: those that follow the last
// leaf directly, and, from the store, those the feed lacks before them.
// Between records it signs checkpoints like Run.
func (l *Log) followFeed(ctx context.Context, store eventstore.Store, f *Feed, batch []Leaf, tick <-chan time.Time) error {
	last := l.Position()
	add := func(m fedRecord) error {
		p := m.leaf.Record.Position
		switch {
		case p <= last:
			return nil
		case m.prev == last:
			batch = append(batch, m.leaf)
			last = p
			return nil
		}
		// Records are missing before this one: read them from the store.
		if err := l.Append(batch...); err != nil {
			return err
		}
		batch = batch[:0]
		if err := l.catchUpTo(ctx, store, p); err != nil {
			return err
		}
		last = l.Position()
		return nil
	}
	for {
		select {
		case m := <-f.ch:
			batch = batch[:0]
			if err := add(m); err != nil {
				return err
			}
		drain:
			for len(batch) < cap(batch) {
				select {
				case m := <-f.ch:
					if err := add(m); err != nil {
						return err
					}
				default:
					break drain
				}
			}
			if err := l.Append(batch...); err != nil {
				return err
			}
			last = l.Position()
		case <-tick:
			// The last records offered, when the feed had no room for
			// them, are read from the store.
			if p := eventstore.Position(f.last.Load()); p > l.Position() && len(f.ch) == 0 {
				if err := l.catchUpTo(ctx, store, p); err != nil {
					return err
				}
				last = l.Position()
			}
			l.maybeSign(ctx)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// catchUpTo appends the store's records after the last leaf up to the one
// at position p.
func (l *Log) catchUpTo(ctx context.Context, store eventstore.Store, p eventstore.Position) error {
	batch := make([]Leaf, 0, catchUpBatch)
	for rec, err := range store.ReadAll(ctx, l.Position()) {
		if err != nil && !errors.Is(err, eventstore.ErrUnreadable) {
			return fmt.Errorf("log catch up: %w", err)
		}
		batch = append(batch, Leaf{rec, err})
		if len(batch) == cap(batch) || rec.Position >= p {
			if err := l.Append(batch...); err != nil {
				return err
			}
			batch = batch[:0]
		}
		if rec.Position >= p {
			break
		}
	}
	return l.Append(batch...)
}
