package codec

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/licenseledger/ledger/eventstore"
)

// Hash is a link of a stream's hash chain: SHA-256 over the previous link
// and the event as stored (id, type, payload and metadata bytes, each
// length-prefixed), so sealed fields are covered as ciphertext and erasing
// a key never breaks the chain.
type Hash [sha256.Size]byte

// IsZero reports whether h is the zero hash that precedes a stream's first
// event.
func (h Hash) IsZero() bool { return h == Hash{} }

// String returns h in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText returns h in hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses a hex hash.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != hex.EncodedLen(len(h)) {
		return fmt.Errorf("hash of %d hex digits, want %d", len(b), hex.EncodedLen(len(h)))
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// NextHash returns the chain link of an event stored after prev.
func NextHash(prev Hash, p eventstore.Proposed) Hash {
	d := sha256.New()
	d.Write(prev[:])
	d.Write(p.ID[:])
	var n [4]byte
	for _, b := range [][]byte{[]byte(p.Type), p.Data, p.Metadata} {
		binary.BigEndian.PutUint32(n[:], uint32(len(b)))
		d.Write(n[:])
		d.Write(b)
	}
	var h Hash
	d.Sum(h[:0])
	return h
}

// RecordHash returns the chain link of a stored record after prev.
func RecordHash(prev Hash, r eventstore.Record) Hash {
	return NextHash(prev, eventstore.Proposed{ID: r.ID, Type: r.Type, Data: r.Data, Metadata: r.Metadata})
}
