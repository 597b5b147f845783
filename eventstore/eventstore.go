// Package eventstore defines the contract every event store backend of the
// license ledger implements, and the types that cross it.
//
// # Streams and positions
//
// Events live in streams. Each account has a ledger stream and an activity
// stream ([StreamID]). Within a stream every event has a revision, counting
// from 0. Across all streams of a store every event has a global [Position]
// that only grows; reading the global order from a position is how
// projections and relays consume the store.
//
// # Concurrency
//
// [Store.Append] takes the revision the writer expects the stream to be at.
// When another writer got there first the append fails with [ErrConflict]
// and stores nothing; the writer reloads and decides again. Appending events
// whose ids are already stored in the same stream at the same place is not a
// conflict: the store returns the original result, so a retry after a lost
// acknowledgement is safe.
//
// Backends live in sub-packages (memory, jetstream, esdb) and are checked by
// the shared conformance suite in package eventstoretest.
package eventstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/google/uuid"
)

// ErrConflict is returned by [Store.Append] when the stream is not at the
// expected revision: another writer appended first. Nothing was stored.
var ErrConflict = errors.New("eventstore: wrong expected revision")

// ErrStreamNotFound is returned by [Store.ReadStream] when the stream holds
// no event.
var ErrStreamNotFound = errors.New("eventstore: stream not found")

// ErrClosed is returned by calls on a store that has been closed.
var ErrClosed = errors.New("eventstore: store closed")

// Category tells what kind of stream a stream is.
type Category string

const (
	// Ledger streams hold an account's license events.
	Ledger Category = "ledger"
	// Activity streams hold the activities an account's users recorded.
	Activity Category = "activity"
)

// StreamID names one stream: a category and the account it belongs to.
type StreamID struct {
	Category Category
	Account  string
}

// String returns the stream's name in the "<category>-<account>" form used
// by EventStoreDB.
func (s StreamID) String() string { return string(s.Category) + "-" + s.Account }

// LedgerStream returns the ledger stream of an account.
func LedgerStream(account string) StreamID { return StreamID{Ledger, account} }

// ActivityStream returns the activity stream of an account.
func ActivityStream(account string) StreamID { return StreamID{Activity, account} }

// ExpectedRevision states what a writer believes about a stream before it
// appends. Use [Any], [NoStream] or [Exact].
type ExpectedRevision struct {
	kind expectKind
	rev  uint64
}

type expectKind uint8

const (
	expectAny expectKind = iota
	expectNoStream
	expectExact
)

// Any appends whatever the stream's revision.
func Any() ExpectedRevision { return ExpectedRevision{kind: expectAny} }

// NoStream appends only if the stream holds no event yet.
func NoStream() ExpectedRevision { return ExpectedRevision{kind: expectNoStream} }

// Exact appends only if the stream's last event has revision rev.
func Exact(rev uint64) ExpectedRevision { return ExpectedRevision{kind: expectExact, rev: rev} }

// ExpectRevisionAfter returns the expectation for a stream that holds n
// events: [NoStream] when n is 0, otherwise Exact(n-1).
func ExpectRevisionAfter(n uint64) ExpectedRevision {
	if n == 0 {
		return NoStream()
	}
	return Exact(n - 1)
}

// IsAny reports whether e accepts any revision.
func (e ExpectedRevision) IsAny() bool { return e.kind == expectAny }

// IsNoStream reports whether e requires an empty stream.
func (e ExpectedRevision) IsNoStream() bool { return e.kind == expectNoStream }

// Revision returns the exact revision e expects and true, or 0 and false
// when e is not an exact expectation.
func (e ExpectedRevision) Revision() (uint64, bool) { return e.rev, e.kind == expectExact }

// Matches reports whether a stream holding n events satisfies e.
func (e ExpectedRevision) Matches(n uint64) bool {
	switch e.kind {
	case expectNoStream:
		return n == 0
	case expectExact:
		return n == e.rev+1
	default:
		return true
	}
}

// String describes e for error messages.
func (e ExpectedRevision) String() string {
	switch e.kind {
	case expectNoStream:
		return "no stream"
	case expectExact:
		return fmt.Sprintf("revision %d", e.rev)
	default:
		return "any"
	}
}

// Proposed is an event to append: its id, type and the stored bytes of its
// payload and metadata. The store keeps Data and Metadata byte for byte.
//
// Data is a JSON value (the event's payload). Metadata is a flat JSON object
// whose members are CloudEvents extension-style attributes (lower-case
// alphanumeric names, string or number values, plus "time" and "subject"),
// or empty. Backends that publish CloudEvents splice these members into the
// envelope, so both must be valid JSON.
type Proposed struct {
	ID       uuid.UUID
	Type     string
	Data     []byte
	Metadata []byte
}

// Record is a stored event as read back from a store. A store never
// modifies the bytes of a record it returned (Data, Metadata), so readers
// may keep them.
type Record struct {
	ID       uuid.UUID
	Stream   StreamID
	Type     string
	Data     []byte
	Metadata []byte
	// Revision is the event's place in its stream, from 0.
	Revision uint64
	// Position is the event's place in the store's global order. Positions
	// only grow; they need not be dense.
	Position Position
	// Stored is when the store accepted the event, as the store reports it.
	Stored time.Time
}

// Position is a place in a store's global order. The zero Position is
// before the first event.
type Position uint64

// AppendResult tells where an append landed.
type AppendResult struct {
	// NextRevision is the stream's revision after the append: the revision of
	// the last event appended.
	NextRevision uint64
	// Position is the global position of the last event appended.
	Position Position
}

// Store is an event store: the contract every backend implements.
type Store interface {
	// Append stores events at the end of stream, all or none, if the stream
	// matches expected. It returns ErrConflict (wrapped) when it does not.
	// Appending events whose ids are already stored in stream, in the same
	// order, returns the result of the first append and stores nothing.
	Append(ctx context.Context, stream StreamID, expected ExpectedRevision, events ...Proposed) (AppendResult, error)

	// ReadStream returns the events of stream from revision from onwards, in
	// order. It yields ErrStreamNotFound (wrapped) when the stream is empty.
	ReadStream(ctx context.Context, stream StreamID, from uint64) iter.Seq2[Record, error]

	// ReadAll returns the events of every stream in global order, starting
	// after position after, up to the last event stored when the read began.
	ReadAll(ctx context.Context, after Position) iter.Seq2[Record, error]

	// Subscribe follows the global order live: it yields every event after
	// position after, then each new event as it is stored, until ctx ends
	// (then it yields ctx's error) or the store fails.
	Subscribe(ctx context.Context, after Position) iter.Seq2[Record, error]

	// Close releases the store's resources.
	Close() error
}

// ErrSelfCondition is returned by [ConditionalAppender.AppendIf] when the
// condition is on the stream appended to (its expected revision says that
// already).
var ErrSelfCondition = errors.New("eventstore: the condition is on the stream appended to")

// Condition is a requirement on a stream other than the one an append
// writes to: that Stream still matches Expected when the events are stored.
// See [ConditionalAppender].
type Condition struct {
	Stream   StreamID
	Expected ExpectedRevision
}

// String describes c for error messages.
func (c Condition) String() string { return c.Stream.String() + " at " + c.Expected.String() }

// ConditionalAppender is an optional capability of a [Store]: appending to
// one stream on condition that another stream has not moved. The license
// ledger uses it to record an activity (activity stream) only while the
// account's ledger stream is still at the revision the decision was taken
// on, so that a user deactivated by another process in between cannot
// record one, without reading the ledger before every activity.
//
// Callers find it with a type assertion and fall back to reading the
// condition stream before a plain [Store.Append] when the store lacks it
// or refuses the call with [errors.ErrUnsupported].
type ConditionalAppender interface {
	// AppendIf stores events at the end of stream, all or none, if stream
	// matches expected and cond.Stream matches cond.Expected, both checked
	// atomically with the write: no event of either stream can be stored
	// between the check and the append. It returns ErrConflict (wrapped)
	// when either does not hold, storing nothing. A retry of an append
	// already stored returns its first result, as [Store.Append] does,
	// whatever cond's stream did since.
	//
	// It returns an error matching [errors.ErrUnsupported], storing
	// nothing, when the store cannot check this condition exactly (for
	// instance streams of different accounts, or a replicated stream whose
	// server checks expectations before it orders writes); the caller then
	// uses the read-then-append path. cond.Stream must differ from stream:
	// a condition on the stream appended to is refused with
	// [ErrSelfCondition], storing nothing.
	AppendIf(ctx context.Context, stream StreamID, expected ExpectedRevision, cond Condition, events ...Proposed) (AppendResult, error)
}

// StreamEnd is where a stream ended as a reader folded it: how many
// revisions it held and the position of its last event (0 for both when
// it held none).
type StreamEnd struct {
	Revisions uint64
	Position  Position
}

// EndConfirmer is an optional capability of a [Store]: confirming, without
// reading an account's streams, that they end where a reader that saw
// every record of the store up to a position found them end, and taking
// those ends as the streams' heads for the account's next appends. A
// service that keeps accounts' states (a read model fed in global order)
// uses it to decide an account's first command on that state without
// reading its streams.
type EndConfirmer interface {
	// ConfirmEnds reports whether the ledger and activity streams of
	// account end at ledger and activity, the ends a reader found having
	// seen every record stored up to position after: true only when the
	// store holds no record of either stream after it and exactly as many
	// records of each as it has revisions (so no record the reader
	// skipped lies past its last event, and none is missing). On true
	// the store expects its next append to either stream at those ends.
	// False changes nothing; the caller then reads the streams.
	ConfirmEnds(ctx context.Context, account string, after Position, ledger, activity StreamEnd) (bool, error)
}

// ErrUnreadable is wrapped by the error a read yields for a stored record
// the store cannot read back as an event: a message it did not write, with
// a malformed place, revision or envelope. Unlike other read errors it
// concerns that record only: reads of every backend go on with the next
// record when the consumer asks for more, so that one foreign record never
// stops a reader. The record yielded with it holds what the store knows:
// Position, Stored, and Stream when its place names one.
var ErrUnreadable = errors.New("eventstore: unreadable record")

// UnreadableError describes a record a read could not decode. Reason says
// what is wrong with it without quoting its content.
type UnreadableError struct {
	Position Position
	// Stream is the stream the record's place names, zero when none.
	Stream StreamID
	Reason string
}

// Error describes the record.
func (e *UnreadableError) Error() string {
	if e.Stream.Account != "" {
		return fmt.Sprintf("record at position %d of %s unreadable: %s", e.Position, e.Stream, e.Reason)
	}
	return fmt.Sprintf("record at position %d unreadable: %s", e.Position, e.Reason)
}

// Unwrap returns ErrUnreadable.
func (e *UnreadableError) Unwrap() error { return ErrUnreadable }
