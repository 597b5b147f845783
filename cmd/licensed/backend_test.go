package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/esdbtest"
)

// wiringCase is one backend the settings can choose: the flags that choose
// it, where downstream services find their credential, and the external
// NATS server it uses, if any.
type wiringCase struct {
	args           []string
	downstreamSeed string // empty: <data-dir>/downstream.nk
	external       *server.Server
}

// wiringCases are every backend licensed builds: JetStream on the embedded
// NATS server, JetStream on an external one set up by "licensed nats-auth",
// and EventStoreDB (the in-process double of its gRPC API) with its relay to
// the embedded or the external NATS server.
func wiringCases(t *testing.T) map[string]func(t *testing.T) wiringCase {
	esdbStore := func(t *testing.T) []string {
		srv, err := esdbtest.Start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
		return []string{"--store", srv.ConnectionString()}
	}
	external := func(t *testing.T) wiringCase {
		srv, authDir := startAuthenticatedNATS(t)
		return wiringCase{
			args:           []string{"--nats-url", srv.ClientURL(), "--nats-creds", filepath.Join(authDir, serviceSeedFile)},
			downstreamSeed: filepath.Join(authDir, downstreamSeedFile),
			external:       srv,
		}
	}
	return map[string]func(t *testing.T) wiringCase{
		"jetstream embedded": func(*testing.T) wiringCase { return wiringCase{} },
		"jetstream external": external,
		"esdb embedded nats": func(t *testing.T) wiringCase { return wiringCase{args: esdbStore(t)} },
		"esdb external nats": func(t *testing.T) wiringCase {
			c := external(t)
			c.args = append(c.args, esdbStore(t)...)
			return c
		},
	}
}

// startAuthenticatedNATS runs an external nats-server configured as
// docs/deploy.md shows, with the accounts "licensed nats-auth" writes, and
// returns it with the directory of the credentials.
func startAuthenticatedNATS(t *testing.T) (*server.Server, string) {
	t.Helper()
	dir := t.TempDir()
	authDir := filepath.Join(dir, "auth")
	if err := natsAuth([]string{authDir}, io.Discard); err != nil {
		t.Fatal(err)
	}
	return startNATSWithAccounts(t, dir), authDir
}

// startNATSWithAccounts runs a nats-server configured as docker-compose.yml
// runs it: it includes dir/auth/accounts.conf and keeps its JetStream files
// in dir/js. The test's end stops it.
func startNATSWithAccounts(t *testing.T, dir string) *server.Server {
	t.Helper()
	conf := filepath.Join(dir, "ledger.conf")
	if err := os.WriteFile(conf, []byte("include auth/accounts.conf\njetstream {\n  store_dir: \""+filepath.Join(dir, "js")+"\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

// Every backend passes the same checks through the real wiring: it starts
// and becomes ready, takes an account and a user, publishes the events for
// a downstream service with the downstream credential, keeps data and
// tokens across a restart, and leaves no listener, connection or goroutine
// behind once closed.
func TestEveryBackendPassesTheWiringChecks(t *testing.T) {
	for name, setup := range wiringCases(t) {
		t.Run(name, func(t *testing.T) { wiringChecks(t, setup(t)) })
	}
}

func wiringChecks(t *testing.T, c wiringCase) {
	var baseline []string // the goroutines running before the service starts
	for _, g := range serviceGoroutines(c.external == nil) {
		baseline = append(baseline, goroutineID(g))
	}
	dir := t.TempDir()
	svc := startService(t, dir, io.Discard, c.args...)
	stopped := false
	defer func() {
		if !stopped {
			svc.stop()
		}
	}()
	svc.expect(200, "", "GET", "/readyz", nil)
	op := operatorToken(t, dir)
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 2})
	admin, _ := svc.expect(201, op, "POST", "/v1/tokens", map[string]any{"role": "admin", "account": "acme"}).body["token"].(string)
	if admin == "" {
		t.Fatal("no token minted")
	}
	ada, _ := svc.expect(201, admin, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Ada Lovelace", "email": "ada@acme.test", "role": "admin"}).body["id"].(string)
	if ada == "" {
		t.Fatal("no user id")
	}

	// A downstream service reads both events from its mirror of the event
	// stream, with the subscribe-only credential.
	seed := c.downstreamSeed
	if seed == "" {
		seed = filepath.Join(dir, downstreamSeedFile)
	}
	if got := downstreamSubjects(t, svc.m.NATSURL(), seed, 2); strings.Join(got, " ") != "ledger.acme.AccountOpened ledger.acme.UserAdded" {
		t.Fatalf("downstream received %v, want the opening of acme and its user", got)
	}

	svc.stop()
	again := startService(t, dir, io.Discard, c.args...)
	svc = again
	users := list(t, again.expect(200, admin, "GET", "/v1/accounts/acme/users", nil).body, "users")
	if len(users) != 1 || users[0]["id"] != ada || users[0]["name"] != "Ada Lovelace" {
		t.Fatalf("after a restart the users read %v", users)
	}
	again.expect(201, op, "POST", "/v1/tokens", map[string]any{"role": "admin", "account": "acme"})
	again.expect(401, unminted(admin), "GET", "/v1/accounts/acme", nil)
	again.expect(201, admin, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Bob Babbage", "email": "bob@acme.test", "role": "member"})
	if got := downstreamSubjects(t, again.m.NATSURL(), seed, 3); got[2] != "ledger.acme.UserAdded" {
		t.Fatalf("downstream received %v after a restart", got)
	}

	httpAddr, natsURL := again.m.HTTPAddr(), again.m.NATSURL()
	again.stop()
	stopped = true
	http.DefaultClient.CloseIdleConnections()
	if conn, err := net.DialTimeout("tcp", httpAddr, time.Second); err == nil {
		conn.Close()
		t.Fatalf("the HTTP API still listens on %s after Close", httpAddr)
	}
	if c.external == nil {
		u, err := url.Parse(natsURL)
		if err != nil {
			t.Fatal(err)
		}
		if conn, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
			conn.Close()
			t.Fatalf("the embedded NATS server still listens on %s after Close", u.Host)
		}
	}
	waitFor(t, "the service's connections to the external NATS server to end", func() bool {
		return c.external == nil || c.external.NumClients() == 0
	})
	var left []string
	waitFor(t, "the service's goroutines to end", func() bool {
		left = left[:0]
		for _, g := range serviceGoroutines(c.external == nil) {
			if !slices.Contains(baseline, goroutineID(g)) {
				left = append(left, g)
			}
		}
		return len(left) == 0
	}, func() string { return strings.Join(left, "\n\n") })
}

// unminted returns a token of the same form as secret that was never minted.
func unminted(secret string) string {
	b := []byte(secret)
	if b[len(b)-1] == 'A' {
		b[len(b)-1] = 'B'
	} else {
		b[len(b)-1] = 'A'
	}
	return string(b)
}

// downstreamSubjects reads the first n messages of the downstream account's
// mirror of the event stream, as a downstream service does with its
// credential, and returns their subjects.
func downstreamSubjects(t *testing.T, url, seed string, n int) []string {
	t.Helper()
	creds, err := nats.NkeyOptionFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, creds, nats.Name("downstream-test"))
	if err != nil {
		t.Fatalf("downstream credential: %v", err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, "LEDGER", natsjs.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("downstream consumer: %v", err)
	}
	var got []string
	for len(got) < n {
		m, err := cons.Next(natsjs.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("downstream after %v: %v", got, err)
		}
		got = append(got, m.Subject())
	}
	return got
}

// serviceGoroutines returns the stacks of the goroutines that run parts of
// the service: its packages, NATS clients and servers, gRPC clients and
// HTTP connections. The test's own stacks and the EventStoreDB double's
// are not counted, and nats-server's only when natsServer is set: an
// external server keeps the streams the service made.
func serviceGoroutines(natsServer bool) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		s := string(g)
		if strings.Contains(s, "ledger/internal/esdbtest") || strings.Contains(s, "grpc/internal/transport.(*http2Server)") ||
			strings.Contains(s, "grpc.(*Server)") || strings.Contains(s, "testing.tRunner") ||
			!natsServer && strings.Contains(s, "nats-io/nats-server") {
			continue
		}
		for _, part := range []string{"licenseledger/ledger/", "nats-io/nats.go", "nats-io/nats-server", "google.golang.org/grpc", "net/http.(*conn)"} {
			if strings.Contains(s, part) {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// goroutineID returns the header of a goroutine's stack ("goroutine 7"),
// unique in the process.
func goroutineID(stack string) string {
	id, _, _ := strings.Cut(stack, " [")
	return id
}

// waitFor polls until ok holds, failing the test after 20 s; describe, if
// given, tells what is wrong then.
func waitFor(t *testing.T, what string, ok func() bool, describe ...func() string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); {
		if time.Now().After(deadline) {
			msg := ""
			for _, d := range describe {
				msg += "\n" + d()
			}
			t.Fatalf("waited for %s in vain%s", what, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
