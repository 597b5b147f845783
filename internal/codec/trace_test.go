package codec_test

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
)

const (
	parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	state  = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
)

// The trace context a command was given in is stored in its events'
// metadata as the members traceparent and tracestate (the CloudEvents
// distributed tracing extension's names), decodes back on both paths, and
// is in the stored CloudEvent as those extension attributes.
func TestTraceContextRoundTrip(t *testing.T) {
	c, _ := newCodec(t, user)
	for _, ts := range []string{"", state} {
		meta := sampleMeta()
		meta.Traceparent, meta.Tracestate = parent, ts
		e := sampleEvent(ledger.TypeUserDeactivated, user)
		p := encode(t, c, e, meta)
		if !strings.Contains(string(p.Metadata), `"traceparent":"`+parent+`"`) {
			t.Fatalf("metadata without the traceparent: %s", p.Metadata)
		}
		if got := strings.Contains(string(p.Metadata), `"tracestate"`); got != (ts != "") {
			t.Fatalf("tracestate %q: metadata %s", ts, p.Metadata)
		}
		d, err := c.Decode(t.Context(), record(p))
		if err != nil {
			t.Fatal(err)
		}
		if want := wantMeta(e, meta); !reflect.DeepEqual(d.Meta, want) {
			t.Fatalf("decoded metadata %+v, want %+v", d.Meta, want)
		}
		m, err := codec.DecodeMetadata(record(p))
		if err != nil || m.Traceparent != parent || m.Tracestate != ts {
			t.Fatalf("DecodeMetadata: %+v, %v", m, err)
		}
		ce, err := eventstore.CloudEvent(eventstore.LedgerStream(account), p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(ce), `"traceparent":"`+parent+`"`) {
			t.Fatalf("CloudEvent without traceparent: %s", ce)
		}
	}
	// Without a trace context nothing is written: events stored before
	// keep their bytes and hashes.
	p := encode(t, c, sampleEvent(ledger.TypeUserDeactivated, user), sampleMeta())
	if strings.Contains(string(p.Metadata), "trace") {
		t.Fatalf("metadata without trace context names it: %s", p.Metadata)
	}
}

func TestEncodeRefusesInvalidTraceContext(t *testing.T) {
	c, _ := newCodec(t, user)
	for _, tc := range [][2]string{
		{"", state},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ""},
		{strings.ToUpper(parent), ""},
		{parent, "Bad Key=1"},
		{parent, strings.Repeat("k=v,", 200)},
	} {
		meta := sampleMeta()
		meta.Traceparent, meta.Tracestate = tc[0], tc[1]
		if _, err := c.Encode(t.Context(), sampleEvent(ledger.TypeUserDeactivated, user), meta); !errors.Is(err, codec.ErrInvalidTraceContext) {
			t.Errorf("Encode with %q, %q = %v, want ErrInvalidTraceContext", tc[0], tc[1], err)
		}
	}
}

// Stored metadata with a trace context not in the form the codec writes
// decodes, on both paths, as if it had none (a bad tracestate alone is
// dropped alone): a trace context is advice, and an event is not
// unreadable for it. A member of another kind than a string is malformed,
// as for every member.
func TestDecodeDropsInvalidTraceContext(t *testing.T) {
	c, _ := newCodec(t, user)
	meta := sampleMeta()
	meta.Traceparent, meta.Tracestate = parent, state
	good := encode(t, c, sampleEvent(ledger.TypeUserDeactivated, user), meta)
	for _, bad := range []struct {
		old, new   string
		keepParent bool
	}{
		{parent, "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{parent, "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{parent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", false},
		{parent, "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{parent, "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", false},
		{`"traceparent":"` + parent + `",`, "", false},
		{state, "congo=t61rcWkgMzE,rojo", true},
		{state, "congo=t61rcWkgMzE ,=x", true},
		{state, "Congo=1", true},
	} {
		r := record(good)
		r.Metadata = []byte(strings.Replace(string(good.Metadata), bad.old, bad.new, 1))
		if string(r.Metadata) == string(good.Metadata) {
			t.Fatalf("replacing %q changed nothing", bad.old)
		}
		wantParent := ""
		if bad.keepParent {
			wantParent = parent
		}
		d, err := c.Decode(t.Context(), r)
		if err != nil || d.Meta.Traceparent != wantParent || d.Meta.Tracestate != "" {
			t.Errorf("Decode of %s = %q, %q, %v; want %q and no tracestate", r.Metadata, d.Meta.Traceparent, d.Meta.Tracestate, err, wantParent)
		}
		m, err := codec.DecodeMetadata(r)
		if err != nil || m.Traceparent != wantParent || m.Tracestate != "" {
			t.Errorf("DecodeMetadata of %s = %q, %q, %v; want %q and no tracestate", r.Metadata, m.Traceparent, m.Tracestate, err, wantParent)
		}
	}
	for _, bad := range []struct{ old, new string }{
		{`"tracestate":"` + state + `"`, `"tracestate":1`},
		{`"traceparent":"` + parent + `"`, `"traceparent":["` + parent + `"]`},
	} {
		r := record(good)
		r.Metadata = []byte(strings.Replace(string(good.Metadata), bad.old, bad.new, 1))
		if _, err := c.Decode(t.Context(), r); !errors.Is(err, codec.ErrMalformed) {
			t.Errorf("Decode of %s = %v, want ErrMalformed", r.Metadata, err)
		}
	}
}

func TestValidTraceContext(t *testing.T) {
	for s, want := range map[string]bool{
		parent: true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00":  true,
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-": false,
		"": false,
	} {
		if got := codec.ValidTraceparent(s); got != want {
			t.Errorf("ValidTraceparent(%q) = %v", s, got)
		}
	}
	for s, want := range map[string]bool{
		"": true, state: true, " a=1 ,\tb@vendor=x y": true, "a=1,,b=2": true,
		"a": false, "=1": false, "a=": false, "a=1 ": true, "a=x\x7f": false, "A=1": false,
		strings.Repeat("a=1,", 32)[:4*32-1]: true, strings.Repeat("a=1,", 33)[:4*33-1]: false,
	} {
		if got := codec.ValidTracestate(s); got != want {
			t.Errorf("ValidTracestate(%q) = %v, want %v", s, got, want)
		}
	}
}
