// Package snap is the binary encoding of read-model snapshots: a header
// naming the read model and the format version, then unsigned and signed
// varints, length-prefixed strings and fixed-size byte fields, written and
// read in a fixed order by each read model, without reflection.
//
// A Reader never panics on bad input: every read checks the bytes left,
// the first failure sticks and is returned by Err (wrapping
// projections.ErrSnapshotFormat); End returns it too, or a failure when
// bytes are left after the snapshot's end; and counts are bounded by the bytes left
// so a corrupt count cannot allocate more than the snapshot's size.
package snap

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/licenseledger/ledger/projections"
)

// Writer appends a snapshot to a byte slice.
type Writer struct {
	b []byte
}

// NewWriter starts a snapshot of the read model name in format version,
// with room for about size bytes.
func NewWriter(name string, version uint64, size int) *Writer {
	w := &Writer{b: make([]byte, 0, max(size, 64))}
	w.String(name)
	w.Uvarint(version)
	return w
}

// Grow makes room for n more bytes.
func (w *Writer) Grow(n int) {
	if cap(w.b)-len(w.b) < n {
		nb := make([]byte, len(w.b), 2*cap(w.b)+n)
		copy(nb, w.b)
		w.b = nb
	}
}

// Uvarint appends v as an unsigned varint.
func (w *Writer) Uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }

// Varint appends v as a signed (zig-zag) varint.
func (w *Writer) Varint(v int64) { w.b = binary.AppendVarint(w.b, v) }

// Int appends v as a signed varint.
func (w *Writer) Int(v int) { w.Varint(int64(v)) }

// Bool appends b as one byte.
func (w *Writer) Bool(b bool) {
	if b {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}

// Byte appends c.
func (w *Writer) Byte(c byte) { w.b = append(w.b, c) }

// String appends s, prefixed with its length.
func (w *Writer) String(s string) {
	w.Uvarint(uint64(len(s)))
	w.b = append(w.b, s...)
}

// Blob appends p, prefixed with its length.
func (w *Writer) Blob(p []byte) {
	w.Uvarint(uint64(len(p)))
	w.b = append(w.b, p...)
}

// Fixed appends p as it is: the reader knows its length.
func (w *Writer) Fixed(p []byte) { w.b = append(w.b, p...) }

// Time appends t as seconds and nanoseconds since the Unix epoch, exact
// for every time, the zero time included. The location is not kept: read
// models hold UTC times.
func (w *Writer) Time(t time.Time) {
	w.Varint(t.Unix())
	w.Uvarint(uint64(t.Nanosecond()))
}

// Bytes returns the snapshot.
func (w *Writer) Bytes() []byte { return w.b }

// Reader reads a snapshot written by a Writer.
type Reader struct {
	b   []byte
	err error
}

// NewReader checks that b is a snapshot of the read model name in format
// version and returns a reader positioned after the header. Any other
// read model or version is refused with an error wrapping
// projections.ErrSnapshotFormat, so the caller rebuilds instead.
func NewReader(b []byte, name string, version uint64) (*Reader, error) {
	r := &Reader{b: b}
	// The name is compared in place: an old JSON snapshot, which starts
	// with '{', reads as a length of 123 and fails here.
	n := r.Uvarint()
	if r.err != nil || n != uint64(len(name)) || n > uint64(len(r.b)) || string(r.b[:n]) != name {
		return nil, fmt.Errorf("snapshot is not a %s snapshot: %w", name, projections.ErrSnapshotFormat)
	}
	r.b = r.b[n:]
	if v := r.Uvarint(); r.err != nil || v != version {
		return nil, fmt.Errorf("%s snapshot format version %d, this service reads version %d: %w",
			name, v, version, projections.ErrSnapshotFormat)
	}
	return r, nil
}

func (r *Reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("snapshot truncated or corrupt reading %s: %w", what, projections.ErrSnapshotFormat)
	}
	r.b = nil
}

// Fail records a failure found by the caller (an index out of range, say)
// unless one was recorded already.
func (r *Reader) Fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("snapshot corrupt: %s: %w", fmt.Sprintf(format, args...), projections.ErrSnapshotFormat)
	}
	r.b = nil
}

// Err returns the first failure recorded so far, nil when there is none.
// It can be called at any point of the reading: the bytes not read yet
// are not a failure (End checks that none is left).
func (r *Reader) Err() error { return r.err }

// End returns the first failure, or one when bytes are left unread. Call
// it once, after the whole snapshot was read.
func (r *Reader) End() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("snapshot has %d bytes after its end: %w", len(r.b), projections.ErrSnapshotFormat)
	}
	return r.err
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 {
	if len(r.b) > 0 && r.b[0] < 0x80 {
		v := uint64(r.b[0])
		r.b = r.b[1:]
		return v
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("an unsigned integer")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Varint reads a signed varint.
func (r *Reader) Varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("an integer")
		return 0
	}
	r.b = r.b[n:]
	return v
}

// Int reads a signed varint as an int.
func (r *Reader) Int() int { return int(r.Varint()) }

// Count reads a number of items each taking at least min bytes, and fails
// when the bytes left cannot hold them.
func (r *Reader) Count(minSize int) int {
	n := r.Uvarint()
	if n > uint64(len(r.b)/max(minSize, 1)) {
		r.fail("a count")
		return 0
	}
	return int(n)
}

// Bool reads a byte as a bool.
func (r *Reader) Bool() bool {
	switch r.Byte() {
	case 0:
		return false
	case 1:
		return true
	}
	r.fail("a bool")
	return false
}

// Byte reads one byte.
func (r *Reader) Byte() byte {
	if len(r.b) == 0 {
		r.fail("a byte")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// Bytes reads a length-prefixed byte field; the result aliases the
// snapshot.
func (r *Reader) Bytes() []byte {
	n := r.Uvarint()
	if n > uint64(len(r.b)) {
		r.fail("bytes")
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

// String reads a length-prefixed string.
func (r *Reader) String() string { return string(r.Bytes()) }

// Fixed reads n bytes; the result aliases the snapshot.
func (r *Reader) Fixed(n int) []byte {
	if n > len(r.b) {
		r.fail("a fixed field")
		return make([]byte, n)
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

// Time reads a time written by Writer.Time, in UTC.
func (r *Reader) Time() time.Time {
	s := r.Varint()
	ns := r.Uvarint()
	if ns >= 1e9 {
		r.fail("a time")
		return time.Time{}
	}
	t := time.Unix(s, int64(ns)).UTC()
	if s == (time.Time{}).Unix() && ns == 0 {
		return time.Time{}
	}
	return t
}
