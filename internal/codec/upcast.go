package codec

import (
	"fmt"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// upcasters turn the payload of one schema version of an event type into
// the next version. Decode chains them from the stored version to the
// current one. This is the one place that knows old versions.
var upcasters = map[string]map[int]func([]byte) ([]byte, error){
	"AccountOpened": {
		// Version 1 called the seats at opening "licenses", the word of the
		// help article; version 2 says "seats" like every other event.
		1: renameMember("licenses", "seats"),
	},
}

func upcast(typ string, from, to int, data []byte) ([]byte, error) {
	for v := from; v < to; v++ {
		up, ok := upcasters[typ][v]
		if !ok {
			return nil, fmt.Errorf("no upcast from version %d: %w", v, ErrMalformed)
		}
		var err error
		if data, err = up(data); err != nil {
			return nil, fmt.Errorf("upcast from version %d: %w: %w", v, ErrMalformed, err)
		}
	}
	return data, nil
}

// renameMember returns an upcaster that renames the member old to new. A
// payload that already has new was not written at the old version: it is
// malformed.
func renameMember(old, new string) func([]byte) ([]byte, error) {
	return func(data []byte) ([]byte, error) {
		var m map[string]jsontext.Value
		if err := json.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		if m == nil {
			return nil, fmt.Errorf("payload is not a JSON object")
		}
		if _, ok := m[new]; ok {
			return nil, fmt.Errorf("member %q is newer than this version", new)
		}
		if v, ok := m[old]; ok {
			m[new] = v
			delete(m, old)
		}
		return json.Marshal(m, json.Deterministic(true))
	}
}
