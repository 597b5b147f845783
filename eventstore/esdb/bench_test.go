package esdb_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
)

// The benchmarks run the same operations through the adapter and through
// the raw client, against one in-process server, so that the adapter's own
// cost shows as the difference in events/s.

func reportRate(b *testing.B, events int) {
	b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
}

func benchEvents(n int) []eventstore.Proposed {
	out := proposed(n)
	for i := range out {
		out[i].Data = fmt.Appendf(nil, `{"account":"a1","seats":%d,"actor":{"id":"u-42","role":"admin"}}`, i)
	}
	return out
}

func toRaw(events []eventstore.Proposed) []client.EventData {
	out := make([]client.EventData, len(events))
	for i, e := range events {
		out[i] = client.EventData{EventID: e.ID, EventType: e.Type, ContentType: client.ContentTypeJson, Data: e.Data, Metadata: e.Metadata}
	}
	return out
}

func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{1, 10} {
		srv := startServer(b)
		s := open(b, srv.ConnectionString())
		raw := rawClient(b, srv.ConnectionString())
		b.Run(fmt.Sprintf("adapter/batch=%d", size), func(b *testing.B) {
			stream := eventstore.LedgerStream(uuid.NewString())
			var n uint64
			for b.Loop() {
				b.StopTimer()
				ev := benchEvents(size)
				b.StartTimer()
				if _, err := s.Append(b.Context(), stream, eventstore.ExpectRevisionAfter(n), ev...); err != nil {
					b.Fatal(err)
				}
				n += uint64(size)
			}
			reportRate(b, b.N*size)
		})
		b.Run(fmt.Sprintf("raw/batch=%d", size), func(b *testing.B) {
			stream := "ledger-" + uuid.NewString()
			var n uint64
			for b.Loop() {
				b.StopTimer()
				ev := toRaw(benchEvents(size))
				b.StartTimer()
				var exp client.ExpectedRevision = client.NoStream{}
				if n > 0 {
					exp = client.Revision(n - 1)
				}
				if _, err := raw.AppendToStream(b.Context(), stream, client.AppendToStreamOptions{ExpectedRevision: exp}, ev...); err != nil {
					b.Fatal(err)
				}
				n += uint64(size)
			}
			reportRate(b, b.N*size)
		})
	}
}

func BenchmarkReadStream(b *testing.B) {
	const length = 1000
	srv := startServer(b)
	s := open(b, srv.ConnectionString())
	raw := rawClient(b, srv.ConnectionString())
	stream := eventstore.LedgerStream(uuid.NewString())
	for i := 0; i < length; i += 100 {
		if _, err := s.Append(b.Context(), stream, eventstore.Any(), benchEvents(100)...); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("adapter", func(b *testing.B) {
		for b.Loop() {
			n := 0
			for _, err := range s.ReadStream(b.Context(), stream, 0) {
				if err != nil {
					b.Fatal(err)
				}
				n++
			}
			if n != length {
				b.Fatalf("read %d events, want %d", n, length)
			}
		}
		reportRate(b, b.N*length)
	})
	b.Run("raw", func(b *testing.B) {
		for b.Loop() {
			rs, err := raw.ReadStream(b.Context(), stream.String(), client.ReadStreamOptions{}, length)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for {
				_, err := rs.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				n++
			}
			rs.Close()
			if n != length {
				b.Fatalf("read %d events, want %d", n, length)
			}
		}
		reportRate(b, b.N*length)
	})
}
