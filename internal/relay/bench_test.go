package relay_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/relay"
)

// BenchmarkRelay relays b.N events of 1,000 accounts (about 450-byte
// envelopes) from a memory store to an embedded server, with the
// acknowledgements awaited one by one or pipelined.
//
//	go test -run '^$' -bench Relay -benchtime 20000x ./internal/relay
func BenchmarkRelay(b *testing.B) {
	for _, inflight := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			ctx := context.Background()
			store := memory.New()
			defer store.Close()
			revs := map[int]uint64{}
			heads := map[int]codec.Hash{}
			for i := range b.N {
				a := i % 1000
				// Each event names its predecessor's link, as the
				// service's do: the relay verifies the chain.
				md := fmt.Appendf(nil, `{"time":"2026-01-05T09:00:00Z","subject":"u1","schemaversion":1,"account":"acct%04d","actorid":"admin-1","actorrole":"admin","correlationid":"01HZY3K6V1M000000000000000","causationid":"01HZY3K6V1M000000000000000","prevhash":"%s"}`, a, heads[a])
				p := eventstore.Proposed{ID: uuid.New(), Type: "SeatsPurchased", Data: fmt.Appendf(nil, `{"count":%d}`, i), Metadata: md}
				if _, err := store.Append(ctx, eventstore.LedgerStream(fmt.Sprintf("acct%04d", a)), eventstore.ExpectRevisionAfter(revs[a]), p); err != nil {
					b.Fatal(err)
				}
				revs[a]++
				heads[a] = codec.NextHash(heads[a], p)
			}
			srv := startNATS(b)
			_, js := connect(b, srv, "relay")
			r, err := relay.New(relay.Config{Source: store, JS: js, MaxInFlight: inflight, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			b.ResetTimer()
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			for r.Status().Published < uint64(b.N) {
				if r.Status().Skipped > 0 {
					b.Fatal("the relay skipped an event")
				}
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
		})
	}
}
