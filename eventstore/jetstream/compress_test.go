package jetstream_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/cputime"
)

// BenchmarkColdExpectation measures what the stream's blocks cost the
// first append of a cold account: the server checks the append's
// per-account expectation (Nats-Expected-Last-Subject-Sequence over
// "ledger.<account>.*") by loading the account's last message
// (fileStore.LoadLastMsg), which loads, and on a compressed stream
// decompresses, the whole block that holds it (4 or 8 MB once full).
//
// The stream holds four phases of accounts, each phase's events filling
// about an 8 MB block more, so that the last event of a phase's accounts lies
// in a full block of its own; a fifth phase fills the block being
// written. Each iteration restarts the server (the blocks are then in the
// operating system's page cache, not the server's) and appends, with the
// expectation, once for an account of each full phase (cold-ms: the
// first load of its block) and then for another account of the same
// phase (warm-ms: the block loaded), beside each other in the same run.
// cold-cpu-ms is the process's CPU (client and server) per cold append.
//
// Each runs with the store's 4 MB blocks (the default) and with the
// server's 8 MB (Config.LargeBlocks).
func BenchmarkColdExpectation(b *testing.B) {
	for _, compress := range []bool{false, true} {
		for _, large := range []bool{true, false} {
			b.Run(fmt.Sprintf("compress=%v/blocks=%dMB", compress, map[bool]int{true: 8, false: 4}[large]), func(b *testing.B) {
				benchColdExpectation(b, compress, large)
			})
		}
	}
}

func benchColdExpectation(b *testing.B, compress, largeBlocks bool) {
	const (
		phases        = 5
		perPhase      = 200     // accounts
		phaseBytes    = 9 << 20 // a block (8 MB, or two of 4 MB) and a bit
		blockEstimate = 8 << 20 // the file store's block for limits streams
	)
	ctx := context.Background()
	dir := b.TempDir()
	cfg := jetstream.Config{Duplicates: jetstream.ShortDuplicates, Compress: compress, LargeBlocks: largeBlocks}
	scfg := jetstream.ServerConfig{DataDir: dir, Port: -1, Durability: jetstream.DurabilityInterval}
	s, err := jetstream.Embedded(ctx, scfg, cfg)
	if err != nil {
		b.Fatal(err)
	}
	js, err := natsjs.New(s.Conn(), natsjs.WithPublishAsyncMaxPending(1024))
	if err != nil {
		b.Fatal(err)
	}
	account := func(p, i int) int { return p*perPhase + i }
	last := map[int]uint64{} // account: sequence of its last message
	msg := func(a int) *nats.Msg {
		m := rawMsg(b, a)
		m.Header.Set("Nats-Expected-Last-Subject-Sequence", strconv.FormatUint(last[a], 10))
		m.Header.Set("Nats-Expected-Last-Subject-Sequence-Subject", "ledger."+benchStream(a).Account+".*")
		return m
	}
	size := len(msg(0).Data) + 300
	for p := range phases {
		for round := range phaseBytes / size / perPhase {
			for i := range perPhase {
				a := account(p, i)
				ack, err := js.PublishMsg(ctx, msg(a))
				if err != nil {
					b.Fatalf("phase %d round %d: %v", p, round, err)
				}
				last[a] = ack.Sequence
			}
		}
	}
	info, err := js.Stream(ctx, "LEDGER")
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%d messages, %d MB (about %d blocks of 8 MB)", info.CachedInfo().State.Msgs, info.CachedInfo().State.Bytes>>20, info.CachedInfo().State.Bytes/blockEstimate+1)
	time.Sleep(2 * jetstream.ShortDuplicates) // nothing for a restart to reread
	s.Close()

	var cold, warm []time.Duration
	var cpu time.Duration
	b.ResetTimer()
	for n := range b.N {
		b.StopTimer()
		s, err := jetstream.Embedded(ctx, scfg, cfg)
		if err != nil {
			b.Fatal(err)
		}
		js, err := natsjs.New(s.Conn())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for p := range phases - 1 {
			for k, into := range []*[]time.Duration{&cold, &warm} {
				a := account(p, (2*n+k)%perPhase)
				m := msg(a)
				c0, t0 := cputime.Process(), time.Now()
				ack, err := js.PublishMsg(ctx, m)
				d := time.Since(t0)
				if err != nil {
					b.Fatalf("account %d: %v", a, err)
				}
				if k == 0 {
					cpu += cputime.Process() - c0
				}
				last[a] = ack.Sequence
				*into = append(*into, d)
			}
		}
		b.StopTimer()
		time.Sleep(2 * jetstream.ShortDuplicates)
		s.Close()
		b.StartTimer()
	}
	b.StopTimer()
	ms := func(ds []time.Duration, q float64) float64 {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(ms(cold, 0.5), "cold-p50-ms")
	b.ReportMetric(ms(cold, 1), "cold-max-ms")
	b.ReportMetric(ms(warm, 0.5), "warm-p50-ms")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(len(cold)), "cold-cpu-ms")
	b.ReportMetric(float64(len(cold)), "cold-appends")
}

// TestCompressionChange checks what changing Config.Compress does to a
// stream that already holds events (a data directory of an earlier
// version): the store updates the stream's setting in place, the blocks
// already written keep their form, the server applies the new setting to
// the blocks it fills from its next start on, and every event reads back,
// from the block files and through the server, from a stream of plain and
// compressed blocks; and the same the other way round.
func TestCompressionChange(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	scfg := jetstream.ServerConfig{DataDir: dir, Port: -1, Durability: jetstream.DurabilityInterval}
	big := strings.Repeat("x", 3000)
	// start opens the store with compress and appends about 9 MB: a
	// block fills.
	start := func(compress bool, write bool, ids *[]string) *jetstream.Store {
		t.Helper()
		// 8 MB blocks: each start's appends fill one.
		s, err := jetstream.Embedded(ctx, scfg, jetstream.Config{Compress: compress, LargeBlocks: true})
		if err != nil {
			t.Fatal(err)
		}
		st := storeStream(t, s)
		if got, want := st.CachedInfo().Config.Compression, map[bool]natsjs.StoreCompression{true: natsjs.S2Compression}[compress]; got != want {
			t.Fatalf("stream compression %v, want %v", got, want)
		}
		for i := 0; write && i < 30; i++ {
			evs := events(100)
			for j := range evs {
				evs[j].Data = []byte(`{"seats":1,"note":"` + big + `"}`)
			}
			if _, err := s.Append(ctx, eventstore.LedgerStream(fmt.Sprintf("acct%d", i%7)), eventstore.Any(), evs...); err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				*ids = append(*ids, e.ID.String())
			}
		}
		return s
	}
	blocks := func(s *jetstream.Store) []bool {
		t.Helper()
		blks, err := filepath.Glob(filepath.Join(s.Server().JetStreamConfig().StoreDir, "*", "streams", jetstream.StreamName(s), "msgs", "*.blk"))
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(blks, func(a, b string) int { return len(a) - len(b) }) // 1.blk ... 9.blk, 10.blk
		var out []bool
		for _, f := range blks {
			out = append(out, compressed(t, []string{f}))
		}
		return out
	}
	// readBack checks that every event reads back in order, from the
	// files and through the server.
	var ids []string
	readBack := func(s *jetstream.Store) {
		t.Helper()
		nc, err := nats.Connect(s.Server().ClientURL(), nats.InProcessServer(s.Server()))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		viaServer, err := jetstream.Open(ctx, nc, jetstream.Config{LargeBlocks: true})
		if err != nil {
			t.Fatal(err)
		}
		defer viaServer.Close()
		for _, st := range []*jetstream.Store{s, viaServer} {
			before := jetstream.FileReads(s)
			var got []string
			for rec, err := range st.ReadAll(ctx, 0) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, rec.ID.String())
			}
			if !slices.Equal(got, ids) {
				t.Fatalf("read back %d events, want %d in order", len(got), len(ids))
			}
			if fromFiles := jetstream.FileReads(s) - before; (st == s) != (fromFiles == uint64(len(ids))) {
				t.Fatalf("%d of %d events read from the files", fromFiles, len(ids))
			}
		}
	}
	waitCompressed := func(s *jetstream.Store, want []bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for got := blocks(s); !slices.Equal(got, want); got = blocks(s) {
			if time.Now().After(deadline) {
				t.Fatalf("compressed blocks %v, want %v", got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	s := start(false, true, &ids)
	s.Close()
	// The first start with compression records it: the server loaded the
	// stream before.
	s = start(true, true, &ids)
	waitCompressed(s, []bool{false, false, false})
	s.Close()
	// From the next start on, the blocks filled are compressed; those
	// written before stay as they are.
	s = start(true, true, &ids)
	waitCompressed(s, []bool{false, false, true, false})
	readBack(s)
	s.Close()
	// Back to plain blocks: the compressed one stays compressed.
	s = start(false, false, &ids)
	s.Close()
	s = start(false, true, &ids)
	waitCompressed(s, []bool{false, false, true, false, false})
	readBack(s)
	s.Close()
}
