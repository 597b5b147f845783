package memory_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/eventstoretest"
	"github.com/licenseledger/ledger/eventstore/memory"
)

func TestConformance(t *testing.T) {
	eventstoretest.Run(t, func(t *testing.T) eventstore.Store { return memory.New() }, eventstoretest.DensePositions())
}

// events returns n events with fresh ids.
func events(n int) []eventstore.Proposed {
	out := make([]eventstore.Proposed, n)
	for i := range out {
		out[i] = eventstore.Proposed{ID: uuid.New(), Type: "SeatsPurchased", Data: fmt.Appendf(nil, `{"seats":%d}`, i+1), Metadata: []byte(`{"seq":1}`)}
	}
	return out
}

// read returns the records of stream, failing the test on error.
func read(t *testing.T, s *memory.Store, stream eventstore.StreamID) []eventstore.Record {
	t.Helper()
	var out []eventstore.Record
	for r, err := range s.ReadStream(t.Context(), stream, 0) {
		if err != nil {
			t.Fatalf("ReadStream(%s): %v", stream, err)
		}
		out = append(out, r)
	}
	return out
}

// TestAppendRejects covers what this store decides where the contract
// leaves room: stored ids at another place, mixed batches, duplicate ids in
// one append and empty appends are refused, and nothing is stored.
func TestAppendRejects(t *testing.T) {
	ctx := t.Context()
	s := memory.New()
	stream := eventstore.LedgerStream("acme")
	b1, b2 := events(2), events(2)
	if _, err := s.Append(ctx, stream, eventstore.NoStream(), b1...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, stream, eventstore.Exact(1), b2...); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		expected eventstore.ExpectedRevision
		events   []eventstore.Proposed
		wantErr  error
	}{
		{"stored batch at a revision it is not at", eventstore.Exact(0), b2, eventstore.ErrConflict},
		{"stored batch expecting no stream", eventstore.NoStream(), b2, eventstore.ErrConflict},
		{"stored batch beyond the stream's end", eventstore.Exact(3), b2, eventstore.ErrConflict},
		{"stored events not in a row", eventstore.NoStream(), []eventstore.Proposed{b1[0], b2[0]}, eventstore.ErrConflict},
		{"a stored event after a new one", eventstore.Exact(3), append(events(1), b1[0]), eventstore.ErrConflict},
		{"a stored batch with one more event", eventstore.Exact(1), append(b2[:2:2], events(1)...), eventstore.ErrConflict},
		{"the same id twice", eventstore.Exact(3), []eventstore.Proposed{b1[0], b1[0]}, nil},
		{"no events", eventstore.Exact(3), nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := s.Append(ctx, stream, tt.expected, tt.events...)
			if err == nil {
				t.Fatalf("Append = %+v, want an error", res)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Append: %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && errors.Is(err, eventstore.ErrConflict) {
				t.Errorf("Append: %v, want an error other than a conflict", err)
			}
			if n := len(read(t, s, stream)); n != 4 {
				t.Errorf("stream holds %d events, want 4", n)
			}
		})
	}
}

func TestTamper(t *testing.T) {
	ctx := t.Context()
	s := memory.New()
	stream := eventstore.LedgerStream("acme")
	if _, err := s.Append(ctx, stream, eventstore.NoStream(), events(3)...); err != nil {
		t.Fatal(err)
	}
	before := read(t, s, stream)
	original := string(before[1].Data)

	err := s.Tamper(stream, 1, func(r *eventstore.Record) {
		r.Data[len(r.Data)-2] ^= 0x01
		r.Revision, r.Position = 7, 99 // ignored
	})
	if err != nil {
		t.Fatalf("Tamper: %v", err)
	}
	after := read(t, s, stream)
	if string(after[1].Data) == original {
		t.Fatalf("Data after Tamper is unchanged: %s", after[1].Data)
	}
	if diff := countDiff(after[1].Data, []byte(original)); diff != 1 {
		t.Errorf("Tamper changed %d bytes, want 1: %s -> %s", diff, original, after[1].Data)
	}
	if after[1].Revision != 1 || after[1].Position != before[1].Position || after[1].ID != before[1].ID {
		t.Errorf("Tamper moved the record: %+v, was %+v", after[1], before[1])
	}
	if string(before[1].Data) != original {
		t.Errorf("a record read before Tamper changed: %s", before[1].Data)
	}
	for _, i := range []int{0, 2} {
		if string(after[i].Data) != string(before[i].Data) {
			t.Errorf("Tamper changed record %d too", i)
		}
	}
	var all []eventstore.Record
	for r, err := range s.ReadAll(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, r)
	}
	if string(all[1].Data) != string(after[1].Data) {
		t.Errorf("ReadAll does not see the tampered byte: %s", all[1].Data)
	}

	for _, tt := range []struct {
		stream eventstore.StreamID
		rev    uint64
	}{{stream, 3}, {eventstore.ActivityStream("acme"), 0}} {
		if err := s.Tamper(tt.stream, tt.rev, func(*eventstore.Record) {}); !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Errorf("Tamper(%s, %d): %v, want ErrStreamNotFound", tt.stream, tt.rev, err)
		}
	}
}

func countDiff(a, b []byte) int {
	if len(a) != len(b) {
		return -1
	}
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

// BenchmarkAppend appends single events to 1,000 accounts' streams, each
// at its expected revision, as the application service does.
func BenchmarkAppend(b *testing.B) {
	const accounts = 1000
	ctx := context.Background()
	s := memory.New()
	streams := make([]eventstore.StreamID, accounts)
	counts := make([]uint64, accounts)
	for i := range streams {
		streams[i] = eventstore.LedgerStream(fmt.Sprintf("acct%04d", i))
	}
	data := []byte(`{"seats":5,"cycle":"2026-01"}`)
	meta := []byte(`{"actorrole":"admin","seq":1}`)
	n := 0
	for b.Loop() {
		i := n % accounts
		e := eventstore.Proposed{ID: uuid.New(), Type: "SeatsPurchased", Data: data, Metadata: meta}
		if _, err := s.Append(ctx, streams[i], eventstore.ExpectRevisionAfter(counts[i]), e); err != nil {
			b.Fatal(err)
		}
		counts[i]++
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkReadAll reads a log of 1,000,000 events over 1,000 accounts from
// the start, as a projection rebuilding from scratch does.
func BenchmarkReadAll(b *testing.B) {
	const total, accounts, batch = 1_000_000, 1000, 100
	ctx := context.Background()
	s := memory.New()
	data := []byte(`{"seats":5,"cycle":"2026-01"}`)
	for i := 0; i < total/batch; i++ {
		evs := make([]eventstore.Proposed, batch)
		for j := range evs {
			evs[j] = eventstore.Proposed{ID: uuid.New(), Type: "SeatsPurchased", Data: data}
		}
		stream := eventstore.LedgerStream(fmt.Sprintf("acct%04d", i%accounts))
		if _, err := s.Append(ctx, stream, eventstore.Any(), evs...); err != nil {
			b.Fatal(err)
		}
	}
	read := 0
	for b.Loop() {
		var last eventstore.Position
		for r, err := range s.ReadAll(ctx, 0) {
			if err != nil {
				b.Fatal(err)
			}
			last = r.Position
			read++
		}
		if last != total {
			b.Fatalf("read up to position %d, want %d", last, total)
		}
	}
	b.ReportMetric(float64(read)/b.Elapsed().Seconds(), "events/s")
}
