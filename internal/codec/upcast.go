package codec

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Upcasts live with the registration of their event type (events.go);
// this file holds the kinds of change they make.

// renameFunc renames the member old of a payload to new.
func renameFunc(old, new string) func([]byte) ([]byte, error) {
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

// addedFunc checks that a payload of the older version lacks the optional
// member name, which the next version added, and leaves it as it is. (The
// check looks for the quoted name: no value of the older version's
// members, ids, roles, times and base64, can hold it; the decoder then
// checks the payload's form as for any version.)
func addedFunc(name string) func([]byte) ([]byte, error) {
	quoted := []byte(strconv.Quote(name))
	return func(data []byte) ([]byte, error) {
		if bytes.Contains(data, quoted) {
			return nil, fmt.Errorf("member %q is newer than this version", name)
		}
		return data, nil
	}
}
