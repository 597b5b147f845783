package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/esdb"
	esdbkeys "github.com/licenseledger/ledger/eventstore/esdb/keys"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/eventstore/jetstream/keys"
	jstokens "github.com/licenseledger/ledger/eventstore/jetstream/tokens"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/internal/relay"
	"github.com/licenseledger/ledger/internal/telemetry"
)

// backend is the event store the settings choose with everything that comes
// with it: the key store of personal data keys, the token store on the NATS
// every process of the service shares, where downstream subscribers
// connect, how readiness is checked, the work it runs in the background and
// the order it closes in. openBackend builds it; the rest of the wiring
// never asks which store is in use.
type backend struct {
	// name says which store is in use, for logs.
	name   string
	store  eventstore.Store
	keys   pii.KeyStore
	tokens *jstokens.Store
	// natsURL is the URL downstream subscribers connect to.
	natsURL string
	// ready reports whether the store and NATS are reachable.
	ready func(context.Context) error
	// runners run in the background while the service serves; an error
	// other than the context's end stops the service.
	runners []backgroundTask
	// relay publishes every stored event, in the store's order, into the
	// published stream EVENTS, whichever store is in use.
	relay *relay.Relay
	// relayFeed gives the relay the records the read models read.
	relayFeed *eventstore.Feed

	// nc is the NATS connection of the token store and the downstream
	// mirror; sync, when set, makes what was written through it durable
	// before a call returns.
	nc   *nats.Conn
	sync func(context.Context) error
	// closers close what was opened, run last opened first.
	closers []func() error
}

// backgroundTask is work a backend runs while the service serves.
type backgroundTask struct {
	name string // what stops, for logs and errors
	run  func(context.Context) error
}

// backendSettings is what a backend is built from.
type backendSettings struct {
	cfg     Config
	dataDir string // absolute
	log     *slog.Logger
	metrics *httpapi.Metrics
	tracer  *telemetry.Tracer
}

// openBackend opens the event store the settings choose: JetStream on the
// embedded NATS server, JetStream on an external NATS (--nats-url), or
// EventStoreDB (--store esdb://...) with the relay that publishes its
// events to NATS, embedded or external. On error it closes what it opened.
func openBackend(ctx context.Context, s backendSettings) (*backend, error) {
	b := &backend{}
	var err error
	switch {
	case s.cfg.Store != "jetstream":
		err = b.openESDB(ctx, s)
	case s.cfg.NATSURL != "":
		err = b.openExternalJetStream(ctx, s)
	default:
		err = b.openEmbeddedJetStream(ctx, s)
	}
	if err == nil {
		err = b.openTokens(ctx, s)
	}
	if err != nil {
		if cerr := b.close(); cerr != nil {
			s.log.Debug("closing a backend that failed to open", "err", cerr)
		}
		return nil, err
	}
	return b, nil
}

// onClose registers a closer, run before those registered earlier.
func (b *backend) onClose(c func() error) { b.closers = append(b.closers, c) }

// close closes everything opened, last opened first.
func (b *backend) close() error {
	var errs []error
	for i := len(b.closers) - 1; i >= 0; i-- {
		errs = append(errs, b.closers[i]())
	}
	b.closers = nil
	return errors.Join(errs...)
}

// jetStreamConfig is the JetStream store's configuration by the settings.
func jetStreamConfig(s backendSettings) jetstream.Config {
	// Every append of the service names the revision it expects, so its
	// retries never depend on the server's de-duplication window, which
	// then only costs restarts: keep it short.
	jcfg := jetstream.Config{Logger: s.log.With("component", "store"), Replicas: s.cfg.Replicas,
		Duplicates: jetstream.ShortDuplicates, Compress: s.cfg.Compress == CompressAll}
	if s.cfg.Durability == string(jetstream.DurabilityInterval) {
		// Coalescing appends into atomic batches pays for itself only on a
		// server that fsyncs every write (an external one with
		// sync_always): the server stages each batch in a store of its
		// own. Without fsync, single appends published concurrently are
		// faster. (The embedded server with fsync durability never
		// coalesces: the store syncs its files in groups itself.)
		jcfg.MaxBatch = 1
	}
	return jcfg
}

// openEmbeddedJetStream opens JetStream on the NATS server embedded in the
// process, which requires the nkey identities kept in the data directory.
func (b *backend) openEmbeddedJetStream(ctx context.Context, s backendSettings) error {
	host, port, err := splitListen(s.cfg.NATSListen)
	if err != nil {
		return err
	}
	auth, cred, err := embeddedAuth(s)
	if err != nil {
		return err
	}
	js, err := jetstream.Embedded(ctx, jetstream.ServerConfig{
		DataDir: filepath.Join(s.dataDir, "nats"), Host: host, Port: port,
		Durability: jetstream.Durability(s.cfg.Durability),
		Logger:     serverLogger(s),
		Auth:       auth,
		// The published stream is synced with the rest: left to the
		// server's interval, it could lose after a power cut a tail the
		// downstream mirror and the webhook deliveries' positions (flushed
		// on their own) already passed, and the publisher's writing it
		// again would not reach them.
		// Recovery reads back every event of the last de-duplication
		// window (2 minutes) before the server accepts clients: give a
		// restart after a burst of millions of events time for it.
		ReadyTimeout: 2 * time.Minute,
	}, jetStreamConfig(s), cred)
	if err != nil {
		return err
	}
	b.name, b.natsURL = "jetstream (embedded)", js.Server().ClientURL()
	return b.useJetStream(ctx, s, js)
}

// openExternalJetStream opens JetStream on the NATS server or cluster of
// --nats-url, with the credential of --nats-creds.
func (b *backend) openExternalJetStream(ctx context.Context, s backendSettings) error {
	opts, err := externalCredentials(s)
	if err != nil {
		return err
	}
	// A credential without the service's rights (say, the downstream
	// one) gets the stream's creation refused, which the server tells
	// only as an asynchronous error while the request times out: end
	// the start with it rather than retry until ctx ends.
	sctx, refused := context.WithCancelCause(ctx)
	opts = append(opts, nats.ErrorHandler(natsErrors(s, refused)))
	js, err := jetstream.Connect(sctx, s.cfg.NATSURL, jetStreamConfig(s), opts...)
	if cause := context.Cause(sctx); err != nil && ctx.Err() == nil && cause != nil {
		err = cause
	}
	refused(nil)
	if err != nil {
		return err
	}
	b.name, b.natsURL = "jetstream (external)", s.cfg.NATSURL
	return b.useJetStream(ctx, s, js)
}

// useJetStream makes an open JetStream store the backend's event store,
// with its downstream mirror and the key store on the same connection.
func (b *backend) useJetStream(ctx context.Context, s backendSettings, st *jetstream.Store) error {
	b.onClose(st.Close)
	b.store, b.nc = st, st.Conn()
	// Minted and revoked tokens, and destroyed keys' tombstones, last
	// before the call returns, as appended events do: key and token writes
	// share the ledger store's sync rounds (Sync returns at once when the
	// server syncs every write itself).
	b.sync = st.Sync
	b.ready = func(context.Context) error {
		if st := st.Conn().Status(); st != nats.CONNECTED {
			return fmt.Errorf("nats connection %s", st)
		}
		return nil
	}
	if err := b.usePublisher(ctx, s, st.Conn()); err != nil {
		return err
	}
	js, err := natsjs.New(st.Conn())
	if err != nil {
		return err
	}
	ks, err := keys.Open(ctx, js, keys.Config{Logger: s.log.With("component", "keys"), Replicas: s.cfg.Replicas, Sync: st.Sync})
	if err != nil {
		return fmt.Errorf("key store: %w", err)
	}
	b.keys = ks
	b.onClose(func() error {
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
// use. NATS is the embedded server, or the external one of --nats-url.
func (b *backend) openESDB(ctx context.Context, s backendSettings) error {
	es, err := esdb.Open(ctx, s.cfg.Store, s.log.With("component", "store"))
	if err != nil {
		return err
	}
	b.onClose(es.Close)
	b.name, b.store = "esdb", es
	ks, err := esdbkeys.Open(s.cfg.Store, esdbkeys.Config{})
	if err != nil {
		return fmt.Errorf("key store: %w", err)
	}
	b.onClose(ks.Close)
	b.keys = ks

	b.natsURL = s.cfg.NATSURL
	opts := []nats.Option{nats.Name("ledger-relay"), nats.MaxReconnects(-1)}
	if b.natsURL == "" {
		host, port, err := splitListen(s.cfg.NATSListen)
		if err != nil {
			return err
		}
		auth, cred, err := embeddedAuth(s)
		if err != nil {
			return err
		}
		srv, err := jetstream.StartServer(jetstream.ServerConfig{
			DataDir: filepath.Join(s.dataDir, "nats"), Host: host, Port: port,
			Durability: jetstream.Durability(s.cfg.Durability), Logger: serverLogger(s),
			Auth:         auth,
			ReadyTimeout: 2 * time.Minute,
		})
		if err != nil {
			return err
		}
		b.onClose(func() error { jetstream.StopServer(srv); return nil })
		b.natsURL = srv.ClientURL()
		opts = append(opts, nats.InProcessServer(srv), cred)
	} else {
		creds, err := externalCredentials(s)
		if err != nil {
			return err
		}
		opts = append(opts, creds...)
	}
	nc, err := nats.Connect(b.natsURL, opts...)
	if err != nil {
		return fmt.Errorf("nats for the relay: %w", err)
	}
	b.onClose(func() error { nc.Close(); return nil })
	b.nc = nc
	b.ready = func(ctx context.Context) error {
		// A read of a stream that never exists answers quickly when the
		// server is reachable.
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		for _, err := range es.ReadStream(ctx, eventstore.LedgerStream("readiness-probe"), 0) {
			if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
				return fmt.Errorf("event store: %w", err)
			}
			break
		}
		if st := nc.Status(); st != nats.CONNECTED {
			return fmt.Errorf("nats connection of the relay %s", st)
		}
		return nil
	}
	return b.usePublisher(ctx, s, nc)
}

// usePublisher sets up the relay that publishes every stored event, in
// the store's order, into the published stream EVENTS over nc, and the
// downstream account's mirror of that stream. The relay runs in the
// background; on start it publishes what the store holds and the stream
// does not (all of it, the first time a data directory runs a version
// with the published stream).
func (b *backend) usePublisher(ctx context.Context, s backendSettings, nc *nats.Conn) error {
	js, err := natsjs.New(nc, natsjs.WithPublishAsyncTimeout(10*time.Second))
	if err != nil {
		return err
	}
	// The read models' runner reads every record of the store: it hands
	// them to the relay (Main.Start), which reads from the store only
	// what it did not get that way.
	b.relayFeed = eventstore.NewFeed(0)
	rl, err := relay.New(relay.Config{
		Source: b.store, JS: js, Replicas: s.cfg.Replicas, BaseURL: s.cfg.PublicURL, Feed: b.relayFeed,
		// Every publish names the message it expects before it, so no
		// retry depends on the de-duplication window, which then only
		// costs restarts (as the store's): keep it short.
		Duplicates:  jetstream.ShortDuplicates,
		Compress:    s.cfg.Compress != CompressNone,
		OnPublished: func(eventstore.Position) { s.metrics.EventsPublished(1) },
		Logger:      s.log.With("component", "publisher"),
		Tracer:      s.tracer,
	})
	if err != nil {
		return err
	}
	b.relay = rl
	s.metrics.CountRelaySkipped(func() uint64 { return rl.Status().Skipped })
	b.runners = append(b.runners, backgroundTask{name: "publisher to NATS", run: rl.Run})
	// The published stream exists before the service reports that it
	// serves, and before its downstream mirror: a subscriber never finds
	// it missing, and the mirror follows it from the start rather than
	// after the server's retries of a missing source.
	if err := ensureRelayStream(ctx, s, rl); err != nil {
		return err
	}
	return ensureMirror(ctx, s, nc)
}

// openTokens opens the token store on the NATS every process of the
// service shares, so that a token minted through one process is accepted
// by all of them.
func (b *backend) openTokens(ctx context.Context, s backendSettings) error {
	js, err := natsjs.New(b.nc)
	if err != nil {
		return err
	}
	ts, err := jstokens.Open(ctx, js, jstokens.Config{Replicas: s.cfg.Replicas, Logger: s.log.With("component", "tokens"), Sync: b.sync})
	if err != nil {
		return fmt.Errorf("token store: %w", err)
	}
	b.onClose(ts.Close)
	b.tokens = ts
	return nil
}

// ensureRelayStream creates the stream the relay publishes to, retrying
// for a while a NATS server whose JetStream is not ready yet.
func ensureRelayStream(ctx context.Context, s backendSettings, rl *relay.Relay) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		err := rl.EnsureStream(cctx)
		ccancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return err
		}
		s.log.Warn("creating the event stream, retrying", "err", err)
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
func embeddedAuth(s backendSettings) (*jetstream.Auth, nats.Option, error) {
	svcPath := filepath.Join(s.dataDir, serviceSeedFile)
	svc, _, err := jetstream.UserSeed(svcPath)
	if err != nil {
		return nil, nil, fmt.Errorf("nats identity: %w", err)
	}
	downPath := filepath.Join(s.dataDir, downstreamSeedFile)
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
	s.log.Info(msg+": subscribe-only; use it as an nkey seed, e.g. nats --nkey "+downPath+" sub 'ledger.>'",
		"path", downPath, "service_credential", svcPath)
	return &jetstream.Auth{Service: svc, Downstream: down, DownstreamMaxConsumers: s.cfg.DownstreamConsumers}, cred, nil
}

// externalCredentials returns the connect options of --nats-creds.
func externalCredentials(s backendSettings) ([]nats.Option, error) {
	if s.cfg.NATSCreds == "" {
		s.log.Warn("connecting to NATS without credentials (--nats-creds): only a server that lets anonymous clients write the ledger accepts this")
		return nil, nil
	}
	opt, err := jetstream.CredentialOption(s.cfg.NATSCreds)
	if err != nil {
		return nil, err
	}
	return []nats.Option{opt}, nil
}

// natsErrors returns the handler of the asynchronous errors of a
// connection to an external NATS server: it logs them, and a permission
// refusal also calls refused with an error naming the credential (from
// then on refused is a no-op once the start has ended).
func natsErrors(s backendSettings, refused context.CancelCauseFunc) nats.ErrHandler {
	return func(_ *nats.Conn, sub *nats.Subscription, err error) {
		subject := ""
		if sub != nil {
			subject = sub.Subject
		}
		s.log.Error("NATS reported an error", "err", err, "subscription", subject)
		if errors.Is(err, nats.ErrPermissionViolation) {
			cred := "no credential (--nats-creds)"
			if s.cfg.NATSCreds != "" {
				cred = "the NATS credential " + s.cfg.NATSCreds
			}
			refused(fmt.Errorf("%s lacks the service's rights (give licensed's own, e.g. another process's licensed.nk): %w", cred, err))
		}
	}
}

// ensureMirror creates or updates the downstream account's mirror of the
// event stream. The embedded server has that account, so failing there
// fails the start; an external server may have been set up without it.
func ensureMirror(ctx context.Context, s backendSettings, nc *nats.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err := jetstream.EnsureDownstreamMirror(ctx, nc, s.cfg.Replicas, s.cfg.Compress != CompressNone)
	switch {
	case err == nil:
		return nil
	case s.cfg.NATSURL == "":
		return err
	default:
		s.log.Warn("no mirror of the event stream for downstream consumers: the NATS server has no DOWNSTREAM account set up as docs/deploy.md shows", "err", err)
		return nil
	}
}

// serverLogger returns the logger of the embedded nats-server: its
// warnings and errors, and its notices too when debugging.
func serverLogger(s backendSettings) *slog.Logger {
	if s.cfg.LogLevel <= slog.LevelDebug {
		return s.log
	}
	return slog.New(minLevel{s.log.Handler(), slog.LevelWarn})
}
