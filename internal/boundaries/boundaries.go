// Package boundaries checks the import rules between the ledger's layers:
// the domain is pure, event stores know nothing of read models or HTTP,
// and read models know no transport. Its test applies [Rules] to the
// packages of the repository as go list reports them.
package boundaries

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
)

// Package is a package as go list -deps -json describes it.
type Package struct {
	ImportPath string
	// Standard is set for a package of the standard library.
	Standard bool
	// Imports are the packages the package imports directly.
	Imports []string
	// Deps are all the packages it depends on, directly or not.
	Deps []string
}

// Rule forbids the packages under a folder of the module to depend,
// directly or not, on some packages.
type Rule struct {
	// Name says what the rule protects.
	Name string
	// Under is the folder of the module the rule applies to: its package
	// and every package below it.
	Under string
	// Forbidden reports whether a package under Under may not depend on
	// dep; module is the module path.
	Forbidden func(module string, dep Package) bool
}

// Violation is a package depending on one that a rule forbids it.
type Violation struct {
	Rule    string
	Package string
	// Dep is the forbidden package.
	Dep string
	// Via is the direct import through which Package depends on Dep (Dep
	// itself when imported directly).
	Via string
}

func (v Violation) String() string {
	if v.Via == v.Dep {
		return fmt.Sprintf("%s imports %s: %s", v.Package, v.Dep, v.Rule)
	}
	return fmt.Sprintf("%s depends on %s through %s: %s", v.Package, v.Dep, v.Via, v.Rule)
}

// transport are the packages that talk to other processes: HTTP, NATS,
// gRPC, EventStoreDB, and the ledger's own packages built on them.
var transport = []string{
	"net/http", "github.com/nats-io", "google.golang.org/grpc", "github.com/EventStore",
}

// moduleTransport are the ledger's packages that are transport code.
var moduleTransport = []string{
	"eventstore/jetstream", "eventstore/esdb", "internal/httpapi", "internal/relay",
}

// Rules are the ledger's import rules.
var Rules = []Rule{
	{
		Name:  "the domain depends on the standard library only",
		Under: "domain",
		Forbidden: func(_ string, dep Package) bool {
			return !dep.Standard
		},
	},
	{
		Name:  "event stores (the contract and its backends) depend on no read model and not on the HTTP layer",
		Under: "eventstore",
		Forbidden: func(module string, dep Package) bool {
			return under(dep.ImportPath, module+"/projections") || under(dep.ImportPath, module+"/internal/httpapi")
		},
	},
	{
		Name:  "read models depend on no transport (HTTP, NATS, gRPC, EventStoreDB)",
		Under: "projections",
		Forbidden: func(module string, dep Package) bool {
			for _, t := range transport {
				if under(dep.ImportPath, t) {
					return true
				}
			}
			for _, t := range moduleTransport {
				if under(dep.ImportPath, module+"/"+t) {
					return true
				}
			}
			return false
		},
	},
}

// under reports whether path is dir or a package below it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// Check applies rules to the packages pkgs of module (pkgs holds their
// dependencies too) and returns the violations, sorted: for each package
// and rule, the forbidden packages it imports and those no other forbidden
// one brings.
func Check(module string, pkgs []Package, rules []Rule) []Violation {
	byPath := make(map[string]Package, len(pkgs))
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	var out []Violation
	for _, r := range rules {
		for _, p := range pkgs {
			if !under(p.ImportPath, module+"/"+r.Under) {
				continue
			}
			deps := p.Deps
			if deps == nil {
				deps = p.Imports
			}
			var forbidden []string
			for _, d := range deps {
				dep, ok := byPath[d]
				if !ok {
					dep = Package{ImportPath: d}
				}
				if r.Forbidden(module, dep) {
					forbidden = append(forbidden, d)
				}
			}
			// A forbidden package not imported directly that another
			// forbidden one brings along (net/http/internal with net/http)
			// adds nothing to the report.
			for _, d := range forbidden {
				if slices.Contains(p.Imports, d) || !slices.ContainsFunc(forbidden, func(f string) bool { return f != d && slices.Contains(byPath[f].Deps, d) }) {
					out = append(out, Violation{Rule: r.Name, Package: p.ImportPath, Dep: d, Via: via(byPath, p, d)})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Violation) int {
		return strings.Compare(a.Package+" "+a.Dep+" "+a.Rule, b.Package+" "+b.Dep+" "+b.Rule)
	})
	return out
}

// via returns the direct import of p through which it depends on dep.
func via(byPath map[string]Package, p Package, dep string) string {
	if slices.Contains(p.Imports, dep) {
		return dep
	}
	for _, i := range p.Imports {
		if slices.Contains(byPath[i].Deps, dep) {
			return i
		}
	}
	return "?"
}

// List runs go list -deps -json in dir on patterns and returns the
// packages it reports, the listed ones and their dependencies, and the
// module path of dir.
func List(ctx context.Context, dir string, patterns ...string) (module string, pkgs []Package, err error) {
	mod := exec.CommandContext(ctx, "go", "list", "-m")
	mod.Dir = dir
	out, err := mod.Output()
	if err != nil {
		return "", nil, fmt.Errorf("go list -m: %w", err)
	}
	module = strings.TrimSpace(string(out))
	args := append([]string{"list", "-deps", "-json=ImportPath,Standard,Imports,Deps,Error"}, patterns...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if out, err = cmd.Output(); err != nil {
		return "", nil, fmt.Errorf("go list: %w: %s", err, stderr.Bytes())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p struct {
			Package
			Error *struct{ Err string }
		}
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", nil, fmt.Errorf("go list output: %w", err)
		}
		if p.Error != nil {
			return "", nil, fmt.Errorf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p.Package)
	}
	return module, pkgs, nil
}
