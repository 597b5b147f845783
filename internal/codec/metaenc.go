package codec

import (
	"encoding/hex"
	"strconv"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/oklog/ulid/v2"
)

// marshalMeta encodes metadata as json.Marshal(wm, json.Deterministic(true))
// does, byte for byte. Metadata as the service writes it (a time within
// years 0-9999, strings of printable ASCII without quotes or backslashes)
// is appended directly; anything else goes through json.Marshal.
func marshalMeta(wm *wireMeta) ([]byte, error) {
	if b, ok := appendMeta(make([]byte, 0, 512), wm); ok {
		return b, nil
	}
	if wm.ids {
		wm.CorrelationID, wm.CausationID = wm.correlation.String(), wm.causation.String()
		wm.ids = false
	}
	return json.Marshal(wm, json.Deterministic(true))
}

// appendMeta appends wm's JSON object to b; false when a value needs what
// only json.Marshal does (escapes, an error).
func appendMeta(b []byte, wm *wireMeta) ([]byte, bool) {
	if y := wm.Time.Year(); y < 0 || y > 9999 {
		return nil, false
	}
	b = append(b, `{"time":"`...)
	b = wm.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	ok := true
	str := func(name, v string, omitEmpty bool) {
		if omitEmpty && v == "" {
			return
		}
		if !plainJSON(v) {
			ok = false
			return
		}
		b = append(b, `,"`...)
		b = append(b, name...)
		b = append(b, `":"`...)
		b = append(b, v...)
		b = append(b, '"')
	}
	str("subject", wm.Subject, true)
	b = append(b, `,"schemaversion":`...)
	b = strconv.AppendInt(b, int64(wm.SchemaVersion), 10)
	str("account", wm.Account, false)
	str("actorid", wm.ActorID, false)
	str("actorrole", wm.ActorRole, false)
	if wm.ids {
		b = appendULID(b, "correlationid", wm.correlation)
		b = appendULID(b, "causationid", wm.causation)
	} else {
		str("correlationid", wm.CorrelationID, false)
		str("causationid", wm.CausationID, false)
	}
	str("traceparent", wm.Traceparent, true)
	str("tracestate", wm.Tracestate, true)
	str("idempotencykey", wm.IdempotencyKey, true)
	str("commandfingerprint", wm.Fingerprint, true)
	b = append(b, `,"prevhash":"`...)
	b = hex.AppendEncode(b, wm.PrevHash[:])
	b = append(b, `"}`...)
	return b, ok
}

// appendULID appends the member name with id's text as its value.
func appendULID(b []byte, name string, id ulid.ULID) []byte {
	var text [ulid.EncodedSize]byte
	_ = id.MarshalTextTo(text[:]) // fails only on a buffer of another size
	b = append(b, `,"`...)
	b = append(b, name...)
	b = append(b, `":"`...)
	b = append(b, text[:]...)
	return append(b, '"')
}

// plainJSON reports whether s is written in JSON as it is between quotes:
// printable ASCII without '"' and '\'.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
