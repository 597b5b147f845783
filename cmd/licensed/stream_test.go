package main

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/esdbtest"
)

// With EventStoreDB, the published stream the relay publishes to exists once
// Start returns, before any event is relayed: a downstream service that
// connects as soon as licensed serves finds the stream, in the service's
// account and as the downstream mirror, and reads an event appended then.
func TestEventStreamExistsOnceServing(t *testing.T) {
	esrv, err := esdbtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(esrv.Close)
	dir := t.TempDir()
	cfg, err := ParseConfig([]string{
		"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--store", esrv.ConnectionString(),
	}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		m.Close()
		t.Fatal(err)
	}
	svc := &running{t: t, m: m, base: "http://" + m.HTTPAddr()}
	defer svc.stop()
	// Right away, without waiting for readiness or for the relay.
	js, err := natsjs.New(connectAsLicensed(t, svc, dir))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Stream(ctx, contract.Stream); err != nil {
		t.Fatalf("the published stream once licensed serves: %v", err)
	}

	svc.waitReady()
	op := operatorToken(t, dir)
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 1})
	creds, err := nats.NkeyOptionFromSeed(filepath.Join(dir, "downstream.nk"))
	if err != nil {
		t.Fatal(err)
	}
	dc, err := nats.Connect(m.NATSURL(), creds)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	djs, err := natsjs.New(dc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := djs.CreateOrUpdateConsumer(ctx, "LEDGER", natsjs.ConsumerConfig{AckPolicy: natsjs.AckNonePolicy, FilterSubject: "ledger.>"})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := c.Next(natsjs.FetchMaxWait(20 * time.Second))
	if err != nil {
		t.Fatalf("the mirror's first event: %v", err)
	}
	if msg.Subject() != "ledger.acme.AccountOpened" {
		t.Fatalf("the mirror's first event is on %s", msg.Subject())
	}
}
