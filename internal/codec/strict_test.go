package codec_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
)

// payloadMembers splits a stored payload into its members' names and raw
// values, in order.
func payloadMembers(t *testing.T, data []byte) (names []string, values []string) {
	t.Helper()
	d := jsontext.NewDecoder(strings.NewReader(string(data)))
	if _, err := d.ReadToken(); err != nil {
		t.Fatal(err)
	}
	for d.PeekKind() == '"' {
		n, err := d.ReadToken()
		if err != nil {
			t.Fatal(err)
		}
		name := n.String()
		v, err := d.ReadValue()
		if err != nil {
			t.Fatal(err)
		}
		names, values = append(names, name), append(values, string(v))
	}
	return names, values
}

// object writes the members as a JSON object.
func object(names, values []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + names[i] + `":` + values[i])
	}
	b.WriteByte('}')
	return b.String()
}

// A stored payload of a known version is exactly what the codec writes:
// every member of the registration once, of its kind, not null; only the
// members the registration declares optional may be absent, and nothing
// else may be there. Anything else is malformed, with the member named,
// so the read models quarantine it rather than fold a half-empty event.
func TestDecodeRefusesPayloadNotAsRegistered(t *testing.T) {
	for _, info := range codec.Events() {
		t.Run(info.Type, func(t *testing.T) {
			c, _ := newCodec(t, user)
			good := encode(t, c, sampleEvent(info.Type, user), sampleMeta())
			decode := func(data string) error {
				r := record(good)
				r.Data = []byte(data)
				d, err := c.Decode(t.Context(), r)
				if err == nil && (d.Event == nil || d.Event.EventType() != info.Type) {
					t.Fatalf("Decode of %s gave %#v", data, d.Event)
				}
				if err != nil && d.Event != nil {
					t.Errorf("Decode of %s returned event %#v with error %v", data, d.Event, err)
				}
				return err
			}
			if err := decode(string(good.Data)); err != nil {
				t.Fatalf("stored payload: %v", err)
			}
			names, values := payloadMembers(t, good.Data)
			if len(names) != len(info.Fields) {
				t.Fatalf("sample payload %s has %d members, registration %d", good.Data, len(names), len(info.Fields))
			}
			refused := func(what, data, mention string) {
				t.Helper()
				err := decode(data)
				if !errors.Is(err, codec.ErrMalformed) {
					t.Errorf("%s: Decode(%s) = %v, want ErrMalformed", what, data, err)
					return
				}
				if !strings.Contains(err.Error(), mention) {
					t.Errorf("%s: error %q does not mention %q", what, err, mention)
				}
			}
			for i, f := range info.Fields {
				without := object(append(names[:i:i], names[i+1:]...), append(values[:i:i], values[i+1:]...))
				if f.OmitEmpty {
					if err := decode(without); err != nil {
						t.Errorf("optional member %q left out: %v", f.Name, err)
					}
				} else {
					refused("missing "+f.Name, without, `"`+f.Name+`"`)
				}
				null := append([]string(nil), values...)
				null[i] = "null"
				refused("null "+f.Name, object(names, null), `"`+f.Name+`"`)

				wrong := append([]string(nil), values...)
				wrong[i] = `"1"`
				if f.Kind != codec.KindInt {
					wrong[i] = "1"
				}
				refused("wrong kind of "+f.Name, object(names, wrong), f.Name)

				refused("repeated "+f.Name, object(append(names[:len(names):len(names)], f.Name), append(values[:len(values):len(values)], values[i])), f.Name)
			}
			refused("unknown member", object(append(names[:len(names):len(names)], "extra"), append(values[:len(values):len(values)], `"x"`)), "extra")
			upper := append([]string(nil), names...)
			upper[0] = strings.ToUpper(upper[0])
			refused("member in another case", object(upper, values), upper[0])
			for _, data := range []string{`{}`, ` { } `, `null`, `[]`, `"x"`, `1`, ``} {
				refused("not the payload", data, "")
			}
			for _, tail := range []string{" {}", "x", ",", " null", "}"} {
				refused("trailing data", string(good.Data)+tail, "")
			}
		})
	}
}

// The older version of a payload is upcast, then held to the current
// registration: an upcast payload missing a member is malformed too.
func TestDecodeRefusesIncompleteUpcastPayload(t *testing.T) {
	c, _ := newCodec(t, user)
	r := eventstore.Record{Type: "AccountOpened", Data: []byte(`{"account":"a","licenses":3}`), Metadata: []byte(validMeta(1))}
	_, err := c.Decode(t.Context(), r)
	if !errors.Is(err, codec.ErrMalformed) || !strings.Contains(err.Error(), `"name", "at"`) {
		t.Errorf("Decode of a version 1 payload without name and at = %v, want ErrMalformed naming them", err)
	}
}
