// Command consumer is an example downstream service of the license
// ledger: it keeps a durable JetStream consumer on the stream LEDGER with
// the downstream credential licensed writes (<data-dir>/downstream.nk),
// decodes each message with the CloudEvents Go SDK's NATS binding, and
// keeps its own count of seats and users per account, which it serves as
// JSON on GET /accounts/{account}.
//
// Its state (the counts and the stream sequence of the last message
// applied) is saved to a file before the messages are acknowledged, so
// that a restart neither loses nor counts twice a message: the durable
// consumer redelivers what was not acknowledged, and the saved sequence
// skips what was applied already.
//
//	go run ./examples/consumer --nkey ./data/downstream.nk
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	var cfg Config
	var httpAddr string
	flag.StringVar(&cfg.NATSURL, "nats-url", "nats://127.0.0.1:4222", "URL of licensed's NATS server")
	flag.StringVar(&cfg.NkeySeed, "nkey", "./data/downstream.nk", "the downstream credential: licensed's <data-dir>/downstream.nk")
	flag.StringVar(&cfg.Durable, "durable", "seat-counter", "name of the durable consumer on LEDGER")
	flag.StringVar(&cfg.StateFile, "state", "./seat-counter.json", "file keeping the counts between runs")
	flag.StringVar(&httpAddr, "http-addr", "127.0.0.1:8090", "address serving GET /accounts/{account}; empty: none")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg.Logger = log

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	counter := NewCounter()
	if httpAddr != "" {
		ln, err := net.Listen("tcp", httpAddr)
		if err != nil {
			log.Error("listen", "err", err)
			os.Exit(1)
		}
		srv := &http.Server{Handler: Handler(counter), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		log.Info("serving counts", "url", "http://"+ln.Addr().String()+"/accounts/{account}")
	}
	if err := Run(ctx, cfg, counter); err != nil {
		log.Error("consumer stopped", "err", err)
		os.Exit(1)
	}
}

// Handler serves the counts of an account on GET /accounts/{account}.
func Handler(c *Counter) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /accounts/{account}", func(w http.ResponseWriter, r *http.Request) {
		counts, ok := c.Counts(r.PathValue("account"))
		if !ok {
			http.Error(w, "no such account seen", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(struct {
			Counts
			Available int `json:"available"`
		}{counts, counts.Available()})
	})
	return mux
}

// errConfig is returned by Run for a configuration it cannot use.
var errConfig = errors.New("consumer: configuration")

func checkConfig(cfg Config) error {
	if cfg.NATSURL == "" || cfg.NkeySeed == "" || cfg.Durable == "" || cfg.StateFile == "" {
		return fmt.Errorf("%w: NATS URL, nkey seed, durable name and state file are required", errConfig)
	}
	return nil
}
