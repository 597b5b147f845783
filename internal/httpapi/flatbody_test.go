package httpapi

import (
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"
)

// flatAgrees checks that every body type's fast path, when it accepts
// body, decodes it as json.Unmarshal does, and reports whether any did.
func flatAgrees(t testing.TB, body []byte) (accepted bool) {
	for _, zero := range []func() flatBody{
		func() flatBody { return &activityBody{} },
		func() flatBody { return &deactivateBody{} },
		func() flatBody { return &addUserBody{} },
		func() flatBody { return &countBody{} },
	} {
		fast := zero()
		if !fast.decodeFlat(body) {
			if !reflect.DeepEqual(fast, zero()) {
				t.Fatalf("%T refused %q and changed: %+v", fast, body, fast)
			}
			continue
		}
		accepted = true
		slow := zero()
		if err := json.Unmarshal(body, slow, strictBody); err != nil {
			t.Fatalf("%T: fast path took %q, json.Unmarshal refuses it: %v", fast, body, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%T from %q: fast %+v, json.Unmarshal %+v", fast, body, fast, slow)
		}
	}
	return accepted
}

// flatSeeds are bodies of the fast path's form and of every form near it.
var flatSeeds = []string{
	`{"user_id":"01JQ8ZK5W6X0A1B2C3D4E5F6G7","kind":"note","ref":"candidate-12"}`,
	`{"reason":"load cycle"}`, `{"count":1}`, `{"count":-3}`, `{"count":0}`, `{}`, ` { } `, `{"count":01}`,
	`{"count":1.0}`, `{"count":1e3}`, `{"count":"1"}`, `{"count":123456789012345}`, `{"count":1234567890123456789}`,
	`{"name":"Ann","email":"ann@acme.test","role":"member"}`, `{"name":"Zoë","email":"z@acme.test","role":"admin"}`,
	`{"reason":"a\"b"}`, `{"reason":"a\\b"}`, `{"reason":"\u00e9"}`, `{"reason":"tab	in"}`, `{"reason":null}`,
	`{"reason":"x","reason":"y"}`, `{"Reason":"x"}`, `{"reason":"x",}`, `{"reason":"x"} x`, `{"reason":"x"}{}`,
	"\t{\n\"reason\" :\r\"x\" }\n", `{"reason":"x"`, `{"reason"}`, `{"reason":}`, `{,}`, `[]`, `"x"`, `{"kind":true}`,
	`{"user_id":"u","kind":"k","ref":"r","extra":"e"}`, `{"ref":"r","user_id":"u"}`, `{"count":-}`, `{"count":-0}`,
	`{"count":[1]}`, `{"count":{"n":1}}`, `{"reason":"` + strings.Repeat("x", 300) + `"}`, "{\"reason\":\"\x7f\"}",
	"{\"reason\":\"\xff\"}",
}

// TestFlatBodiesAgree: the fast path of the request bodies decodes what
// it accepts as json.Unmarshal does (which also takes everything it
// refuses, or refuses it with the precise error), on bodies built from
// pieces of every form near the fast path's, and it takes the bodies
// clients send.
func TestFlatBodiesAgree(t *testing.T) {
	for _, b := range []string{flatSeeds[0], flatSeeds[1], flatSeeds[2], flatSeeds[13]} {
		if !flatAgrees(t, []byte(b)) {
			t.Fatalf("the fast path refused %s", b)
		}
	}
	names := []string{`"user_id"`, `"kind"`, `"ref"`, `"reason"`, `"name"`, `"email"`, `"role"`, `"count"`, `"other"`, `"Kind"`, `"ki\u006ed"`, `""`}
	values := []string{`"x"`, `""`, `"a b@c.d"`, `"a\"b"`, `"é"`, `1`, `-12`, `0`, `07`, `1.5`, `2e1`, `true`, `null`, `"1"`, `[]`, `{}`, `-`, "\"\x01\"", "\"\xff\""}
	spaces := []string{"", "", "", " ", "\n\t", "\v"}
	rng := rand.New(rand.NewPCG(3, 4))
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	accepted := 0
	for range 100_000 {
		var b strings.Builder
		b.WriteString(pick(spaces) + "{")
		n := rng.IntN(4)
		for i := range n {
			if i > 0 {
				b.WriteString(pick(spaces) + "," + pick(spaces))
			}
			b.WriteString(pick(spaces) + pick(names) + pick(spaces) + ":" + pick(spaces) + pick(values))
		}
		if rng.IntN(20) == 0 {
			b.WriteString(",")
		}
		b.WriteString(pick(spaces) + "}" + pick(spaces))
		if rng.IntN(30) == 0 {
			b.WriteString(pick(values))
		}
		if flatAgrees(t, []byte(b.String())) {
			accepted++
		}
	}
	if accepted < 1_000 {
		t.Fatalf("the fast path took %d of the bodies: the cases do not exercise it", accepted)
	}
	for _, s := range flatSeeds {
		flatAgrees(t, []byte(s))
	}
}

func FuzzFlatBodies(f *testing.F) {
	for _, s := range flatSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { flatAgrees(t, body) })
}
