package snap

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/licenseledger/ledger/projections"
)

func TestRoundTrip(t *testing.T) {
	times := []time.Time{{}, time.Unix(0, 0).UTC(), time.Date(2025, 3, 1, 12, 0, 0, 5, time.UTC), time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC)}
	w := NewWriter("m", 3, 0)
	w.Uvarint(math.MaxUint64)
	w.Varint(math.MinInt64)
	w.Int(-7)
	w.Bool(true)
	w.Byte(0xfe)
	w.String("héllo")
	w.Blob([]byte{1, 2})
	w.Fixed([]byte{9, 9, 9})
	for _, tm := range times {
		w.Time(tm)
	}
	b := w.Bytes()
	r, err := NewReader(b, "m", 3)
	if err != nil {
		t.Fatal(err)
	}
	if r.Uvarint() != math.MaxUint64 || r.Varint() != math.MinInt64 || r.Int() != -7 || !r.Bool() || r.Byte() != 0xfe ||
		r.String() != "héllo" || string(r.Bytes()) != "\x01\x02" || string(r.Fixed(3)) != "\x09\x09\x09" {
		t.Fatal("values differ after a round trip")
	}
	for _, tm := range times {
		if got := r.Time(); got != tm {
			t.Errorf("time %v read back as %v", tm, got)
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}

	for i := range len(b) - 1 { // every truncation fails, none panics
		r, err := NewReader(b[:i], "m", 3)
		if err != nil {
			continue
		}
		r.Uvarint()
		r.Varint()
		r.Int()
		r.Bool()
		r.Byte()
		_ = r.String()
		r.Bytes()
		r.Fixed(3)
		for range times {
			r.Time()
		}
		if err := r.Err(); !errors.Is(err, projections.ErrSnapshotFormat) {
			t.Errorf("truncated at %d: %v", i, err)
		}
	}
	if _, err := NewReader(b, "n", 3); !errors.Is(err, projections.ErrSnapshotFormat) {
		t.Errorf("another model's snapshot: %v", err)
	}
	if _, err := NewReader(b, "m", 4); !errors.Is(err, projections.ErrSnapshotFormat) {
		t.Errorf("another version: %v", err)
	}
	r, _ = NewReader(append(NewWriter("m", 3, 0).Bytes(), 0xff, 0xff, 0xff, 0x0f), "m", 3)
	if n := r.Count(1); n != 0 || !errors.Is(r.Err(), projections.ErrSnapshotFormat) {
		t.Errorf("a count past the end = %d, %v", n, r.Err())
	}
}
