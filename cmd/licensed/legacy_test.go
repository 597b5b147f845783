package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/contract"
)

// A data directory of a version without the published stream: its events
// are stored, there is no EVENTS stream, and the downstream LEDGER stream
// mirrors the store's stream. On start licensed publishes every stored
// event into EVENTS, in order, and replaces the mirror: downstream
// consumers read the whole history in contract v2.
func TestExistingDataDirectoryPublished(t *testing.T) {
	dir := t.TempDir()
	svc := startService(t, dir, io.Discard)
	op := operatorToken(t, dir)
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 3})
	for _, n := range []string{"Ada", "Bob"} {
		svc.expect(201, op, "POST", "/v1/accounts/acme/users", map[string]any{"name": n, "email": n + "@acme.test", "role": "admin"})
	}
	svc.stop()

	// Make it the data directory of the earlier version.
	auth, cred, err := embeddedAuth(backendSettings{dataDir: dir, log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := jetstream.StartServer(jetstream.ServerConfig{DataDir: filepath.Join(dir, "nats"), Port: -1, Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL(), cred)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, contract.Stream); err != nil {
		t.Fatal(err)
	}
	djs, err := natsjs.NewWithAPIPrefix(nc, jetstream.DownstreamAPIPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := djs.DeleteStream(ctx, jetstream.DownstreamStream); err != nil {
		t.Fatal(err)
	}
	old := jetstream.MirrorConfig(1, false)
	old.Mirror = &natsjs.StreamSource{Name: "LEDGER", External: old.Mirror.External}
	old.RePublish = nil
	// The server removes a deleted stream's files in the background, and
	// a create right after it may answer 500 for a moment (the service
	// retries it too: jetstream.EnsureDownstreamMirror).
	for {
		_, err := djs.CreateStream(ctx, old)
		var apiErr *natsjs.APIError
		if err == nil {
			break
		}
		if !errors.As(err, &apiErr) || apiErr.Code != 500 || ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	nc.Close()
	jetstream.StopServer(srv)

	again := startService(t, dir, io.Discard)
	defer again.stop()
	creds, err := nats.NkeyOptionFromSeed(filepath.Join(dir, "downstream.nk"))
	if err != nil {
		t.Fatal(err)
	}
	dc, err := nats.Connect(again.m.NATSURL(), creds)
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	ds, err := natsjs.New(dc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ds.OrderedConsumer(ctx, jetstream.DownstreamStream, natsjs.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ledger.acme.AccountOpened", "ledger.acme.UserAdded", "ledger.acme.UserAdded"}
	for i, subj := range want {
		m, err := c.Next(natsjs.FetchMaxWait(20 * time.Second))
		if err != nil {
			t.Fatalf("downstream event %d: %v", i, err)
		}
		r := decode(t, &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
		if r.subject != subj || !strings.HasPrefix(r.typ, contract.TypePrefix) {
			t.Fatalf("downstream event %d: %s %s, want %s in contract v2", i, r.subject, r.typ, subj)
		}
	}
}
