package codec

import (
	"encoding/binary"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"
)

// The fast path of decoding. Every stored payload and metadata object the
// codec writes is a flat JSON object of strings and integers, compact, its
// strings (ids, base64, times) printable ASCII. scanFlat reads that form,
// without reflection and without allocating; scanMeta and the scan of
// every registration (catalogue.go) turn what it found into values, with
// one allocation for all the strings of an event, metadata and payload.
//
// The fast path never reports an error: when the input is in any other
// form (escapes, non-ASCII text, an unknown, repeated or missing member,
// a number with a fraction, a value of the wrong kind, a time it does not
// parse...) it gives up and the caller decodes with the general JSON decoder, which
// either accepts the input or reports the precise error. So the fast path
// changes neither what is accepted nor the errors; it only has to agree
// with the general decoder on what it does accept, which
// FuzzFastPathAgrees checks.

// valueKind is the kind of a member's value as scanFlat found it.
type valueKind uint8

const (
	absent valueKind = iota
	stringValue
	intValue
)

// maxMembers is the most members scanFlat can track.
const maxMembers = 16

// scanFlat scans data, a JSON object whose members are all named in names,
// setting vals[i] and kinds[i] for the member names[i]: the bytes between
// the quotes of a string, or the literal of an integer. It reports false
// when data is not in the simple form it reads (see above).
func scanFlat(data []byte, names []string, vals [][]byte, kinds []valueKind) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return skipSpace(data, i+1) == len(data)
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
		i = skipSpace(data, j)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i = skipSpace(data, i+1)
		if i >= len(data) {
			return false
		}
		var v []byte
		var ok bool
		switch c := data[i]; {
		case c == '"':
			v, j, ok = scanString(data, i+1)
			kinds[m] = stringValue
		case c == '-' || '0' <= c && c <= '9':
			v, j, ok = scanInt(data, i)
			kinds[m] = intValue
		default:
			return false
		}
		if !ok {
			return false
		}
		vals[m] = v
		i = skipSpace(data, j)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return skipSpace(data, i+1) == len(data)
		default:
			return false
		}
	}
}

func skipSpace(data []byte, i int) int {
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

// intOf returns the integer scanFlat found, 0 when absent.
func intOf(v []byte, k valueKind) (int, bool) {
	switch k {
	case absent:
		return 0, true
	case intValue:
	default:
		return 0, false
	}
	neg := v[0] == '-'
	if neg {
		v = v[1:]
	}
	n := 0
	for _, c := range v {
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// timeOf parses a time scanFlat found in the form the codec writes,
// "2006-01-02T15:04:05.999999999Z"; the zero time when absent.
func timeOf(v []byte, k valueKind) (time.Time, bool) {
	switch k {
	case absent:
		return time.Time{}, true
	case stringValue:
	default:
		return time.Time{}, false
	}
	if t, ok := utcTime(v); ok {
		return t, true
	}
	// time.Time.UnmarshalText checks the RFC 3339 form; the general decoder
	// further requires a two-digit hour and a period before the fraction,
	// and this path only takes UTC ("Z").
	const hour, frac = len("2006-01-02T"), len("2006-01-02T15:04:05")
	if len(v) <= frac || v[len(v)-1] != 'Z' || v[hour+1] == ':' || v[frac] == ',' {
		return time.Time{}, false
	}
	var t time.Time
	if t.UnmarshalText(v) != nil {
		return time.Time{}, false
	}
	return t, true
}

// ulidOf parses a ULID scanFlat found, zero when absent or empty.
func ulidOf(v []byte, k valueKind) (ulid.ULID, bool) {
	switch {
	case k == absent || k == stringValue && len(v) == 0:
		return ulid.ULID{}, true
	case k != stringValue || len(v) != ulid.EncodedSize:
		return ulid.ULID{}, false
	}
	id, err := ulid.ParseStrict(string(v))
	return id, err == nil
}

// stringsOK reports whether every kind is a string or absent.
func stringsOK(kinds ...valueKind) bool {
	for _, k := range kinds {
		if k == intValue {
			return false
		}
	}
	return true
}

// setStrings sets *dst[i] to string(src[i]) for every i, with one
// allocation for all of them. The strings share memory, so a kept one
// keeps the others alive: they are the few short fields of one event.
func setStrings(dst []*string, src [][]byte) {
	n := 0
	for _, s := range src {
		n += len(s)
	}
	if n == 0 {
		return
	}
	var b strings.Builder
	b.Grow(n)
	for _, s := range src {
		b.Write(s)
	}
	all := b.String()
	for i, s := range src {
		*dst[i], all = all[:len(s)], all[len(s):]
	}
}

// utcTime parses v in exactly the form the encoder writes, UTC with
// "Z" and a fraction of 1 to 9 digits or none, digit by digit. It reports
// false for anything else, out-of-range fields included, leaving the
// decision to time.Time.UnmarshalText.
func utcTime(v []byte) (time.Time, bool) {
	const frac = len("2006-01-02T15:04:05")
	if len(v) < frac+1 || len(v) > frac+11 || v[len(v)-1] != 'Z' ||
		v[4] != '-' || v[7] != '-' || v[10] != 'T' || v[13] != ':' || v[16] != ':' {
		return time.Time{}, false
	}
	num := func(b []byte) (int, bool) {
		n := 0
		for _, c := range b {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(v[0:4])
	month, ok2 := num(v[5:7])
	day, ok3 := num(v[8:10])
	hour, ok4 := num(v[11:13])
	minute, ok5 := num(v[14:16])
	sec, ok6 := num(v[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if f := v[frac : len(v)-1]; len(f) > 0 {
		if len(f) < 2 || f[0] != '.' {
			return time.Time{}, false
		}
		n, ok := num(f[1:])
		if !ok {
			return time.Time{}, false
		}
		for range 10 - len(f) {
			n *= 10
		}
		nsec = n
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC), true
}

// daysIn returns the number of days of month in year.
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
