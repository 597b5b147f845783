package flatjson

import (
	"encoding/binary"
	"strconv"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

var testNames = []string{"user_id", "kind", "count"}

// agrees checks that when Scan accepts data, the general JSON decoder
// accepts it too, as an object of exactly the members Scan found with the
// same values, and reports whether Scan accepted it.
func agrees(t testing.TB, data []byte) bool {
	t.Helper()
	var vals [3][]byte
	var kinds [3]Kind
	if !Scan(data, testNames, vals[:], kinds[:]) {
		return false
	}
	var obj map[string]jsontext.Value
	if err := json.Unmarshal(data, &obj); err != nil {
		t.Fatalf("Scan accepted %q, json.Unmarshal: %v", data, err)
	}
	n := 0
	for i, name := range testNames {
		raw, ok := obj[name]
		switch {
		case kinds[i] == Absent:
			if ok {
				t.Fatalf("Scan of %q missed member %s", data, name)
			}
			continue
		case !ok:
			t.Fatalf("Scan of %q found member %s, json.Unmarshal did not", data, name)
		}
		n++
		switch kinds[i] {
		case String:
			var s string
			if err := json.Unmarshal(raw, &s); err != nil || s != string(vals[i]) {
				t.Fatalf("Scan of %q: %s = string %q, json.Unmarshal: %q, %v", data, name, vals[i], s, err)
			}
		case Int:
			var got int64
			want, err := strconv.ParseInt(string(vals[i]), 10, 64)
			if err != nil || json.Unmarshal(raw, &got) != nil || got != want || string(vals[i]) != string(raw) {
				t.Fatalf("Scan of %q: %s = int %s, json.Unmarshal: %s", data, name, vals[i], raw)
			}
		default:
			t.Fatalf("Scan of %q: %s has kind %d", data, name, kinds[i])
		}
	}
	if n != len(obj) {
		t.Fatalf("Scan of %q found %d members, json.Unmarshal %d", data, n, len(obj))
	}
	return true
}

func TestScan(t *testing.T) {
	for _, data := range []string{
		`{}`, " \t{\r\n} ", `{"user_id":"u-1","kind":"note","count":-12}`, `{"count":0,"user_id":""}`,
		` { "kind" : "a b@c.d~" , "count" : 123456789012345678 } `,
		`{"user_id":"` + strings.Repeat("0123456789", 10) + `"}`,
	} {
		if !agrees(t, []byte(data)) {
			t.Errorf("Scan refused %s", data)
		}
	}
	for _, data := range []string{
		``, `null`, `[]`, `{`, `{"kind":"x"`, `{"kind":"x",}`, `{"kind":"x"}x`, `{"kind":"x"}{}`, `{,}`,
		`{"kind"}`, `{"kind":}`, `{"kind":"x" "count":1}`, `{"kind":"x","kind":"y"}`, `{"Kind":"x"}`,
		`{"other":"x"}`, `{"ki\u006ed":"x"}`, `{"kind":"\u0041"}`, `{"kind":"a\"b"}`, `{"kind":"é"}`,
		"{\"kind\":\"\x7f\"}", "{\"kind\":\"tab\tin\"}", "{\"kind\":\"" + strings.Repeat("x", 20) + "\xff\"}",
		`{"kind":null}`, `{"kind":true}`, `{"kind":["x"]}`, `{"kind":{}}`, "\v{}",
		`{"count":-0}`, `{"count":01}`, `{"count":-}`, `{"count":1.0}`, `{"count":1e3}`, `{"count":1E3}`,
		`{"count":1234567890123456789}`, `{"count":+1}`,
	} {
		if agrees(t, []byte(data)) {
			t.Errorf("Scan accepted %s", data)
		}
	}
	var vals [MaxNames + 1][]byte
	var kinds [MaxNames + 1]Kind
	names := make([]string, MaxNames+1)
	for i := range names {
		names[i] = "m" + strconv.Itoa(i)
	}
	if Scan([]byte(`{}`), names, vals[:], kinds[:]) {
		t.Errorf("Scan accepted %d names, more than MaxNames", len(names))
	}
	if !Scan([]byte(`{"m31":"x"}`), names[:MaxNames], vals[:], kinds[:]) || kinds[MaxNames-1] != String {
		t.Errorf("Scan refused the last of MaxNames names")
	}
}

func TestSpecial(t *testing.T) {
	for c := range 256 {
		want := c == '"' || c == '\\' || c < 0x20 || c >= 0x7f
		for pos := range 8 {
			for _, fill := range []byte{'a', ' ', '~', '!'} {
				var b [8]byte
				for i := range b {
					b[i] = fill
				}
				b[pos] = byte(c)
				if got := special(binary.LittleEndian.Uint64(b[:])); got != want {
					t.Fatalf("special(%q) = %v, want %v", b, got, want)
				}
			}
		}
	}
}

// FuzzScan checks that Scan accepts nothing the general JSON decoder
// refuses and finds the members it does.
func FuzzScan(f *testing.F) {
	for _, s := range []string{
		`{"user_id":"u-1","kind":"note","count":-12}`, ` { "count" : 0 } `, `{"kind":"a\"b"}`, `{"count":-0}`,
		`{"count":1.5}`, `{"kind":"x","kind":"y"}`, `{"kind":"` + strings.Repeat("x", 17) + `"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { agrees(t, data) })
}
