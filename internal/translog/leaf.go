// Package translog makes the ledger a transparency log, as Certificate
// Transparency and Go's checksum database are: a Merkle tree (RFC 6962
// hashing, golang.org/x/mod/sumdb/tlog) over every record the event store
// holds, in the store's global order, with signed checkpoints
// (golang.org/x/mod/sumdb/note, the C2SP signed-note and tlog-checkpoint
// formats), inclusion and consistency proofs, and audit bundles that an
// auditor verifies offline.
//
// # Leaves
//
// Leaf i of the tree is the i-th record of the store's global order, every
// record the store holds, whichever stream it is in. Its bytes ([LeafData])
// are the record as stored, sealed fields sealed: the stream's name, the
// revision, the event id, the type, the payload and the metadata, each
// length-prefixed. Erasing a user's key changes none of them, so every
// proof still holds after a deletion. Positions are not part of a leaf (they
// belong to the store, not to the event), nor is the time the store
// reports.
//
// A record the store holds but cannot read back as an event (a message
// another client published on the ledger's subjects, see
// eventstore.ErrUnreadable) is a leaf too, since it is stored: its bytes
// are a marker, its global position and the stream its place names, if
// any. The tree then commits to where it is, not to its content, which the
// store cannot give.
//
// # Persistence
//
// The tree's stored hashes (tlog.StoredHashes) are appended to a file as
// records are, with the position of every leaf in another; both are synced
// and the tree's size and root recorded before each checkpoint is signed,
// so a restart resumes from the last signed tree, checked against its
// root, and reads the store only after it. Nothing rereads the history to
// answer a request.
//
// # Following the store
//
// Once caught up, the log follows the store on a subscription of its own,
// or, in the service, is fed the records the read models' runner reads
// (Config.Feed, an [eventstore.Feed]): each comes with the position of the
// record read before it, so the log appends it directly when that is its
// last leaf and reads the store for whatever the feed lacks (records it had
// no room for, or read before the runner caught up) otherwise.
package translog

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/licenseledger/ledger/eventstore"
)

// Leaf kinds: the first byte of a leaf's data.
const (
	leafRecord     byte = 0
	leafUnreadable byte = 1
)

// LeafData returns the bytes of the leaf of a record: for a record read
// with readErr nil, 0x00 then the stream name, the revision (8 bytes, big
// endian), the event id (16 bytes), the type, the payload and the metadata;
// strings and byte slices are preceded by their length (4 bytes, big
// endian). For a record the store could not read (readErr wraps
// eventstore.ErrUnreadable), 0x01, the position (8 bytes) and the stream
// name, length-prefixed (empty when its place names none).
func LeafData(rec eventstore.Record, readErr error) []byte {
	return appendLeafData(nil, rec, readErr)
}

func appendLeafData(b []byte, rec eventstore.Record, readErr error) []byte {
	if readErr != nil {
		b = append(b, leafUnreadable)
		b = binary.BigEndian.AppendUint64(b, uint64(rec.Position))
		return appendStreamName(b, rec.Stream)
	}
	b = append(b, leafRecord)
	b = appendStreamName(b, rec.Stream)
	b = binary.BigEndian.AppendUint64(b, rec.Revision)
	b = append(b, rec.ID[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(rec.Type)))
	b = append(b, rec.Type...)
	b = appendBytes(b, rec.Data)
	return appendBytes(b, rec.Metadata)
}

// appendStreamName appends streamName(s), length-prefixed, to b.
func appendStreamName(b []byte, s eventstore.StreamID) []byte {
	if s.Account == "" {
		return binary.BigEndian.AppendUint32(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.Category)+1+len(s.Account)))
	b = append(b, s.Category...)
	b = append(b, '-')
	return append(b, s.Account...)
}

func streamName(s eventstore.StreamID) string {
	if s.Account == "" {
		return ""
	}
	return s.String()
}

// AppendRecordLeaf appends the leaf data of a readable record to b.
func AppendRecordLeaf(b []byte, stream string, revision uint64, id uuid.UUID, typ string, data, meta []byte) []byte {
	b = append(b, leafRecord)
	b = appendBytes(b, []byte(stream))
	b = binary.BigEndian.AppendUint64(b, revision)
	b = append(b, id[:]...)
	b = appendBytes(b, []byte(typ))
	b = appendBytes(b, data)
	b = appendBytes(b, meta)
	return b
}

func appendUnreadable(b []byte, pos eventstore.Position, stream string) []byte {
	b = append(b, leafUnreadable)
	b = binary.BigEndian.AppendUint64(b, uint64(pos))
	return appendBytes(b, []byte(stream))
}

// AppendUnreadableLeaf appends the leaf data of a record the store could
// not read to b.
func AppendUnreadableLeaf(b []byte, pos eventstore.Position, stream string) []byte {
	return appendUnreadable(b, pos, stream)
}

func appendBytes(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// LeafHash returns the RFC 6962 leaf hash of a record.
func LeafHash(rec eventstore.Record, readErr error) tlog.Hash {
	return tlog.RecordHash(LeafData(rec, readErr))
}

// ErrProof is wrapped by the errors of proofs that cannot be given: a size
// larger than the tree, or an index outside it.
var ErrProof = errors.New("translog: no such proof")

func proofError(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrProof)
}
