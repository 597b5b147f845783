package jetstream_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/cputime"
)

const benchAccounts = 1000

// benchConfig is the store's configuration in the benchmarks of appends:
// the default, or with LEDGER_LARGE_BLOCKS=1 the server's 8 MB blocks.
var benchConfig = jetstream.Config{LargeBlocks: os.Getenv("LEDGER_LARGE_BLOCKS") == "1"}

// BenchmarkAppend appends single-event commands through an embedded store
// with the default durability (fsync: group sync) and a per-stream
// expectation each, over 1,000 accounts: 1,000 goroutines, each owning one
// account.
func BenchmarkAppend(b *testing.B) {
	s := newStore(b, benchConfig)
	benchAppend(b, s)
}

// BenchmarkAppendCoalesced is BenchmarkAppend on a server that syncs every
// write itself (SyncAlways, as an external server may), the store
// coalescing appends into atomic batches, with 1 to 8 batches in flight.
func BenchmarkAppendCoalesced(b *testing.B) {
	for _, n := range []int{1, 2, 4, 8} {
		b.Run(fmt.Sprintf("committers=%d", n), func(b *testing.B) {
			benchAppend(b, newServerStore(b, jetstream.Config{Committers: n}))
		})
	}
}

// BenchmarkAppend64 is BenchmarkAppend with 64 writers (as licenseload's
// 64 clients), each owning one account, with each durability of an
// embedded server: fewer appends wait for each sync than with 1,000.
func BenchmarkAppend64(b *testing.B) {
	for _, d := range []jetstream.Durability{jetstream.DurabilityFsync, jetstream.DurabilityInterval} {
		b.Run(string(d), func(b *testing.B) {
			s, err := jetstream.Embedded(context.Background(), jetstream.ServerConfig{DataDir: b.TempDir(), Port: -1, Durability: d}, jetstream.Config{MaxBatch: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			benchAppendN(b, s, 64)
		})
	}
}

func benchAppend(b *testing.B, s *jetstream.Store) { benchAppendN(b, s, benchAccounts) }

func benchAppendN(b *testing.B, s *jetstream.Store, benchAccounts int) {
	ctx := context.Background()
	// Every account's stream exists and its head is cached before the
	// clock starts, as in a service that has been running for a while.
	for a := range benchAccounts {
		if _, err := s.Append(ctx, benchStream(a), eventstore.NoStream(), events(1)...); err != nil {
			b.Fatal(err)
		}
	}
	batches0, batched0 := jetstream.BatchStats(s)
	rounds0 := jetstream.SyncRounds(s)
	var next atomic.Int64
	var wg sync.WaitGroup
	cpu := cputime.Process()
	b.ResetTimer()
	for a := range benchAccounts {
		wg.Go(func() {
			stream := benchStream(a)
			for n := uint64(1); next.Add(1) <= int64(b.N); n++ {
				if _, err := s.Append(ctx, stream, eventstore.ExpectRevisionAfter(n), events(1)...); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	reportRate(b, b.N, cputime.Process()-cpu)
	if batches, batched := jetstream.BatchStats(s); batches > batches0 {
		b.ReportMetric(float64(batched-batched0)/float64(batches-batches0), "events/batch")
	}
	if rounds := jetstream.SyncRounds(s); rounds > rounds0 {
		b.ReportMetric(float64(b.N)/float64(rounds-rounds0), "events/sync")
	}
}

func benchStream(a int) eventstore.StreamID {
	return eventstore.LedgerStream(fmt.Sprintf("acct%04d", a))
}

// reportRate reports events/s and the CPU time the process (client and
// embedded server) spent per event, which a machine shared with other work
// distorts less than the rate.
func reportRate(b *testing.B, events int, cpu time.Duration) {
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Microseconds())/float64(events), "cpu-us/event")
}

// rawMsg returns a message as the store would write it for account a,
// without the revision and expectation headers.
func rawMsg(b *testing.B, a int) *nats.Msg {
	stream := benchStream(a)
	ev := events(1)[0]
	body, err := eventstore.CloudEvent(stream, ev)
	if err != nil {
		b.Fatal(err)
	}
	m := nats.NewMsg("ledger." + stream.Account + ".SeatsPurchased")
	m.Data = body
	m.Header.Set("Content-Type", eventstore.CloudEventContentType)
	m.Header.Set("Nats-Msg-Id", ev.ID.String())
	return m
}

// BenchmarkRawPublish publishes the same envelopes with raw JetStream async
// publish, one message each, no expectation, on a server that syncs every
// write (SyncAlways): every message is synced on its own.
func BenchmarkRawPublish(b *testing.B) {
	s := newServerStore(b, jetstream.Config{})
	js, err := natsjs.New(s.Conn(), natsjs.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	msgs := make([]*nats.Msg, benchAccounts)
	for a := range msgs {
		msgs[a] = rawMsg(b, a)
		msgs[a].Header.Del("Nats-Msg-Id")
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := js.PublishMsgAsync(msgs[i%benchAccounts], natsjs.WithStallWait(10*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRawBatch publishes the same envelopes, each with its own
// Nats-Msg-Id, as JetStream atomic batches of 1,000 messages (one per
// account) straight over nats.go on a server that syncs every write
// (SyncAlways): the best JetStream does with its own fsync, one sync per
// batch. inflight batches are staged at once.
// With check, each message also carries the per-account expectation the
// store sends (one batch in flight only: the expectations of the next
// batch depend on this one's sequences).
func BenchmarkRawBatch(b *testing.B) {
	for _, c := range []struct {
		inflight int
		check    bool
	}{{1, false}, {4, false}, {1, true}} {
		name := fmt.Sprintf("inflight=%d", c.inflight)
		if c.check {
			name += "/check"
		}
		b.Run(name, func(b *testing.B) {
			s := newServerStore(b, jetstream.Config{})
			nc := s.Conn()
			batches := (b.N + benchAccounts - 1) / benchAccounts
			var next atomic.Int64
			var last atomic.Uint64 // sequence of the last message stored
			lastOf := make([]uint64, benchAccounts)
			var wg sync.WaitGroup
			cpu := cputime.Process()
			b.ResetTimer()
			for range c.inflight {
				wg.Go(func() {
					msgs := make([]*nats.Msg, benchAccounts)
					for next.Add(1) <= int64(batches) {
						for a := range msgs {
							msgs[a] = rawMsg(b, a)
							if c.check {
								msgs[a].Header.Set("Nats-Expected-Last-Subject-Sequence", strconv.FormatUint(lastOf[a], 10))
								msgs[a].Header.Set("Nats-Expected-Last-Subject-Sequence-Subject", "ledger."+benchStream(a).Account+".*")
							}
						}
						seq, err := rawBatch(nc, msgs)
						if err != nil {
							b.Error(err)
							return
						}
						if c.check {
							for a := range lastOf {
								lastOf[a] = seq - uint64(benchAccounts-1-a)
							}
						}
						last.Store(seq)
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			reportRate(b, batches*benchAccounts, cputime.Process()-cpu)
			if got, want := last.Load(), uint64(batches*benchAccounts); got != want && c.inflight == 1 {
				b.Fatalf("last sequence %d, want %d", got, want)
			}
		})
	}
}

// rawBatch publishes msgs as one atomic batch and returns the sequence of
// the last.
func rawBatch(nc *nats.Conn, msgs []*nats.Msg) (uint64, error) {
	id := nuid.Next()
	for i, m := range msgs {
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
	}
	last := msgs[len(msgs)-1]
	last.Header.Set("Nats-Batch-Commit", "1")
	for _, m := range msgs[:len(msgs)-1] {
		if err := nc.PublishMsg(m); err != nil {
			return 0, err
		}
	}
	resp, err := nc.RequestMsg(last, 10*time.Second)
	if err != nil {
		return 0, err
	}
	var ack struct {
		Error *natsjs.APIError `json:"error"`
		Seq   uint64           `json:"seq"`
		Count int              `json:"count"`
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, err
	}
	if ack.Error != nil {
		return 0, ack.Error
	}
	if ack.Count != len(msgs) {
		return 0, fmt.Errorf("batch of %d acknowledged %d", len(msgs), ack.Count)
	}
	return ack.Seq, nil
}

// BenchmarkFsync writes 300 bytes and fsyncs, in a temporary directory on
// the disk the benchmarks' stores use: the ceiling of anything that syncs
// once per write.
func BenchmarkFsync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "f"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 300)
	b.ResetTimer()
	for range b.N {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fsyncs/s")
}

// BenchmarkAppendAuth is BenchmarkAppend64 with fsync durability on a
// server without authentication beside one requiring it, with the
// downstream account's mirror of the stream that such a server keeps: the
// cost of the mirror (a second copy of every event) on appends.
func BenchmarkAppendAuth(b *testing.B) {
	for _, c := range []struct{ auth, mirror bool }{{false, false}, {true, false}, {true, true}} {
		auth := c.auth
		b.Run(fmt.Sprintf("auth=%v/mirror=%v", c.auth, c.mirror), func(b *testing.B) {
			dir := b.TempDir()
			scfg := jetstream.ServerConfig{DataDir: filepath.Join(dir, "nats"), Port: -1}
			var opts []nats.Option
			if auth {
				svc, _, err := jetstream.UserSeed(filepath.Join(dir, "licensed.nk"))
				if err != nil {
					b.Fatal(err)
				}
				down, _, err := jetstream.UserSeed(filepath.Join(dir, "downstream.nk"))
				if err != nil {
					b.Fatal(err)
				}
				scfg.Auth = &jetstream.Auth{Service: svc, Downstream: down}
				opt, err := jetstream.CredentialOption(filepath.Join(dir, "licensed.nk"))
				if err != nil {
					b.Fatal(err)
				}
				opts = append(opts, opt)
			}
			s, err := jetstream.Embedded(context.Background(), scfg, jetstream.Config{MaxBatch: 1}, opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if c.mirror {
				if err := jetstream.EnsureDownstreamMirror(context.Background(), s.Conn(), 1, false); err != nil {
					b.Fatal(err)
				}
			}
			benchAppendN(b, s, 64)
		})
	}
}

// BenchmarkReadStream reads a whole stream through ReadStream: one of 200
// events (an account's ledger, as the accounts service loads it), one of
// 20,000 (a long activity history, as the raw export reads it), and that
// one by 10 readers at once; with the ordered consumers asking for
// batches of the store's size (0) or of another. An op is one read of the
// whole stream by every reader.
func BenchmarkReadStream(b *testing.B) {
	for _, c := range []struct{ events, readers, batch int }{
		{200, 1, 0}, {200, 1, 1000}, {20_000, 1, 0}, {20_000, 1, 1000}, {20_000, 10, 0}, {20_000, 10, 1000},
	} {
		b.Run(fmt.Sprintf("events=%d/readers=%d/batch=%d", c.events, c.readers, c.batch), func(b *testing.B) {
			if c.batch > 0 {
				defer jetstream.SetStreamBatch(jetstream.SetStreamBatch(c.batch))
			}
			s := newStore(b, jetstream.Config{})
			ctx := context.Background()
			stream := eventstore.ActivityStream("acme")
			for n := 0; n < c.events; n += 100 {
				if _, err := s.Append(ctx, stream, eventstore.Any(), events(100)...); err != nil {
					b.Fatal(err)
				}
			}
			cpu := cputime.Process()
			b.ResetTimer()
			for b.Loop() {
				var wg sync.WaitGroup
				for range c.readers {
					wg.Go(func() {
						n := 0
						for _, err := range s.ReadStream(ctx, stream, 0) {
							if err != nil {
								b.Error(err)
								return
							}
							n++
						}
						if n != c.events {
							b.Errorf("read %d events, want %d", n, c.events)
						}
					})
				}
				wg.Wait()
			}
			b.StopTimer()
			reportRate(b, b.N*c.events*c.readers, cputime.Process()-cpu)
		})
	}
}

// BenchmarkOpenAfterBurst measures opening an embedded store on its data
// directory right after a burst of writes (200,000 events by 1,000
// accounts with interval durability, as fast as they go), with the
// default de-duplication window (2 minutes) and with
// jetstream.ShortDuplicates. Before it accepts connections the server
// rereads every message stored within the window to rebuild its table of
// message ids: all of the burst with 2 minutes, its last second with the
// short window. open-s is the first open after the burst; idle-open-s an
// open 2 s later, once the burst is older than the short window (with
// the short window: the baseline of an open with nothing to reread).
func BenchmarkOpenAfterBurst(b *testing.B) {
	const burst = 200_000
	for _, w := range []struct {
		name   string
		window time.Duration
	}{{"window=2m", 2 * time.Minute}, {"window=1s", jetstream.ShortDuplicates}} {
		b.Run(w.name, func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			cfg := jetstream.Config{Duplicates: w.window}
			scfg := jetstream.ServerConfig{DataDir: dir, Port: -1, Durability: jetstream.DurabilityInterval}
			s, err := jetstream.Embedded(ctx, scfg, cfg)
			if err != nil {
				b.Fatal(err)
			}
			var wg sync.WaitGroup
			for a := range benchAccounts {
				wg.Go(func() {
					stream := eventstore.ActivityStream(fmt.Sprintf("burst-%04d", a))
					for i := 0; i < burst/benchAccounts; i += 10 {
						if _, err := s.Append(ctx, stream, eventstore.ExpectRevisionAfter(uint64(i)), events(10)...); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			s.Close()
			b.ResetTimer()
			var open, idle time.Duration
			for range b.N {
				t0 := time.Now()
				s, err := jetstream.Embedded(ctx, scfg, cfg)
				if err != nil {
					b.Fatal(err)
				}
				open += time.Since(t0)
				b.StopTimer()
				s.Close()
				time.Sleep(2 * jetstream.ShortDuplicates)
				t0 = time.Now()
				if s, err = jetstream.Embedded(ctx, scfg, cfg); err != nil {
					b.Fatal(err)
				}
				idle += time.Since(t0)
				s.Close()
				b.StartTimer()
			}
			b.ReportMetric(open.Seconds()/float64(b.N), "open-s")
			b.ReportMetric(idle.Seconds()/float64(b.N), "idle-open-s")
		})
	}
}
