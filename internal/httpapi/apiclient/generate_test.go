package apiclient_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestGeneratedClientCurrent regenerates the client from openapi.json
// with the oapi-codegen of go.mod's tool line and the checked-in
// configuration, and fails when the result differs from client.gen.go
// (run go generate ./internal/httpapi/apiclient) or when oapi-codegen
// fails or warns.
func TestGeneratedClientCurrent(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	// Read here too, so that go test's cache knows the test depends on it.
	if _, err := os.ReadFile("../openapi.json"); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile("config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "client.gen.go")
	if !bytes.Contains(cfg, []byte("\noutput: client.gen.go\n")) {
		t.Fatalf("config.yaml has no line output: client.gen.go")
	}
	cfg = bytes.Replace(cfg, []byte("\noutput: client.gen.go\n"), []byte("\noutput: "+out+"\n"), 1)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), goBin, "tool", "oapi-codegen", "-config", cfgPath, "../openapi.json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("oapi-codegen: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	if msg := strings.TrimSpace(stdout.String() + stderr.String()); msg != "" {
		t.Fatalf("oapi-codegen says:\n%s", msg)
	}
	fresh, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	current, err := os.ReadFile("client.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, current) {
		t.Fatalf("client.gen.go is not what openapi.json generates: run go generate ./internal/httpapi/apiclient")
	}
}

// TestDocumentValid validates openapi.json with kin-openapi, the loader
// oapi-codegen and other Go tools read it with.
func TestDocumentValid(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromFile("../openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(t.Context()); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if len(doc.Paths.Map()) < 25 {
		t.Fatalf("control: %d paths", len(doc.Paths.Map()))
	}
}
