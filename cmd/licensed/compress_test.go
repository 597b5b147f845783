package main

import (
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/contract"
)

func TestCompressSetting(t *testing.T) {
	none := func(string) string { return "" }
	if c, err := ParseConfig(nil, none, io.Discard); err != nil || c.Compress != CompressPublished {
		t.Fatalf("default: %q %v, want %q", c.Compress, err, CompressPublished)
	}
	env := func(k string) string { return map[string]string{"LICENSED_COMPRESS": "all"}[k] }
	if c, err := ParseConfig(nil, env, io.Discard); err != nil || c.Compress != CompressAll {
		t.Fatalf("LICENSED_COMPRESS=all: %q %v", c.Compress, err)
	}
	if c, err := ParseConfig([]string{"--compress", "none"}, env, io.Discard); err != nil || c.Compress != CompressNone {
		t.Fatalf("--compress none over the variable: %q %v", c.Compress, err)
	}
	if _, err := ParseConfig([]string{"--compress", "s2"}, none, io.Discard); err == nil {
		t.Fatal("--compress s2 accepted")
	}
}

// TestCompressedStreams checks which streams the server compresses under
// each value of --compress: by default the published stream and the
// downstream mirror, not the event store's stream; and that a data
// directory started with another value has its streams updated.
func TestCompressedStreams(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		setting                  string
		store, published, mirror natsjs.StoreCompression
	}{
		{"", natsjs.NoCompression, natsjs.S2Compression, natsjs.S2Compression},
		{"all", natsjs.S2Compression, natsjs.S2Compression, natsjs.S2Compression},
		{"none", natsjs.NoCompression, natsjs.NoCompression, natsjs.NoCompression},
	} {
		var extra []string
		if tc.setting != "" {
			extra = []string{"--compress", tc.setting}
		}
		svc := startService(t, dir, io.Discard, extra...)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		got := map[string]natsjs.StoreCompression{}
		for _, s := range []struct{ seed, stream string }{
			{serviceSeedFile, "LEDGER"},
			{serviceSeedFile, contract.Stream},
			{downstreamSeedFile, jetstream.DownstreamStream},
		} {
			creds, err := nats.NkeyOptionFromSeed(filepath.Join(dir, s.seed))
			if err != nil {
				t.Fatal(err)
			}
			nc, err := nats.Connect(svc.m.NATSURL(), creds)
			if err != nil {
				t.Fatal(err)
			}
			js, err := natsjs.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			st, err := js.Stream(ctx, s.stream)
			if err != nil {
				t.Fatalf("%s: %v", s.stream, err)
			}
			got[s.seed+"/"+s.stream] = st.CachedInfo().Config.Compression
			nc.Close()
		}
		cancel()
		svc.stop()
		want := map[string]natsjs.StoreCompression{
			serviceSeedFile + "/LEDGER":                           tc.store,
			serviceSeedFile + "/" + contract.Stream:               tc.published,
			downstreamSeedFile + "/" + jetstream.DownstreamStream: tc.mirror,
		}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("--compress %q: %s compression %v, want %v", tc.setting, k, got[k], w)
			}
		}
	}
}
