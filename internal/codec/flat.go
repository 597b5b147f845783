package codec

import (
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/internal/flatjson"
)

// The fast path of decoding. Every stored payload and metadata object the
// codec writes is a flat JSON object of strings and integers, compact, its
// strings (ids, base64, times) printable ASCII. flatjson.Scan reads that
// form, without reflection and without allocating; scanMeta and the scan of
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

// maxMembers is the most members of a payload the codec's fixed arrays
// hold, fewer than flatjson.MaxNames.
const maxMembers = 16

// intOf returns the integer flatjson.Scan found, 0 when absent.
func intOf(v []byte, k flatjson.Kind) (int, bool) {
	switch k {
	case flatjson.Absent:
		return 0, true
	case flatjson.Int:
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

// timeOf parses a time flatjson.Scan found in the form the codec writes,
// "2006-01-02T15:04:05.999999999Z"; the zero time when absent.
func timeOf(v []byte, k flatjson.Kind) (time.Time, bool) {
	switch k {
	case flatjson.Absent:
		return time.Time{}, true
	case flatjson.String:
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

// ulidOf parses a ULID flatjson.Scan found, zero when absent or empty.
func ulidOf(v []byte, k flatjson.Kind) (ulid.ULID, bool) {
	switch {
	case k == flatjson.Absent || k == flatjson.String && len(v) == 0:
		return ulid.ULID{}, true
	case k != flatjson.String || len(v) != ulid.EncodedSize:
		return ulid.ULID{}, false
	}
	id, err := ulid.ParseStrict(string(v))
	return id, err == nil
}

// stringsOK reports whether every kind is a string or absent.
func stringsOK(kinds ...flatjson.Kind) bool {
	for _, k := range kinds {
		if k == flatjson.Int {
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
