package boundaries_test

import (
	"slices"
	"testing"

	"github.com/licenseledger/ledger/internal/boundaries"
)

// TestRepository applies the rules to the repository's packages.
func TestRepository(t *testing.T) {
	module, pkgs, err := boundaries.List(t.Context(), "../..", "./domain/...", "./eventstore/...", "./projections/...")
	if err != nil {
		t.Fatal(err)
	}
	// The listing holds what the rules are about: an empty or partial one
	// would pass for the wrong reason.
	var paths []string
	for _, p := range pkgs {
		paths = append(paths, p.ImportPath)
	}
	for _, want := range []string{"domain/ledger", "eventstore", "eventstore/jetstream", "eventstore/esdb", "eventstore/memory", "projections/runner", "projections/audit"} {
		if !slices.Contains(paths, module+"/"+want) {
			t.Fatalf("go list did not report %s/%s", module, want)
		}
	}
	for _, v := range boundaries.Check(module, pkgs, boundaries.Rules) {
		t.Error(v)
	}
}

// The checker finds each kind of violation in a made-up import graph, with
// the import it comes through, and nothing in a clean one.
func TestCheck(t *testing.T) {
	const m = "example.com/ledger"
	std := func(path string, imports ...string) boundaries.Package {
		return boundaries.Package{ImportPath: path, Standard: true, Imports: imports, Deps: imports}
	}
	pkg := func(path string, imports []string, deps ...string) boundaries.Package {
		return boundaries.Package{ImportPath: path, Imports: imports, Deps: append(slices.Clone(imports), deps...)}
	}
	clean := []boundaries.Package{
		std("time"), std("fmt"), std("net/url"), std("net/http", "net/url"),
		pkg("github.com/google/uuid", nil),
		pkg("github.com/nats-io/nats.go", []string{"net/url"}),
		pkg(m+"/domain/ledger", []string{"time", "fmt"}),
		pkg(m+"/eventstore", []string{"github.com/google/uuid", "time"}),
		pkg(m+"/eventstore/jetstream", []string{m + "/eventstore", "github.com/nats-io/nats.go"}, "github.com/google/uuid", "net/url", "time"),
		pkg(m+"/internal/codec", []string{m + "/domain/ledger", m + "/eventstore"}, "time", "fmt", "github.com/google/uuid"),
		pkg(m+"/projections/seats", []string{m + "/internal/codec"}, m+"/domain/ledger", m+"/eventstore", "time", "fmt", "github.com/google/uuid"),
		pkg(m+"/internal/httpapi", []string{"net/http", m + "/projections/seats"}, "net/url"),
	}
	if v := boundaries.Check(m, clean, boundaries.Rules); len(v) != 0 {
		t.Fatalf("clean graph: %v", v)
	}

	dirty := append(slices.Clone(clean),
		// The domain imports a module outside the standard library.
		pkg(m+"/domain/pricing", []string{"github.com/google/uuid", "time"}),
		// A backend imports a read model, and the HTTP layer indirectly.
		pkg(m+"/eventstore/memory", []string{m + "/projections/seats", m + "/internal/wiring"}, m+"/internal/codec", m+"/internal/httpapi"),
		pkg(m+"/internal/wiring", []string{m + "/internal/httpapi"}),
		// A read model reaches NATS through the JetStream store (reported
		// once, as the store), and one imports net/http.
		pkg(m+"/projections/runner", []string{m + "/eventstore/jetstream"}, m+"/eventstore", "github.com/nats-io/nats.go", "net/url"),
		pkg(m+"/projections/web", []string{"net/http"}, "net/url"),
	)
	got := boundaries.Check(m, dirty, boundaries.Rules)
	type found struct{ pkg, dep, via string }
	var gotFound []found
	for _, v := range got {
		if v.Rule == "" || v.String() == "" {
			t.Errorf("violation without its rule: %+v", v)
		}
		gotFound = append(gotFound, found{v.Package, v.Dep, v.Via})
	}
	want := []found{
		{m + "/domain/pricing", "github.com/google/uuid", "github.com/google/uuid"},
		{m + "/eventstore/memory", m + "/internal/httpapi", m + "/internal/wiring"},
		{m + "/eventstore/memory", m + "/projections/seats", m + "/projections/seats"},
		{m + "/projections/runner", m + "/eventstore/jetstream", m + "/eventstore/jetstream"},
		{m + "/projections/web", "net/http", "net/http"},
	}
	if !slices.Equal(gotFound, want) {
		t.Errorf("violations:\n got %v\nwant %v", gotFound, want)
	}
}
