package httpapi_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/webhooks"
)

// One NATS server for the package's tests: each env keeps its webhook
// endpoints in a bucket and a log stream of its own on it.
var (
	natsOnce sync.Once
	natsSrv  *server.Server
	natsErr  error
	hooksN   atomic.Int64
)

func sharedNATS(t testing.TB) *server.Server {
	natsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "httpapi-nats-")
		if err != nil {
			natsErr = err
			return
		}
		natsSrv, natsErr = jetstream.StartServer(jetstream.ServerConfig{DataDir: dir, Port: -1, Durability: jetstream.DurabilityInterval})
	})
	if natsErr != nil {
		t.Fatal(natsErr)
	}
	return natsSrv
}

// openWebhooks opens a webhook service of its own for an env. It
// registers endpoints but delivers nothing: deliveries are the webhooks
// package's tests.
func openWebhooks(t testing.TB) *webhooks.Service {
	t.Helper()
	srv := sharedNATS(t)
	nc, err := nats.Connect(srv.ClientURL(), nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	n := hooksN.Add(1)
	s, err := webhooks.Open(context.Background(), webhooks.Config{
		JS: js, Bucket: fmt.Sprintf("webhooks_%d", n), LogStream: fmt.Sprintf("WEBHOOK_DELIVERIES_%d", n),
		EventTypes: []string{"dev.licenseledger.user.deactivated.v1", "dev.licenseledger.user.added.v1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
