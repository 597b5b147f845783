package keys

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/cputime"
	"github.com/licenseledger/ledger/internal/pii"
)

// benchLayouts are the key store layouts BenchmarkDestroy compares.
var benchLayouts = []struct {
	name string
	cfg  Config
}{
	// One stream, as before the shards: 4 MB blocks.
	{"single", Config{single: true}},
	// The same with S2-compressed blocks.
	{"single-s2", Config{single: true, stream: func(c *jetstream.StreamConfig) { c.Compression = jetstream.S2Compression }}},
	// The layout Open applies: Shards streams.
	{"shards=8", Config{}},
	// Twice as many shards.
	{"shards=16", Config{shards: 16}},
}

// BenchmarkDestroy destroys random keys of a store holding keys=N keys,
// for each layout. Mode "inline" waits for each erasure in the loop
// (Destroy and Flush: the command path before erasures moved to the
// background); mode "background" times Destroy alone, back to back, while
// the eraser works, and waits for the erasures after the loop.
//
// ns/op and p50-µs, p99-µs are the latency of the timed call;
// erase-ms/op is the wall time from the first Destroy until every erasure
// is done, per key; cpu-ms/op the CPU time of the process (client and
// embedded server) over the same span, per key: the CPU per erasure;
// written-KB/op the bytes the process wrote to files, per key.
//
// Each iteration destroys a different key, so run it with a fixed count
// below N, for example:
//
//	go test -run '^$' -bench BenchmarkDestroy -benchtime 200x ./eventstore/jetstream/keys/
func BenchmarkDestroy(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		for _, l := range benchLayouts {
			for _, mode := range []string{"inline", "background"} {
				b.Run(fmt.Sprintf("keys=%d/layout=%s/mode=%s", n, l.name, mode), func(b *testing.B) {
					benchDestroy(b, n, l.cfg, mode)
				})
			}
		}
	}
}

func benchDestroy(b *testing.B, n int, cfg Config, mode string) {
	ctx := b.Context()
	ts := newTestServer(b)
	js := ts.connect()
	s, err := Open(ctx, js, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close(ctx) })
	ids := fillKeys(b, s, n)
	victims := rand.New(rand.NewPCG(1, 2)).Perm(n)

	lat := make([]time.Duration, 0, 1024)
	cpu0, w0 := cputime.Process(), writtenBytes(b)
	start := time.Now()
	i := 0
	for b.Loop() {
		if i >= n {
			b.Fatalf("more iterations than keys (%d): run with -benchtime Nx, N < %d", n, n)
		}
		t0 := time.Now()
		if err := s.Destroy(ctx, ids[victims[i]]); err != nil {
			b.Fatal(err)
		}
		if mode == "inline" {
			if err := s.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		}
		lat = append(lat, time.Since(t0))
		i++
	}
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	wall, cpu, written := time.Since(start), cputime.Process()-cpu0, writtenBytes(b)-w0

	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(wall.Seconds()*1000/float64(i), "erase-ms/op")
	b.ReportMetric(cpu.Seconds()*1000/float64(i), "cpu-ms/op")
	b.ReportMetric(float64(written)/1024/float64(i), "written-KB/op")

	blocks, err := ts.blockSizes(s.shards[0].name)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("keys=%d: block files of %s %v", n, s.shards[0].name, blocks)
}

// fillKeys puts n keys with ids like a service's (account id, ULID-sized
// user id) into s's streams and returns the ids.
func fillKeys(b *testing.B, s *Store, n int) []string {
	b.Helper()
	ctx := b.Context()
	ids := make([]string, n)
	key := make([]byte, pii.KeySize)
	for i := range n {
		account, user := "acct-"+strconv.Itoa(i%97), fmt.Sprintf("01J%023d", i)
		ids[i] = pii.KeyID(account, user)
		p := s.shard(account, user)
		for j := range key {
			key[j] = byte(rand.Uint32())
		}
		// As Put publishes.
		if _, err := s.js.PublishAsync(p.subject(account, user), bytes.Clone(key),
			jetstream.WithExpectStream(p.name), jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 || i == n-1 {
			select {
			case <-s.js.PublishAsyncComplete():
			case <-ctx.Done():
				b.Fatal(ctx.Err())
			}
		}
	}
	return ids
}

// blockSizes lists the sizes of the block files of the key stream name.
func (ts *testServer) blockSizes(name string) ([]string, error) {
	dirs, err := os.ReadDir(ts.Dir + "/jetstream")
	if err != nil {
		return nil, err
	}
	var sizes []string
	for _, d := range dirs {
		msgs := ts.Dir + "/jetstream/" + d.Name() + "/streams/" + name + "/msgs"
		es, err := os.ReadDir(msgs)
		if err != nil {
			continue
		}
		for _, e := range es {
			if fi, err := e.Info(); err == nil {
				sizes = append(sizes, fmt.Sprintf("%s=%dKB", e.Name(), fi.Size()/1024))
			}
		}
	}
	return sizes, nil
}

// writtenBytes returns the bytes the process passed to write calls so far
// (wchar in /proc/self/io), 0 where there is no such file.
func writtenBytes(b *testing.B) int64 {
	f, err := os.Open("/proc/self/io")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("wchar: ")); ok {
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	return 0
}

// BenchmarkOpen opens a Store on 100,000 keys, none or 10 of them
// destroyed but not erased, in the single-stream layout and in the shard
// streams. With none, Open sees in one stream info request per stream
// that no subject holds two messages; with 10, it finds them in the
// per-subject message counts. erasures/op checks what it found.
func BenchmarkOpen(b *testing.B) {
	for _, l := range benchLayouts[:3:3] {
		if l.cfg.stream != nil {
			continue
		}
		b.Run("layout="+l.name, func(b *testing.B) { benchOpen(b, l.cfg) })
	}
}

func benchOpen(b *testing.B, cfg Config) {
	ctx := b.Context()
	ts := newTestServer(b)
	js := ts.connect()
	s, err := Open(ctx, js, cfg)
	if err != nil {
		b.Fatal(err)
	}
	ids := fillKeys(b, s, 100_000)
	for _, pending := range []int{0, 10} {
		b.Run(fmt.Sprintf("keys=100000/pending=%d", pending), func(b *testing.B) {
			s.er.pause()
			for _, id := range ids[:pending] {
				if err := s.Destroy(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
			found := 0
			for b.Loop() {
				o, err := Open(ctx, js, Config{paused: true, single: cfg.single})
				if err != nil {
					b.Fatal(err)
				}
				found += int(o.er.pending())
				o.er.abort()
			}
			b.ReportMetric(float64(found)/float64(b.N), "erasures/op")
			s.er.resume()
			if err := s.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
	if err := s.Close(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPutNew stores new keys from 16 goroutines, with the JetStream
// client's Publish and its options (as PutNew wrote them before) and with
// PutNew (a reply box of the Store's and the acknowledgement read without
// encoding/json), reporting the process's CPU time (client and embedded
// server) and allocations per key.
//
//	go test -run '^$' -bench PutNew -benchtime 20000x -count 5 ./eventstore/jetstream/keys/
func BenchmarkPutNew(b *testing.B) {
	ctx := b.Context()
	ts := newTestServer(b)
	s, err := Open(ctx, ts.connect(), Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close(ctx) })
	key := make([]byte, pii.KeySize)
	var ids atomic.Int64
	for _, way := range []struct {
		name string
		put  func(id string) error
	}{
		{"client-publish", func(id string) error {
			account, user, _ := splitID(id)
			p := s.shard(account, user)
			_, err := s.js.Publish(ctx, p.subject(account, user), key,
				jetstream.WithExpectStream(p.name), jetstream.WithExpectLastSequencePerSubject(0))
			return err
		}},
		{"putnew", func(id string) error {
			stored, err := s.PutNew(ctx, id, key)
			if err == nil && !stored {
				err = fmt.Errorf("key %s not stored", id)
			}
			return err
		}},
	} {
		b.Run(way.name, func(b *testing.B) {
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			cpu0 := cputime.Process()
			for range 16 {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						n := ids.Add(1)
						if err := way.put(fmt.Sprintf("acct%04d.u%07d", n%1000, n)); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64((cputime.Process()-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}
