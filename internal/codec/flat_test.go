package codec

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
)

// goldenParts returns the stored payloads by type and the metadata of the
// golden files of the current versions.
func goldenParts(tb testing.TB) (data map[string][]byte, metas [][]byte) {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.golden.json"))
	if err != nil || len(paths) == 0 {
		tb.Fatalf("no golden files: %v", err)
	}
	data = make(map[string][]byte)
	for _, p := range paths {
		if strings.Count(filepath.Base(p), ".") > 2 { // <Type>.v<N>.golden.json, an older version
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		var g struct {
			Type     string         `json:"type"`
			Data     jsontext.Value `json:"data"`
			Metadata jsontext.Value `json:"metadata"`
		}
		if err := json.Unmarshal(b, &g); err != nil {
			tb.Fatal(err)
		}
		data[g.Type] = g.Data
		metas = append(metas, g.Metadata)
	}
	return data, metas
}

// agree checks the fast path of every registered payload against the
// general decoder on data: whatever the fast path accepts, the general
// decoder accepts too, with the same result. It returns how many took the
// fast path, metadata included.
func agreeAll(t *testing.T, data []byte) (fast int) {
	t.Helper()
	for _, s := range ordered {
		typ := s.describe().Type
		m := Metadata{Account: "kept"}
		ms := metaStrings{found: true, account: []byte("acme"), subject: []byte("u-1")}
		f, g, err := s.bothPaths(data, &m, &ms)
		if f == nil {
			if m.Account != "kept" || !ms.found {
				t.Fatalf("%s: fast path gave up on %q after setting strings", typ, data)
			}
			continue
		}
		fast++
		if m.Account != "acme" || m.Subject != "u-1" || ms.found {
			t.Fatalf("%s: fast path of %q did not set the metadata strings: %+v", typ, data, m)
		}
		if err != nil {
			t.Fatalf("%s: fast path accepted %q, general decoder: %v", typ, data, err)
		}
		if !reflect.DeepEqual(f, g) {
			t.Fatalf("%s: decoding %q:\nfast    %#v\ngeneral %#v", typ, data, f, g)
		}
	}
	if m, ms, ok := scanMeta(data); ok {
		fast++
		ms.set(&m)
		want, err := unmarshalMeta(eventstore.Record{Metadata: data})
		if err != nil {
			t.Fatalf("fast path accepted metadata %q, general decoder: %v", data, err)
		}
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("decoding metadata %q:\nfast    %+v\ngeneral %+v", data, m, want)
		}
	}
	return fast
}

// takesFastPath reports whether the payload data of type typ takes the
// fast path.
func takesFastPath(typ string, data []byte) bool {
	f, _, _ := registry[typ].bothPaths(data, new(Metadata), new(metaStrings))
	return f != nil
}

// What the codec writes takes the fast path: otherwise decoding is
// correct but slow.
func TestFastPathTakesStoredForm(t *testing.T) {
	data, metas := goldenParts(t)
	if len(data) != len(ordered) {
		t.Fatalf("%d golden payloads, %d registered types", len(data), len(ordered))
	}
	for typ, b := range data {
		if registry[typ] == nil {
			t.Fatalf("golden payload of unregistered type %s", typ)
		}
		if !takesFastPath(typ, b) {
			t.Errorf("%s: stored payload does not take the fast path: %s", typ, b)
		}
		agreeAll(t, b)
	}
	for _, m := range metas {
		if _, _, ok := scanMeta(m); !ok {
			t.Errorf("stored metadata does not take the fast path: %s", m)
		}
		agreeAll(t, m)
	}
}

func TestFastPathGivesUp(t *testing.T) {
	for _, data := range []string{
		`{"count":1.0}`, `{"count":1e3}`, `{"count":-0}`, `{"count":01}`, `{"count":1234567890123456789}`,
		`{"user_id":"\u0041"}`, `{"user_id":"é"}`, `{"user_id":null}`, `{"user_id":true}`, `{"user_id":["x"]}`,
		`{"us\u0065r_id":"x"}`, `{"user_id":"x","user_id":"y"}`, `{"user_id":"x",}`, `{"user_id":"x"`, `{"user_id":"x"}x`,
		`{"at":"2025-03-14T09:26:53+01:00"}`, `{"at":"2025-03-14 09:26:53Z"}`, `{"at":"2025-02-30T09:26:53Z"}`,
		`{"at":"2025-03-14T24:00:00Z"}`, `{"at":"2025-03-14T09:26:53.Z"}`,
		`{"at":1}`, `{"user_id":1}`, `{"count":"1"}`, `{"Unknown":1}`, ``, `null`, `[]`, `{`,
	} {
		for _, typ := range []string{"UserActivated", "SeatsPurchased"} {
			if takesFastPath(typ, []byte(data)) {
				t.Errorf("%s: fast path accepted %s", typ, data)
			}
		}
	}
	var m Metadata
	var ms metaStrings
	f, _, _ := registry["UserActivated"].bothPaths([]byte(" {\n\t\"user_id\" : \"u-1\" ,\r\"at\":\"2025-03-14T09:26:53.5Z\" } "), &m, &ms)
	if f == nil {
		t.Fatal("fast path rejected JSON with spaces")
	}
	if p, ok := f.Event.(ledger.UserActivated); !ok || p.UserID != "u-1" || p.At.Nanosecond() != 5e8 {
		t.Errorf("fast path decoded JSON with spaces as %+v", f.Event)
	}
	// A payload without a member its registration requires is left to the
	// general decoder, which refuses it.
	for _, typ := range []string{"UserActivated", "UserProfileUpdated"} {
		for _, data := range []string{`{}`, `{"user_id":"u-1"}`, `{"at":"2025-03-14T09:26:53Z"}`} {
			if takesFastPath(typ, []byte(data)) {
				t.Errorf("%s: fast path accepted %s, which lacks a member", typ, data)
			}
			if _, _, err := registry[typ].bothPaths([]byte(data), new(Metadata), new(metaStrings)); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: general decoder of %s = %v, want ErrMalformed", typ, data, err)
			}
		}
	}
	if !takesFastPath("UserProfileUpdated", []byte(`{"user_id":"u-1","at":"2025-03-14T09:26:53Z"}`)) {
		t.Error("fast path rejected a payload without its optional members")
	}
}

// FuzzFastPathAgrees checks that the fast path of decoding accepts nothing
// the general decoder rejects and decodes what it accepts the same way.
func FuzzFastPathAgrees(f *testing.F) {
	data, metas := goldenParts(f)
	for _, b := range data {
		f.Add(b)
	}
	for _, b := range metas {
		f.Add(b)
	}
	f.Add([]byte(`{"count":-120,"at":"2025-12-31T23:59:60.000000001Z","effective_at":"0000-01-01T00:00:00Z"}`))
	f.Add([]byte(` { "user_id" : "" , "role":"admin" } `))
	f.Add([]byte(`{"user_id":"\u0041"}`))
	f.Add([]byte(`{"user_id":"a\"b\\c\/"}`))
	f.Add([]byte(`{"at":"2025-03-14T09:26:53.1234567890Z"}`))
	f.Add([]byte(`{"at":"2025-03-14T9:26:53Z"}`))
	f.Add([]byte(`{"count":1,"at":"2025-03-14T09:26:53,5Z"}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"user_id":"u-1","at":"2025-03-14T09:26:53Z"}`))
	f.Add([]byte(`{"user_id":null,"at":"2025-03-14T09:26:53Z"}`))
	f.Add([]byte(`{"schemaversion":1,"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"a=1,b@c=x y"}`))
	f.Add([]byte(`{"schemaversion":1,"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"A=1"}`))
	f.Add([]byte(`{"schemaversion":1,"traceparent":"00-abc-01","tracestate":"a=1"}`))
	f.Add([]byte(`{"schemaversion":1,"tracestate":"a=1"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		agreeAll(t, data)
	})
}

// utcTime agrees with time.Time.UnmarshalText wherever it answers, and
// answers for the form the encoder writes.
func TestUTCTime(t *testing.T) {
	for _, s := range []string{
		"2025-03-14T09:26:53Z", "2025-03-14T09:26:53.5Z", "2025-03-14T09:26:53.589793238Z",
		"2024-02-29T23:59:59.000000001Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
		"2000-02-29T00:00:00Z", "2025-04-30T12:00:00.12Z",
	} {
		got, ok := utcTime([]byte(s))
		var want time.Time
		if err := want.UnmarshalText([]byte(s)); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("utcTime(%s) = %v, %v; want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{
		"2025-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2025-04-31T00:00:00Z", "2025-13-01T00:00:00Z",
		"2025-00-01T00:00:00Z", "2025-01-00T00:00:00Z", "2025-03-14T24:00:00Z", "2025-03-14T09:60:00Z",
		"2025-03-14T09:26:60Z", "2025-03-14T09:26:53.Z", "2025-03-14T09:26:53.1234567890Z",
		"2025-03-14T09:26:53,5Z", "2025-03-14T09:26:53+01:00", "2025-03-14 09:26:53Z", "2025-03-14T9:26:53Z",
		"+025-03-14T09:26:53Z", "2025-03-14T09:26:53.5x5Z", "2025-03-14T09:26:53",
	} {
		if got, ok := utcTime([]byte(s)); ok {
			t.Errorf("utcTime(%s) = %v, want no answer", s, got)
		}
	}
}

// Metadata with a trace context, as the codec writes it, takes the fast
// path and agrees with the general decoder.
func TestFastPathTakesTraceContext(t *testing.T) {
	wm := wireMeta{
		Time: time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC), Subject: "u-1", SchemaVersion: 1, Account: "acme",
		ActorID: "p-1", ActorRole: "admin", CorrelationID: "01JPAZ0G7QWM8V3H2K5N6R9T1X", CausationID: "01JPAZ0G7QWM8V3H2K5N6R9T1X",
		Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", Tracestate: "congo=t61rcWkgMzE",
		IdempotencyKey: "k-1", Fingerprint: "f-1",
	}
	data, err := json.Marshal(&wm, json.Deterministic(true))
	if err != nil {
		t.Fatal(err)
	}
	m, ms, ok := scanMeta(data)
	if !ok {
		t.Fatalf("metadata with a trace context does not take the fast path: %s", data)
	}
	ms.set(&m)
	if m.Traceparent != wm.Traceparent || m.Tracestate != wm.Tracestate || m.IdempotencyKey != "k-1" || m.CommandFingerprint != "f-1" || m.Account != "acme" {
		t.Fatalf("fast path read %+v from %s", m, data)
	}
	agreeAll(t, data)
}
