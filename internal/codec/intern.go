package codec

import (
	"hash/maphash"
	"sync/atomic"
)

// Decoding a long history makes the same few strings over and over: the
// account of every event, the ids and roles of its actors, the user ids
// and activity kinds of its payloads. interned returns them from a small
// cache rather than allocating each again, which saves most of the
// allocations (and garbage) of a decoded event.
//
// The cache is lossy and lock-free: each string has two slots it may sit
// in, chosen by its hash; a miss allocates the string and stores it in
// one of them, evicting what was there. Strings are immutable, so sharing
// one between events, codecs and goroutines is safe, and the cache never
// changes what a decoded event holds, only where its bytes are.

const (
	// internSlots is the number of slots of the cache, a power of two:
	// room for the accounts, actors and users of a busy store's recent
	// events.
	internSlots = 1 << 13
	// internMax is the longest string the cache keeps: ids, roles and
	// kinds are short; a longer string is rarely repeated.
	internMax = 40
)

var (
	internSeed  = maphash.MakeSeed()
	internCache [internSlots]atomic.Pointer[string]
)

// interned returns string(b), from the cache when it holds it.
func interned(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > internMax {
		return string(b)
	}
	h := maphash.Bytes(internSeed, b)
	i := h & (internSlots - 1)
	if p := internCache[i].Load(); p != nil && *p == string(b) {
		return *p
	}
	j := i ^ 1
	if p := internCache[j].Load(); p != nil && *p == string(b) {
		return *p
	}
	s := string(b)
	if internCache[i].Load() != nil && h&internSlots != 0 {
		i = j // take turns evicting the two slots
	}
	internCache[i].Store(&s)
	return s
}
