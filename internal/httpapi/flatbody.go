package httpapi

import (
	"strconv"

	"github.com/licenseledger/ledger/internal/flatjson"
)

// The fast path of reading a request body. The bodies of the writes
// clients send most (an activity, a deactivation's reason, a user to add,
// a seat count) are flat JSON objects of a few strings and integers.
// flatjson.Scan reads that form without reflection when every string is
// printable ASCII without escapes and every number a plain integer; any
// other body (an escape, non-ASCII text, an unknown or repeated member, a
// value of another kind, trailing data...) goes to json.Unmarshal, which
// accepts it or reports the precise error as before. The fast path only
// has to agree with json.Unmarshal on the bodies it accepts, which
// TestFlatBodiesAgree checks.

// flatBody is a request body with a fast path.
type flatBody interface {
	// decodeFlat decodes body when it is in the form flatjson.Scan reads and
	// names only members of the body, each once; false otherwise, with
	// the receiver unchanged.
	decodeFlat(body []byte) bool
}

// flatStrings decodes a body of string members only into dst, one per
// name; false (dst unchanged) when it is not in that form.
func flatStrings(body []byte, names []string, dst ...*string) bool {
	var (
		vals  [4][]byte
		kinds [4]flatjson.Kind
	)
	if len(names) > len(vals) || !flatjson.Scan(body, names, vals[:len(names)], kinds[:len(names)]) {
		return false
	}
	for _, k := range kinds[:len(names)] {
		if k == flatjson.Int {
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
		kinds [1]flatjson.Kind
	)
	if !flatjson.Scan(body, []string{"count"}, vals[:], kinds[:]) || kinds[0] == flatjson.String {
		return false
	}
	var v countBody
	if kinds[0] == flatjson.Int {
		n, err := strconv.Atoi(string(vals[0]))
		if err != nil {
			return false
		}
		v.Count = n
	}
	*b = v
	return true
}
