package contract_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/contract"
)

var update = flag.Bool("update", false, "rewrite docs/schemas and docs/asyncapi.json")

var schemaDir = filepath.Join("..", "..", "docs", "schemas")

// TestSchemaFilesMatchCatalogue checks that docs/schemas holds exactly the
// schema of every version of every event type of the catalogue, as
// generated (go test ./internal/contract -run TestSchemaFiles -update
// rewrites them).
func TestSchemaFilesMatchCatalogue(t *testing.T) {
	all, err := contract.Schemas()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, s := range all {
		path := filepath.Join(schemaDir, s.Type+".json")
		want[path] = true
		if *update {
			if err := os.MkdirAll(schemaDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, s.JSON, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("schema of %s missing: %v (go test ./internal/contract -run TestSchemaFiles -update)", s.Type, err)
			continue
		}
		if !bytes.Equal(got, s.JSON) {
			t.Errorf("%s differs from the catalogue's (go test ./internal/contract -run TestSchemaFiles -update)", path)
		}
	}
	have, err := filepath.Glob(filepath.Join(schemaDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range have {
		if filepath.Base(p) == contract.BillingSchemaFile {
			// The billing notification's, written by hand: the same bytes
			// as the one licensed serves.
			if got, err := os.ReadFile(p); err != nil || !bytes.Equal(got, contract.BillingSchema()) {
				t.Errorf("%s differs from internal/contract/billing_schema.json (%v)", p, err)
			}
			continue
		}
		if !want[p] {
			t.Errorf("%s is the schema of no event type and version of the catalogue", p)
		}
	}
	// Every version of every type has one.
	for _, info := range codec.Events() {
		for v := 1; v <= info.Version; v++ {
			if !want[filepath.Join(schemaDir, contract.TypeName(info.Type, v)+".json")] {
				t.Errorf("%s version %d has no schema", info.Type, v)
			}
		}
	}
}

// compileSchemas compiles every checked-in schema file with a JSON Schema
// 2020-12 validator.
func compileSchemas(t *testing.T) map[string]*jsonschema.Schema {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(schemaDir, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no schema files in %s: %v", schemaDir, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.AssertContent()
	out := map[string]*jsonschema.Schema{}
	for _, p := range paths {
		if filepath.Base(p) == contract.BillingSchemaFile {
			continue // the billing notification's, tested by internal/cycleclose
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		url := "file:///" + filepath.Base(p)
		if err := c.AddResource(url, doc); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		sch, err := c.Compile(url)
		if err != nil {
			t.Fatalf("%s does not compile as a JSON Schema 2020-12: %v", p, err)
		}
		out[strings.TrimSuffix(filepath.Base(p), ".json")] = sch
	}
	return out
}

// TestGoldenDataValidAgainstSchemas validates the data of every golden
// event (internal/codec/testdata, every version of every type) against the
// checked-in schema its published type names, and checks that each schema
// refuses data that breaks it.
func TestGoldenDataValidAgainstSchemas(t *testing.T) {
	compiled := compileSchemas(t)
	seen := map[string]bool{}
	for _, g := range goldenRecords(t) {
		var meta struct {
			SchemaVersion int `json:"schemaversion"`
		}
		if err := json.Unmarshal(g.Record.Metadata, &meta); err != nil {
			t.Fatal(err)
		}
		typ := contract.TypeName(g.Record.Type, meta.SchemaVersion)
		sch, ok := compiled[typ]
		if !ok {
			t.Errorf("%s: no schema for %s in docs/schemas", filepath.Base(g.Path), typ)
			continue
		}
		seen[typ] = true
		data, err := jsonschema.UnmarshalJSON(bytes.NewReader(g.Record.Data))
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(data); err != nil {
			t.Errorf("%s: data invalid against %s:\n%v", filepath.Base(g.Path), typ, err)
		}
		// Controls: a member of the wrong type, a member no version has,
		// and every required member missing in turn are refused.
		obj := data.(map[string]any)
		for name := range obj {
			bad := clone(obj)
			bad[name] = []any{1}
			if sch.Validate(bad) == nil {
				t.Errorf("%s accepts %s holding an array", typ, name)
			}
		}
		bad := clone(obj)
		bad["not_a_member"] = "x"
		if sch.Validate(bad) == nil {
			t.Errorf("%s accepts an unknown member", typ)
		}
		var doc struct {
			Required []string `json:"required"`
		}
		b, _ := contract.SchemaJSON(typ)
		if err := json.Unmarshal(b, &doc); err != nil || len(doc.Required) == 0 {
			t.Fatalf("%s: required members %v, %v", typ, doc.Required, err)
		}
		for _, r := range doc.Required {
			bad := clone(obj)
			delete(bad, r)
			if sch.Validate(bad) == nil {
				t.Errorf("%s accepts data without %s", typ, r)
			}
		}
	}
	for typ := range compiled {
		if !seen[typ] {
			t.Errorf("schema %s validated no golden event", typ)
		}
	}
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// TestOlderVersionsDerivedFromUpcasts checks the schema of an older
// version against what its upcast says: AccountOpened version 1 had
// "licenses" where version 2 has "seats".
func TestOlderVersionsDerivedFromUpcasts(t *testing.T) {
	b, ok := contract.SchemaJSON("dev.licenseledger.account.opened.v1")
	if !ok {
		t.Fatal("no schema of AccountOpened version 1")
	}
	var doc struct {
		Required []string `json:"required"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(doc.Required, "licenses") || slices.Contains(doc.Required, "seats") {
		t.Errorf("version 1 requires %v, want licenses and not seats", doc.Required)
	}
	if _, ok := contract.SchemaJSON("dev.licenseledger.account.opened.v3"); ok {
		t.Error("a schema for a version that does not exist")
	}
	fmt.Fprint(os.Stderr)
}
