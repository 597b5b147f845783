// Package intern numbers the distinct strings of a small set (the user
// ids of an account, say) in the order first seen. A Table keeps the
// strings' bytes one after the other and their hashes in a flat
// open-addressing index, so a lookup touches a few contiguous cache lines
// rather than a map's groups and each key's separate allocation: read
// models look a user up for almost every event.
package intern

import (
	"hash/maphash"
	"math"
	"math/bits"
)

var seed = maphash.MakeSeed()

// Table numbers strings from 0. The zero Table is empty and ready to use.
type Table struct {
	bytes []byte
	ends  []uint32 // string i is bytes[ends[i-1]:ends[i]] (from 0 for i == 0)
	strs  []string // string i as a string, for readers
	// slots is the index: 0 for an empty slot, else the string's hash in
	// the high 32 bits and its number plus one in the low 32.
	slots []uint64
}

// Len returns the number of strings.
func (t *Table) Len() int { return len(t.ends) }

// String returns string i, which must be below Len.
func (t *Table) String(i uint32) string { return t.strs[i] }

// Strings returns the strings in number order; the slice is the table's
// own.
func (t *Table) Strings() []string { return t.strs }

func (t *Table) at(i uint32) []byte {
	start := uint32(0)
	if i > 0 {
		start = t.ends[i-1]
	}
	return t.bytes[start:t.ends[i]]
}

// Lookup returns the number of s and whether the table has it.
func (t *Table) Lookup(s string) (uint32, bool) {
	if len(t.slots) == 0 {
		return 0, false
	}
	h := maphash.String(seed, s)
	tag := h >> 32
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		v := t.slots[i]
		if v == 0 {
			return 0, false
		}
		if v>>32 == tag {
			if n := uint32(v) - 1; string(t.at(n)) == s {
				return n, true
			}
		}
	}
}

// Index returns the number of s, adding it if the table lacks it. It
// panics past 2^32-1 strings or bytes.
func (t *Table) Index(s string) uint32 {
	if n, ok := t.Lookup(s); ok {
		return n
	}
	return t.add(s)
}

// add adds s, which the table must lack, and returns its number.
func (t *Table) add(s string) uint32 {
	n := len(t.ends)
	if n >= math.MaxUint32-1 || uint64(len(t.bytes))+uint64(len(s)) > math.MaxUint32 {
		panic("intern: table full")
	}
	if t.ends == nil {
		t.bytes, t.ends, t.strs = make([]byte, 0, 128), make([]uint32, 0, 16), make([]string, 0, 16)
	}
	t.bytes = append(t.bytes, s...)
	t.ends = append(t.ends, uint32(len(t.bytes)))
	t.strs = append(t.strs, string(t.bytes[len(t.bytes)-len(s):]))
	if 2*(n+1) > len(t.slots) {
		t.rehash(max(8, 1<<bits.Len(uint(4*(n+1)-1))))
	} else {
		t.insert(uint32(n), maphash.String(seed, s))
	}
	return uint32(n)
}

func (t *Table) insert(n uint32, h uint64) {
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = h>>32<<32 | uint64(n+1)
}

func (t *Table) rehash(size int) {
	t.slots = make([]uint64, size)
	for i := range t.ends {
		t.insert(uint32(i), maphash.Bytes(seed, t.at(uint32(i))))
	}
}
