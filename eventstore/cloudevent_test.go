package eventstore_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
)

var ceID = uuid.MustParse("0190a4c2-7b1e-7c3d-8e4f-123456789abc")

const sampleMetadata = `{"time":"2026-01-02T03:04:05.123Z","subject":"01J00000000000000000000000","schemaversion":1,"account":"acme","actorid":"tok_1","actorrole":"admin","correlationid":"01J00000000000000000000001","causationid":"01J00000000000000000000002","prevhash":"ab12"}`

func TestCloudEventEnvelope(t *testing.T) {
	p := eventstore.Proposed{ID: ceID, Type: "SeatsPurchased", Data: []byte(`{"seats":3}`), Metadata: []byte(`{"time":"2026-01-02T03:04:05.123Z","subject":"u1"}`)}
	got, err := eventstore.CloudEvent(eventstore.LedgerStream("acme"), p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"specversion":"1.0","id":"0190a4c2-7b1e-7c3d-8e4f-123456789abc","source":"/v1/accounts/acme","type":"SeatsPurchased","datacontenttype":"application/json","time":"2026-01-02T03:04:05.123Z","subject":"u1","data":{"seats":3}}`
	if string(got) != want {
		t.Fatalf("envelope\n got %s\nwant %s", got, want)
	}
}

// TestCloudEventStructuredMode checks what a CloudEvents SDK reading
// structured mode requires: a JSON object with the required attributes as
// strings, specversion 1.0, lower-case alphanumeric attribute names, and
// data as JSON when datacontenttype is application/json.
func TestCloudEventStructuredMode(t *testing.T) {
	p := eventstore.Proposed{ID: ceID, Type: "UserAdded", Data: []byte(`{"user":"u1","sealed":"AAAA"}`), Metadata: []byte(sampleMetadata)}
	b, err := eventstore.CloudEvent(eventstore.LedgerStream("acme"), p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("envelope is not a JSON object: %v", err)
	}
	for name, want := range map[string]string{
		"specversion":     "1.0",
		"id":              ceID.String(),
		"source":          "/v1/accounts/acme",
		"type":            "UserAdded",
		"datacontenttype": "application/json",
		"time":            "2026-01-02T03:04:05.123Z",
		"subject":         "01J00000000000000000000000",
	} {
		var got string
		if err := json.Unmarshal(m[name], &got); err != nil {
			t.Errorf("attribute %s = %s: not a string: %v", name, m[name], err)
		} else if got != want {
			t.Errorf("attribute %s = %q, want %q", name, got, want)
		}
	}
	for name := range m {
		for _, c := range name {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
				t.Errorf("attribute name %q is not lower-case alphanumeric", name)
			}
		}
	}
	if !bytes.Equal(m["data"], p.Data) {
		t.Errorf("data = %s, want %s", m["data"], p.Data)
	}
	if _, ok := m["prevhash"]; !ok {
		t.Error("extension prevhash missing")
	}
}

func TestCloudEventRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		data, md string
		wantMD   string
	}{
		{name: "full", data: `{"seats":3}`, md: sampleMetadata, wantMD: sampleMetadata},
		{name: "whitespace kept", data: " [1, 2 ,3] ", md: `{ "time" : "t" ,"n":1.50 }`, wantMD: `{ "time" : "t" ,"n":1.50 }`},
		{name: "no metadata", data: `"x"`},
		{name: "empty object metadata", data: `null`, md: `{}`},
		{name: "no data", md: `{"a":true}`, wantMD: `{"a":true}`},
		{name: "escapes", data: `"\u00e9\n"`, md: `{"s":"\"}\u0041,"}`, wantMD: `{"s":"\"}\u0041,"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := eventstore.Proposed{ID: ceID, Type: "T", Data: []byte(tc.data), Metadata: []byte(tc.md)}
			b, err := eventstore.CloudEvent(eventstore.ActivityStream("a-1"), p)
			if err != nil {
				t.Fatal(err)
			}
			e, err := eventstore.ParseCloudEvent(b)
			if err != nil {
				t.Fatalf("parse %s: %v", b, err)
			}
			if e.ID != ceID || e.Type != "T" || e.Source != "/v1/accounts/a-1" {
				t.Errorf("parsed %+v", e)
			}
			if string(e.Data) != tc.data || (tc.data == "" && e.Data != nil) {
				t.Errorf("data = %q, want %q", e.Data, tc.data)
			}
			if string(e.Metadata) != tc.wantMD || (tc.wantMD == "" && e.Metadata != nil) {
				t.Errorf("metadata = %q, want %q", e.Metadata, tc.wantMD)
			}
		})
	}
}

func TestCloudEventRefuses(t *testing.T) {
	tests := []struct {
		name     string
		typ      string
		data, md string
	}{
		{name: "no type", data: `1`},
		{name: "data not JSON", typ: "T", data: `{`},
		{name: "metadata array", typ: "T", md: `[1]`},
		{name: "metadata string", typ: "T", md: `"x"`},
		{name: "metadata leading space", typ: "T", md: ` {"a":1}`},
		{name: "core id", typ: "T", md: `{"id":"x"}`},
		{name: "core data", typ: "T", md: `{"data":"x"}`},
		{name: "core specversion", typ: "T", md: `{"specversion":"1.0"}`},
		{name: "upper-case name", typ: "T", md: `{"Time":"x"}`},
		{name: "underscore name", typ: "T", md: `{"data_base64":"x"}`},
		{name: "nested value", typ: "T", md: `{"a":{"b":1}}`},
		{name: "null value", typ: "T", md: `{"a":null}`},
		{name: "duplicate name", typ: "T", md: `{"a":1,"a":2}`},
		{name: "invalid object", typ: "T", md: `{"a":1,}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := eventstore.Proposed{ID: ceID, Type: tc.typ, Data: []byte(tc.data), Metadata: []byte(tc.md)}
			if b, err := eventstore.CloudEvent(eventstore.LedgerStream("acme"), p); !errors.Is(err, eventstore.ErrInvalidCloudEvent) {
				t.Fatalf("CloudEvent = %s, %v; want ErrInvalidCloudEvent", b, err)
			}
		})
	}
}

func TestParseCloudEventRefuses(t *testing.T) {
	for name, b := range map[string]string{
		"not json":         `{`,
		"array":            `[]`,
		"no specversion":   `{"id":"0190a4c2-7b1e-7c3d-8e4f-123456789abc","source":"/s","type":"T"}`,
		"wrong version":    `{"specversion":"0.3","id":"0190a4c2-7b1e-7c3d-8e4f-123456789abc","source":"/s","type":"T"}`,
		"id not uuid":      `{"specversion":"1.0","id":"x","source":"/s","type":"T"}`,
		"no type":          `{"specversion":"1.0","id":"0190a4c2-7b1e-7c3d-8e4f-123456789abc","source":"/s"}`,
		"trailing garbage": `{"specversion":"1.0","id":"0190a4c2-7b1e-7c3d-8e4f-123456789abc","source":"/s","type":"T"} x`,
	} {
		if _, err := eventstore.ParseCloudEvent([]byte(b)); !errors.Is(err, eventstore.ErrInvalidCloudEvent) {
			t.Errorf("%s: err = %v, want ErrInvalidCloudEvent", name, err)
		}
	}
}

func TestParseCloudEventForeignOrder(t *testing.T) {
	b := `{"time":"t", "specversion":"1.0","data":{"a":1},"id":"0190a4c2-7b1e-7c3d-8e4f-123456789abc","source":"/s","type":"T","x":1}`
	e, err := eventstore.ParseCloudEvent([]byte(b))
	if err != nil {
		t.Fatal(err)
	}
	if string(e.Data) != `{"a":1}` || string(e.Metadata) != `{"time":"t","x":1}` {
		t.Fatalf("data %s metadata %s", e.Data, e.Metadata)
	}
}

func FuzzCloudEventRoundTrip(f *testing.F) {
	f.Add([]byte(`{"seats":3}`), []byte(sampleMetadata), "SeatsPurchased")
	f.Add([]byte(` 1 `), []byte(`{ "a" : "}" }`), "T")
	f.Add([]byte(nil), []byte(`{}`), "T")
	f.Fuzz(func(t *testing.T, data, md []byte, typ string) {
		p := eventstore.Proposed{ID: ceID, Type: typ, Data: data, Metadata: md}
		b, err := eventstore.CloudEvent(eventstore.LedgerStream("acme"), p)
		if err != nil {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("envelope %q is not JSON", b)
		}
		e, err := eventstore.ParseCloudEvent(b)
		if err != nil {
			t.Fatalf("parse %q: %v", b, err)
		}
		if e.ID != ceID || e.Type != typ {
			t.Fatalf("id/type = %s/%q", e.ID, e.Type)
		}
		if !bytes.Equal(e.Data, data) {
			t.Fatalf("data %q != %q", e.Data, data)
		}
		if !bytes.Equal(e.Metadata, md) && !(e.Metadata == nil && emptyObject(md)) {
			t.Fatalf("metadata %q != %q", e.Metadata, md)
		}
		// The fast path for the store's own layout agrees with the full
		// parse of the same bytes.
		slow, err := eventstore.ParseCloudEventSlow(b)
		if err != nil {
			t.Fatalf("full parse %q: %v", b, err)
		}
		if slow.ID != e.ID || slow.Type != e.Type || slow.Source != e.Source ||
			!bytes.Equal(slow.Data, e.Data) || !bytes.Equal(slow.Metadata, e.Metadata) {
			t.Fatalf("fast parse %+v, full parse %+v of %q", e, slow, b)
		}
		checkParser(t, new(eventstore.CloudEventParser), b)
	})
}

// checkParser checks that p.Parse(b) returns what ParseCloudEvent does,
// nil members included, in bytes that b does not share.
func checkParser(t *testing.T, p *eventstore.CloudEventParser, b []byte) {
	t.Helper()
	want, wantErr := eventstore.ParseCloudEvent(bytes.Clone(b))
	b = bytes.Clone(b)
	got, err := p.Parse(b)
	if (err == nil) != (wantErr == nil) || err != nil && !errors.Is(err, eventstore.ErrInvalidCloudEvent) {
		t.Fatalf("Parse(%q): %v, ParseCloudEvent: %v", b, err, wantErr)
	}
	for i := range b {
		b[i] = '#' // the parsed event must not change with the bytes it came from
	}
	if got.ID != want.ID || got.Type != want.Type || got.Source != want.Source ||
		!bytes.Equal(got.Data, want.Data) || (got.Data == nil) != (want.Data == nil) ||
		!bytes.Equal(got.Metadata, want.Metadata) || (got.Metadata == nil) != (want.Metadata == nil) {
		t.Fatalf("Parse = %+v, ParseCloudEvent = %+v", got, want)
	}
	// Appending to the data must not change the metadata (they share one
	// allocation).
	if got.Data != nil && got.Metadata != nil {
		md := string(got.Metadata)
		_ = append(got.Data, '!')
		if string(got.Metadata) != md {
			t.Fatalf("appending to the data changed the metadata to %q", got.Metadata)
		}
	}
}

// TestCloudEventParser checks the parser of long reads against
// ParseCloudEvent over envelopes of the store's own layout and others,
// several times over with the same parser (it keeps sources and types).
func TestCloudEventParser(t *testing.T) {
	var envs [][]byte
	for _, p := range []eventstore.Proposed{
		{ID: ceID, Type: "SeatsPurchased", Data: []byte(`{"seats":3}`), Metadata: []byte(sampleMetadata)},
		{ID: ceID, Type: "T", Data: []byte(`"x"`)},
		{ID: ceID, Type: "T", Metadata: []byte(`{"a":true}`)},
		{ID: ceID, Type: "T"},
		{ID: ceID, Type: "T", Data: []byte(" [1, 2 ,3] "), Metadata: []byte(`{ "time" : "t" ,"n":1.50 }`)},
		{ID: ceID, Type: "T", Data: []byte(`"\u00e9\n"`), Metadata: []byte(`{"s":"\"}\u0041,"}`)},
	} {
		for _, stream := range []eventstore.StreamID{eventstore.LedgerStream("acme"), eventstore.ActivityStream("a-1")} {
			b, err := eventstore.CloudEvent(stream, p)
			if err != nil {
				t.Fatal(err)
			}
			envs = append(envs, b)
		}
	}
	envs = append(envs,
		[]byte(`{"time":"t", "specversion":"1.0","data":{"a":1},"id":"0190a4c2-7b1e-7c3d-8e4f-123456789abc","source":"/s","type":"T","x":1}`),
		[]byte(`{"specversion":"1.0","id":"0190a4c2-7b1e-7c3d-8e4f-123456789abc","source":"/s","type":"T"} x`),
		[]byte(`{"specversion":"1.0","id":"0190a4c2-7b1e-7c3d-8e4f-123456789abc","source":"/s"}`),
		[]byte(`{`),
	)
	p := new(eventstore.CloudEventParser)
	for range 3 {
		for _, b := range envs {
			checkParser(t, p, b)
		}
	}
}

func emptyObject(md []byte) bool {
	if len(md) == 0 {
		return true
	}
	return len(bytes.TrimSpace(md[1:len(md)-1])) == 0
}

func BenchmarkParseCloudEvent(b *testing.B) {
	p := eventstore.Proposed{ID: ceID, Type: "UserAdded", Data: []byte(`{"user":"01J00000000000000000000000","role":"member","name":"c2VhbGVkIG5hbWUgY2lwaGVydGV4dA","email":"c2VhbGVkIGVtYWlsIGNpcGhlcnRleHQ"}`), Metadata: []byte(sampleMetadata)}
	env, err := eventstore.CloudEvent(eventstore.LedgerStream("acme"), p)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := eventstore.ParseCloudEvent(env); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// FormatUUID writes what uuid.UUID.String returns.
func TestFormatUUID(t *testing.T) {
	ids := []uuid.UUID{{}, uuid.Max, ceID}
	for i := range 16 {
		var id uuid.UUID
		for j := range id {
			id[j] = byte(i*16 + j*17)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		var got [36]byte
		eventstore.FormatUUID(&got, id)
		if string(got[:]) != id.String() {
			t.Errorf("FormatUUID(%x) = %s, want %s", id[:], got[:], id.String())
		}
	}
}
