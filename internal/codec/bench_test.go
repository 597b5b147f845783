package codec_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/cputime"
)

// benchRecords returns n stored events in the proportions of a busy
// account's history: mostly activities, then user lifecycle events, a few
// seat changes.
func benchRecords(b *testing.B, n int) (*codec.Codec, []eventstore.Record) {
	b.Helper()
	const users = 50
	ids := make([]string, users)
	for i := range ids {
		ids[i] = fmt.Sprintf("u-%04d", i)
	}
	c, _ := newCodec(b, ids...)
	recs := make([]eventstore.Record, 0, n)
	var prev codec.Hash
	t0 := time.Date(2025, 1, 1, 8, 0, 0, 0, time.UTC)
	for i := range n {
		u := ids[i%users]
		when := t0.Add(time.Duration(i) * 1731 * time.Millisecond)
		var e ledger.Event
		switch k := i % 20; {
		case k < 15:
			e = ledger.ActivityRecorded{ActivityID: fmt.Sprintf("act-%08d", i), UserID: u, Kind: "document.signed", Ref: fmt.Sprintf("doc-%06d", i/3), At: when}
		case k == 15:
			e = ledger.UserAdded{UserID: u, Name: "Person Number " + u, Email: u + "@example.com", Role: ledger.RoleMember, At: when}
		case k == 16:
			e = ledger.UserDeactivated{UserID: u, Reason: "contract ended", At: when}
		case k == 17:
			e = ledger.UserActivated{UserID: u, At: when}
		case k == 18:
			e = ledger.SeatsPurchased{Count: 2, At: when}
		default:
			e = ledger.UserDeleted{UserID: u, At: when}
		}
		meta := codec.Metadata{
			EventID:        uuid.New(),
			Time:           when.Add(3 * time.Millisecond),
			Account:        account,
			Actor:          codec.Actor{ID: "p-" + u, Role: "member"},
			CorrelationID:  ulid.Make(),
			CausationID:    ulid.Make(),
			IdempotencyKey: fmt.Sprintf("idem-%d", i),
			PrevHash:       prev,
		}
		p := encode(b, c, e, meta)
		prev = codec.NextHash(prev, p)
		recs = append(recs, eventstore.Record{ID: p.ID, Type: p.Type, Data: p.Data, Metadata: p.Metadata, Stream: eventstore.LedgerStream(account), Revision: uint64(i), Position: eventstore.Position(i + 1)})
	}
	return c, recs
}

func BenchmarkDecode(b *testing.B) {
	c, recs := benchRecords(b, 1000)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu := cputime.Process()
	for b.Loop() {
		for _, r := range recs {
			if _, err := c.Decode(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
		n += len(recs)
	}
	cpu = cputime.Process() - cpu
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(n), "allocs/event")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
	if cpu > 0 {
		// With -cpu 1 the collector shares the one P, so this is the cost
		// on one core, whatever else the machine runs.
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/event")
	}
}

func BenchmarkDecodeMetadata(b *testing.B) {
	_, recs := benchRecords(b, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		for _, r := range recs {
			if _, err := codec.DecodeMetadata(r); err != nil {
				b.Fatal(err)
			}
		}
		n += len(recs)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkEncode(b *testing.B) {
	c, _ := newCodec(b, user)
	ctx := context.Background()
	events := []ledger.Event{sampleEvent(ledger.TypeActivityRecorded, user), sampleEvent(ledger.TypeUserAdded, user)}
	meta := sampleMeta()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		for _, e := range events {
			if _, err := c.Encode(ctx, e, meta); err != nil {
				b.Fatal(err)
			}
		}
		n += len(events)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkDecodeNext decodes the same records as BenchmarkDecode and
// verifies each against its stream's chain (codec.Link), as the read
// models do: the difference is the cost of verification.
func BenchmarkDecodeNext(b *testing.B) {
	c, recs := benchRecords(b, 1000)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	cpu := cputime.Process()
	for b.Loop() {
		var l codec.Link
		for _, r := range recs {
			if _, err := c.DecodeNext(ctx, &l, r); err != nil {
				b.Fatal(err)
			}
		}
		n += len(recs)
	}
	cpu = cputime.Process() - cpu
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/event")
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/event")
	}
}
