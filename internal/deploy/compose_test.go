package deploy

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// Paths of the files under test, relative to this package.
const (
	repoRoot         = "../.."
	composePath      = repoRoot + "/docker-compose.yml"
	dockerfilePath   = repoRoot + "/Dockerfile"
	dockerignorePath = repoRoot + "/.dockerignore"
)

// Service names the compose file must define.
const (
	svcDB       = "kurrentdb"
	svcNATS     = "nats"
	svcLicensed = "licensed"
	svcNATSAuth = "nats-auth" // one-shot: `licensed nats-auth DIR`
)

// Ports inside the containers.
const (
	dbPort        = 2113       // KurrentDB gRPC and HTTP
	natsPort      = 4222       // NATS clients
	natsMonitor   = 8222       // NATS monitoring, /healthz
	licensedHTTP  = 8080       // licensed HTTP API
	licensedProbe = "/readyz"  // compose: healthy once reads are served from caught-up read models
	imageProbe    = "/healthz" // the image's HEALTHCHECK: the process is up
)

// licensedSettings are the environment variables licensed reads (DESIGN.md
// section 7 and cmd/licensed); any other LICENSED_ variable is a typo that
// licensed would silently ignore.
var licensedSettings = []string{
	"LICENSED_DATA_DIR", "LICENSED_HTTP_ADDR", "LICENSED_NATS_LISTEN", "LICENSED_NATS_URL", "LICENSED_NATS_CREDS",
	"LICENSED_STORE", "LICENSED_DURABILITY", "LICENSED_LOG_LEVEL", "LICENSED_LOG_FORMAT",
}

// dbImages are the repositories of KurrentDB and of EventStoreDB, which
// speaks the same protocol.
var dbImages = []string{
	"kurrentplatform/kurrentdb",
	"docker.kurrent.io/kurrent-latest/kurrentdb",
	"docker.kurrent.io/kurrent-lts/kurrentdb",
	"eventstore/eventstore",
}

// loadCompose loads content as the repository's compose file with the
// Compose loader: it validates against the Compose schema, checks that
// referenced volumes and configs are declared, and normalises every short
// syntax into the typed model. No variable of the caller's environment takes
// part.
func loadCompose(t testing.TB, content []byte) (*types.Project, error) {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	details := types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(root, "docker-compose.yml"), Content: content}},
		Environment: types.Mapping{},
	}
	return loader.LoadWithContext(context.Background(), details)
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// problems collects what a check finds wrong.
type problems []string

func (p *problems) addf(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// checkCompose returns every way p departs from the intended wiring. The
// Dockerfile's data directory, when known, must be where licensed's volume
// is mounted.
func checkCompose(p *types.Project, dockerfileDataDir string) problems {
	var pr problems
	for _, name := range []string{svcDB, svcNATS, svcLicensed, svcNATSAuth} {
		if _, ok := p.Services[name]; !ok {
			pr.addf("service %s: missing", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s := p.Services[name]
		if s.Image == "" && s.Build == nil {
			pr.addf("service %s: neither image nor build", name)
		}
		if s.Build == nil {
			if err := checkPinned(s.Image); err != nil {
				pr.addf("service %s: %v", name, err)
			}
		}
		if hc := s.HealthCheck; !oneShot(p, name) && (hc == nil || hc.Disable || len(hc.Test) == 0 || hc.Test[0] == "NONE") {
			pr.addf("service %s: no health check", name)
		}
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeVolume {
				pr.addf("service %s: %s is a %s mount; keep state in named volumes", name, v.Target, v.Type)
				continue
			}
			if _, ok := p.Volumes[v.Source]; !ok {
				pr.addf("service %s: volume %q is not declared under volumes", name, v.Source)
			}
		}
	}
	checkPublished(p, &pr)
	if s, ok := p.Services[svcDB]; ok {
		checkDB(s, &pr)
	}
	if s, ok := p.Services[svcNATS]; ok {
		checkNATS(p, s, &pr)
	}
	if s, ok := p.Services[svcLicensed]; ok {
		checkLicensed(p, s, dockerfileDataDir, &pr)
	}
	checkNATSAuth(p, &pr)
	return pr
}

// oneShot reports whether the service runs once and exits: never
// restarted, and waited for by another service until it completed.
func oneShot(p *types.Project, name string) bool {
	if r := p.Services[name].Restart; r != "" && r != types.RestartPolicyNo {
		return false
	}
	for _, s := range p.Services {
		if d, ok := s.DependsOn[name]; ok && d.Condition == types.ServiceConditionCompletedSuccessfully {
			return true
		}
	}
	return false
}

// natsInclude matches an include directive of a nats-server configuration.
var natsInclude = regexp.MustCompile(`(?m)^\s*include\s+"?([^"\s;]+)"?`)

// natsNoAuthUser matches the setting that lets clients without credentials
// in as a configured user.
var natsNoAuthUser = regexp.MustCompile(`(?m)^\s*no_auth_user\b`)

// volumeAt returns the named volume s mounts at dir, or "".
func volumeAt(s types.ServiceConfig, dir string) string {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume && filepath.Clean(v.Target) == filepath.Clean(dir) {
			return v.Source
		}
	}
	return ""
}

// mountOf returns where s mounts the named volume vol, or "".
func mountOf(s types.ServiceConfig, vol string) string {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Source == vol {
			return v.Target
		}
	}
	return ""
}

// checkNATSAuth checks that the NATS server requires authentication as
// the embedded one does: the nats-auth service writes the seeds and the
// accounts block (`licensed nats-auth DIR`) on a volume, the server's
// configuration includes that block and waits for it, and licensed
// connects with its seed.
func checkNATSAuth(p *types.Project, pr *problems) {
	gen, ok := p.Services[svcNATSAuth]
	if !ok {
		return // reported as missing
	}
	args := []string(gen.Command)
	if gen.Build == nil || len(args) != 2 || args[0] != "nats-auth" {
		pr.addf("service %s: does not run `licensed nats-auth DIR` from the repository's image (command %q)", svcNATSAuth, args)
		return
	}
	authVol := volumeAt(gen, args[1])
	if authVol == "" {
		pr.addf("service %s: writes to %s, which is not a named volume", svcNATSAuth, args[1])
		return
	}
	if !oneShot(p, svcNATSAuth) {
		pr.addf("service %s: not a one-shot service that nats waits for (restart \"no\", condition %s)", svcNATSAuth, types.ServiceConditionCompletedSuccessfully)
	}

	nats, ok := p.Services[svcNATS]
	if !ok {
		return
	}
	conf := natsConfig(p)
	if natsNoAuthUser.MatchString(conf) {
		pr.addf("service %s: no_auth_user lets clients without credentials in", svcNATS)
	}
	confPath, _ := flagValue(nats.Command, "--config", "-c")
	included := false
	for _, m := range natsInclude.FindAllStringSubmatch(conf, -1) {
		file := filepath.Join(filepath.Dir(confPath), m[1])
		if filepath.Base(file) == "accounts.conf" && volumeAt(nats, filepath.Dir(file)) == authVol {
			included = true
		}
	}
	if !included {
		pr.addf("service %s: does not require authentication: its configuration includes no accounts.conf from the %s volume", svcNATS, authVol)
	}
	if d, ok := nats.DependsOn[svcNATSAuth]; !ok || d.Condition != types.ServiceConditionCompletedSuccessfully {
		pr.addf("service %s: does not wait for %s to complete", svcNATS, svcNATSAuth)
	}

	lic, ok := p.Services[svcLicensed]
	if !ok {
		return
	}
	creds := env(lic, "LICENSED_NATS_CREDS")
	mount := mountOf(lic, authVol)
	switch {
	case creds == "":
		pr.addf("service %s: connects to NATS without credentials (LICENSED_NATS_CREDS)", svcLicensed)
	case mount == "":
		pr.addf("service %s: does not mount the %s volume its LICENSED_NATS_CREDS is on", svcLicensed, authVol)
	case filepath.Clean(creds) != filepath.Join(mount, "licensed.nk"):
		pr.addf("service %s: LICENSED_NATS_CREDS %q is not %s, licensed's seed", svcLicensed, creds, filepath.Join(mount, "licensed.nk"))
	}
}

// versionTag is a release version of at least major.minor, e.g. 2.15.0,
// 26.1.2, 1.26 or v1.2; suffixes like -alpine may follow.
var versionTag = regexp.MustCompile(`^v?\d+\.\d+`)

// checkPinned reports an image reference that does not name a release:
// no tag, "latest", or a tag that is not a version. A digest pins too.
func checkPinned(ref string) error {
	if ref == "" {
		return fmt.Errorf("no image")
	}
	if _, digest, ok := strings.Cut(ref, "@"); ok {
		if strings.HasPrefix(digest, "sha256:") && len(digest) == len("sha256:")+64 {
			return nil
		}
		return fmt.Errorf("image %q: malformed digest", ref)
	}
	_, tag := splitImage(ref)
	switch {
	case tag == "":
		return fmt.Errorf("image %q has no tag; pin a version", ref)
	case tag == "latest" || strings.HasPrefix(tag, "latest-"):
		return fmt.Errorf("image %q uses latest; pin a version", ref)
	case !versionTag.MatchString(tag):
		return fmt.Errorf("image %q: tag %q is not a version", ref, tag)
	}
	return nil
}

// splitImage splits an image reference into repository and tag. A colon
// before the last slash belongs to a registry's port.
func splitImage(ref string) (repo, tag string) {
	ref, _, _ = strings.Cut(ref, "@")
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i], ref[i+1:]
	}
	return ref, ""
}

// env returns the value of an environment variable of s, "" when unset.
func env(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}

// probe returns the URL a health check fetches: the argument of an exec
// form or the first http:// word of a shell form.
func probe(hc *types.HealthCheckConfig) (tool string, u *url.URL, err error) {
	if hc == nil || len(hc.Test) < 2 {
		return "", nil, fmt.Errorf("no health check command")
	}
	words := hc.Test[1:]
	if hc.Test[0] == "CMD-SHELL" {
		words = strings.Fields(hc.Test[1])
	}
	tool = filepath.Base(words[0])
	for _, w := range words {
		w = strings.Trim(w, `'"`)
		if strings.HasPrefix(w, "http://") || strings.HasPrefix(w, "https://") {
			u, err := url.Parse(w)
			return tool, u, err
		}
	}
	return tool, nil, fmt.Errorf("health check %q fetches no URL", hc.Test)
}

// checkProbe reports a health check that does not fetch path on the
// container's own port.
func checkProbe(name string, s types.ServiceConfig, port int, path string, pr *problems) (*url.URL, string) {
	tool, u, err := probe(s.HealthCheck)
	if err != nil {
		pr.addf("service %s: %v", name, err)
		return nil, ""
	}
	if h := u.Hostname(); h != "localhost" && h != "127.0.0.1" {
		pr.addf("service %s: health check probes host %q, not the container itself", name, h)
	}
	if u.Port() != strconv.Itoa(port) {
		pr.addf("service %s: health check probes port %q, want %d", name, u.Port(), port)
	}
	if u.Path != path {
		pr.addf("service %s: health check probes %q, want %q", name, u.Path, path)
	}
	return u, tool
}

// checkPublished reports host ports published twice and unauthenticated
// services published beyond the loopback interface.
func checkPublished(p *types.Project, pr *problems) {
	seen := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		for _, port := range p.Services[name].Ports {
			key := port.HostIP + ":" + port.Published + "/" + port.Protocol
			if other, dup := seen[key]; dup {
				pr.addf("services %s and %s both publish %s", other, name, key)
			}
			seen[key] = name
			if (name == svcDB || name == svcNATS) && port.HostIP != "127.0.0.1" {
				pr.addf("service %s: port %d is published on %q; it has no authentication, publish on 127.0.0.1", name, port.Target, port.HostIP)
			}
		}
	}
}

// publishes reports whether s publishes container port target on host port
// published.
func publishes(s types.ServiceConfig, target int, published string) bool {
	return slices.ContainsFunc(s.Ports, func(p types.ServicePortConfig) bool {
		return int(p.Target) == target && p.Published == published && (p.Protocol == "" || p.Protocol == "tcp")
	})
}

// namedVolumeAt reports whether a declared named volume is mounted at dir.
func namedVolumeAt(p *types.Project, s types.ServiceConfig, dir string) bool {
	return slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
		_, declared := p.Volumes[v.Source]
		return v.Type == types.VolumeTypeVolume && declared && filepath.Clean(v.Target) == filepath.Clean(dir)
	})
}

// dbInsecure reports whether the database service runs without TLS.
func dbInsecure(s types.ServiceConfig) bool {
	return strings.EqualFold(env(s, "KURRENTDB_INSECURE"), "true") || strings.EqualFold(env(s, "EVENTSTORE_INSECURE"), "true")
}

func checkDB(s types.ServiceConfig, pr *problems) {
	repo, _ := splitImage(s.Image)
	if !slices.Contains(dbImages, strings.TrimPrefix(repo, "docker.io/")) {
		pr.addf("service %s: image %q is not KurrentDB or EventStoreDB (one of %v)", svcDB, s.Image, dbImages)
	}
	if !dbInsecure(s) {
		pr.addf("service %s: KURRENTDB_INSECURE is not true; a secure node needs certificates this file does not provide", svcDB)
	}
	if !strings.EqualFold(env(s, "KURRENTDB_ALWAYS_KEEP_SCAVENGED"), "true") && !strings.EqualFold(env(s, "EVENTSTORE_ALWAYS_KEEP_SCAVENGED"), "true") {
		pr.addf("service %s: KURRENTDB_ALWAYS_KEEP_SCAVENGED is not true; a scavenge could keep the keys of deleted users on disk (docs/esdb.md)", svcDB)
	}
	u, tool := checkProbe(svcDB, s, dbPort, "/health/live", pr)
	if u != nil && u.Scheme != "http" {
		pr.addf("service %s: an insecure node serves http, the health check uses %s", svcDB, u.Scheme)
	}
	if u != nil && tool != "curl" {
		pr.addf("service %s: health check runs %q; the KurrentDB image ships curl", svcDB, tool)
	}
	if !publishes(s, dbPort, strconv.Itoa(dbPort)) {
		pr.addf("service %s: port %d is not published as %d (docs/deploy.md runs the esdb tests against localhost:%d)", svcDB, dbPort, dbPort, dbPort)
	}
	if !slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == "/var/lib/kurrentdb" }) {
		pr.addf("service %s: no volume at /var/lib/kurrentdb, the events would die with the container", svcDB)
	}
}

// flagValue returns the value after the first of names in args, or "".
func flagValue(args []string, names ...string) (string, bool) {
	for i, a := range args {
		for _, n := range names {
			if a == n && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, n+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

// syncAlways matches the JetStream setting that fsyncs every write.
var syncAlways = regexp.MustCompile(`(?m)^\s*sync(_interval)?\s*[:=]\s*"?always"?\s*$`)

func checkNATS(p *types.Project, s types.ServiceConfig, pr *problems) {
	repo, tag := splitImage(s.Image)
	if strings.TrimPrefix(repo, "docker.io/library/") != "nats" {
		pr.addf("service %s: image %q is not the official nats image", svcNATS, s.Image)
	}
	args := []string(s.Command)
	if !slices.Contains(args, "-js") && !slices.Contains(args, "--jetstream") {
		pr.addf("service %s: command %q does not enable JetStream (-js)", svcNATS, args)
	}
	if dir, ok := flagValue(args, "-sd", "--store_dir"); !ok {
		pr.addf("service %s: command sets no JetStream store directory (-sd)", svcNATS)
	} else if !namedVolumeAt(p, s, dir) {
		pr.addf("service %s: JetStream store directory %q is not a named volume", svcNATS, dir)
	}
	monitor, _ := flagValue(args, "-m", "--http_port")
	if monitor != strconv.Itoa(natsMonitor) {
		pr.addf("service %s: monitoring port is %q, want %d for the health check", svcNATS, monitor, natsMonitor)
	}
	u, tool := checkProbe(svcNATS, s, natsMonitor, "/healthz", pr)
	if u != nil && u.Query().Get("js-enabled-only") != "true" {
		pr.addf("service %s: health check does not ask for JetStream (js-enabled-only=true)", svcNATS)
	}
	if u != nil && tool == "wget" && !strings.Contains(tag, "alpine") {
		pr.addf("service %s: health check runs wget, which only the Alpine variant of %q has", svcNATS, s.Image)
	}
	for _, port := range []int{natsPort, natsMonitor} {
		if !publishes(s, port, strconv.Itoa(port)) {
			pr.addf("service %s: port %d is not published", svcNATS, port)
		}
	}
	if path, ok := flagValue(args, "--config", "-c"); ok {
		i := slices.IndexFunc(s.Configs, func(c types.ServiceConfigObjConfig) bool { return c.Target == path })
		if i < 0 {
			pr.addf("service %s: configuration file %s is not mounted", svcNATS, path)
		} else if _, ok := p.Configs[s.Configs[i].Source]; !ok {
			pr.addf("service %s: config %q is not declared under configs", svcNATS, s.Configs[i].Source)
		}
	}
}

// natsConfig returns the content of the configuration file the nats
// service reads.
func natsConfig(p *types.Project) string {
	s := p.Services[svcNATS]
	path, _ := flagValue(s.Command, "--config", "-c")
	for _, c := range s.Configs {
		if c.Target == path {
			return p.Configs[c.Source].Content
		}
	}
	return ""
}

func checkLicensed(p *types.Project, s types.ServiceConfig, dockerfileDataDir string, pr *problems) {
	root, _ := filepath.Abs(repoRoot)
	if s.Build == nil {
		pr.addf("service %s: not built from the repository's Dockerfile", svcLicensed)
	} else {
		ctx := s.Build.Context
		if !filepath.IsAbs(ctx) {
			ctx = filepath.Join(root, ctx)
		}
		if filepath.Clean(ctx) != root {
			pr.addf("service %s: build context %q is not the repository root", svcLicensed, s.Build.Context)
		}
		df := s.Build.Dockerfile
		if df == "" {
			df = "Dockerfile"
		}
		if filepath.Join(root, df) != filepath.Join(root, "Dockerfile") {
			pr.addf("service %s: builds %q, not the repository's Dockerfile", svcLicensed, df)
		}
		if s.Image != "" {
			if err := checkPinned(s.Image); err != nil {
				pr.addf("service %s: %v", svcLicensed, err)
			}
		}
	}
	for key := range s.Environment {
		if strings.HasPrefix(key, "LICENSED_") && !slices.Contains(licensedSettings, key) {
			pr.addf("service %s: %s is not a setting of licensed", svcLicensed, key)
		}
	}

	// The event store: an EventStoreDB connection string naming the
	// database service on its port, without TLS since the node is insecure.
	store := env(s, "LICENSED_STORE")
	if u, err := url.Parse(store); store == "" || err != nil {
		pr.addf("service %s: LICENSED_STORE %q is not a connection string (%v)", svcLicensed, store, err)
	} else {
		if u.Scheme != "esdb" && u.Scheme != "esdb+discover" {
			pr.addf("service %s: LICENSED_STORE scheme %q, want esdb (the only one the EventStoreDB Go client parses)", svcLicensed, u.Scheme)
		}
		if u.Hostname() != svcDB {
			pr.addf("service %s: LICENSED_STORE host %q, want the %s service", svcLicensed, u.Hostname(), svcDB)
		}
		if u.Port() != strconv.Itoa(dbPort) {
			pr.addf("service %s: LICENSED_STORE port %q, want %d", svcLicensed, u.Port(), dbPort)
		}
		insecure := dbInsecure(p.Services[svcDB])
		if tls := u.Query().Get("tls"); insecure && tls != "false" {
			pr.addf("service %s: LICENSED_STORE has tls=%q but the node is insecure; want tls=false", svcLicensed, tls)
		}
		checkDependsOn(s, u.Hostname(), "LICENSED_STORE", pr)
	}

	// The bus and key store: the NATS service's client port.
	nu := env(s, "LICENSED_NATS_URL")
	if u, err := url.Parse(nu); nu == "" || err != nil {
		pr.addf("service %s: LICENSED_NATS_URL %q is not a URL (%v); without it licensed starts an embedded NATS", svcLicensed, nu, err)
	} else {
		if u.Scheme != "nats" {
			pr.addf("service %s: LICENSED_NATS_URL scheme %q, want nats", svcLicensed, u.Scheme)
		}
		if u.Hostname() != svcNATS {
			pr.addf("service %s: LICENSED_NATS_URL host %q, want the %s service", svcLicensed, u.Hostname(), svcNATS)
		}
		if u.Port() != strconv.Itoa(natsPort) {
			pr.addf("service %s: LICENSED_NATS_URL port %q, want %d", svcLicensed, u.Port(), natsPort)
		}
		checkDependsOn(s, u.Hostname(), "LICENSED_NATS_URL", pr)
	}

	// HTTP: on every interface of the container, on the published port.
	host, port, err := net.SplitHostPort(env(s, "LICENSED_HTTP_ADDR"))
	if err != nil {
		pr.addf("service %s: LICENSED_HTTP_ADDR: %v", svcLicensed, err)
	} else {
		if host != "0.0.0.0" && host != "" && host != "::" {
			pr.addf("service %s: LICENSED_HTTP_ADDR listens on %q, unreachable through the published port", svcLicensed, host)
		}
		if port != strconv.Itoa(licensedHTTP) {
			pr.addf("service %s: LICENSED_HTTP_ADDR port %q, want %d", svcLicensed, port, licensedHTTP)
		}
	}
	if !publishes(s, licensedHTTP, strconv.Itoa(licensedHTTP)) {
		pr.addf("service %s: port %d is not published", svcLicensed, licensedHTTP)
	}
	checkProbe(svcLicensed, s, licensedHTTP, licensedProbe, pr)

	// State: the data directory on a named volume, the image's as well.
	dataDir := env(s, "LICENSED_DATA_DIR")
	if dataDir == "" {
		dataDir = dockerfileDataDir
	}
	if dataDir == "" || !namedVolumeAt(p, s, dataDir) {
		pr.addf("service %s: data directory %q is not a named volume", svcLicensed, dataDir)
	}
	if dockerfileDataDir != "" && filepath.Clean(dataDir) != filepath.Clean(dockerfileDataDir) {
		pr.addf("service %s: data directory %q differs from the Dockerfile's volume %q", svcLicensed, dataDir, dockerfileDataDir)
	}

	// Durability: fsync promises that an answered command is on disk, so
	// the external NATS server must fsync every write as well.
	switch d := env(s, "LICENSED_DURABILITY"); d {
	case "fsync":
		if !syncAlways.MatchString(natsConfig(p)) {
			pr.addf("service %s: LICENSED_DURABILITY=fsync but the nats service does not set jetstream sync_interval: always", svcLicensed)
		}
	case "interval":
	default:
		pr.addf("service %s: LICENSED_DURABILITY %q, want fsync or interval", svcLicensed, d)
	}

	switch s.Restart {
	case types.RestartPolicyAlways, types.RestartPolicyUnlessStopped, types.RestartPolicyOnFailure:
	default:
		if !strings.HasPrefix(s.Restart, types.RestartPolicyOnFailure+":") {
			pr.addf("service %s: restart policy %q does not bring it back", svcLicensed, s.Restart)
		}
	}
}

// checkDependsOn reports a service that licensed reaches through setting
// but does not wait for until it is healthy.
func checkDependsOn(s types.ServiceConfig, dep, setting string, pr *problems) {
	d, ok := s.DependsOn[dep]
	switch {
	case !ok:
		pr.addf("service %s: %s names %s but it does not depend on it", svcLicensed, setting, dep)
	case d.Condition != types.ServiceConditionHealthy:
		pr.addf("service %s: depends on %s with condition %q, want %s", svcLicensed, dep, d.Condition, types.ServiceConditionHealthy)
	case !d.Required:
		pr.addf("service %s: dependency on %s is optional", svcLicensed, dep)
	}
}

// TestComposeWiring checks the repository's docker-compose.yml.
func TestComposeWiring(t *testing.T) {
	p, err := loadCompose(t, readFile(t, composePath))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	df, err := parseDockerfile(readFile(t, dockerfilePath))
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range checkCompose(p, df.env("LICENSED_DATA_DIR")) {
		t.Error(pr)
	}
	// Pin the few values other documents rely on, beyond the rules above.
	lic := p.Services[svcLicensed]
	for key, want := range map[string]string{
		"LICENSED_STORE":      "esdb://kurrentdb:2113?tls=false",
		"LICENSED_NATS_URL":   "nats://nats:4222",
		"LICENSED_HTTP_ADDR":  "0.0.0.0:8080",
		"LICENSED_NATS_CREDS": "/auth/licensed.nk",
	} {
		if got := env(lic, key); got != want {
			t.Errorf("%s = %q, want %q (docs/deploy.md)", key, got, want)
		}
	}
}

// TestComposeSettingsKnownToLicensed checks that every LICENSED_ variable
// the compose file and the Dockerfile set is read by cmd/licensed.
func TestComposeSettingsKnownToLicensed(t *testing.T) {
	files, err := filepath.Glob(repoRoot + "/cmd/licensed/*.go")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("cmd/licensed has no Go files")
	}
	var src strings.Builder
	for _, f := range files {
		if !strings.HasSuffix(f, "_test.go") {
			src.Write(readFile(t, f))
		}
	}
	p, err := loadCompose(t, readFile(t, composePath))
	if err != nil {
		t.Fatal(err)
	}
	df, err := parseDockerfile(readFile(t, dockerfilePath))
	if err != nil {
		t.Fatal(err)
	}
	keys := slices.Collect(maps.Keys(p.Services[svcLicensed].Environment))
	keys = append(keys, slices.Collect(maps.Keys(df.envs()))...)
	checked := 0
	for _, key := range keys {
		if !strings.HasPrefix(key, "LICENSED_") {
			continue
		}
		checked++
		if !strings.Contains(src.String(), strconv.Quote(key)) {
			t.Errorf("%s is set for licensed but cmd/licensed never reads it", key)
		}
	}
	if checked == 0 {
		t.Fatal("no LICENSED_ variable found to check")
	}
}

// composeMutation breaks one aspect of the wiring.
type composeMutation struct {
	name   string
	mutate func(p *types.Project)
	want   string // a fragment of the problem it must cause
}

func service(p *types.Project, name string, f func(s *types.ServiceConfig)) {
	s := p.Services[name]
	f(&s)
	p.Services[name] = s
}

func setEnv(name, key, value string) func(p *types.Project) {
	return func(p *types.Project) {
		service(p, name, func(s *types.ServiceConfig) {
			s.Environment = maps.Clone(s.Environment)
			if value == "" {
				delete(s.Environment, key)
				return
			}
			s.Environment[key] = &value
		})
	}
}

func setImage(name, image string) func(p *types.Project) {
	return func(p *types.Project) { service(p, name, func(s *types.ServiceConfig) { s.Image = image }) }
}

func setProbe(name string, test ...string) func(p *types.Project) {
	return func(p *types.Project) {
		service(p, name, func(s *types.ServiceConfig) {
			hc := *s.HealthCheck
			hc.Test = test
			s.HealthCheck = &hc
		})
	}
}

func setCommand(args ...string) func(p *types.Project) {
	return func(p *types.Project) { service(p, svcNATS, func(s *types.ServiceConfig) { s.Command = args }) }
}

func setPort(name string, i int, f func(*types.ServicePortConfig)) func(p *types.Project) {
	return func(p *types.Project) {
		service(p, name, func(s *types.ServiceConfig) {
			s.Ports = slices.Clone(s.Ports)
			f(&s.Ports[i])
		})
	}
}

func setDependsOn(dep string, d *types.ServiceDependency) func(p *types.Project) {
	return func(p *types.Project) {
		service(p, svcLicensed, func(s *types.ServiceConfig) {
			c := maps.Clone(s.DependsOn)
			if d == nil {
				delete(c, dep)
			} else {
				c[dep] = *d
			}
			s.DependsOn = c
		})
	}
}

var composeMutations = []composeMutation{
	{"no nats service", func(p *types.Project) { delete(p.Services, svcNATS) }, "service nats: missing"},
	{"no database service", func(p *types.Project) { delete(p.Services, svcDB) }, "service kurrentdb: missing"},
	{"database on latest", setImage(svcDB, "kurrentplatform/kurrentdb:latest"), "uses latest"},
	{"database untagged", setImage(svcDB, "kurrentplatform/kurrentdb"), "has no tag"},
	{"nats tag not a version", setImage(svcNATS, "nats:alpine"), "is not a version"},
	{"database not KurrentDB", setImage(svcDB, "postgres:17.2"), "is not KurrentDB"},
	{"nats without wget", setImage(svcNATS, "nats:2.15.0"), "only the Alpine variant"},
	{"licensed built from elsewhere", func(p *types.Project) {
		service(p, svcLicensed, func(s *types.ServiceConfig) { b := *s.Build; b.Context = "/tmp"; s.Build = &b })
	}, "not the repository root"},
	{"licensed from an image", func(p *types.Project) {
		service(p, svcLicensed, func(s *types.ServiceConfig) { s.Build = nil; s.Image = "licensed:latest" })
	}, "not built from the repository's Dockerfile"},
	{"licensed from nothing", func(p *types.Project) {
		service(p, svcLicensed, func(s *types.ServiceConfig) { s.Build = nil; s.Image = "" })
	}, "neither image nor build"},
	{"licensed without health check", func(p *types.Project) {
		service(p, svcLicensed, func(s *types.ServiceConfig) { s.HealthCheck = nil })
	}, "service licensed: no health check"},
	{"database health check disabled", func(p *types.Project) {
		service(p, svcDB, func(s *types.ServiceConfig) { hc := *s.HealthCheck; hc.Disable = true; s.HealthCheck = &hc })
	}, "service kurrentdb: no health check"},
	{"database probe on the wrong path", setProbe(svcDB, "CMD", "curl", "--fail", "http://localhost:2113/ping"), `want "/health/live"`},
	{"database probe on the wrong port", setProbe(svcDB, "CMD", "curl", "--fail", "http://localhost:2114/health/live"), "want 2113"},
	{"database probe over https", setProbe(svcDB, "CMD", "curl", "--fail", "https://localhost:2113/health/live"), "serves http"},
	{"database probe with a missing tool", setProbe(svcDB, "CMD", "wget", "-q", "http://localhost:2113/health/live"), "ships curl"},
	{"nats probe without JetStream", setProbe(svcNATS, "CMD", "wget", "-q", "http://localhost:8222/healthz"), "js-enabled-only"},
	{"nats probe in shell form elsewhere", setProbe(svcNATS, "CMD-SHELL", "wget -q -O - http://nats:8222/healthz?js-enabled-only=true"), "not the container itself"},
	{"licensed probe on metrics", setProbe(svcLicensed, "CMD", "wget", "-q", "http://127.0.0.1:8080/metrics"), `want "/readyz"`},
	{"licensed probe on liveness only", setProbe(svcLicensed, "CMD", "wget", "-q", "http://127.0.0.1:8080/healthz"), `want "/readyz"`},
	{"licensed probe without URL", setProbe(svcLicensed, "CMD", "true"), "fetches no URL"},
	{"licensed starts with nats merely started", setDependsOn(svcNATS, &types.ServiceDependency{Condition: types.ServiceConditionStarted, Required: true}), `condition "service_started"`},
	{"licensed does not wait for the database", setDependsOn(svcDB, nil), "does not depend on it"},
	{"database dependency optional", setDependsOn(svcDB, &types.ServiceDependency{Condition: types.ServiceConditionHealthy}), "is optional"},
	{"store on localhost", setEnv(svcLicensed, "LICENSED_STORE", "esdb://localhost:2113?tls=false"), `host "localhost"`},
	{"store on the TCP port", setEnv(svcLicensed, "LICENSED_STORE", "esdb://kurrentdb:1113?tls=false"), `port "1113"`},
	{"store with TLS", setEnv(svcLicensed, "LICENSED_STORE", "esdb://kurrentdb:2113"), "want tls=false"},
	{"store with another scheme", setEnv(svcLicensed, "LICENSED_STORE", "kurrentdb://kurrentdb:2113?tls=false"), "scheme"},
	{"store unset", setEnv(svcLicensed, "LICENSED_STORE", ""), "LICENSED_STORE \"\""},
	{"store on JetStream", setEnv(svcLicensed, "LICENSED_STORE", "jetstream"), "want the kurrentdb service"},
	{"secure database", setEnv(svcDB, "KURRENTDB_INSECURE", ""), "KURRENTDB_INSECURE is not true"},
	{"scavenged chunks may be kept", setEnv(svcDB, "KURRENTDB_ALWAYS_KEEP_SCAVENGED", "false"), "KURRENTDB_ALWAYS_KEEP_SCAVENGED is not true"},
	{"nats elsewhere", setEnv(svcLicensed, "LICENSED_NATS_URL", "nats://localhost:4222"), `host "localhost"`},
	{"nats on the monitoring port", setEnv(svcLicensed, "LICENSED_NATS_URL", "nats://nats:8222"), `port "8222"`},
	{"nats over websocket", setEnv(svcLicensed, "LICENSED_NATS_URL", "ws://nats:4222"), `scheme "ws"`},
	{"embedded nats", setEnv(svcLicensed, "LICENSED_NATS_URL", ""), "starts an embedded NATS"},
	{"nats without JetStream", setCommand("--config", "/etc/nats/ledger.conf", "-sd", "/data", "-m", "8222"), "does not enable JetStream"},
	{"nats store off the volume", setCommand("--config", "/etc/nats/ledger.conf", "-js", "-sd", "/tmp/js", "-m", "8222"), "is not a named volume"},
	{"nats without store dir", setCommand("--config", "/etc/nats/ledger.conf", "-js", "-m", "8222"), "no JetStream store directory"},
	{"nats without monitoring", setCommand("--config", "/etc/nats/ledger.conf", "-js", "-sd", "/data"), "monitoring port"},
	{"nats config not mounted", func(p *types.Project) {
		service(p, svcNATS, func(s *types.ServiceConfig) { s.Configs = nil })
	}, "is not mounted"},
	{"nats lazy fsync under fsync durability", func(p *types.Project) {
		c := p.Configs["nats-ledger"]
		c.Content = "server_name: ledger-nats\njetstream {\n  sync_interval: 2m\n}\n"
		p.Configs["nats-ledger"] = c
	}, "sync_interval: always"},
	{"durability misspelt", setEnv(svcLicensed, "LICENSED_DURABILITY", "always"), "want fsync or interval"},
	{"setting misspelt", setEnv(svcLicensed, "LICENSED_DATADIR", "/data"), "LICENSED_DATADIR is not a setting"},
	{"http on loopback", setEnv(svcLicensed, "LICENSED_HTTP_ADDR", "127.0.0.1:8080"), "unreachable through the published port"},
	{"http on another port", setEnv(svcLicensed, "LICENSED_HTTP_ADDR", "0.0.0.0:9090"), `port "9090"`},
	{"http address malformed", setEnv(svcLicensed, "LICENSED_HTTP_ADDR", "8080"), "LICENSED_HTTP_ADDR:"},
	{"licensed port not published", setPort(svcLicensed, 0, func(p *types.ServicePortConfig) { p.Target = 8081 }), "port 8080 is not published"},
	{"database port not published", setPort(svcDB, 0, func(p *types.ServicePortConfig) { p.Published = "12113" }), "localhost:2113"},
	{"nats client port not published", setPort(svcNATS, 0, func(p *types.ServicePortConfig) { p.Target = 4223 }), "port 4222 is not published"},
	{"database open to the network", setPort(svcDB, 0, func(p *types.ServicePortConfig) { p.HostIP = "" }), "publish on 127.0.0.1"},
	{"nats open to the network", setPort(svcNATS, 1, func(p *types.ServicePortConfig) { p.HostIP = "0.0.0.0" }), "publish on 127.0.0.1"},
	{"one host port twice", setPort(svcLicensed, 0, func(p *types.ServicePortConfig) { p.Published = "8222" }), "both publish"},
	{"data dir off the volume", setEnv(svcLicensed, "LICENSED_DATA_DIR", "/var/lib/licensed"), "is not a named volume"},
	{"undeclared volume", func(p *types.Project) { delete(p.Volumes, "nats-data") }, `volume "nats-data" is not declared`},
	{"bind-mounted state", func(p *types.Project) {
		service(p, svcLicensed, func(s *types.ServiceConfig) {
			s.Volumes = slices.Clone(s.Volumes)
			s.Volumes[0].Type = types.VolumeTypeBind
			s.Volumes[0].Source = "./data"
		})
	}, "is a bind mount"},
	{"database without volume", func(p *types.Project) {
		service(p, svcDB, func(s *types.ServiceConfig) { s.Volumes = nil })
	}, "no volume at /var/lib/kurrentdb"},
	{"nats open to anonymous clients", func(p *types.Project) {
		c := p.Configs["nats-ledger"]
		c.Content = strings.Replace(c.Content, "include auth/accounts.conf\n", "", 1)
		p.Configs["nats-ledger"] = c
	}, "does not require authentication"},
	{"nats with a user for anonymous clients", func(p *types.Project) {
		c := p.Configs["nats-ledger"]
		c.Content += "no_auth_user: licensed\n"
		p.Configs["nats-ledger"] = c
	}, "no_auth_user"},
	{"nats accounts from elsewhere", func(p *types.Project) {
		service(p, svcNATS, func(s *types.ServiceConfig) {
			s.Volumes = slices.DeleteFunc(slices.Clone(s.Volumes), func(v types.ServiceVolumeConfig) bool { return v.Source == "nats-auth" })
		})
	}, "does not require authentication"},
	{"nats does not wait for its accounts", func(p *types.Project) {
		service(p, svcNATS, func(s *types.ServiceConfig) { s.DependsOn = nil })
	}, "does not wait for nats-auth"},
	{"licensed without NATS credentials", setEnv(svcLicensed, "LICENSED_NATS_CREDS", ""), "without credentials"},
	{"licensed with the downstream credential", setEnv(svcLicensed, "LICENSED_NATS_CREDS", "/auth/downstream.nk"), "licensed's seed"},
	{"licensed without the credentials volume", func(p *types.Project) {
		service(p, svcLicensed, func(s *types.ServiceConfig) {
			s.Volumes = slices.DeleteFunc(slices.Clone(s.Volumes), func(v types.ServiceVolumeConfig) bool { return v.Source == "nats-auth" })
		})
	}, "does not mount the nats-auth volume"},
	{"no nats-auth service", func(p *types.Project) { delete(p.Services, svcNATSAuth) }, "service nats-auth: missing"},
	{"nats-auth runs something else", func(p *types.Project) {
		service(p, svcNATSAuth, func(s *types.ServiceConfig) { s.Command = []string{"--help"} })
	}, "does not run `licensed nats-auth DIR`"},
	{"nats-auth restarted", func(p *types.Project) {
		service(p, svcNATSAuth, func(s *types.ServiceConfig) { s.Restart = types.RestartPolicyUnlessStopped })
	}, "service nats-auth: no health check"},
	{"licensed not restarted", func(p *types.Project) {
		service(p, svcLicensed, func(s *types.ServiceConfig) { s.Restart = types.RestartPolicyNo })
	}, "restart policy"},
}

// TestComposeChecksCatchMutations breaks the loaded compose file in one way
// at a time and requires the checks to name what broke.
func TestComposeChecksCatchMutations(t *testing.T) {
	content := readFile(t, composePath)
	df, err := parseDockerfile(readFile(t, dockerfilePath))
	if err != nil {
		t.Fatal(err)
	}
	dataDir := df.env("LICENSED_DATA_DIR")
	for _, m := range composeMutations {
		t.Run(m.name, func(t *testing.T) {
			p, err := loadCompose(t, content)
			if err != nil {
				t.Fatal(err)
			}
			m.mutate(p)
			got := checkCompose(p, dataDir)
			if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, m.want) }) {
				t.Errorf("no problem mentions %q; got %q", m.want, got)
			}
		})
	}
	t.Run("data dir differs from the image's", func(t *testing.T) {
		p, err := loadCompose(t, content)
		if err != nil {
			t.Fatal(err)
		}
		got := checkCompose(p, "/var/lib/licensed")
		if !slices.ContainsFunc(got, func(s string) bool { return strings.Contains(s, "differs from the Dockerfile's volume") }) {
			t.Errorf("got %q", got)
		}
	})
}

// TestComposeRejectsInvalidFiles edits the file's text and requires the
// loader (schema validation, references) or the checks to reject it; the
// other syntaxes Compose allows must load to the same checked model.
func TestComposeRejectsInvalidFiles(t *testing.T) {
	content := string(readFile(t, composePath))
	edit := func(t *testing.T, old, new string) []byte {
		t.Helper()
		if !strings.Contains(content, old) {
			t.Fatalf("docker-compose.yml no longer contains %q; update the test", old)
		}
		return []byte(strings.Replace(content, old, new, 1))
	}
	rejected := []struct{ name, old, new, want string }{
		{"misspelt key", "    healthcheck:\n      test: [\"CMD\", \"curl\"", "    helthcheck:\n      test: [\"CMD\", \"curl\"", "helthcheck"},
		{"misspelt condition", "condition: service_healthy", "condition: service_healty", "condition value must be one of"},
		{"undeclared config", "source: nats-ledger", "source: nats-ledgr", "undefined config nats-ledgr"},
		{"undeclared volume", "source: licensed-data", "source: licensed-dat", "undefined volume licensed-dat"},
		{"dependency on a missing service", "      nats:\n        condition", "      natss:\n        condition", `undefined service "natss"`},
		{"environment variable from the host", `LICENSED_DURABILITY: fsync`, `LICENSED_DURABILITY: ${DURABILITY:?set DURABILITY}`, "DURABILITY is missing a value"},
	}
	for _, r := range rejected {
		t.Run(r.name, func(t *testing.T) {
			_, err := loadCompose(t, edit(t, r.old, r.new))
			if err == nil || !strings.Contains(err.Error(), r.want) {
				t.Errorf("load error %v, want one mentioning %q", err, r.want)
			}
		})
	}
	// The short syntaxes load to the same model and pass the checks.
	equivalent := []struct{ name, old, new string }{
		{"environment as a list", "      LICENSED_STORE: \"esdb://kurrentdb:2113?tls=false\"\n      LICENSED_NATS_URL: \"nats://nats:4222\"",
			"      - LICENSED_STORE=esdb://kurrentdb:2113?tls=false\n      - LICENSED_NATS_URL=nats://nats:4222"},
		{"short port syntax", "      - target: 8080\n        published: \"8080\"\n        host_ip: 127.0.0.1\n        protocol: tcp",
			"      - \"127.0.0.1:8080:8080\""},
		{"shell health check", `test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/readyz"]`,
			`test: wget -q -O /dev/null http://127.0.0.1:8080/readyz`},
	}
	df, err := parseDockerfile(readFile(t, dockerfilePath))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range equivalent {
		t.Run(e.name, func(t *testing.T) {
			text := edit(t, e.old, e.new)
			if e.name == "environment as a list" {
				// The rest of the map must become a list too.
				text = []byte(regexp.MustCompile(`(?m)^      (LICENSED_[A-Z_]+): "?([^"\n]*)"?$`).ReplaceAllString(string(text), "      - $1=$2"))
				if !strings.Contains(string(text), "      - LICENSED_HTTP_ADDR=0.0.0.0:8080\n") {
					t.Fatal("environment was not turned into a list")
				}
			}
			p, err := loadCompose(t, text)
			if err != nil {
				t.Fatal(err)
			}
			for _, pr := range checkCompose(p, df.env("LICENSED_DATA_DIR")) {
				t.Error(pr)
			}
		})
	}
}

// TestCheckPinned checks the rule every image reference is held to.
func TestCheckPinned(t *testing.T) {
	for ref, pinned := range map[string]bool{
		"nats:2.15.0-alpine":                             true,
		"kurrentplatform/kurrentdb:26.1.2":               true,
		"golang:1.26-bookworm":                           true,
		"registry.local:5000/team/licensed:v1.4":         true,
		"alpine@sha256:" + strings.Repeat("ab", 32):      true,
		"alpine:3.24@sha256:" + strings.Repeat("0f", 32): true,
		"alpine@sha256:abc":                              false,
		"registry.local:5000/team/licensed":              false,
		"nats":                                           false,
		"nats:latest":                                    false,
		"nats:alpine":                                    false,
		"gcr.io/distroless/static-debian12:nonroot":      false,
		"kurrentplatform/kurrentdb:latest-arm64":         false,
		"":                                               false,
	} {
		if err := checkPinned(ref); (err == nil) != pinned {
			t.Errorf("checkPinned(%q) = %v, want pinned %v", ref, err, pinned)
		}
	}
	if repo, tag := splitImage("registry.local:5000/team/licensed:v1.4"); repo != "registry.local:5000/team/licensed" || tag != "v1.4" {
		t.Errorf("splitImage: %q %q", repo, tag)
	}
}
