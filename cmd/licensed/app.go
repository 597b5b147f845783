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
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/console"
	"github.com/licenseledger/ledger/internal/cycleclose"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/internal/scim"
	"github.com/licenseledger/ledger/internal/telemetry"
	"github.com/licenseledger/ledger/internal/translog"
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

	// backend is the event store the settings choose, with its key store,
	// token store and NATS.
	backend  *backend
	store    eventstore.Store
	closers  []func() error // run before the backend closes
	codec    *codec.Codec
	accounts *accounts.Service
	runner   *runner.Runner
	api      *httpapi.API
	tlog     *translog.Log
	metrics  *httpapi.Metrics
	tracer   *telemetry.Tracer
	tokens   auth.Store
	// bootstrap creates the first operator token unless another process
	// of the service did.
	bootstrap func(ctx context.Context, random io.Reader, now time.Time) (string, bool, error)

	httpLn  net.Listener
	httpSrv *http.Server
	cancel  context.CancelFunc
	bg      sync.WaitGroup
	errs    chan error

	// clock is the service's clock (time.Now; tests set another before
	// Start); cycles closes the billing cycles it passes.
	clock  func() time.Time
	cycles *cycleclose.Notifier
}

// NewMain returns a service configured by cfg that logs to log.
func NewMain(cfg Config, log *slog.Logger) *Main {
	return &Main{cfg: cfg, log: log, errs: make(chan error, 4), clock: time.Now}
}

// HTTPAddr returns the address the HTTP API listens on, once started.
func (m *Main) HTTPAddr() string { return m.httpLn.Addr().String() }

// NATSURL returns the URL downstream subscribers connect to: the embedded
// server's, or the external one's.
func (m *Main) NATSURL() string {
	if m.backend != nil {
		return m.backend.natsURL
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
	// The API's address is known before the publisher starts: the
	// published events' dataschema URLs default to it.
	m.httpLn, err = net.Listen("tcp", m.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	if m.cfg.PublicURL == "" {
		m.cfg.PublicURL = defaultPublicURL(m.HTTPAddr())
	}
	m.metrics = httpapi.NewMetrics()
	m.tracer = m.cfg.Tracer
	if m.tracer == nil {
		// Spans are exported only when an OTLP endpoint is set.
		if m.tracer, err = telemetry.Setup(ctx, telemetry.Config{ServiceName: "licensed", Getenv: os.Getenv, Logger: m.log.With("component", "tracing")}); err != nil {
			return err
		}
		if m.tracer.Enabled() {
			m.log.Info("tracing exported over OTLP/HTTP")
		}
	}
	m.backend, err = openBackend(ctx, backendSettings{cfg: m.cfg, dataDir: dataDir, log: m.log, metrics: m.metrics, tracer: m.tracer})
	if err != nil {
		return err
	}
	m.store, m.tokens, m.bootstrap = m.backend.store, m.backend.tokens, m.backend.tokens.Bootstrap
	m.codec = codec.New(pii.NewKeyring(m.backend.keys, rand.Reader))

	st, at, au, bi := seats.New(), attribution.New(), audit.New(), billing.New()
	// The accounts' decision state, from which an account's first command
	// after a start loads instead of reading its streams whole.
	held := accounts.NewReadModel(m.clock, 0)
	// The transparency log is fed the records the read models read.
	feed := eventstore.NewFeed(0)
	m.runner = runner.New(runner.Config{
		Store: m.store, Codec: m.codec,
		Projections: []projections.Projection{st, at, au, bi, held},
		Fresh: func() []projections.Projection {
			return []projections.Projection{seats.New(), attribution.New(), audit.New(), billing.New(), accounts.NewReadModel(m.clock, 0)}
		},
		Snapshots: runner.FileSnapshots{Dir: filepath.Join(dataDir, "snapshots")},
		OnEvent:   m.forgetDeletedKeys,
		OnRecord:  m.offerRecord(feed),
		Logger:    m.log.With("component", "read-models"),
	})
	m.metrics.CountQuarantined(m.runner.QuarantinedCount)
	m.accounts = accounts.New(accounts.Config{
		Store: m.store, OnAppend: m.appended, Codec: m.codec,
		Clock: m.clock, NewEventID: uuid.New, NewULID: ulid.Make,
		Logger: m.log.With("component", "accounts"),
		Tracer: m.tracer, States: held,
	})

	key, err := translog.LoadKey(dataDir, m.cfg.LogKey, m.cfg.LogOrigin, rand.Reader)
	if err != nil {
		return err
	}
	m.tlog, err = translog.Open(translog.Config{
		Dir: filepath.Join(dataDir, "log"), Key: key, SignEvery: m.cfg.CheckpointEvery, Feed: feed,
		Logger: m.log.With("component", "log"),
	})
	if err != nil {
		return err
	}
	m.closers = append(m.closers, m.tlog.Close)
	m.log.Info("transparency log: checkpoints verify with the verifier key", "origin", m.tlog.Origin(),
		"verifier_key", filepath.Join(dataDir, translog.VerifierKeyFile))

	if err := m.bootstrapOperator(ctx, dataDir); err != nil {
		return err
	}
	hooks, err := m.openWebhooks(ctx)
	if err != nil {
		return err
	}

	api := httpapi.New(httpapi.Config{
		PublicURL: m.cfg.PublicURL,
		Commands:  m.accounts, Seats: st, Activities: at, Audit: au, Billing: bi,
		History: m.store, Decoder: m.codec, Progress: m.runner, ReadModelsReady: m.runner.Ready, Tokens: m.tokens,
		Quarantine: m.runner, Log: m.tlog, DataKeys: m.backend.keys, Clock: m.clock, NewID: ulid.Make, Random: rand.Reader,
		Webhooks: hooks,
		SCIM: scim.New(scim.Config{
			Commands: m.accounts, Directory: st, Tokens: m.tokens, Progress: m.runner,
			ReadModelsReady: m.runner.Ready, Clock: m.clock, NewID: ulid.Make,
			Logger: m.log.With("component", "scim"),
		}),
		Logger: m.log.With("component", "http"), Metrics: m.metrics, Tracer: m.tracer,
		Ready: map[string]httpapi.Check{
			"store":       m.backend.ready,
			"projections": m.projectionsReady,
		},
	})
	m.api = api // before the read models run: their hook forgets its answers

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.cancel = cancel
	m.bg.Go(func() {
		if err := m.runner.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			m.log.Error("read models stopped", "err", err)
			m.errs <- fmt.Errorf("read models: %w", err)
		}
	})
	m.bg.Go(func() {
		// A log that cannot follow the history (a record it holds was
		// removed from the store, say) stops growing and says why on its
		// endpoints; the ledger goes on serving.
		if err := m.tlog.Run(runCtx, m.store); err != nil && !errors.Is(err, context.Canceled) {
			m.log.Error("transparency log stopped: its checkpoints are no longer extended; the ledger goes on", "err", err)
		}
	})
	m.bg.Go(func() { m.reportLag(runCtx) })
	if err := m.startCycleNotices(runCtx, bi); err != nil {
		return err
	}
	m.bg.Go(func() {
		// Deliveries stop with the process; what is in flight is delivered
		// again by another process or at the next start.
		if err := hooks.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
			m.log.Error("webhook deliveries stopped", "err", err)
			m.errs <- fmt.Errorf("webhooks: %w", err)
		}
	})
	for _, task := range m.backend.runners {
		m.bg.Go(func() {
			if err := task.run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				m.log.Error(task.name+" stopped", "err", err)
				m.errs <- fmt.Errorf("%s: %w", task.name, err)
			}
		})
	}

	con := console.New(console.Config{API: api, Tokens: m.tokens, Clock: m.clock, Logger: m.log.With("component", "console")})
	m.httpSrv = &http.Server{
		Handler:           withConsole(api, con),
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
		"http", "http://"+m.HTTPAddr(), "nats", withoutCredentials(m.NATSURL()), "store", m.backend.name,
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
	} else if m.httpLn != nil {
		_ = m.httpLn.Close() // Start failed before serving
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
	if m.tlog != nil && m.tlog.Ready() {
		// A last checkpoint records the whole tree: the next start
		// resumes from it instead of the last periodic one.
		if _, err := m.tlog.Sign(context.Background()); err != nil {
			m.log.Warn("no checkpoint at shutdown", "err", err)
		}
	}
	for _, c := range m.closers { // they may use the store closed below
		errs = append(errs, c())
	}
	if m.backend != nil {
		errs = append(errs, m.backend.close())
	}
	if m.tracer != nil && m.cfg.Tracer == nil {
		// The spans still buffered go out, up to 5 s.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := m.tracer.Shutdown(ctx); err != nil {
			m.log.Warn("spans not exported at shutdown", "err", err)
		}
		cancel()
	}
	return errors.Join(errs...)
}

// withConsole serves the web console under /console/ and the API
// everywhere else.
func withConsole(api *httpapi.API, con http.Handler) http.Handler {
	// The console's answers carry a request id too, which its requests to
	// the API in process share.
	pages := api.WithRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/console" {
			http.Redirect(w, r, console.Prefix, http.StatusMovedPermanently)
			return
		}
		con.ServeHTTP(w, r)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/console" || strings.HasPrefix(r.URL.Path, console.Prefix) {
			pages.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
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

// startCycleNotices publishes the notification of every billing cycle
// that ends, from the billing read model, into the published stream.
func (m *Main) startCycleNotices(ctx context.Context, bi *billing.Projection) error {
	head, ok := m.store.(cycleclose.Head)
	if !ok {
		m.log.Warn("billing cycle notifications off: the store cannot tell its last position")
		return nil
	}
	js, err := natsjs.New(m.backend.nc)
	if err != nil {
		return err
	}
	m.cycles = cycleclose.New(cycleclose.Config{
		JS: js, Billing: bi, Head: head, Progress: m.runner, Clock: m.clock, Replicas: m.cfg.Replicas,
		BaseURL:     m.cfg.PublicURL,
		Logger:      m.log.With("component", "billing-notifications"),
		OnPublished: func(string, string) { m.metrics.CycleClosed() },
	})
	m.bg.Go(func() {
		if err := m.cycles.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			m.log.Error("billing cycle notifications stopped", "err", err)
		}
	})
	return nil
}

// offerRecord returns the read models' hook on every record they read: it
// hands the record to the transparency log and to the publisher, which
// then do not follow the store a second time each.
func (m *Main) offerRecord(log *eventstore.Feed) func(eventstore.Position, eventstore.Record, error) {
	pub := m.backend.relayFeed
	if pub == nil {
		return log.Offer
	}
	return func(prev eventstore.Position, rec eventstore.Record, readErr error) {
		log.Offer(prev, rec, readErr)
		pub.Offer(prev, rec, readErr)
	}
}

// forgetDeletedKeys drops a deleted user's cached key, so that this
// process stops opening their data even when another process deleted them,
// and what the accounts service and the API keep in memory about them.
func (m *Main) forgetDeletedKeys(d codec.Decoded) {
	if del, ok := d.Event.(ledger.UserDeleted); ok {
		account := projections.AccountOf(d)
		m.codec.Keys().MarkDestroyed(pii.KeyID(account, del.UserID))
		m.accounts.ForgetDeletedUser(account, del.UserID)
		m.api.ForgetAccountAnswers(account)
	}
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
// they have not applied yet. The relay counts what it publishes.
func (m *Main) appended(a accounts.Appended) {
	m.metrics.ObserveAppend(a.Took)
	if a.Err != nil {
		return
	}
	m.runner.Observe(a.Result.Position)
}
