package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/contract"
)

func TestCompressSetting(t *testing.T) {
	none := func(string) string { return "" }
	if c, err := ParseConfig(nil, none, io.Discard); err != nil || c.Compress != CompressAll {
		t.Fatalf("default: %q %v, want %q", c.Compress, err, CompressAll)
	}
	env := func(k string) string { return map[string]string{"LICENSED_COMPRESS": "published"}[k] }
	if c, err := ParseConfig(nil, env, io.Discard); err != nil || c.Compress != CompressPublished {
		t.Fatalf("LICENSED_COMPRESS=published: %q %v", c.Compress, err)
	}
	if c, err := ParseConfig([]string{"--compress", "none"}, env, io.Discard); err != nil || c.Compress != CompressNone {
		t.Fatalf("--compress none over the variable: %q %v", c.Compress, err)
	}
	if _, err := ParseConfig([]string{"--compress", "s2"}, none, io.Discard); err == nil {
		t.Fatal("--compress s2 accepted")
	}
}

// TestCompressedStreams checks which streams the server compresses under
// each value of --compress: by default every stream of the events, the
// event store's stream included; and that a data directory started with
// another value has its streams updated and keeps every event: one
// created under "published" (the default of earlier versions, the store's
// stream plain) is reopened with the default, whose store's stream then
// says S2, and so on through the other values, each start reading back
// the events of all the starts before it.
func TestCompressedStreams(t *testing.T) {
	dir := t.TempDir()
	var opened []string // the accounts opened so far, one per start
	for i, tc := range []struct {
		setting                  string
		store, published, mirror natsjs.StoreCompression
	}{
		{"published", natsjs.NoCompression, natsjs.S2Compression, natsjs.S2Compression},
		{"", natsjs.S2Compression, natsjs.S2Compression, natsjs.S2Compression},
		{"none", natsjs.NoCompression, natsjs.NoCompression, natsjs.NoCompression},
		{"all", natsjs.S2Compression, natsjs.S2Compression, natsjs.S2Compression},
	} {
		var extra []string
		if tc.setting != "" {
			extra = []string{"--compress", tc.setting}
		}
		svc := startService(t, dir, io.Discard, extra...)
		op := operatorToken(t, dir)
		for _, id := range opened {
			if got := svc.expect(200, op, "GET", "/v1/accounts/"+id+"/seats", nil); num(t, got.body, "purchased") != 2 {
				t.Fatalf("--compress %q: account %s read back as %s", tc.setting, id, got.raw)
			}
			if got := svc.expect(200, op, "GET", "/v1/accounts/"+id+"/events", nil); strings.Count(got.raw, "\n") != 1 {
				t.Fatalf("--compress %q: account %s's history read back as %q", tc.setting, id, got.raw)
			}
		}
		id := fmt.Sprintf("acct-%d", i)
		svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": id, "name": "Account " + id, "seats": 2})
		opened = append(opened, id)
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
