package httpapi

import "strconv"

// The fast path of reading a request body. The bodies of the writes
// clients send most (an activity, a deactivation's reason, a user to add,
// a seat count) are flat JSON objects of a few strings and integers.
// scanFlat reads that form without reflection when every string is
// printable ASCII without escapes and every number a plain integer; any
// other body (an escape, non-ASCII text, an unknown or repeated member, a
// value of another kind, trailing data...) goes to json.Unmarshal, which
// accepts it or reports the precise error as before. The fast path only
// has to agree with json.Unmarshal on the bodies it accepts, which
// TestFlatBodiesAgree checks.

// flatBody is a request body with a fast path.
type flatBody interface {
	// decodeFlat decodes body when it is in the form scanFlat reads and
	// names only members of the body, each once; false otherwise, with
	// the receiver unchanged.
	decodeFlat(body []byte) bool
}

// scanFlat scans body, a JSON object of at most len(vals) members named
// in names, setting vals[i] to the bytes between the quotes of member
// names[i]'s string, or to its integer literal with isInt[i] set. It
// reports false when body is in any other form, names a member not in
// names or one twice.
func scanFlat(body []byte, names []string, vals [][]byte, isInt []bool) bool {
	i := skipSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return false
	}
	i = skipSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return skipSpace(body, i+1) == len(body)
	}
	var seen uint32
	for {
		name, j, ok := scanString(body, i)
		if !ok {
			return false
		}
		m := -1
		for k, n := range names {
			if n == string(name) {
				m = k
				break
			}
		}
		if m < 0 || seen&(1<<m) != 0 {
			return false
		}
		seen |= 1 << m
		i = skipSpace(body, j)
		if i >= len(body) || body[i] != ':' {
			return false
		}
		i = skipSpace(body, i+1)
		if i >= len(body) {
			return false
		}
		if body[i] == '"' {
			if vals[m], i, ok = scanString(body, i); !ok {
				return false
			}
			isInt[m] = false
		} else {
			if vals[m], i, ok = scanInt(body, i); !ok {
				return false
			}
			isInt[m] = true
		}
		i = skipSpace(body, i)
		if i >= len(body) {
			return false
		}
		switch body[i] {
		case ',':
			i = skipSpace(body, i+1)
		case '}':
			return skipSpace(body, i+1) == len(body)
		default:
			return false
		}
	}
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString scans the string starting at b[i] ('"'), of printable ASCII
// without escapes, returning its contents and the index after it.
func scanString(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1, true
		case c < 0x20 || c > 0x7e || c == '\\':
			return nil, i, false
		}
	}
	return nil, i, false
}

// scanInt scans an integer of at most 15 digits without fraction,
// exponent or leading zero, returning its literal and the index after it.
func scanInt(b []byte, i int) ([]byte, int, bool) {
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	d := j
	for j < len(b) && '0' <= b[j] && b[j] <= '9' {
		j++
	}
	switch n := j - d; {
	case n == 0 || n > 15, n > 1 && b[d] == '0':
		return nil, i, false
	}
	if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
		return nil, i, false
	}
	return b[i:j], j, true
}

// flatStrings decodes a body of string members only into dst, one per
// name; false (dst unchanged) when it is not in that form.
func flatStrings(body []byte, names []string, dst ...*string) bool {
	var (
		vals  [4][]byte
		isInt [4]bool
	)
	if len(names) > len(vals) || !scanFlat(body, names, vals[:len(names)], isInt[:len(names)]) {
		return false
	}
	for i := range names {
		if isInt[i] {
			return false
		}
	}
	for i, d := range dst {
		*d = string(vals[i])
	}
	return true
}

func (b *activityBody) decodeFlat(body []byte) bool {
	var v activityBody
	if !flatStrings(body, []string{"user_id", "kind", "ref"}, &v.UserID, &v.Kind, &v.Ref) {
		return false
	}
	*b = v
	return true
}

func (b *deactivateBody) decodeFlat(body []byte) bool {
	var v deactivateBody
	if !flatStrings(body, []string{"reason"}, &v.Reason) {
		return false
	}
	*b = v
	return true
}

func (b *addUserBody) decodeFlat(body []byte) bool {
	var v addUserBody
	if !flatStrings(body, []string{"name", "email", "role"}, &v.Name, &v.Email, (*string)(&v.Role)) {
		return false
	}
	*b = v
	return true
}

func (b *countBody) decodeFlat(body []byte) bool {
	var (
		vals  [1][]byte
		isInt [1]bool
	)
	if !scanFlat(body, []string{"count"}, vals[:], isInt[:]) || (vals[0] != nil && !isInt[0]) {
		return false
	}
	var v countBody
	if vals[0] != nil {
		n, err := strconv.Atoi(string(vals[0]))
		if err != nil {
			return false
		}
		v.Count = n
	}
	*b = v
	return true
}
