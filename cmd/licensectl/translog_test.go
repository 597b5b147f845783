package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/esdb"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/esdbtest"
)

// The transparency log's script (export, offline verify and its refusals,
// log watch) runs with the server's events on the real JetStream store
// (an embedded NATS server) and on EventStoreDB (the in-process double of
// its gRPC API), whose global order the tree follows.
func TestTransparencyLogOnEachStore(t *testing.T) {
	for name, open := range map[string]func(env *testscript.Env) (eventstore.Store, error){
		"jetstream": func(env *testscript.Env) (eventstore.Store, error) {
			return jetstream.Embedded(context.Background(),
				jetstream.ServerConfig{DataDir: filepath.Join(env.WorkDir, "nats"), Port: -1}, jetstream.Config{})
		},
		"esdb": func(env *testscript.Env) (eventstore.Store, error) {
			srv, err := esdbtest.Start()
			if err != nil {
				return nil, err
			}
			env.Defer(srv.Close)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return esdb.Open(ctx, srv.ConnectionString(), nil)
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := scriptParams(open)
			p.Files = []string{filepath.Join("testdata", "script", "translog.txtar")}
			testscript.Run(t, p)
		})
	}
}
