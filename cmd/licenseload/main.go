// Command licenseload drives the license ledger's HTTP API with mixed
// lifecycle commands from many concurrent clients and reports commands per
// second and latency percentiles.
//
// It talks to a running licensed:
//
//	licenseload -url http://127.0.0.1:8080 -token-file data/operator.token
//
// or starts one itself, on free loopback ports with a temporary data
// directory, once per durability given, and stops it afterwards:
//
//	go build -o /tmp/licensed ./cmd/licensed
//	go run ./cmd/licenseload -spawn /tmp/licensed -durability fsync,interval
//
// Each run has three phases. Warm-up (not measured) opens the accounts and
// adds their first users. Baseline measures GET /healthz under the same
// concurrency, the cost of the HTTP round trip alone. Load then sends
// commands (activities, deactivate/activate cycles, additions, purchases,
// deletions) for a bounded duration or count. Each client owns a share of
// the accounts and keeps an exact model of them, so it sends commands that
// make sense; expected refusals (409 no seat, 410 deleted) are completed
// commands, counted apart. Only loopback addresses are accepted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "licenseload:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "licenseload:", err)
		os.Exit(1)
	}
}

// config is every setting of a load run.
type config struct {
	URL        string
	Token      string
	TokenFile  string
	Spawn      string
	Durability []string
	ChildLog   string
	KeepData   bool

	Accounts int
	Users    int
	Seats    int
	Clients  int
	Duration time.Duration
	Count    int
	Baseline time.Duration
	Mix      mix
	Prefix   string
	JSON     bool
	Seed     uint64
}

func parseFlags(args []string, usage io.Writer) (config, error) {
	var c config
	var mixSpec, durability string
	fs := flag.NewFlagSet("licenseload", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "base URL of a running licensed (loopback only); ignored with -spawn")
	fs.StringVar(&c.Token, "token", "", "operator bearer token")
	fs.StringVar(&c.TokenFile, "token-file", "data/operator.token", "file holding the operator token, used when -token is empty")
	fs.StringVar(&c.Spawn, "spawn", "", "path to a licensed binary to start on free loopback ports with a temporary data dir, once per durability")
	fs.StringVar(&durability, "durability", "fsync", "with -spawn: comma-separated durabilities to measure in turn (fsync, interval)")
	fs.StringVar(&c.ChildLog, "child-log-level", "info", "with -spawn: log level of the started licensed (its log goes to a file in its data dir)")
	fs.BoolVar(&c.KeepData, "keep-data", false, "with -spawn: keep the temporary data dir (its path is printed)")
	fs.IntVar(&c.Accounts, "accounts", 1000, "accounts to open and drive")
	fs.IntVar(&c.Users, "users", 5, "users added to each account during warm-up (the first is its admin)")
	fs.IntVar(&c.Seats, "seats", 8, "seats each account opens with")
	fs.IntVar(&c.Clients, "clients", 64, "concurrent clients (each with its own share of the accounts)")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "how long the measured load runs (always bounded)")
	fs.IntVar(&c.Count, "n", 0, "stop the measured load after this many commands (0: only -duration bounds it)")
	fs.DurationVar(&c.Baseline, "baseline", 5*time.Second, "how long to measure GET /healthz before the load (0: skip)")
	fs.StringVar(&mixSpec, "mix", defaultMix, "command mix as kind=weight,...; kinds: "+strings.Join(kindNames[:], ", "))
	fs.StringVar(&c.Prefix, "prefix", "", "account id prefix (default: a random one, so runs do not collide)")
	fs.BoolVar(&c.JSON, "json", false, "print the report as JSON")
	fs.Uint64Var(&c.Seed, "seed", 0, "random seed (0: from the clock)")
	fs.Usage = func() {
		fmt.Fprintf(usage, "licenseload: drive the license ledger's HTTP API and measure it\n\nUsage: licenseload [flags]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	var err error
	if c.Mix, err = parseMix(mixSpec); err != nil {
		return config{}, err
	}
	for _, d := range strings.Split(durability, ",") {
		d = strings.TrimSpace(d)
		if d != "fsync" && d != "interval" {
			return config{}, fmt.Errorf("durability %q: want fsync or interval", d)
		}
		c.Durability = append(c.Durability, d)
	}
	switch {
	case c.Accounts < 1:
		return config{}, errors.New("-accounts must be at least 1")
	case c.Clients < 1:
		return config{}, errors.New("-clients must be at least 1")
	case c.Users < 1:
		return config{}, errors.New("-users must be at least 1 (the admin)")
	case c.Seats < 1:
		return config{}, errors.New("-seats must be at least 1")
	case c.Duration <= 0:
		return config{}, errors.New("-duration must be positive: the load is always bounded")
	case c.Count < 0:
		return config{}, errors.New("-n must not be negative")
	}
	if c.Spawn == "" && len(c.Durability) > 1 {
		return config{}, errors.New("several durabilities need -spawn")
	}
	return c, nil
}
