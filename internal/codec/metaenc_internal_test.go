package codec

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
)

// metaSample is metadata as the service writes it.
func metaSample() wireMeta {
	return wireMeta{
		Time:          time.Date(2026, 12, 7, 1, 2, 3, 456789000, time.UTC),
		Subject:       "u-42",
		SchemaVersion: 1,
		Account:       "acme",
		ActorID:       "admin-1",
		ActorRole:     "admin",
		CorrelationID: "01JEZ7Q8Y4K3V2M1N0P9R8S7T6",
		CausationID:   "01JEZ7Q8Y4K3V2M1N0P9R8S7T7",
		Traceparent:   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Tracestate:    "congo=t61rcWkgMzE",
		PrevHash:      Hash{1, 2, 3, 0xfe},
	}
}

// TestMarshalMetaAsJSON checks that marshalMeta writes what
// json.Marshal(wm, json.Deterministic(true)) writes, byte for byte, for
// metadata as the service writes it, for every member empty or not, and
// for 50,000 variations with times of every precision and far years and
// strings holding quotes, backslashes, control characters, non-ASCII and
// invalid UTF-8 (for which both must fail alike).
func TestMarshalMetaAsJSON(t *testing.T) {
	check := func(wm wireMeta) {
		t.Helper()
		want, wantErr := json.Marshal(&wm, json.Deterministic(true))
		got, err := marshalMeta(&wm)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("marshalMeta(%+v) = %s, %v; json.Marshal %s, %v", wm, got, err, want, wantErr)
		}
	}
	check(metaSample())
	check(wireMeta{})
	check(wireMeta{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	if b, ok := appendMeta(nil, &wireMeta{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Account: "a"}); !ok || len(b) == 0 {
		t.Fatalf("plain metadata not written directly: %s, %v", b, ok)
	}
	pieces := []string{"", "a", "u-42", "x y", `"`, `\`, "\n", "\x00", "\x1f", "\x7f", "é", "\u2028", "<&>", "\xff", "/", "ab\"c"}
	rnd := rand.New(rand.NewPCG(1, 2))
	str := func() string {
		s := ""
		for range rnd.IntN(3) {
			s += pieces[rnd.IntN(len(pieces))]
		}
		return s
	}
	for range 50000 {
		wm := metaSample()
		switch rnd.IntN(4) {
		case 0:
			wm.Time = time.Unix(rnd.Int64N(1<<34), rnd.Int64N(1e9)).UTC()
		case 1:
			wm.Time = time.Unix(rnd.Int64N(1<<34), 0).UTC().Truncate(time.Duration(rnd.IntN(4)) * time.Millisecond)
		case 2:
			wm.Time = time.Date(rnd.IntN(12000)-1000, time.March, 1, 0, 0, 0, rnd.IntN(1e9), time.UTC)
		}
		wm.SchemaVersion = rnd.IntN(5) - 1
		for _, f := range []*string{&wm.Subject, &wm.Account, &wm.ActorID, &wm.ActorRole, &wm.CorrelationID, &wm.CausationID,
			&wm.Traceparent, &wm.Tracestate, &wm.IdempotencyKey, &wm.Fingerprint} {
			if rnd.IntN(3) == 0 {
				*f = str()
			}
		}
		if rnd.IntN(2) == 0 {
			wm.PrevHash = Hash{}
		}
		check(wm)
		// The correlation and causation ids given as ULIDs (as Encode
		// does) write what their strings write.
		ids := wm
		for _, id := range []*ulid.ULID{&ids.correlation, &ids.causation} {
			if rnd.IntN(4) > 0 {
				for i := range id {
					id[i] = byte(rnd.Uint32())
				}
			}
		}
		wm.CorrelationID, wm.CausationID = ids.correlation.String(), ids.causation.String()
		ids.CorrelationID, ids.CausationID, ids.ids = "", "", true
		want, wantErr := json.Marshal(&wm, json.Deterministic(true))
		got, err := marshalMeta(&ids)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("marshalMeta with ULIDs (%+v) = %s, %v; json.Marshal %s, %v", ids, got, err, want, wantErr)
		}
	}
}

// BenchmarkMarshalMeta compares marshalMeta with json.Marshal on metadata
// as the service writes it.
func BenchmarkMarshalMeta(b *testing.B) {
	wm := metaSample()
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&wm, json.Deterministic(true)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := marshalMeta(&wm); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestAppendPayloadAsJSON checks, for every registered event type, that
// the payload appendPayload writes is what marshalPayload (json.Marshal of
// the payload's struct) writes, byte for byte, whenever appendPayload
// writes one, and that it writes one for payloads as the service writes
// them; over 2,000 variations per type with empty members, escapes,
// invalid UTF-8, negative numbers and far years.
func TestAppendPayloadAsJSON(t *testing.T) {
	pieces := []string{"", "a", "u-42", "x y", `"`, `\`, "\n", "\x00", "\x7f", "é", "<&>", "\xff", "AQID+/=="}
	rnd := rand.New(rand.NewPCG(3, 4))
	for typ, r := range registry {
		for n := range 2000 {
			p := r.alloc()
			var strs [maxMembers]string
			plain := n == 0
			for i := range r.fields {
				f := &r.fields[i]
				switch f.Kind {
				case KindString:
					s := "plain-" + f.Name
					if !plain {
						s = ""
						for range rnd.IntN(3) {
							s += pieces[rnd.IntN(len(pieces))]
						}
					}
					*f.str(p), strs[i] = s, s
				case KindInt:
					*f.num(p) = rnd.IntN(2000) - 1000
				case KindTime:
					tm := time.Date(2026, 12, 7, 1, 2, 3, 456000000, time.FixedZone("x", 3600))
					if !plain {
						tm = time.Date(rnd.IntN(12000)-1000, time.March, 1, 0, 0, 0, rnd.IntN(1e9), time.UTC)
					}
					*f.tm(p) = tm
				}
			}
			want, wantErr := r.marshalPayload(p, &strs)
			got, ok := r.appendPayload(nil, p, &strs)
			if plain && !ok {
				t.Fatalf("%s: plain payload not written directly (json %s)", typ, want)
			}
			if ok && (wantErr != nil || !bytes.Equal(got, want)) {
				t.Fatalf("%s: appendPayload %s; marshalPayload %s, %v", typ, got, want, wantErr)
			}
		}
	}
}

// BenchmarkPayload compares appendPayload with marshalPayload on the
// payload of an ActivityRecorded as the service writes it.
func BenchmarkPayload(b *testing.B) {
	r := registry[ledger.TypeActivityRecorded]
	p := r.alloc()
	var strs [maxMembers]string
	for i := range r.fields {
		f := &r.fields[i]
		switch f.Kind {
		case KindString:
			*f.str(p), strs[i] = "value-"+f.Name, "value-"+f.Name
		case KindInt:
			*f.num(p) = 3
		case KindTime:
			*f.tm(p) = time.Date(2026, 12, 7, 1, 2, 3, 456000000, time.UTC)
		}
	}
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := r.marshalPayload(p, &strs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := r.appendPayload(make([]byte, 0, 256), p, &strs); !ok {
				b.Fatal("not plain")
			}
		}
	})
}
