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
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
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
	m := NewMain(cfg, newLogger(cfg, os.Stderr))
	if err := m.Start(ctx); err != nil {
		m.log.Error("start failed", "err", err)
		m.Close()
		os.Exit(1)
	}
	err = m.Wait(ctx)
	stop()
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		m.log.Error("stopped with an error", "err", err)
		os.Exit(1)
	}
	m.log.Info("stopped")
}
