package jetstream_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

const benchAccounts = 1000

var benchConfig = jetstream.Config{}

// BenchmarkAppend appends single-event commands through the store with the
// default durability (fsync) and a per-stream expectation each, over 1,000
// accounts: 1,000 goroutines, each owning one account.
func BenchmarkAppend(b *testing.B) {
	s := newStore(b, benchConfig)
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for a := range benchAccounts {
		wg.Go(func() {
			stream := eventstore.LedgerStream(fmt.Sprintf("acct%04d", a))
			for n := uint64(0); next.Add(1) <= int64(b.N); n++ {
				if _, err := s.Append(ctx, stream, eventstore.ExpectRevisionAfter(n), events(1)...); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRawPublish publishes the same envelopes with raw JetStream async
// publish, no expectation, on the same server settings: the ceiling.
func BenchmarkRawPublish(b *testing.B) {
	s := newStore(b, jetstream.Config{})
	js, err := natsjs.New(s.Conn(), natsjs.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	msgs := make([]*nats.Msg, benchAccounts)
	for a := range msgs {
		stream := eventstore.LedgerStream(fmt.Sprintf("acct%04d", a))
		body, err := eventstore.CloudEvent(stream, events(1)[0])
		if err != nil {
			b.Fatal(err)
		}
		m := nats.NewMsg("ledger." + stream.Account + ".SeatsPurchased")
		m.Data = body
		m.Header.Set("Content-Type", eventstore.CloudEventContentType)
		msgs[a] = m
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
