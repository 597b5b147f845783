package relay_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	storejs "github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/cputime"
	"github.com/licenseledger/ledger/internal/relay"
)

// costWriters is the number of concurrent writers of the append baseline.
const costWriters = 64

// appendChained appends n events over 1,000 accounts to store with
// costWriters writers, each event chained to its stream's previous one as
// the service's are (the publisher verifies the chains).
func appendChained(b *testing.B, store eventstore.Store, n int) {
	var wg sync.WaitGroup
	for w := range costWriters {
		wg.Go(func() {
			ctx := context.Background()
			revs := map[int]uint64{}
			heads := map[int]codec.Hash{}
			for i := w; i < n; i += costWriters {
				a := w + costWriters*((i/costWriters)%(1000/costWriters)) // accounts of this writer only
				md := fmt.Appendf(nil, `{"time":"2026-01-05T09:00:00Z","subject":"u1","schemaversion":1,"account":"acct%04d","actorid":"admin-1","actorrole":"admin","correlationid":"01HZY3K6V1M000000000000000","causationid":"01HZY3K6V1M000000000000000","idempotencykey":"k-%d","prevhash":"%s"}`, a, i, heads[a])
				p := eventstore.Proposed{ID: uuid.New(), Type: "SeatsPurchased", Data: fmt.Appendf(nil, `{"count":%d,"at":"2026-01-05T09:00:00Z"}`, i), Metadata: md}
				if _, err := store.Append(ctx, eventstore.LedgerStream(fmt.Sprintf("acct%04d", a)), eventstore.ExpectRevisionAfter(revs[a]), p); err != nil {
					b.Error(err)
					return
				}
				revs[a]++
				heads[a] = codec.NextHash(heads[a], p)
			}
		})
	}
	wg.Wait()
}

// BenchmarkPublisherCost measures, on one embedded JetStream server, the
// process CPU (server included) per event of appending events through the
// store (64 writers, the baseline: what a command's append costs the
// machine) and of publishing the same number of stored events into
// EVENTS with the publisher.
//
//	go test -run '^$' -bench PublisherCost -benchtime 20000x -count 3 ./internal/relay
func BenchmarkPublisherCost(b *testing.B) {
	for _, what := range []string{"append", "publish"} {
		b.Run(what, func(b *testing.B) {
			ctx := context.Background()
			st, err := storejs.Embedded(ctx, storejs.ServerConfig{DataDir: b.TempDir(), Port: -1, Durability: storejs.DurabilityInterval}, storejs.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			if what == "append" {
				c0, t0 := cputime.Process(), time.Now()
				b.ResetTimer()
				appendChained(b, st, b.N)
				b.StopTimer()
				b.ReportMetric(float64(cputime.Process()-c0)/float64(time.Microsecond)/float64(b.N), "cpu-us/event")
				b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "events/s")
				return
			}
			appendChained(b, st, b.N)
			js, err := jetstream.New(st.Conn())
			if err != nil {
				b.Fatal(err)
			}
			r, err := relay.New(relay.Config{Source: st, JS: js, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			if err := r.EnsureStream(ctx); err != nil {
				b.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if path := os.Getenv("LEDGER_PUBLISH_PROFILE"); path != "" {
				// The publisher's profile alone, without the appends.
				f, err := os.Create(path)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					b.Fatal(err)
				}
				defer pprof.StopCPUProfile()
			}
			c0, t0 := cputime.Process(), time.Now()
			b.ResetTimer()
			done := make(chan error, 1)
			go func() { done <- r.Run(rctx) }()
			for r.Status().Published < uint64(b.N) {
				if r.Status().Skipped > 0 {
					b.Fatal("the publisher skipped an event")
				}
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(cputime.Process()-c0)/float64(time.Microsecond)/float64(b.N), "cpu-us/event")
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "events/s")
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkEnvelope is the envelope's cost alone.
func BenchmarkEnvelope(b *testing.B) {
	rec := eventstore.Record{
		ID: uuid.New(), Type: "UserDeactivated", Stream: eventstore.LedgerStream("acme"),
		Data:     []byte(`{"user_id":"u-1","reason_sealed":"vomNWZjz/Hbvi/FNSL8b36DZ7SkDV+dEBX9a5ar+Yhg5sttw/+XRmEYj/z3ggUkd7Q==","at":"2025-03-14T09:26:53.589793238Z"}`),
		Metadata: []byte(`{"time":"2025-03-14T09:26:53.590793238Z","subject":"u-1","schemaversion":1,"account":"acme","actorid":"p-admin-1","actorrole":"admin","correlationid":"01JPAZ0G7QWM8V3H2K5N6R9T1X","causationid":"01JPAZ0G7QWM8V3H2K5N6R9T1Y","idempotencykey":"idem-7c1e","commandfingerprint":"f-1","prevhash":"00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9"}`),
	}
	b.Run("contract-v2", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := contractEnvelope(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stored-v1-baseline", func(b *testing.B) {
		b.ReportAllocs()
		p := eventstore.Proposed{ID: rec.ID, Type: rec.Type, Data: rec.Data, Metadata: rec.Metadata}
		for b.Loop() {
			if _, err := eventstore.CloudEvent(rec.Stream, p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func contractEnvelope(rec eventstore.Record) ([]byte, error) { return contract.Envelope(rec, "") }

// BenchmarkPublisherLive measures, on one embedded JetStream server, the
// process CPU (server included) per event of appending events (64
// writers) while a reader follows the store, as the read models' runner
// does, and the publisher publishes them live: following the store itself
// (subscribe) or handed the reader's records (feed, as licensed runs it).
// The difference is what the publisher's own read of the store costs.
//
//	go test -run '^$' -bench PublisherLive -benchtime 20000x -count 3 ./internal/relay
func BenchmarkPublisherLive(b *testing.B) {
	for _, how := range []string{"subscribe", "feed"} {
		b.Run(how, func(b *testing.B) {
			ctx := context.Background()
			st, err := storejs.Embedded(ctx, storejs.ServerConfig{DataDir: b.TempDir(), Port: -1, Durability: storejs.DurabilityInterval}, storejs.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			js, err := jetstream.New(st.Conn())
			if err != nil {
				b.Fatal(err)
			}
			cfg := relay.Config{Source: st, JS: js, Logger: slog.New(slog.DiscardHandler)}
			if how == "feed" {
				cfg.Feed = eventstore.NewFeed(0)
			}
			r, err := relay.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := r.EnsureStream(ctx); err != nil {
				b.Fatal(err)
			}
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			var read sync.WaitGroup
			read.Go(func() { // the read models' runner
				var prev eventstore.Position
				for rec, err := range st.Subscribe(rctx, 0) {
					if rctx.Err() != nil {
						return
					}
					if cfg.Feed != nil {
						cfg.Feed.Offer(prev, rec, err)
					}
					prev = rec.Position
				}
			})
			defer read.Wait()
			done := make(chan error, 1)
			go func() { done <- r.Run(rctx) }()
			c0, t0 := cputime.Process(), time.Now()
			b.ResetTimer()
			appendChained(b, st, b.N)
			for r.Status().Published < uint64(b.N) {
				if r.Status().Skipped > 0 {
					b.Fatal("the publisher skipped an event")
				}
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(cputime.Process()-c0)/float64(time.Microsecond)/float64(b.N), "cpu-us/event")
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "events/s")
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}
