package httpapi_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/licenseledger/ledger/internal/contract"
)

// TestContractServed serves, without a token, the AsyncAPI document and
// the schema of every published type at the path its dataschema names,
// and answers 404 problems for any other name.
func TestContractServed(t *testing.T) {
	e := newEnv(t)
	doc, err := contract.AsyncAPI()
	if err != nil {
		t.Fatal(err)
	}
	if got := e.must(200, "", "GET", "/asyncapi.json", nil).Body; !bytes.Equal(got, doc) {
		t.Error("/asyncapi.json is not the contract's AsyncAPI document")
	}
	all, err := contract.Schemas()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		resp := e.must(200, "", "GET", contract.SchemaPath(s.Type), nil)
		if !bytes.Equal(resp.Body, s.JSON) || resp.Header.Get("Content-Type") != "application/schema+json" {
			t.Errorf("%s: %s %s", contract.SchemaPath(s.Type), resp.Header.Get("Content-Type"), resp.Body)
		}
	}
	for _, bad := range []string{"/schemas/UserDeactivated.json", "/schemas/dev.licenseledger.user.deactivated.v1", "/schemas/dev.licenseledger.user.deactivated.v9.json", "/schemas/..%2fopenapi.json"} {
		resp := e.must(404, "", "GET", bad, nil)
		var p map[string]any
		if err := json.Unmarshal(resp.Body, &p); err != nil || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %s %s", bad, resp.Header.Get("Content-Type"), resp.Body)
		}
	}
}
