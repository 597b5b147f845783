package httpapi_test

import (
	"bytes"
	"encoding/json"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"

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
	// The billing notification's schema is served where its dataschema
	// points too.
	if got := e.must(200, "", "GET", contract.SchemaPath(contract.BillingEventType), nil).Body; len(got) == 0 || !bytes.Equal(got, contract.BillingSchema()) {
		t.Errorf("%s: %s", contract.SchemaPath(contract.BillingEventType), got)
	}
	for _, bad := range []string{"/schemas/UserDeactivated.json", "/schemas/dev.licenseledger.user.deactivated.v1", "/schemas/dev.licenseledger.user.deactivated.v9.json", "/schemas/..%2fopenapi.json"} {
		resp := e.must(404, "", "GET", bad, nil)
		var p map[string]any
		if err := json.Unmarshal(resp.Body, &p); err != nil || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %s %s", bad, resp.Header.Get("Content-Type"), resp.Body)
		}
	}
}

// TestEventsAsCloudEvents exports an account's history as the published
// envelopes of contract v2: versioned types, the account's URN, no
// idempotency key; the default export keeps the stored form, key
// included, for auditors; an unknown format is refused.
func TestEventsAsCloudEvents(t *testing.T) {
	e := newEnv(t)
	e.must(201, e.operator, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 3}, "Idempotency-Key", "idem-export-42")
	u := e.addUser("acme", "Ada Lovelace", "ada@acme.test", "admin")

	stored := e.must(200, e.operator, "GET", "/v1/accounts/acme/events", nil).Body
	if !bytes.Contains(stored, []byte("idem-export-42")) {
		t.Fatalf("control: the stored export holds no idempotency key: %s", stored)
	}
	out := e.must(200, e.operator, "GET", "/v1/accounts/acme/events?format=cloudevents", nil).Body
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2: %s", len(lines), out)
	}
	var evs []cloudevents.Event
	for _, l := range lines {
		var ev cloudevents.Event
		if err := json.Unmarshal(l, &ev); err != nil {
			t.Fatalf("not a CloudEvent: %v: %s", err, l)
		}
		if err := ev.Validate(); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if evs[0].Type() != "dev.licenseledger.account.opened.v2" || evs[1].Type() != "dev.licenseledger.user.added.v2" ||
		evs[1].Subject() != u || evs[0].Source() != "urn:licenseledger:account:acme" ||
		evs[1].DataSchema() != contract.DefaultBaseURL+"/schemas/dev.licenseledger.user.added.v2.json" {
		t.Fatalf("envelopes %v", evs)
	}
	if bytes.Contains(out, []byte("idem-export-42")) || bytes.Contains(out, []byte("idempotencykey")) {
		t.Fatalf("the CloudEvents export holds the idempotency key: %s", out)
	}
	// Not the three letters "Ada", which base64 ciphertext holds by chance.
	if !bytes.Contains(out, []byte("name_sealed")) {
		t.Fatalf("control: the export holds no sealed name: %s", out)
	}
	if bytes.Contains(out, []byte("Lovelace")) || bytes.Contains(out, []byte("ada@acme.test")) {
		t.Fatal("personal data in clear")
	}
	e.must(400, e.operator, "GET", "/v1/accounts/acme/events?format=xml", nil)
}
