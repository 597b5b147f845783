package esdb_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/esdb"
	"github.com/licenseledger/ledger/eventstore/eventstoretest"
	"github.com/licenseledger/ledger/internal/esdbtest"
)

// startServer starts an in-process server that the test stops.
func startServer(t testing.TB) *esdbtest.Server {
	t.Helper()
	srv, err := esdbtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// open opens a store on connString that the test closes.
func open(t testing.TB, connString string) *esdb.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := esdb.Open(ctx, connString, testLogger(t))
	if err != nil {
		t.Fatalf("Open(%s): %v", connString, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// rawClient returns a client of the esdb module itself, for writing what the
// adapter never writes and for comparing with the adapter.
func rawClient(t testing.TB, connString string) *client.Client {
	t.Helper()
	conf, err := client.ParseConnectionString(connString)
	if err != nil {
		t.Fatal(err)
	}
	conf.Logger = client.NoopLogging()
	c, err := client.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestConformance(t *testing.T) {
	// Each case has its own server. The deadline is generous because the
	// retrying writers reread their stream over gRPC on every conflict,
	// which takes seconds under -race on a loaded machine.
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		return open(t, startServer(t).ConnectionString())
	}, eventstoretest.Timeout(30*time.Second))
}

// TestConformanceRealServer runs the suite against the EventStoreDB or
// KurrentDB node named by EVENTSTORE_URL, for instance
// "esdb://localhost:2113?tls=false" with a node started by
// "docker run -p 2113:2113 eventstore/eventstore:24.10 --insecure".
func TestConformanceRealServer(t *testing.T) {
	url := os.Getenv("EVENTSTORE_URL")
	if url == "" {
		t.Skip("EVENTSTORE_URL is not set; set it to an esdb:// connection string (with ?tls=false for an insecure node) to test against a real server")
	}
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store {
		return open(t, url)
	}, eventstoretest.SharedLog(), eventstoretest.Timeout(30*time.Second))
}
