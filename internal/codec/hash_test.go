package codec_test

import (
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
)

func sampleProposed() eventstore.Proposed {
	return eventstore.Proposed{
		ID:       uuid.MustParse("3f1c2a9e-5b7d-4e8f-9a01-23456789abcd"),
		Type:     "SeatsPurchased",
		Data:     []byte(`{"count":3,"at":"2025-03-14T09:26:53Z"}`),
		Metadata: []byte(`{"time":"2025-03-14T09:26:53Z","schemaversion":1,"account":"acme"}`),
	}
}

func TestNextHashCoversEveryByte(t *testing.T) {
	var prev codec.Hash
	prev[0] = 1
	p := sampleProposed()
	base := codec.NextHash(prev, p)
	if base.IsZero() {
		t.Fatal("NextHash is zero")
	}
	if again := codec.NextHash(prev, sampleProposed()); again != base {
		t.Fatalf("NextHash not deterministic: %s, %s", base, again)
	}
	seen := map[codec.Hash]string{base: "original"}
	changed := func(what string, q eventstore.Proposed) {
		t.Helper()
		h := codec.NextHash(prev, q)
		if other, dup := seen[h]; dup {
			t.Errorf("changing %s gives the hash of %s", what, other)
		}
		seen[h] = what
	}
	for i := range p.ID {
		q := sampleProposed()
		q.ID[i] ^= 0x10
		changed(fmt.Sprintf("id byte %d", i), q)
	}
	for _, part := range []string{"type", "data", "metadata"} {
		for i := range len(field(p, part)) {
			q := sampleProposed()
			q.Data, q.Metadata = clone(q.Data), clone(q.Metadata)
			b := []byte(field(q, part))
			b[i] ^= 0x01
			set(&q, part, b)
			changed(fmt.Sprintf("%s byte %d", part, i), q)
		}
		q := sampleProposed()
		set(&q, part, append([]byte(field(q, part)), ' '))
		changed(part+" longer", q)
	}
	// Moving bytes between the parts changes the hash: each is length-prefixed.
	q := sampleProposed()
	q.Type, q.Data = q.Type+`{`, q.Data[1:]
	changed("a byte moved from data to type", q)
	q = sampleProposed()
	q.Data, q.Metadata = append(clone(q.Data), '{'), q.Metadata[1:]
	changed("a byte moved from metadata to data", q)

	for i := range prev {
		other := prev
		other[i] ^= 0x80
		if codec.NextHash(other, p) == base {
			t.Errorf("NextHash does not depend on byte %d of prev", i)
		}
	}
	if codec.NextHash(codec.Hash{}, p) == base {
		t.Error("NextHash is the same after the zero hash")
	}
}

func field(p eventstore.Proposed, part string) string {
	switch part {
	case "type":
		return p.Type
	case "data":
		return string(p.Data)
	}
	return string(p.Metadata)
}

func set(p *eventstore.Proposed, part string, b []byte) {
	switch part {
	case "type":
		p.Type = string(b)
	case "data":
		p.Data = b
	default:
		p.Metadata = b
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func TestHashChain(t *testing.T) {
	var h codec.Hash
	var hashes []codec.Hash
	for range 3 {
		h = codec.NextHash(h, sampleProposed())
		hashes = append(hashes, h)
	}
	if hashes[0] == hashes[1] || hashes[1] == hashes[2] {
		t.Errorf("the same event at different places of a chain hashes the same: %v", hashes)
	}
	r := eventstore.Record{ID: sampleProposed().ID, Type: "SeatsPurchased", Data: sampleProposed().Data, Metadata: sampleProposed().Metadata, Revision: 9, Position: 99}
	if got := codec.RecordHash(hashes[0], r); got != hashes[1] {
		t.Errorf("RecordHash = %s, NextHash = %s: they must agree (revision and position are not hashed)", got, hashes[1])
	}
}

func TestHashText(t *testing.T) {
	var h codec.Hash
	for i := range h {
		h[i] = byte(255 - i)
	}
	text, err := h.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if string(text) != h.String() || string(text) != hex.EncodeToString(h[:]) {
		t.Errorf("MarshalText = %s, String = %s", text, h)
	}
	var back codec.Hash
	if err := back.UnmarshalText(text); err != nil || back != h {
		t.Errorf("UnmarshalText(MarshalText) = %s, %v; want %s", back, err, h)
	}
	if err := back.UnmarshalText([]byte(strings.ToUpper(string(text)))); err != nil || back != h {
		t.Errorf("upper-case hex: %s, %v", back, err)
	}
	if zero := (codec.Hash{}); !zero.IsZero() || h.IsZero() || zero.String() != strings.Repeat("0", 64) {
		t.Error("IsZero or String of the zero hash is wrong")
	}
	for _, bad := range []string{"", "00", strings.Repeat("0", 63), strings.Repeat("0", 65), strings.Repeat("g", 64), strings.Repeat("0", 62) + "0x"} {
		var h codec.Hash
		if err := h.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("UnmarshalText(%q) succeeded", bad)
		}
	}
}
