// Command licensed is the license ledger service: the system of record for
// which users of a customer account hold a paid seat, and why, over time.
//
// Started with no flags it runs on its embedded default: a NATS server with
// JetStream in the same process (files under ./data, clients on
// 127.0.0.1:4222) as event store and event bus, and the HTTP API on
// 127.0.0.1:8080. It writes a first operator token to ./data/operator.token.
// See `licensed -h` for the settings and their environment variables.
//
// `licensed nats-auth DIR` prepares an external NATS server's
// authentication instead: the nkey seeds of licensed and of downstream
// services, and the accounts block of the server's configuration.
//
// Unless the GOGC environment variable says otherwise, the garbage
// collector lets the heap grow to three times its live size between
// collections (GOGC=200, [defaultGCPercent]) rather than Go's twice: the
// service allocates a little for every command, and collecting half as
// often saves about a tenth of its CPU per command for a few tens of MB.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// defaultGCPercent is the garbage collector's target (GOGC) when the
// environment sets none.
const defaultGCPercent = 200

// setGCPercent sets the garbage collector's target to defaultGCPercent
// unless getenv gives GOGC, which the runtime has applied already.
func setGCPercent(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}

func main() {
	setGCPercent(os.Getenv)
	if len(os.Args) > 1 && os.Args[1] == "nats-auth" {
		if err := natsAuth(os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "licensed nats-auth:", err)
			os.Exit(2)
		}
		return
	}
	cfg, err := ParseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "licensed:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger, logs := newLogger(cfg, os.Stderr)
	defer logs.Close()
	m := NewMain(cfg, logger)
	if err := m.Start(ctx); err != nil {
		m.log.Error("start failed", "err", err)
		m.Close()
		logs.Close()
		os.Exit(1)
	}
	err = m.Wait(ctx)
	stop()
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		m.log.Error("stopped with an error", "err", err)
		logs.Close()
		os.Exit(1)
	}
	m.log.Info("stopped")
}
