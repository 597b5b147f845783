package snap

import (
	"bytes"
	"errors"
	"fmt"
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
	if err := r.End(); err != nil {
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

// Err can be called between fields: the bytes still to read are not a
// failure, and reading goes on after it. End alone refuses bytes left
// after the end.
func TestErrMidwayThenEnd(t *testing.T) {
	w := NewWriter("m", 1, 0)
	for i := range 3 {
		w.String(fmt.Sprintf("account-%d", i))
		w.Uvarint(uint64(i))
	}
	b := w.Bytes()
	r, err := NewReader(b, "m", 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if s, n := r.String(), r.Uvarint(); s != fmt.Sprintf("account-%d", i) || n != uint64(i) {
			t.Fatalf("record %d read back as %q, %d", i, s, n)
		}
		if err := r.Err(); err != nil {
			t.Fatalf("Err after record %d of 3: %v", i, err)
		}
	}
	if err := r.End(); err != nil {
		t.Fatalf("End after every record: %v", err)
	}

	r, _ = NewReader(append(bytes.Clone(b), 0), "m", 1)
	for range 3 {
		_ = r.String()
		r.Uvarint()
	}
	if err := r.Err(); err != nil {
		t.Fatalf("Err with one byte left: %v", err)
	}
	if err := r.End(); !errors.Is(err, projections.ErrSnapshotFormat) {
		t.Fatalf("End with one byte left = %v, want ErrSnapshotFormat", err)
	}
}
