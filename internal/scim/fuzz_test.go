package scim

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/licenseledger/ledger/domain/ledger"
)

// FuzzPatchAndFilter feeds arbitrary PATCH bodies and filters to the
// parsers: they never panic, and every refusal is a SCIM error of status
// 400 with a scimType.
func FuzzPatchAndFilter(f *testing.F) {
	for _, s := range []string{
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false,"name.givenName":"A"}}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"add","path":"roles[primary eq \"True\"].value","value":"admin"}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"emails","value":[{"value":1}]}]}`,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"remove","path":"roles[value eq"}]}`,
	} {
		f.Add([]byte(s), `userName eq "a" and (emails[type eq "work"] or not (active eq true))`)
	}
	f.Add([]byte(`{}`), `meta.created gt "2026-01-01T00:00:00Z" or name.givenName pr`)
	f.Fuzz(func(t *testing.T, body []byte, flt string) {
		var m map[string]any
		if json.Unmarshal(body, &m) == nil && m != nil {
			_, err := patch(m, profile{name: "Ada Lovelace", email: "ada@acme.test", role: ledger.RoleMember, active: true})
			checkRefusal(t, err)
		}
		match, err := compileFilter(flt)
		checkRefusal(t, err)
		if err == nil {
			match(map[string]any{"userName": "ada@acme.test", "active": true,
				"emails": []any{map[string]any{"value": "ada@acme.test", "primary": true}},
				"meta":   map[string]any{"created": "2026-03-10T09:00:00.000Z"}})
		}
	})
}

func checkRefusal(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var se *Error
	if !errors.As(err, &se) || se.Status != 400 || se.ScimType == "" {
		t.Fatalf("refusal %v is not a 400 SCIM error with a scimType", err)
	}
}
