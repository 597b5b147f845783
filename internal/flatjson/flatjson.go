// Package flatjson scans flat JSON objects, of strings and integers only,
// without reflection and without allocating: the fast path of decoding
// the codec's stored payloads and metadata and the request bodies clients
// send most.
//
// [Scan] reads one simple form: an object whose members are all named in a
// given list, each at most once, each value a string of printable ASCII
// without escapes or an integer literal of at most 18 digits (no fraction,
// exponent, leading zero or -0), with any JSON whitespace between tokens
// and nothing after the object. It reports false for anything else, and
// never an error: its callers then decode with a general JSON decoder,
// which accepts the input or reports the precise error. So a caller only
// has to agree with its general decoder on what Scan accepts.
package flatjson

import "encoding/binary"

// Kind is the kind of a member's value as [Scan] found it.
type Kind uint8

const (
	// Absent is the kind of a member the object does not have.
	Absent Kind = iota
	// String is the kind of a string value: its bytes are those between
	// the quotes.
	String
	// Int is the kind of an integer value: its bytes are its literal.
	Int
)

// MaxNames is the most member names [Scan] can track.
const MaxNames = 32

// Scan scans data, a JSON object whose members are all named in names,
// setting vals[i] and kinds[i] for the member names[i]: the bytes between
// the quotes of a string, or the literal of an integer (vals and kinds
// must be at least as long as names, and hold nil and [Absent] for the
// members the caller wants to tell absent). It reports false when data is
// not in the form the package reads (see the package comment), has a
// member not in names or one twice, or names has more than [MaxNames]
// names. Members are found fastest in the order of names. The values are
// subslices of data.
func Scan(data []byte, names []string, vals [][]byte, kinds []Kind) bool {
	if len(names) > MaxNames {
		return false
	}
	i := SkipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = SkipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return SkipSpace(data, i+1) == len(data)
	}
	var seen uint32
	next := 0 // the member expected next: members come in the order of names
	for {
		if i >= len(data) || data[i] != '"' {
			return false
		}
		m, j := -1, 0
		if next < len(names) {
			// Most often the member expected next: compare it in place.
			n := names[next]
			if end := i + 1 + len(n); end < len(data) && data[end] == '"' && string(data[i+1:end]) == n {
				m, j = next, end+1
			}
		}
		if m < 0 {
			name, end, ok := scanString(data, i+1)
			if !ok {
				return false
			}
			for k, n := range names {
				if string(name) == n {
					m = k
					break
				}
			}
			j = end
		}
		next = m + 1
		if m < 0 || seen&(1<<m) != 0 {
			return false
		}
		seen |= 1 << m
		i = SkipSpace(data, j)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i = SkipSpace(data, i+1)
		if i >= len(data) {
			return false
		}
		var v []byte
		var ok bool
		switch c := data[i]; {
		case c == '"':
			v, j, ok = scanString(data, i+1)
			kinds[m] = String
		case c == '-' || '0' <= c && c <= '9':
			v, j, ok = scanInt(data, i)
			kinds[m] = Int
		default:
			return false
		}
		if !ok {
			return false
		}
		vals[m] = v
		i = SkipSpace(data, j)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = SkipSpace(data, i+1)
		case '}':
			return SkipSpace(data, i+1) == len(data)
		default:
			return false
		}
	}
}

// SkipSpace returns the index of the first byte of data at or after i
// that is not JSON whitespace, len(data) when there is none.
func SkipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString scans a string whose opening quote is before data[i], made of
// printable ASCII without escapes. It returns its contents and the index
// after the closing quote.
func scanString(data []byte, i int) ([]byte, int, bool) {
	j := i
	// Eight bytes at a time while none is special: a quote, a backslash,
	// a control character or a byte outside printable ASCII.
	for ; j+8 <= len(data); j += 8 {
		if special(binary.LittleEndian.Uint64(data[j:])) {
			break
		}
	}
	for ; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			return data[i:j], j + 1, true
		case c < 0x20 || c == '\\' || c >= 0x7f:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special reports whether any byte of w is '"', '\\', below 0x20 or above
// 0x7e.
func special(w uint64) bool {
	// hasZero(x) is non-zero when a byte of x is zero; below(w, n) when a
	// byte of w (all below 0x80) is below n.
	hasZero := func(x uint64) uint64 { return (x - ones) &^ x & highs }
	if w&highs != 0 {
		return true
	}
	below := (w - ones*0x20) &^ w & highs
	return below|hasZero(w^(ones*'"'))|hasZero(w^(ones*'\\'))|hasZero(w^(ones*0x7f)) != 0
}

// scanInt scans an integer literal of at most 18 digits at data[i]: 0, or
// an optional minus and digits not starting with 0.
func scanInt(data []byte, i int) ([]byte, int, bool) {
	j := i
	if data[j] == '-' {
		j++
	}
	start := j
	for j < len(data) && '0' <= data[j] && data[j] <= '9' {
		j++
	}
	switch n := j - start; {
	case n == 0 || n > 18:
		return nil, 0, false
	case data[start] == '0' && (n > 1 || start > i): // leading zero, or -0
		return nil, 0, false
	}
	if j < len(data) {
		if c := data[j]; c == '.' || c == 'e' || c == 'E' {
			return nil, 0, false
		}
	}
	return data[i:j], j, true
}
