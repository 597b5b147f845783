package relay_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	storejs "github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/relay"
)

// TestCompressedStream checks that the published stream works with its
// blocks compressed (Config.Compress): once a block is full and the
// server compressed it, a relay of a restarted server resumes after the
// last message (no event published twice, the new ones after it), and a
// consumer reading from the first message gets every event in order, as
// published.
func TestCompressedStream(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	start := func() *storejs.ServerConfig {
		return &storejs.ServerConfig{DataDir: dir, Port: -1, Durability: storejs.DurabilityInterval}
	}
	srv, err := storejs.StartServer(*start())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { storejs.StopServer(srv) }()
	// About 10,000 events: more than a block (8 MB) once published.
	store, h := filledStore(t, 250, 10)
	relayAll := func() {
		t.Helper()
		_, js := connect(t, srv, "relay")
		r := newRelay(t, relay.Config{Source: store, JS: js, Compress: true})
		stop := runRelay(ctx, r)
		last := records(t, store)
		want := last[len(last)-1].Position
		waitFor(t, ctx, "every event relayed", func() bool { return r.Status().Relayed >= want })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	relayAll()
	blk := filepath.Join(srv.JetStreamConfig().StoreDir, "*", "streams", contract.Stream, "msgs", "1.blk")
	waitFor(t, ctx, "the first block compressed", func() bool {
		m, _ := filepath.Glob(blk)
		if len(m) != 1 {
			return false
		}
		b, err := os.ReadFile(m[0])
		return err == nil && len(b) > 3 && string(b[:3]) == "cmp"
	})

	// A restarted server loads the blocks from disk.
	storejs.StopServer(srv)
	if srv, err = storejs.StartServer(*start()); err != nil {
		t.Fatal(err)
	}
	if err := h.account(ctx, "later", 2); err != nil {
		t.Fatal(err)
	}
	relayAll()

	_, djs := connect(t, srv, "downstream")
	d := startDownstream(t, ctx, djs, contract.Stream, "all")
	recs := records(t, store)
	waitFor(t, ctx, "every event consumed", func() bool { return d.count() >= len(recs) })
	time.Sleep(50 * time.Millisecond) // let a duplicate show if there is one
	msgs, dups := d.snapshot()
	if len(dups) > 0 || len(msgs) != len(recs) {
		t.Fatalf("consumer got %d events (%d duplicates), store holds %d", len(msgs), len(dups), len(recs))
	}
	for i, m := range msgs {
		checkMessage(t, recs[i], m.Subject(), m.Headers(), m.Data())
		if t.Failed() {
			t.Fatalf("message %d of %d", i, len(msgs))
		}
	}
	_, js := connect(t, srv, "check")
	st, err := js.Stream(ctx, contract.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config.Compression; got != jetstream.S2Compression {
		t.Fatalf("stream compression %v, want S2", got)
	}
}
