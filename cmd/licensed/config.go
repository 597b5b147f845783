package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"time"

	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/telemetry"
)

// Config is every setting of licensed. Each has a flag and an environment
// variable; a flag given on the command line wins over the variable, which
// wins over the default.
type Config struct {
	DataDir    string
	HTTPAddr   string
	NATSListen string
	NATSURL    string
	NATSCreds  string
	Store      string
	Durability string
	LogLevel   slog.Level
	LogFormat  string
	DebugAddr  string
	Replicas   int
	// DownstreamConsumers caps the consumers downstream services may keep
	// on the embedded NATS server's mirror of the events.
	DownstreamConsumers int
	// LogKey is a file holding the transparency log's signing key; empty:
	// <data-dir>/log.key, created at the first start. LogOrigin names the
	// log (the first line of its checkpoints) when the key is created.
	// CheckpointEvery is the longest time between two checkpoints while
	// the ledger moves.
	LogKey          string
	LogOrigin       string
	CheckpointEvery time.Duration
	// PublicURL is the URL clients reach the HTTP API at; the published
	// events' dataschema starts with it. Empty: http://<the address the
	// API listens on>.
	PublicURL string
	// Tracer, when set, traces the service instead of the tracer the
	// standard OTEL_* variables configure (see package telemetry): tests
	// give one that records in memory. It is not a flag.
	Tracer *telemetry.Tracer
	// WebhookAllowPrivate lets webhook endpoints be on private, loopback
	// and link-local addresses, and plain http: for tests and private
	// deployments.
	WebhookAllowPrivate bool
	// Compress is which of the NATS streams that keep a copy of every
	// event the server compresses (S2, each block once full): "all" (the
	// default: the event store's stream, the published stream EVENTS and
	// the downstream mirror), "published" (EVENTS and the mirror only,
	// read in order) or "none".
	Compress string
}

// Values of [Config.Compress].
const (
	CompressPublished = "published"
	CompressAll       = "all"
	CompressNone      = "none"
)

// setting is one flag with its environment variable.
type setting struct {
	flag, env, def, usage string
	dst                   *string
}

// ParseConfig reads args (without the program name) and the environment
// through getenv.
func ParseConfig(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	var c Config
	var level, replicas, downstreamConsumers, every, allowPrivate string
	settings := []setting{
		{"data-dir", "LICENSED_DATA_DIR", "./data", "directory for the embedded NATS files, tokens, snapshots and the first operator token", &c.DataDir},
		{"http-addr", "LICENSED_HTTP_ADDR", "127.0.0.1:8080", "address the HTTP API listens on", &c.HTTPAddr},
		{"nats-listen", "LICENSED_NATS_LISTEN", "127.0.0.1:4222", "address the embedded NATS server listens on (port 0: a free port)", &c.NATSListen},
		{"nats-url", "LICENSED_NATS_URL", "", "URL of an external NATS server or cluster to use instead of the embedded one", &c.NATSURL},
		{"nats-creds", "LICENSED_NATS_CREDS", "", "credential for --nats-url: a NATS .creds file or an nkey seed file (e.g. another licensed's <data-dir>/licensed.nk)", &c.NATSCreds},
		{"store", "LICENSED_STORE", "jetstream", "event store: jetstream, or an EventStoreDB connection string esdb://host:2113?tls=false", &c.Store},
		{"durability", "LICENSED_DURABILITY", "fsync", "what an acknowledged command promises: fsync (on disk before the answer) or interval (synced every 2 minutes)", &c.Durability},
		{"log-level", "LICENSED_LOG_LEVEL", "info", "debug, info, warn or error", &level},
		{"log-format", "LICENSED_LOG_FORMAT", "auto", "json, text, or auto (text on a terminal, JSON otherwise)", &c.LogFormat},
		{"replicas", "LICENSED_REPLICAS", "1", "copies of the NATS streams (events, keys) in a JetStream cluster; 3 for a cluster of three. A stream provisioned with more keeps them", &replicas},
		{"downstream-consumers", "LICENSED_DOWNSTREAM_CONSUMERS", strconv.Itoa(jetstream.DefaultDownstreamMaxConsumers), "consumers downstream services may keep at once on the embedded NATS server's mirror of the events (an external server: licensed nats-auth --downstream-consumers)", &downstreamConsumers},
		{"debug-addr", "LICENSED_DEBUG_ADDR", "", "address of a separate listener serving Go's /debug/pprof profiles; off when empty", &c.DebugAddr},
		{"log-key", "LICENSED_LOG_KEY", "", "file holding the transparency log's signing key (a note signer key, PRIVATE+KEY+...); empty: <data-dir>/log.key, created at the first start (mode 0600)", &c.LogKey},
		{"log-origin", "LICENSED_LOG_ORIGIN", "licenseledger.dev/ledger", "the transparency log's origin, the name of the key created at the first start", &c.LogOrigin},
		{"public-url", "LICENSED_PUBLIC_URL", "", "URL clients reach the HTTP API at (e.g. https://ledger.example.com), which the published events' dataschema URLs start with; empty: http://<http-addr>", &c.PublicURL},
		{"checkpoint-every", "LICENSED_CHECKPOINT_EVERY", "10s", "longest time between two signed checkpoints of the transparency log while the ledger moves", &every},
		{"compress", "LICENSED_COMPRESS", CompressAll, "which NATS streams of the events the server compresses (S2, each block once full: 4 MB for the event store's stream, 8 MB for the others): all (the event store's stream LEDGER, the published stream EVENTS and the downstream mirror: about 3.4x fewer bytes on disk, for the CPU of compressing each block once and of decompressing it whole at each read of a block the server has not cached), published (EVENTS and the mirror only) or none. Blocks written keep their form, and every reader reads both; the server applies a change to the blocks it fills from the start after the one that records it", &c.Compress},
		{"webhook-allow-private", "LICENSED_WEBHOOK_ALLOW_PRIVATE", "false", "let webhook endpoints be on private, loopback and link-local addresses, and plain http (tests, private deployments); otherwise only https URLs of public addresses", &allowPrivate},
	}
	fs := flag.NewFlagSet("licensed", flag.ContinueOnError)
	fs.SetOutput(usage)
	for _, s := range settings {
		def := s.def
		if v := getenv(s.env); v != "" {
			def = v
		}
		fs.StringVar(s.dst, s.flag, def, fmt.Sprintf("%s (env %s)", s.usage, s.env))
	}
	fs.Usage = func() {
		fmt.Fprintf(usage, "licensed: the license ledger service\n\nUsage: licensed [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := c.LogLevel.UnmarshalText([]byte(level)); err != nil {
		return Config{}, fmt.Errorf("log level %q: %w", level, err)
	}
	n, err := strconv.Atoi(replicas)
	if err != nil || n < 1 || n > 5 {
		return Config{}, fmt.Errorf("replicas %q: want 1 to 5", replicas)
	}
	c.Replicas = n
	if c.DownstreamConsumers, err = parseDownstreamConsumers(downstreamConsumers); err != nil {
		return Config{}, err
	}
	d, err := time.ParseDuration(every)
	if err != nil || d < 100*time.Millisecond {
		return Config{}, fmt.Errorf("checkpoint every %q: want a duration of at least 100ms, such as 10s", every)
	}
	c.CheckpointEvery = d
	c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	if c.WebhookAllowPrivate, err = strconv.ParseBool(allowPrivate); err != nil {
		return Config{}, fmt.Errorf("webhook allow private %q: want true or false", allowPrivate)
	}
	return c, c.validate()
}

// parseDownstreamConsumers reads a limit of downstream consumers: 1 to
// 1,000,000.
func parseDownstreamConsumers(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1_000_000 {
		return 0, fmt.Errorf("downstream consumers %q: want 1 to 1000000", v)
	}
	return n, nil
}

// defaultPublicURL is the URL of the HTTP API listening on addr, seen from
// the same host.
func defaultPublicURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func (c Config) validate() error {
	var errs []error
	if u, err := url.Parse(c.PublicURL); c.PublicURL != "" && (err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil) {
		errs = append(errs, fmt.Errorf("public url %q: want an absolute http or https URL without query, fragment or user", c.PublicURL))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data dir must not be empty"))
	}
	switch c.Durability {
	case "fsync", "interval":
	default:
		errs = append(errs, fmt.Errorf("durability %q: want fsync or interval", c.Durability))
	}
	switch c.LogFormat {
	case "auto", "json", "text":
	default:
		errs = append(errs, fmt.Errorf("log format %q: want auto, json or text", c.LogFormat))
	}
	if c.Replicas > 1 && c.NATSURL == "" {
		errs = append(errs, fmt.Errorf("replicas %d: the embedded NATS server is a single node; replicas need --nats-url to a cluster", c.Replicas))
	}
	if c.NATSCreds != "" && c.NATSURL == "" {
		errs = append(errs, errors.New("nats creds: only with --nats-url; the embedded server uses <data-dir>/licensed.nk"))
	}
	if c.LogOrigin == "" || strings.ContainsAny(c.LogOrigin, "+ \t\n") {
		errs = append(errs, fmt.Errorf("log origin %q: want a non-empty name without spaces or +", c.LogOrigin))
	}
	switch c.Compress {
	case CompressPublished, CompressAll, CompressNone:
	default:
		errs = append(errs, fmt.Errorf("compress %q: want published, all or none", c.Compress))
	}
	if c.Store != "jetstream" && !strings.HasPrefix(c.Store, "esdb://") && !strings.HasPrefix(c.Store, "esdb+discover://") {
		errs = append(errs, fmt.Errorf("store %q: want jetstream or an esdb:// connection string", c.Store))
	}
	return errors.Join(errs...)
}

// logDelay is how long a log line may wait to be written with others
// (telemetry.LogBuffer): one write(2) per line was a few microseconds of
// every request. Warnings and errors are written at once.
const logDelay = 50 * time.Millisecond

// newLogger returns the service's logger, JSON unless f is a terminal,
// writing to f through the buffer it returns, which must be flushed
// before the process exits.
func newLogger(c Config, f *os.File) (*slog.Logger, *telemetry.LogBuffer) {
	lb := telemetry.NewLogBuffer(f, logDelay)
	return newLoggerTo(c, f, lb), lb
}

// newLoggerTo returns the service's logger writing to w: JSON unless f,
// what w writes to, is a terminal.
func newLoggerTo(c Config, f *os.File, w *telemetry.LogBuffer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	format := c.LogFormat
	if format == "auto" {
		format = "json"
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			format = "text"
		}
	}
	// Every line logged while answering a request carries its request_id
	// (and trace_id when traced).
	if format == "text" {
		return slog.New(telemetry.LogHandler(w.Handler(slog.NewTextHandler(w, opts))))
	}
	return slog.New(telemetry.LogHandler(w.Handler(slog.NewJSONHandler(w, opts))))
}
