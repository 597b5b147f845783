package contract_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/cycleclose"
)

var asyncAPIFile = filepath.Join("..", "..", "docs", "asyncapi.json")

// TestAsyncAPIValid validates the AsyncAPI document against the official
// AsyncAPI 3.0.0 JSON Schema (testdata, from @asyncapi/specs), checks the
// copy in docs/asyncapi.json (-update rewrites it), and that every
// published type and version is a message of the channel of its subject,
// whose data references a schema file that exists.
func TestAsyncAPIValid(t *testing.T) {
	doc, err := contract.AsyncAPI()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(asyncAPIFile, doc, 0o644); err != nil {
			t.Fatal(err)
		}
	} else if have, err := os.ReadFile(asyncAPIFile); err != nil || !bytes.Equal(have, doc) {
		t.Errorf("docs/asyncapi.json differs from the document served (%v): go test ./internal/contract -run TestAsyncAPI -update", err)
	}

	c := jsonschema.NewCompiler()
	f, err := os.Open(filepath.Join("testdata", "asyncapi-3.0.0.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	meta, err := jsonschema.UnmarshalJSON(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	const url = "http://asyncapi.com/definitions/3.0.0/asyncapi.json"
	if err := c.AddResource(url, meta); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		t.Fatalf("the AsyncAPI 3.0.0 schema does not compile: %v", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(inst); err != nil {
		t.Fatalf("the AsyncAPI document is not valid AsyncAPI 3.0.0:\n%v", err)
	}
	// Control: the validator refuses a broken document.
	broken := bytes.Replace(doc, []byte(`"action": "receive"`), []byte(`"action": "consume"`), 1)
	if bi, err := jsonschema.UnmarshalJSON(bytes.NewReader(broken)); err != nil || sch.Validate(bi) == nil {
		t.Fatalf("the validator accepts an operation with action \"consume\" (%v)", err)
	}

	var parsed struct {
		Channels map[string]struct {
			Address  string                       `json:"address"`
			Messages map[string]map[string]string `json:"messages"`
		} `json:"channels"`
		Components struct {
			Messages map[string]struct {
				Name    string `json:"name"`
				Payload struct {
					Properties struct {
						Data map[string]any `json:"data"`
					} `json:"properties"`
				} `json:"payload"`
			} `json:"messages"`
			SecuritySchemes map[string]map[string]any `json:"securitySchemes"`
		} `json:"components"`
	}
	if err := json.Unmarshal(doc, &parsed); err != nil {
		t.Fatal(err)
	}
	if cycleclose.Type != contract.BillingEventType {
		t.Fatalf("the billing notification is published as %s, the document says %s", cycleclose.Type, contract.BillingEventType)
	}
	want := map[string]string{contract.BillingEventType: "billing.{account}.CycleClosed"}
	for _, info := range codec.Events() {
		for v := 1; v <= info.Version; v++ {
			want[contract.TypeName(info.Type, v)] = string(info.Category) + ".{account}." + info.Type
		}
	}
	for typ, address := range want {
		m, ok := parsed.Components.Messages[typ]
		if !ok || m.Name != typ {
			t.Errorf("published type %s is not a message of the document", typ)
			continue
		}
		found := false
		for _, ch := range parsed.Channels {
			if _, ok := ch.Messages[typ]; ok && ch.Address == address {
				found = true
			}
		}
		if !found {
			t.Errorf("message %s is on no channel %s", typ, address)
		}
		if ref, ok := m.Payload.Properties.Data["$ref"].(string); ok {
			if _, err := os.Stat(filepath.Join("..", "..", "docs", ref)); err != nil {
				t.Errorf("message %s: data schema %s: %v", typ, ref, err)
			}
		} else {
			t.Errorf("message %s: data references no schema", typ)
		}
	}
	if len(parsed.Components.Messages) != len(want) {
		t.Errorf("the document has %d messages, want %d", len(parsed.Components.Messages), len(want))
	}
	if !strings.Contains(string(doc), "downstream.nk") || parsed.Components.SecuritySchemes["downstreamNkey"] == nil {
		t.Error("the document does not say which credential a consumer needs")
	}
}
