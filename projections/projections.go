// Package projections holds the read models of the license ledger. Each read
// model is a fold over stored events: it is fed decoded events one at a
// time, in the store's global order, and answers questions from what it has
// seen. Any read model can be thrown away and rebuilt from the store.
//
// # Read models
//
// One package per read model:
//
//   - seats: seat usage and the user directory of each account.
//   - attribution: activities with who logged them and who owns them.
//   - audit: every event as an audit entry with its hash-chain link.
//   - billing: per billing cycle seat quantities, proration and usage.
//
// Two more packages answer from a stream rather than from a fold: asof
// rebuilds an account as it was at an instant, and chain verifies a
// stream's hash chain.
//
// # Concurrency
//
// Every read model is safe for reads while events are being applied: Apply
// takes a write lock, reads take a read lock and return copies, never
// references into the model. Every read model is also a [Batcher], whose
// ApplyBatch takes the lock once for many events: [Set.ApplyBatch] is the
// cheaper way to fold a long history.
//
// # Snapshots
//
// Every read model is a [Snapshotter] with a compact binary form (package
// internal/snap): a header naming the read model and the format version,
// then its state without reflection. Restore replaces the state and refuses
// anything else with [ErrSnapshotFormat], so a service rebuilds instead of
// starting from a snapshot it does not understand.
//
// # Personal data
//
// Read models that show names hold them per user, not per record, and
// blank them when the user is deleted. Their snapshots ([Snapshotter]) are
// taken from that state, so a snapshot never holds the name or email of a
// user deleted before it was taken.
package projections

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"time"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
)

// ErrNotFound is returned (wrapped) by read models asked about an account,
// user or period they hold nothing for.
var ErrNotFound = errors.New("projections: not found")

// ErrSnapshotFormat is returned (wrapped) by Restore for bytes that are not
// a snapshot the read model can read: another read model's, a format
// version it does not know, truncated or corrupt. The caller rebuilds the
// read model from the first event instead.
var ErrSnapshotFormat = errors.New("projections: unreadable snapshot")

// Projection is a read model fed with decoded events in the store's global
// order.
type Projection interface {
	// Name returns a short stable name for the read model, used in errors,
	// metrics and snapshot keys.
	Name() string
	// Apply folds one event into the read model. Events must come in global
	// order, each once; an error means the event could not be applied and
	// the read model is unchanged by it.
	Apply(d codec.Decoded) error
}

// Snapshotter is a read model that can export its state and later start
// from it instead of from the first event. A snapshot holds no name or
// email of a user deleted before it was taken.
type Snapshotter interface {
	// Snapshot returns the read model's state as bytes.
	Snapshot() ([]byte, error)
	// Restore replaces the read model's state with one Snapshot returned.
	Restore(b []byte) error
}

// Batcher is a read model that can fold several events at once more
// cheaply than one by one (taking its lock once, say). A runner feeding
// events in batches uses it through [Set.ApplyBatch].
type Batcher interface {
	// ApplyBatch folds ds in order, as Apply would one by one. It stops
	// at the first event that cannot be applied and returns its error;
	// the events before it are applied, it and those after are not.
	ApplyBatch(ds []codec.Decoded) error
}

// ApplyLocked folds ds in order with apply while holding mu, stopping at
// the first event apply cannot fold and returning its error: the
// ApplyBatch of a read model guarded by one lock, which it takes once per
// batch rather than once per event.
func ApplyLocked(mu sync.Locker, ds []codec.Decoded, apply func(*codec.Decoded) error) error {
	mu.Lock()
	defer mu.Unlock()
	for i := range ds {
		if err := apply(&ds[i]); err != nil {
			return err
		}
	}
	return nil
}

// Set applies each event to several read models in turn. A Set is itself a
// Projection.
type Set []Projection

var _ Projection = Set(nil)

// Name returns "set".
func (s Set) Name() string { return "set" }

// Apply applies d to every read model of the set, in order, and returns
// the errors of those that failed joined together; the others still apply
// d.
func (s Set) Apply(d codec.Decoded) error {
	var errs []error
	for _, p := range s {
		if err := p.Apply(d); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.Name(), err))
		}
	}
	if errs == nil {
		return nil
	}
	return fmt.Errorf("apply %s %s at position %d: %w", d.Record.Type, d.Record.ID, d.Record.Position, errors.Join(errs...))
}

// ApplyBatch applies the events of ds, in order, to every read model of
// the set: with one call to those that are Batchers, event by event to the
// others. It returns the errors of the read models that failed joined
// together; a read model that fails stops at the event it failed on
// (that event and those after it are not applied to it), the others apply
// every event. After an error the read models may thus stand at different
// positions: the caller stops or rebuilds, as it would after Apply failed.
func (s Set) ApplyBatch(ds []codec.Decoded) error {
	if len(ds) == 0 {
		return nil
	}
	var errs []error
	for _, p := range s {
		if b, ok := p.(Batcher); ok {
			if err := b.ApplyBatch(ds); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.Name(), err))
			}
			continue
		}
		for i := range ds {
			if err := p.Apply(ds[i]); err != nil {
				errs = append(errs, fmt.Errorf("%s: apply %s %s at position %d: %w", p.Name(),
					ds[i].Record.Type, ds[i].Record.ID, ds[i].Record.Position, err))
				break
			}
		}
	}
	if errs == nil {
		return nil
	}
	return fmt.Errorf("apply %d events at positions %d to %d: %w", len(ds),
		ds[0].Record.Position, ds[len(ds)-1].Record.Position, errors.Join(errs...))
}

// AllReader reads a store's global order; eventstore.Store is one.
type AllReader interface {
	ReadAll(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error]
}

// StreamReader reads one stream; eventstore.Store is one.
type StreamReader interface {
	ReadStream(ctx context.Context, stream eventstore.StreamID, from uint64) iter.Seq2[eventstore.Record, error]
}

// Decoder turns stored records into events; *codec.Codec is one.
type Decoder interface {
	Decode(ctx context.Context, r eventstore.Record) (codec.Decoded, error)
}

// Fold reads the store's global order after position after, up to the
// last event stored when the read began, decodes each record and applies
// it to every projection. It returns the position of the last event
// applied (after itself when there was none). It stops at the first error
// of reading, decoding or applying; the returned position is then that of
// the last event applied in full.
func Fold(ctx context.Context, r AllReader, dec Decoder, after eventstore.Position, ps ...Projection) (eventstore.Position, error) {
	set := Set(ps)
	last := after
	for rec, err := range r.ReadAll(ctx, after) {
		if err != nil {
			return last, fmt.Errorf("fold after position %d: %w", last, err)
		}
		d, err := dec.Decode(ctx, rec)
		if err != nil {
			return last, fmt.Errorf("fold at position %d: %w", rec.Position, err)
		}
		if err := set.Apply(d); err != nil {
			return last, fmt.Errorf("fold: %w", err)
		}
		last = rec.Position
	}
	return last, nil
}

// AccountOf returns the account an event belongs to: that of its stream,
// or of its metadata when the record names no stream.
func AccountOf(d codec.Decoded) string {
	if a := d.Record.Stream.Account; a != "" {
		return a
	}
	return d.Meta.Account
}

// Quarantined is a stored record the read models skipped because it could
// not be read, verified or decoded (see codec.Link for what verifies). It
// names where the record is and why it was skipped, never what it holds.
type Quarantined struct {
	Position eventstore.Position `json:"position"`
	// Stream is the stream the record's place names ("ledger-acme"), empty
	// when it names none; Account is that stream's account.
	Stream  string `json:"stream,omitempty"`
	Account string `json:"account,omitempty"`
	// Revision is the revision the record carries, when it carries one.
	Revision *uint64 `json:"revision,omitempty"`
	Reason   string  `json:"reason"`
	// RecordedAt is when the store accepted the record.
	RecordedAt time.Time `json:"recorded_at"`
}

// MergeIDs merges the account ids opened since the last merge into ids,
// which is sorted, and returns it sorted: the new ids are sorted, deduplicated
// and merged from the end in place, so that a batch (of a replay, say)
// moves ids once however many accounts it opened. It reorders opened; the
// caller empties it afterwards.
func MergeIDs(ids, opened []string) []string {
	if len(opened) == 0 {
		return ids
	}
	slices.Sort(opened)
	fresh := slices.Compact(opened)
	fresh = slices.DeleteFunc(fresh, func(id string) bool { _, found := slices.BinarySearch(ids, id); return found })
	i, j := len(ids)-1, len(fresh)-1
	ids = slices.Grow(ids, len(fresh))[:len(ids)+len(fresh)]
	for k := len(ids) - 1; j >= 0; k-- {
		if i >= 0 && ids[i] > fresh[j] {
			ids[k] = ids[i]
			i--
		} else {
			ids[k] = fresh[j]
			j--
		}
	}
	return ids
}
