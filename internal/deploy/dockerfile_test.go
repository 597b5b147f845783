package deploy

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction with its continuation lines
// joined.
type instruction struct {
	cmd  string // upper case, e.g. RUN
	args string
	line int
}

// stage is one FROM and the instructions up to the next.
type stage struct {
	image string // with ARG defaults substituted
	name  string
	insts []instruction
}

// dockerfile is a parsed Dockerfile.
type dockerfile struct {
	args   map[string]string // ARG defaults declared before the first FROM
	stages []stage
}

// parseDockerfile splits b into stages of instructions, the way the
// Dockerfile frontend does for what this repository uses: comments and
// blank lines dropped, backslash continuations joined, ARGs before the first
// FROM substituted into FROM lines.
func parseDockerfile(b []byte) (*dockerfile, error) {
	df := &dockerfile{args: map[string]string{}}
	var pending strings.Builder
	start := 0
	for i, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if pending.Len() == 0 {
			start = i + 1
		}
		if cont, ok := strings.CutSuffix(trimmed, `\`); ok {
			pending.WriteString(strings.TrimSpace(cont) + " ")
			continue
		}
		pending.WriteString(trimmed)
		text := pending.String()
		pending.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		switch {
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			if len(f) == 0 {
				return nil, fmt.Errorf("line %d: FROM without image", in.line)
			}
			st := stage{image: expandArgs(f[0], df.args)}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			df.stages = append(df.stages, st)
		case len(df.stages) == 0 && in.cmd == "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			df.args[k] = v
		case len(df.stages) == 0:
			return nil, fmt.Errorf("line %d: %s before the first FROM", in.line, in.cmd)
		default:
			st := &df.stages[len(df.stages)-1]
			st.insts = append(st.insts, in)
		}
	}
	if pending.Len() > 0 {
		return nil, fmt.Errorf("line %d: continuation at the end of the file", start)
	}
	if len(df.stages) == 0 {
		return nil, fmt.Errorf("no FROM")
	}
	return df, nil
}

var argRef = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

// expandArgs substitutes ${NAME} and $NAME from vars.
func expandArgs(s string, vars map[string]string) string {
	return argRef.ReplaceAllStringFunc(s, func(m string) string {
		name := strings.Trim(m, "${}")
		return vars[name]
	})
}

func (df *dockerfile) final() *stage { return &df.stages[len(df.stages)-1] }

// all returns the instructions of st named cmd.
func (st *stage) all(cmd string) []instruction {
	var out []instruction
	for _, in := range st.insts {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// envs returns the variables the final stage's ENV instructions set.
func (df *dockerfile) envs() map[string]string {
	vars := map[string]string{}
	for _, in := range df.final().all("ENV") {
		f := strings.Fields(in.args)
		if len(f) > 0 && !strings.Contains(f[0], "=") { // legacy ENV KEY value
			vars[f[0]] = strings.Join(f[1:], " ")
			continue
		}
		for _, kv := range f {
			k, v, _ := strings.Cut(kv, "=")
			vars[k] = strings.Trim(v, `"'`)
		}
	}
	return vars
}

// env returns one variable of the final stage, "" when unset.
func (df *dockerfile) env(key string) string { return df.envs()[key] }

// words splits an exec-form (JSON array) or shell-form argument list.
func words(args string) []string {
	if strings.HasPrefix(args, "[") {
		var w []string
		if err := json.Unmarshal([]byte(args), &w); err == nil {
			return w
		}
	}
	return strings.Fields(args)
}

// flagsAndRest splits the leading --flags of a RUN, COPY or HEALTHCHECK
// from the rest.
func flagsAndRest(args string) (flags []string, rest string) {
	for {
		args = strings.TrimSpace(args)
		if !strings.HasPrefix(args, "--") {
			return flags, args
		}
		f, r, _ := strings.Cut(args, " ")
		flags = append(flags, f)
		args = r
	}
}

// checkDockerfile returns every way df departs from the intended image.
func checkDockerfile(df *dockerfile) problems {
	var pr problems
	if len(df.stages) < 2 {
		pr.addf("not multi-stage: the runtime image would carry the Go toolchain and the sources")
	}
	for i, st := range df.stages {
		if st.image == "scratch" {
			continue
		}
		if err := checkPinned(st.image); err != nil {
			pr.addf("stage %d: %v", i, err)
		}
	}
	final := df.final()
	if repo, _ := splitImage(final.image); repo == "golang" || strings.HasSuffix(repo, "/golang") {
		pr.addf("runtime image %q is the Go toolchain; run from a small base", final.image)
	}

	// The build: a static, reproducible binary of ./cmd/licensed.
	var build *instruction
	var buildStage *stage
	for i := range df.stages[:len(df.stages)-1] {
		st := &df.stages[i]
		for _, in := range st.all("RUN") {
			if strings.Contains(in.args, "go build") && regexp.MustCompile(`\s\./cmd/licensed(\s|$)`).MatchString(in.args) {
				build, buildStage = &in, st
			}
		}
	}
	output := ""
	if build == nil {
		pr.addf("no earlier stage runs go build ... ./cmd/licensed")
	} else {
		stageEnv := strings.Join(slices.Collect(func(yield func(string) bool) {
			for _, in := range buildStage.all("ENV") {
				yield(in.args)
			}
		}), " ")
		if !strings.Contains(build.args, "CGO_ENABLED=0") && !strings.Contains(stageEnv, "CGO_ENABLED=0") {
			pr.addf("line %d: go build without CGO_ENABLED=0; the binary would need the build image's libc", build.line)
		}
		if !strings.Contains(build.args, "-trimpath") {
			pr.addf("line %d: go build without -trimpath", build.line)
		}
		if !strings.Contains(build.args, `-ldflags="-s -w"`) {
			pr.addf(`line %d: go build without -ldflags="-s -w"`, build.line)
		}
		output, _ = flagValue(strings.Fields(build.args), "-o")
		if output == "" {
			pr.addf("line %d: go build names no output (-o)", build.line)
		}
		cached := false
		for _, in := range buildStage.all("RUN") {
			flags, _ := flagsAndRest(in.args)
			for _, f := range flags {
				if strings.HasPrefix(f, "--mount=") && strings.Contains(f, "type=cache") && strings.Contains(f, "target=/go/pkg/mod") {
					cached = true
				}
			}
		}
		if !cached {
			pr.addf("the build stage mounts no module cache (--mount=type=cache,target=/go/pkg/mod)")
		}
	}

	// The binary in the runtime stage and its entrypoint.
	installed := ""
	for _, in := range final.all("COPY") {
		flags, rest := flagsAndRest(in.args)
		w := strings.Fields(rest)
		if len(w) == 2 && buildStage != nil && slices.Contains(flags, "--from="+buildStage.name) && w[0] == output {
			installed = w[1]
			if strings.HasSuffix(installed, "/") {
				installed += path.Base(output)
			}
		}
	}
	if output != "" && installed == "" {
		pr.addf("the runtime stage does not copy %s from the build stage", output)
	}
	var entry []string
	if eps := final.all("ENTRYPOINT"); len(eps) > 0 {
		entry = words(eps[len(eps)-1].args)
	}
	if len(entry) == 0 || entry[0] != installed {
		pr.addf("entrypoint %q does not run the copied binary %q", entry, installed)
	}

	// Not root.
	user := ""
	if us := final.all("USER"); len(us) > 0 {
		user, _, _ = strings.Cut(us[len(us)-1].args, ":")
	}
	if user == "" || user == "root" || user == "0" {
		pr.addf("the runtime stage runs as root (USER %q)", user)
	}

	// HTTP on the exposed port, data on a volume.
	var exposed []string
	for _, in := range final.all("EXPOSE") {
		for _, p := range strings.Fields(in.args) {
			exposed = append(exposed, strings.TrimSuffix(p, "/tcp"))
		}
	}
	if !slices.Contains(exposed, strconv.Itoa(licensedHTTP)) {
		pr.addf("the image does not expose %d (exposes %q)", licensedHTTP, exposed)
	}
	if addr := df.env("LICENSED_HTTP_ADDR"); addr != "0.0.0.0:"+strconv.Itoa(licensedHTTP) {
		pr.addf("LICENSED_HTTP_ADDR=%q; want 0.0.0.0:%d, anything else is unreachable through the exposed port", addr, licensedHTTP)
	}
	var volumes []string
	for _, in := range final.all("VOLUME") {
		volumes = append(volumes, words(in.args)...)
	}
	if dir := df.env("LICENSED_DATA_DIR"); dir == "" || !slices.Contains(volumes, dir) {
		pr.addf("LICENSED_DATA_DIR=%q is not a volume (volumes %q)", dir, volumes)
	}

	// The image probes itself, with a tool its base has.
	hcs := final.all("HEALTHCHECK")
	if len(hcs) == 0 {
		pr.addf("the runtime stage has no HEALTHCHECK")
		return pr
	}
	_, rest := flagsAndRest(hcs[len(hcs)-1].args)
	cmd, ok := strings.CutPrefix(rest, "CMD ")
	if !ok {
		pr.addf("HEALTHCHECK %q runs no command", rest)
		return pr
	}
	w := words(strings.TrimSpace(cmd))
	if tool := path.Base(w[0]); tool == "wget" || tool == "curl" {
		if strings.Contains(final.image, "distroless") || final.image == "scratch" {
			pr.addf("HEALTHCHECK runs %s but %q has no %s", tool, final.image, tool)
		}
	}
	i := slices.IndexFunc(w, func(s string) bool { return strings.HasPrefix(s, "http://") })
	if i < 0 {
		pr.addf("HEALTHCHECK %q fetches no URL", w)
		return pr
	}
	if u, err := url.Parse(w[i]); err != nil || u.Port() != strconv.Itoa(licensedHTTP) || u.Path != imageProbe ||
		(u.Hostname() != "127.0.0.1" && u.Hostname() != "localhost") {
		pr.addf("HEALTHCHECK probes %q, want http://127.0.0.1:%d%s", w[i], licensedHTTP, imageProbe)
	}
	return pr
}

// TestDockerfile checks the repository's Dockerfile.
func TestDockerfile(t *testing.T) {
	df, err := parseDockerfile(readFile(t, dockerfilePath))
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range checkDockerfile(df) {
		t.Error(pr)
	}
	if got := df.env("LICENSED_DATA_DIR"); got != "/data" {
		t.Errorf("LICENSED_DATA_DIR = %q, want /data (docs/deploy.md)", got)
	}
}

// TestDockerfileChecksCatchMutations edits the Dockerfile's text in one way
// at a time and requires the checks to name what broke.
func TestDockerfileChecksCatchMutations(t *testing.T) {
	content := string(readFile(t, dockerfilePath))
	const healthcheck = "HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \\\n" +
		`    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/healthz"]`
	mutations := []struct {
		name, old, new string
		want           string
	}{
		{"runtime on latest", "ARG ALPINE_VERSION=3.24", "ARG ALPINE_VERSION=latest", "uses latest"},
		{"builder untagged", "FROM golang:${GO_VERSION}-bookworm AS build", "FROM golang AS build", "has no tag"},
		{"one stage", "FROM alpine:${ALPINE_VERSION} AS runtime\n", "", "not multi-stage"},
		{"runtime is the toolchain", "FROM alpine:${ALPINE_VERSION} AS runtime", "FROM golang:1.26-bookworm AS runtime", "is the Go toolchain"},
		{"distroless without wget", "FROM alpine:${ALPINE_VERSION} AS runtime", "FROM gcr.io/distroless/static-debian12:nonroot AS runtime", "has no wget"},
		{"another command", "./cmd/licensed\n", "./cmd/licensectl\n", "no earlier stage runs go build"},
		{"cgo", "CGO_ENABLED=0 go build", "go build", "CGO_ENABLED=0"},
		{"paths kept", "-trimpath ", "", "-trimpath"},
		{"symbols kept", `-ldflags="-s -w" `, "", `-ldflags="-s -w"`},
		{"no output", "-o /out/licensed ./cmd", "./cmd", "names no output"},
		{"no module cache", "--mount=type=cache,target=/go/pkg/mod", "--mount=type=cache,target=/root/.cache/go-mod", "module cache"},
		{"binary not copied", "COPY --from=build /out/licensed", "COPY --from=build /out/licensectl", "does not copy /out/licensed"},
		{"binary copied from nowhere", "COPY --from=build /out/licensed", "COPY --from=builder /out/licensed", "does not copy"},
		{"entrypoint elsewhere", `ENTRYPOINT ["/usr/local/bin/licensed"]`, `ENTRYPOINT ["/usr/bin/licensed"]`, "does not run the copied binary"},
		{"root by name", "USER 10001:10001", "USER root", "runs as root"},
		{"root by id", "USER 10001:10001", "USER 0:0", "runs as root"},
		{"no user", "USER 10001:10001\n", "", "runs as root"},
		{"port not exposed", "EXPOSE 8080", "EXPOSE 9090", "does not expose 8080"},
		{"http on loopback", "LICENSED_HTTP_ADDR=0.0.0.0:8080", "LICENSED_HTTP_ADDR=127.0.0.1:8080", "unreachable"},
		{"data not a volume", `VOLUME ["/data"]`, `VOLUME ["/var/lib/licensed"]`, "is not a volume"},
		{"data dir moved", "LICENSED_DATA_DIR=/data", "LICENSED_DATA_DIR=/srv/licensed", "is not a volume"},
		{"no health check", healthcheck, "", "no HEALTHCHECK"},
		{"health check on readiness", "http://127.0.0.1:8080/healthz", "http://127.0.0.1:8080/readyz", "HEALTHCHECK probes"},
		{"health check on another port", "http://127.0.0.1:8080/healthz", "http://127.0.0.1:9090/healthz", "HEALTHCHECK probes"},
	}
	for _, m := range mutations {
		t.Run(m.name, func(t *testing.T) {
			if !strings.Contains(content, m.old) {
				t.Fatalf("Dockerfile no longer contains %q; update the test", m.old)
			}
			df, err := parseDockerfile([]byte(strings.ReplaceAll(content, m.old, m.new)))
			if err != nil {
				t.Fatal(err)
			}
			got := checkDockerfile(df)
			if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, m.want) }) {
				t.Errorf("no problem mentions %q; got %q", m.want, got)
			}
		})
	}
}

// TestParseDockerfile checks the parser on the forms it must understand.
func TestParseDockerfile(t *testing.T) {
	df, err := parseDockerfile([]byte("# syntax=docker/dockerfile:1\nARG V=1.2\nFROM img:${V} AS one\n" +
		"RUN a \\\n  # comment inside\n  b\nFROM other:$V\nENV A=1 B=\"two\"\nENV C three four\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(df.stages) != 2 || df.stages[0].image != "img:1.2" || df.stages[0].name != "one" || df.stages[1].image != "other:1.2" {
		t.Errorf("stages %+v", df.stages)
	}
	if runs := df.stages[0].all("RUN"); len(runs) != 1 || runs[0].args != "a b" || runs[0].line != 4 {
		t.Errorf("RUN %+v", runs)
	}
	if got := df.envs(); got["A"] != "1" || got["B"] != "two" || got["C"] != "three four" {
		t.Errorf("env %v", got)
	}
	for _, bad := range []string{"", "RUN x\n", "FROM\n", "FROM a:1.0\nRUN x \\\n"} {
		if _, err := parseDockerfile([]byte(bad)); err == nil {
			t.Errorf("%q parsed without error", bad)
		}
	}
}

// dockerignored reports whether the .dockerignore patterns exclude name (a
// slash-separated path from the context root): the last pattern matching
// the path or one of its parent directories decides, "!" re-includes.
func dockerignored(patterns []string, name string) bool {
	excluded := false
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = path.Clean(strings.TrimPrefix(strings.TrimPrefix(p, "!"), "/"))
		for prefix := name; prefix != "."; prefix = path.Dir(prefix) {
			if ok, _ := path.Match(p, prefix); ok {
				excluded = !neg
				break
			}
		}
	}
	return excluded
}

func dockerignorePatterns(b []byte) []string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// TestDockerignore checks that the build context keeps what go build needs
// and leaves out the repository's history and local data.
func TestDockerignore(t *testing.T) {
	patterns := dockerignorePatterns(readFile(t, dockerignorePath))
	for _, name := range []string{".git/config", "data/operator.token", "licensed"} {
		if !dockerignored(patterns, name) {
			t.Errorf("%s goes into the build context", name)
		}
	}
	needed := []string{"go.mod", "go.sum", "cmd/licensed/main.go"}
	for _, dir := range []string{"cmd", "domain", "eventstore", "internal", "projections"} {
		files, err := filepath.Glob(filepath.Join(repoRoot, dir, "*", "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			rel, _ := filepath.Rel(repoRoot, f)
			needed = append(needed, filepath.ToSlash(rel))
		}
	}
	for _, name := range needed {
		if dockerignored(patterns, name) {
			t.Errorf("%s is left out of the build context", name)
		}
	}
	// The matcher itself can say yes and no.
	if !dockerignored([]string{"internal"}, "internal/deploy/doc.go") || dockerignored([]string{"internal", "!internal/deploy"}, "internal/deploy/doc.go") {
		t.Error("dockerignored does not follow the .dockerignore rules")
	}
}
