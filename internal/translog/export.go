package translog

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/licenseledger/ledger/eventstore"
)

// StreamReader reads one stream as stored; eventstore.Store is one.
type StreamReader interface {
	ReadStream(ctx context.Context, stream eventstore.StreamID, from uint64) iter.Seq2[eventstore.Record, error]
}

// ErrNotInLog is returned by Export for a record of the account that the
// tree should hold but does not: the store's global order and the tree
// disagree.
var ErrNotInLog = errors.New("translog: record not in the log")

// Export emits the record lines of an audit bundle of account against the
// signed checkpoint cp: the account's ledger and activity records merged
// in global order, those the checkpoint's tree holds, each with its leaf
// index and inclusion proof, which gives the hashes from the leaf up to
// where its path meets the path of the record before (compactProof).
// Records stored after the checkpoint's last
// leaf are left out. emit may keep nothing of the line it is given
// beyond the call.
func (l *Log) Export(ctx context.Context, h StreamReader, account string, cp *Signed, emit func(*BundleLine) error) error {
	if cp.Size == 0 {
		return nil
	}
	l.mu.RLock()
	if int64(len(l.positions)) < cp.Size {
		l.mu.RUnlock()
		return fmt.Errorf("checkpoint of %d leaves, the tree holds %d: %w", cp.Size, len(l.positions), ErrProof)
	}
	end := l.positions[cp.Size-1]
	l.mu.RUnlock()

	type item struct {
		rec eventstore.Record
		err error
	}
	pull := func(next func() (eventstore.Record, error, bool)) (*item, error) {
		rec, err, ok := next()
		if !ok || errors.Is(err, eventstore.ErrStreamNotFound) || rec.Position > end {
			return nil, nil
		}
		if err != nil && !errors.Is(err, eventstore.ErrUnreadable) {
			return nil, err
		}
		return &item{rec, err}, nil
	}
	nextL, stopL := iter.Pull2(h.ReadStream(ctx, eventstore.LedgerStream(account), 0))
	defer stopL()
	nextA, stopA := iter.Pull2(h.ReadStream(ctx, eventstore.ActivityStream(account), 0))
	defer stopA()
	a, err := pull(nextL)
	if err != nil {
		return err
	}
	b, err := pull(nextA)
	if err != nil {
		return err
	}
	reader := l.CachedReader(1 << 16)
	prev := int64(-1) // the leaf of the record line before
	for a != nil || b != nil {
		var it *item
		if b == nil || (a != nil && a.rec.Position <= b.rec.Position) {
			it = a
		} else {
			it = b
		}
		idx, ok := l.LeafIndex(it.rec.Position)
		if !ok || idx >= cp.Size {
			return fmt.Errorf("record at position %d of %s: %w", it.rec.Position, it.rec.Stream, ErrNotInLog)
		}
		proof, err := l.InclusionProof(idx, cp.Size, reader)
		if err != nil {
			return err
		}
		line := RecordLine(it.rec, it.err, idx, proof[:compactProof(cp.Size, prev, idx)])
		prev = idx
		if err := emit(&line); err != nil {
			return err
		}
		if it == a {
			a, err = pull(nextL)
		} else {
			b, err = pull(nextA)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// CheckpointLine returns the first line of an audit bundle of account.
func CheckpointLine(account string, cp *Signed) BundleLine {
	return BundleLine{Kind: KindCheckpoint, Format: BundleFormat, Account: account, Checkpoint: string(cp.Note)}
}
