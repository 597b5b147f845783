package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Durability tells what an acknowledged append promises about the disk.
type Durability string

const (
	// DurabilityFsync promises that an acknowledged append is on disk: it
	// survives a process crash, an OS crash and a power cut.
	//
	// A store opened by [Embedded] keeps that promise itself (group
	// commit): the server runs without SyncAlways and write()s each message
	// to its block file before it acknowledges it, and Append returns only
	// once a sync round that started after the acknowledgement has fsynced
	// the stream's block files. One round serves every append acknowledged
	// before it started, so appends are published one by one, concurrently,
	// as with [DurabilityInterval], and share fsyncs instead of atomic
	// batches.
	//
	// Elsewhere ([StartServer] on its own, or a clustered embedded server)
	// it sets the server's SyncAlways: every write is fsynced before the
	// server acknowledges it, and a store on such a server ([Connect],
	// [Open]) coalesces concurrent appends into atomic batches that share
	// one fsync (see [Config.MaxBatch]). A store on an external server
	// cannot fsync that server's disk: what an acknowledgement promises is
	// then the server's own setting (sync_always, and the stream's
	// replicas).
	DurabilityFsync Durability = "fsync"
	// DurabilityInterval keeps JetStream's default: writes reach the OS at
	// once and are fsynced every two minutes. An acknowledged command
	// survives a crash of the process but an OS crash or power cut can lose
	// the last interval's commands.
	DurabilityInterval Durability = "interval"
)

// DefaultDurability is what an embedded server promises unless told
// otherwise: every acknowledged command is on disk.
const DefaultDurability = DurabilityFsync

// ServerConfig configures an embedded nats-server. The zero value of every
// field but DataDir is usable.
type ServerConfig struct {
	// DataDir is the directory JetStream keeps its files in. Required.
	DataDir string
	// Host is the address clients connect to; default 127.0.0.1.
	Host string
	// Port is the client port; 0 means 4222 and -1 a random free port
	// (tests), read back with server.ClientURL().
	Port int
	// ServerName names the server; required to be unique in a cluster.
	// Default "ledger".
	ServerName string
	// MaxStore caps the bytes JetStream may keep on disk; default 64 GiB.
	MaxStore int64
	// MaxMemory caps the bytes of memory-backed streams; default 256 MiB.
	MaxMemory int64
	// Durability is what an acknowledged write promises; default
	// [DefaultDurability].
	Durability Durability
	// Cluster joins the server to a JetStream cluster when Cluster.Name is
	// set.
	Cluster ClusterConfig
	// Logger receives the server's notices, warnings and errors, and its
	// debug notices when the logger is enabled for [slog.LevelDebug]; nil
	// keeps the server quiet.
	Logger *slog.Logger
	// Auth, when set, makes the server require authentication with the
	// accounts and users it describes; nil lets anonymous clients in.
	Auth *Auth
	// Unsynced names streams of the store's account that the group commit
	// of fsync durability ([DurabilityFsync] on an embedded server that is
	// not clustered) leaves to the server's own interval, as
	// [DurabilityInterval] does: streams the service writes again from the
	// store after a crash, such as the published stream, whose copies
	// need not be on disk when a command is answered. Every other stream
	// of the account is synced before an append returns.
	Unsynced []string
	// ReadyTimeout bounds how long StartServer waits for the server to
	// accept connections; default 10 s. It includes the recovery of the
	// streams, which reads every message within a stream's
	// de-duplication window (see [Config.Duplicates]).
	ReadyTimeout time.Duration
}

// ClusterConfig joins an embedded server to a cluster of nats-servers.
type ClusterConfig struct {
	// Name is the cluster's name, the same on every server.
	Name string
	// Host and Port are where this server listens for routes from the
	// others; Port -1 picks a random port.
	Host string
	Port int
	// Routes are the other servers' route URLs, e.g.
	// "nats-route://127.0.0.1:6222".
	Routes []string
}

// ServerOptions returns the nats-server options cfg describes.
func ServerOptions(cfg ServerConfig) (*server.Options, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("jetstream: server data directory required")
	}
	switch cfg.Durability {
	case "":
		cfg.Durability = DefaultDurability
	case DurabilityFsync, DurabilityInterval:
	default:
		return nil, fmt.Errorf("jetstream: unknown durability %q (want %q or %q)", cfg.Durability, DurabilityFsync, DurabilityInterval)
	}
	opts := &server.Options{}
	if cfg.Auth != nil {
		accounts, err := AccountsConfig(*cfg.Auth)
		if err != nil {
			return nil, err
		}
		if err := opts.ProcessConfigString(accounts); err != nil {
			return nil, fmt.Errorf("jetstream: accounts: %w", err)
		}
	}
	*opts = server.Options{
		Accounts: opts.Accounts,
		Nkeys:    opts.Nkeys,
		Users:    opts.Users,

		ServerName:         cfg.ServerName,
		Host:               cfg.Host,
		Port:               cfg.Port,
		JetStream:          true,
		StoreDir:           cfg.DataDir,
		JetStreamMaxStore:  cfg.MaxStore,
		JetStreamMaxMemory: cfg.MaxMemory,
		SyncAlways:         cfg.Durability == DurabilityFsync,
		// The process owning the store handles signals, not the server.
		NoSigs:                true,
		NoLog:                 cfg.Logger == nil,
		MaxControlLine:        4096,
		DisableShortFirstPing: true,
	}
	if opts.ServerName == "" {
		opts.ServerName = "ledger"
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = 4222
	}
	if opts.JetStreamMaxStore == 0 {
		opts.JetStreamMaxStore = 64 << 30
	}
	if opts.JetStreamMaxMemory == 0 {
		opts.JetStreamMaxMemory = 256 << 20
	}
	if c := cfg.Cluster; c.Name != "" {
		opts.Cluster.Name = c.Name
		opts.Cluster.Host = c.Host
		opts.Cluster.Port = c.Port
		if opts.Cluster.Host == "" {
			opts.Cluster.Host = opts.Host
		}
		for _, r := range c.Routes {
			u, err := url.Parse(r)
			if err != nil {
				return nil, fmt.Errorf("jetstream: route %q: %w", r, err)
			}
			opts.Routes = append(opts.Routes, u)
		}
	}
	return opts, nil
}

// StartServer starts nats-server with JetStream in this process and waits
// until it accepts connections.
// Stop it with [StopServer].
func StartServer(cfg ServerConfig) (*server.Server, error) {
	opts, err := ServerOptions(cfg)
	if err != nil {
		return nil, err
	}
	return startServer(cfg, opts)
}

// groupSync reports whether a store opened by [Embedded] on a server cfg
// describes fsyncs the server's files itself rather than have the server
// sync every write: fsync durability on a server of its own. A clustered
// server keeps SyncAlways (its replicated streams relax it to a sync on
// each snapshot, backed by the Raft log).
func groupSync(cfg ServerConfig) bool {
	d := cfg.Durability
	if d == "" {
		d = DefaultDurability
	}
	return d == DurabilityFsync && cfg.Cluster.Name == ""
}

func startServer(cfg ServerConfig, opts *server.Options) (*server.Server, error) {
	t0 := time.Now()
	if cfg.Auth != nil {
		if err := moveToServiceAccount(opts.StoreDir); err != nil {
			return nil, err
		}
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("jetstream: new server: %w", err)
	}
	if cfg.Logger != nil {
		// The server's debug notices (stream recovery, JetStream start-up)
		// go out when the logger takes debug records.
		debug := cfg.Logger.Enabled(context.Background(), slog.LevelDebug)
		s.SetLoggerV2(serverLogger{cfg.Logger.With("component", "nats-server")}, debug, false, false)
	}
	wait := cfg.ReadyTimeout
	if wait <= 0 {
		wait = 10 * time.Second
	}
	// Start returns once the server has recovered its streams and listens
	// for clients; waiting for that rather than only polling
	// ReadyForConnections, which sleeps 25 ms between looks, saves those
	// sleeps on every start.
	started := make(chan struct{})
	go func() {
		s.Start()
		close(started)
	}()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-started:
	case <-timer.C:
	}
	// Also the route listener of a clustered server, which Start opens in
	// the background.
	if !s.ReadyForConnections(max(time.Until(t0.Add(wait)), 50*time.Millisecond)) {
		StopServer(s)
		return nil, fmt.Errorf("jetstream: server %s not ready after %s", opts.ServerName, wait)
	}
	// A clustered server is not waited for here: its JetStream needs a
	// quorum of peers, which may start after it. Open retries until the
	// stream can be created.
	return s, nil
}

// storeAccount returns the name of the account whose streams a store
// opened by [Embedded] on a server cfg describes writes.
func storeAccount(cfg ServerConfig) string {
	if cfg.Auth != nil {
		return ServiceAccount
	}
	return server.DEFAULT_GLOBAL_ACCOUNT
}

// moveToServiceAccount moves the streams a server without authentication
// kept in its global account to [ServiceAccount], once: a data directory
// written before authentication keeps its events, keys and tokens.
func moveToServiceAccount(storeDir string) error {
	from := filepath.Join(storeDir, server.JetStreamStoreDir, server.DEFAULT_GLOBAL_ACCOUNT)
	to := filepath.Join(storeDir, server.JetStreamStoreDir, ServiceAccount)
	if _, err := os.Stat(filepath.Join(from, "streams")); err != nil {
		return nil // nothing to move
	}
	if _, err := os.Stat(to); err == nil {
		return fmt.Errorf("jetstream: both %s and %s hold streams; keep one", from, to)
	}
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("jetstream: move streams to account %s: %w", ServiceAccount, err)
	}
	return nil
}

// StopServer shuts s down and waits until it has stopped, its files closed.
func StopServer(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// serverLogger forwards nats-server logs to slog.
type serverLogger struct{ l *slog.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.l.Info(fmt.Sprintf(format, v...)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.l.Warn(fmt.Sprintf(format, v...)) }
func (l serverLogger) Fatalf(format string, v ...any)  { l.l.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Errorf(format string, v ...any)  { l.l.Error(fmt.Sprintf(format, v...)) }
func (l serverLogger) Debugf(format string, v ...any)  { l.l.Debug(fmt.Sprintf(format, v...)) }
func (l serverLogger) Tracef(format string, v ...any)  { l.l.Debug(fmt.Sprintf(format, v...)) }
