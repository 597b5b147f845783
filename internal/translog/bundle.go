package translog

import (
	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/licenseledger/ledger/eventstore"
)

// BundleFormat names the audit bundle format in its first line.
const BundleFormat = "license-ledger-audit-bundle/2"

// bundleFormat1 is the format whose record lines all give their whole
// inclusion proof; a line of format 2 may give only the hashes the line
// before does not prove, so every bundle of format 1 verifies as one of
// format 2.
const bundleFormat1 = "license-ledger-audit-bundle/1"

// Kinds of the lines of an audit bundle.
const (
	KindCheckpoint = "checkpoint"
	KindKey        = "key"
	KindRecord     = "record"
)

// BundleLine is one line of an audit bundle (JSON Lines). The first line
// is the checkpoint (Kind "checkpoint": Format, Account, Checkpoint, the
// signed note); then, when asked for, one line per data key of a user not
// deleted (Kind "key": User, Key); then the account's records (Kind
// "record") in the store's global order, each with its leaf index in the
// checkpoint's tree and its inclusion proof. A record's Data and Metadata
// are the stored bytes, base64-encoded so that they are given byte for
// byte; a record the store could not read has Unreadable set, its
// Position and no content. Proof is the inclusion proof's hashes from the
// leaf up, 32 bytes each, concatenated and base64-encoded as one string;
// the proofs of a bundle's records share their upper hashes, so a record
// line gives only those from its leaf up to the node where its path meets
// the path of the record line before (compactProof): the first record
// line gives its whole proof.
type BundleLine struct {
	Kind string `json:"kind"`

	Format     string `json:"format,omitempty"`
	Account    string `json:"account,omitempty"`
	Checkpoint string `json:"checkpoint,omitempty"`

	User string `json:"user,omitempty"`
	Key  []byte `json:"key,omitempty"`

	Leaf       int64               `json:"leaf,omitzero"`
	Position   eventstore.Position `json:"position,omitzero"`
	Stream     string              `json:"stream,omitempty"`
	Revision   uint64              `json:"revision,omitzero"`
	ID         uuid.UUID           `json:"id,omitzero"`
	Type       string              `json:"type,omitempty"`
	Data       []byte              `json:"data,omitempty"`
	Metadata   []byte              `json:"metadata,omitempty"`
	Unreadable bool                `json:"unreadable,omitzero"`
	Proof      []byte              `json:"proof,omitempty"`
}

// RecordLine returns the bundle line of a record read with readErr, at
// leaf index leaf, with its inclusion proof.
func RecordLine(rec eventstore.Record, readErr error, leaf int64, proof tlog.RecordProof) BundleLine {
	l := BundleLine{Kind: KindRecord, Leaf: leaf, Position: rec.Position, Stream: streamName(rec.Stream)}
	if readErr != nil {
		l.Unreadable = true
	} else {
		l.Revision, l.ID, l.Type, l.Data, l.Metadata = rec.Revision, rec.ID, rec.Type, rec.Data, rec.Metadata
	}
	l.Proof = make([]byte, 0, len(proof)*tlog.HashSize)
	for i := range proof {
		l.Proof = append(l.Proof, proof[i][:]...)
	}
	return l
}

// leafData returns the leaf data a record line stands for.
func (l *BundleLine) leafData(b []byte) []byte {
	if l.Unreadable {
		return AppendUnreadableLeaf(b, l.Position, l.Stream)
	}
	return AppendRecordLeaf(b, l.Stream, l.Revision, l.ID, l.Type, l.Data, l.Metadata)
}
