package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/esdb"
	esdbkeys "github.com/licenseledger/ledger/eventstore/esdb/keys"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/eventstore/jetstream/keys"
	jstokens "github.com/licenseledger/ledger/eventstore/jetstream/tokens"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/internal/relay"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/attribution"
	"github.com/licenseledger/ledger/projections/audit"
	"github.com/licenseledger/ledger/projections/billing"
	"github.com/licenseledger/ledger/projections/runner"
	"github.com/licenseledger/ledger/projections/seats"
)

// Main is the running service: every part wired together. Start brings it
// up, Wait blocks while it serves, Close takes it down.
type Main struct {
	cfg Config
	log *slog.Logger

	store eventstore.Store
	js    *jetstream.Store // nil when another store is in use
	keys  pii.KeyStore
	// With EventStoreDB: the relay that publishes its events to NATS, the
	// NATS connection it uses and the embedded server, if any.
	relay    *relay.Relay
	relayNC  *nats.Conn
	natsSrv  *server.Server
	closers  []func() error
	codec    *codec.Codec
	accounts *accounts.Service
	runner   *runner.Runner
	metrics  *httpapi.Metrics
	tokens   auth.Store
	// bootstrap creates the first operator token unless another process
	// of the service did.
	bootstrap func(ctx context.Context, random io.Reader, now time.Time) (string, bool, error)

	httpLn  net.Listener
	httpSrv *http.Server
	cancel  context.CancelFunc
	bg      sync.WaitGroup
	errs    chan error
}

// NewMain returns a service configured by cfg that logs to log.
func NewMain(cfg Config, log *slog.Logger) *Main {
	return &Main{cfg: cfg, log: log, errs: make(chan error, 4)}
}

// HTTPAddr returns the address the HTTP API listens on, once started.
func (m *Main) HTTPAddr() string { return m.httpLn.Addr().String() }

// NATSURL returns the URL downstream subscribers connect to: the embedded
// server's, or the external one's.
func (m *Main) NATSURL() string {
	switch {
	case m.js != nil && m.js.Server() != nil:
		return m.js.Server().ClientURL()
	case m.natsSrv != nil:
		return m.natsSrv.ClientURL()
	}
	return m.cfg.NATSURL
}

// Start opens the store, loads the read models' snapshot, starts following
// the store and begins serving HTTP. It returns once the API listens.
func (m *Main) Start(ctx context.Context) error {
	if err := os.MkdirAll(m.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	dataDir, err := filepath.Abs(m.cfg.DataDir)
	if err != nil {
		return err
	}
	m.metrics = httpapi.NewMetrics()
	if err := m.openStore(ctx, dataDir); err != nil {
		return err
	}
	m.codec = codec.New(pii.NewKeyring(m.keys, rand.Reader))

	st, at, au, bi := seats.New(), attribution.New(), audit.New(), billing.New()
	m.runner = runner.New(runner.Config{
		Store: m.store, Codec: m.codec,
		Projections: []projections.Projection{st, at, au, bi},
		Fresh: func() []projections.Projection {
			return []projections.Projection{seats.New(), attribution.New(), audit.New(), billing.New()}
		},
		Snapshots: runner.FileSnapshots{Dir: filepath.Join(dataDir, "snapshots")},
		OnEvent:   m.forgetDeletedKeys,
		Logger:    m.log.With("component", "read-models"),
	})
	m.metrics.CountQuarantined(m.runner.QuarantinedCount)
	m.accounts = accounts.New(accounts.Config{
		Store: m.store, OnAppend: m.appended, Codec: m.codec,
		Clock: time.Now, NewEventID: uuid.New, NewULID: ulid.Make,
		Logger: m.log.With("component", "accounts"),
	})

	if err := m.openTokens(ctx); err != nil {
		return err
	}
	if err := m.bootstrapOperator(ctx, dataDir); err != nil {
		return err
	}

	api := httpapi.New(httpapi.Config{
		Commands: m.accounts, Seats: st, Activities: at, Audit: au, Billing: bi,
		History: m.store, Decoder: m.codec, Progress: m.runner, ReadModelsReady: m.runner.Ready, Tokens: m.tokens,
		Quarantine: m.runner, Clock: time.Now, NewID: ulid.Make, Random: rand.Reader,
		Logger: m.log.With("component", "http"), Metrics: m.metrics,
		Ready: map[string]httpapi.Check{
			"store":       m.storeReady,
			"projections": m.projectionsReady,
		},
	})

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	m.bg.Go(func() {
		if err := m.runner.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			m.log.Error("read models stopped", "err", err)
			m.errs <- fmt.Errorf("read models: %w", err)
		}
	})
	m.bg.Go(func() { m.reportLag(runCtx) })
	if m.relay != nil {
		m.bg.Go(func() {
			if err := m.relay.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				m.log.Error("relay to NATS stopped", "err", err)
				m.errs <- fmt.Errorf("relay: %w", err)
			}
		})
	}

	m.httpLn, err = net.Listen("tcp", m.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	m.httpSrv = &http.Server{
		Handler:           api,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
	}
	m.bg.Go(func() {
		if err := m.httpSrv.Serve(m.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.errs <- fmt.Errorf("http: %w", err)
		}
	})
	if m.cfg.DebugAddr != "" {
		if err := m.serveDebug(); err != nil {
			return err
		}
	}
	m.log.Info("licensed serving",
		"http", "http://"+m.HTTPAddr(), "nats", withoutCredentials(m.NATSURL()), "store", m.storeName(),
		"durability", m.cfg.Durability, "data_dir", dataDir)
	return nil
}

// Wait blocks until ctx ends or a part of the service fails.
func (m *Main) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-m.errs:
		return err
	}
}

// Close stops serving, lets requests in flight finish (up to 10 s), stops
// the read models and closes the store.
func (m *Main) Close() error {
	var errs []error
	if m.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		errs = append(errs, m.httpSrv.Shutdown(ctx))
		cancel()
	}
	if m.cancel != nil {
		m.cancel()
	}
	if m.runner != nil && m.runner.Ready() {
		// A last snapshot makes the next start cheap.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := m.runner.SaveSnapshot(ctx); err != nil {
			m.log.Debug("no snapshot at shutdown", "err", err)
		}
		cancel()
	}
	m.bg.Wait()
	for _, c := range m.closers { // they may use the NATS connections closed below
		errs = append(errs, c())
	}
	if m.relayNC != nil {
		m.relayNC.Close()
	}
	if m.natsSrv != nil {
		jetstream.StopServer(m.natsSrv)
	}
	if m.store != nil {
		errs = append(errs, m.store.Close())
	}
	return errors.Join(errs...)
}

func (m *Main) storeName() string {
	if m.js != nil {
		if m.cfg.NATSURL != "" {
			return "jetstream (external)"
		}
		return "jetstream (embedded)"
	}
	return "esdb"
}

// openStore opens the event store and the key store the settings choose.
func (m *Main) openStore(ctx context.Context, dataDir string) error {
	if m.cfg.Store != "jetstream" {
		return m.openESDB(ctx, dataDir)
	}
	jcfg := jetstream.Config{Logger: m.log.With("component", "store"), Replicas: m.cfg.Replicas}
	if m.cfg.Durability == string(jetstream.DurabilityInterval) {
		// Coalescing appends into atomic batches pays for itself only on a
		// server that fsyncs every write (an external one with
		// sync_always): the server stages each batch in a store of its
		// own. Without fsync, single appends published concurrently are
		// faster. (The embedded server with fsync durability never
		// coalesces: the store syncs its files in groups itself.)
		jcfg.MaxBatch = 1
	}
	var err error
	if m.cfg.NATSURL != "" {
		opts, cerr := m.externalCredentials()
		if cerr != nil {
			return cerr
		}
		// A credential without the service's rights (say, the downstream
		// one) gets the stream's creation refused, which the server tells
		// only as an asynchronous error while the request times out: end
		// the start with it rather than retry until ctx ends.
		sctx, refused := context.WithCancelCause(ctx)
		opts = append(opts, nats.ErrorHandler(m.natsErrors(refused)))
		m.js, err = jetstream.Connect(sctx, m.cfg.NATSURL, jcfg, opts...)
		if cause := context.Cause(sctx); err != nil && ctx.Err() == nil && cause != nil {
			err = cause
		}
		refused(nil)
	} else {
		host, port, perr := splitListen(m.cfg.NATSListen)
		if perr != nil {
			return perr
		}
		auth, cred, aerr := m.embeddedAuth(dataDir)
		if aerr != nil {
			return aerr
		}
		m.js, err = jetstream.Embedded(ctx, jetstream.ServerConfig{
			DataDir: filepath.Join(dataDir, "nats"), Host: host, Port: port,
			Durability: jetstream.Durability(m.cfg.Durability),
			Logger:     m.serverLogger(),
			Auth:       auth,
			// Recovery reads back every event of the last de-duplication
			// window (2 minutes) before the server accepts clients: give a
			// restart after a burst of millions of events time for it.
			ReadyTimeout: 2 * time.Minute,
		}, jcfg, cred)
	}
	if err != nil {
		return err
	}
	m.store = m.js
	if err := m.ensureMirror(ctx, m.js.Conn()); err != nil {
		return err
	}
	js, err := natsjs.New(m.js.Conn())
	if err != nil {
		return err
	}
	// Key writes share the ledger store's sync rounds: a destroyed key's
	// tombstone is on disk before Destroy returns (Sync returns at once
	// when the server syncs every write itself).
	ks, err := keys.Open(ctx, js, keys.Config{Logger: m.log.With("component", "keys"), Replicas: m.cfg.Replicas, Sync: m.js.Sync})
	if err != nil {
		return fmt.Errorf("key store: %w", err)
	}
	m.keys = ks
	m.closers = append(m.closers, func() error {
		// Finishes the erasures of destroyed keys still queued; whatever
		// is left when the time is up, the next start erases.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return ks.Close(ctx)
	})
	return nil
}

// openESDB opens EventStoreDB as the event store and the key store, and
// the relay that publishes every event to NATS as the JetStream store
// would: downstream services see the same messages whichever store is in
// use.
func (m *Main) openESDB(ctx context.Context, dataDir string) error {
	es, err := esdb.Open(ctx, m.cfg.Store, m.log.With("component", "store"))
	if err != nil {
		return err
	}
	m.store = es
	ks, err := esdbkeys.Open(m.cfg.Store, esdbkeys.Config{})
	if err != nil {
		return fmt.Errorf("key store: %w", err)
	}
	m.keys = ks
	m.closers = append(m.closers, ks.Close)

	url := m.cfg.NATSURL
	opts := []nats.Option{nats.Name("ledger-relay"), nats.MaxReconnects(-1)}
	if url == "" {
		host, port, err := splitListen(m.cfg.NATSListen)
		if err != nil {
			return err
		}
		auth, cred, err := m.embeddedAuth(dataDir)
		if err != nil {
			return err
		}
		m.natsSrv, err = jetstream.StartServer(jetstream.ServerConfig{
			DataDir: filepath.Join(dataDir, "nats"), Host: host, Port: port,
			Durability: jetstream.Durability(m.cfg.Durability), Logger: m.serverLogger(),
			Auth:         auth,
			ReadyTimeout: 2 * time.Minute,
		})
		if err != nil {
			return err
		}
		url = m.natsSrv.ClientURL()
		opts = append(opts, nats.InProcessServer(m.natsSrv), cred)
	} else {
		creds, err := m.externalCredentials()
		if err != nil {
			return err
		}
		opts = append(opts, creds...)
	}
	if m.relayNC, err = nats.Connect(url, opts...); err != nil {
		return fmt.Errorf("nats for the relay: %w", err)
	}
	js, err := natsjs.New(m.relayNC, natsjs.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return err
	}
	m.relay, err = relay.New(relay.Config{
		Source: es, JS: js, Replicas: m.cfg.Replicas,
		OnPublished: func(eventstore.Position) { m.metrics.EventsPublished(1) },
		Logger:      m.log.With("component", "relay"),
	})
	if err != nil {
		return err
	}
	m.metrics.CountRelaySkipped(func() uint64 { return m.relay.Status().Skipped })
	// The event stream exists before the service reports that it serves,
	// and before its downstream mirror: a subscriber never finds it
	// missing, and the mirror follows it from the start rather than after
	// the server's retries of a missing source.
	if err := m.ensureRelayStream(ctx); err != nil {
		return err
	}
	return m.ensureMirror(ctx, m.relayNC)
}

// ensureRelayStream creates the stream the relay publishes to, retrying
// for a while a NATS server whose JetStream is not ready yet.
func (m *Main) ensureRelayStream(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		err := m.relay.EnsureStream(cctx)
		ccancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		m.log.Warn("creating the event stream, retrying", "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Files in the data directory holding the nkey seeds of the embedded NATS
// server's two identities.
const (
	serviceSeedFile    = "licensed.nk"
	downstreamSeedFile = "downstream.nk"
)

// embeddedAuth returns the authentication of the embedded NATS server and
// the connect option of the service's identity. The nkey seeds of both
// identities are kept in the data directory (mode 0600), created at the
// first start and reused after.
func (m *Main) embeddedAuth(dataDir string) (*jetstream.Auth, nats.Option, error) {
	svcPath := filepath.Join(dataDir, serviceSeedFile)
	svc, _, err := jetstream.UserSeed(svcPath)
	if err != nil {
		return nil, nil, fmt.Errorf("nats identity: %w", err)
	}
	downPath := filepath.Join(dataDir, downstreamSeedFile)
	down, created, err := jetstream.UserSeed(downPath)
	if err != nil {
		return nil, nil, fmt.Errorf("nats downstream identity: %w", err)
	}
	cred, err := jetstream.CredentialOption(svcPath)
	if err != nil {
		return nil, nil, err
	}
	msg := "downstream credential exists"
	if created {
		msg = "downstream credential written"
	}
	m.log.Info(msg+": subscribe-only; use it as an nkey seed, e.g. nats --nkey "+downPath+" sub 'ledger.>'",
		"path", downPath, "service_credential", svcPath)
	return &jetstream.Auth{Service: svc, Downstream: down}, cred, nil
}

// externalCredentials returns the connect options of --nats-creds.
func (m *Main) externalCredentials() ([]nats.Option, error) {
	if m.cfg.NATSCreds == "" {
		m.log.Warn("connecting to NATS without credentials (--nats-creds): only a server that lets anonymous clients write the ledger accepts this")
		return nil, nil
	}
	opt, err := jetstream.CredentialOption(m.cfg.NATSCreds)
	if err != nil {
		return nil, err
	}
	return []nats.Option{opt}, nil
}

// natsErrors returns the handler of the asynchronous errors of a
// connection to an external NATS server: it logs them, and a permission
// refusal also calls refused with an error naming the credential (from
// then on refused is a no-op once the start has ended).
func (m *Main) natsErrors(refused context.CancelCauseFunc) nats.ErrHandler {
	return func(_ *nats.Conn, sub *nats.Subscription, err error) {
		subject := ""
		if sub != nil {
			subject = sub.Subject
		}
		m.log.Error("NATS reported an error", "err", err, "subscription", subject)
		if errors.Is(err, nats.ErrPermissionViolation) {
			cred := "no credential (--nats-creds)"
			if m.cfg.NATSCreds != "" {
				cred = "the NATS credential " + m.cfg.NATSCreds
			}
			refused(fmt.Errorf("%s lacks the service's rights (give licensed's own, e.g. another process's licensed.nk): %w", cred, err))
		}
	}
}

// ensureMirror creates or updates the downstream account's mirror of the
// event stream. The embedded server has that account, so failing there
// fails the start; an external server may have been set up without it.
func (m *Main) ensureMirror(ctx context.Context, nc *nats.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := jetstream.EnsureDownstreamMirror(ctx, nc, m.cfg.Replicas)
	switch {
	case err == nil:
		return nil
	case m.cfg.NATSURL == "":
		return err
	default:
		m.log.Warn("no mirror of the event stream for downstream consumers: the NATS server has no DOWNSTREAM account set up as docs/deploy.md shows", "err", err)
		return nil
	}
}

// withoutCredentials returns NATS URLs (comma-separated) without their
// user information, which may be a password or a token, for logs.
func withoutCredentials(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			u.User = nil
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}

// splitListen parses the embedded server's address; port 0 picks a free
// port.
func splitListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("nats listen address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("nats listen address %q: bad port", addr)
	}
	if port == 0 {
		port = -1
	}
	return host, port, nil
}

// bootstrapOperator creates the first operator token when there is none
// and writes it, readable by its owner only, to <data>/operator.token.
func (m *Main) bootstrapOperator(ctx context.Context, dataDir string) error {
	secret, created, err := m.bootstrap(ctx, rand.Reader, time.Now())
	if err != nil {
		return fmt.Errorf("operator token: %w", err)
	}
	path := filepath.Join(dataDir, "operator.token")
	if !created {
		if _, err := os.Stat(path); err == nil {
			m.log.Info("operator token exists", "path", path)
		} else {
			// Another process of the service (sharing its NATS) wrote it.
			m.log.Info("operator token exists: an operator token was minted before, by a process with another data directory; this one writes none")
		}
		return nil
	}
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write operator token: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil { // a file left from before keeps its mode otherwise
		return fmt.Errorf("write operator token: %w", err)
	}
	m.log.Info("first operator token written: use it as a bearer token", "path", path)
	return nil
}

// openTokens opens the token store on the NATS every process of the
// service shares, so that a token minted through one process is accepted
// by all of them.
func (m *Main) openTokens(ctx context.Context) error {
	nc := m.relayNC
	if m.js != nil {
		nc = m.js.Conn()
	}
	js, err := natsjs.New(nc)
	if err != nil {
		return err
	}
	tcfg := jstokens.Config{Replicas: m.cfg.Replicas, Logger: m.log.With("component", "tokens")}
	if m.js != nil {
		// Minted and revoked tokens last before the call returns, as
		// appended events do (a no-op unless the store syncs its server's
		// files itself).
		tcfg.Sync = m.js.Sync
	}
	ts, err := jstokens.Open(ctx, js, tcfg)
	if err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	m.tokens, m.bootstrap = ts, ts.Bootstrap
	m.closers = append(m.closers, ts.Close)
	return nil
}

// forgetDeletedKeys drops a deleted user's cached key, so that this
// process stops opening their data even when another process deleted them.
func (m *Main) forgetDeletedKeys(d codec.Decoded) {
	if del, ok := d.Event.(ledger.UserDeleted); ok {
		m.codec.Keys().MarkDestroyed(pii.KeyID(projections.AccountOf(d), del.UserID))
	}
}

func (m *Main) storeReady(ctx context.Context) error {
	if m.js != nil {
		if st := m.js.Conn().Status(); st != nats.CONNECTED {
			return fmt.Errorf("nats connection %s", st)
		}
		return nil
	}
	// EventStoreDB: a read of a stream that never exists answers quickly
	// when the server is reachable.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, err := range m.store.ReadStream(ctx, eventstore.LedgerStream("readiness-probe"), 0) {
		if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
			return fmt.Errorf("event store: %w", err)
		}
		break
	}
	if st := m.relayNC.Status(); st != nats.CONNECTED {
		return fmt.Errorf("nats connection of the relay %s", st)
	}
	return nil
}

func (m *Main) projectionsReady(context.Context) error {
	if !m.runner.Ready() {
		return errors.New("read models catching up")
	}
	if lag := m.runner.Lag(); lag > 1000 {
		return fmt.Errorf("read models %d events behind", lag)
	}
	return nil
}

func (m *Main) reportLag(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.metrics.SetProjectionLag("read-models", m.runner.Lag())
		}
	}
}

// serveDebug serves Go's profiles on their own listener, apart from the
// API, so that only who can reach that address can profile the service.
func (m *Main) serveDebug() error {
	ln, err := net.Listen("tcp", m.cfg.DebugAddr)
	if err != nil {
		return fmt.Errorf("debug listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	m.closers = append(m.closers, srv.Close)
	go func() { _ = srv.Serve(ln) }() // Close ends it, after the parts that use the store
	m.log.Info("profiles served", "debug", "http://"+ln.Addr().String()+"/debug/pprof/")
	return nil
}

// serverLogger returns the logger of the embedded nats-server: its
// warnings and errors, and its notices too when debugging.
func (m *Main) serverLogger() *slog.Logger {
	if m.cfg.LogLevel <= slog.LevelDebug {
		return m.log
	}
	return slog.New(minLevel{m.log.Handler(), slog.LevelWarn})
}

// minLevel drops records below a level.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}

// appended observes an append of the application service: its latency,
// and the position it reached, so that the read models' lag counts events
// they have not applied yet. On JetStream, appending is publishing: the
// stored message is the one downstream subscribers receive.
func (m *Main) appended(a accounts.Appended) {
	m.metrics.ObserveAppend(a.Took)
	if a.Err != nil {
		return
	}
	m.runner.Observe(a.Result.Position)
	if m.js != nil {
		m.metrics.EventsPublished(a.Events)
	}
}
