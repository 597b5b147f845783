package jetstream

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestParseAck checks the reading of acknowledgements without
// encoding/json against encoding/json: the same sequence and duplicate
// flag for every answer it reads, and no reading (ok false) for an answer
// it does not know in full, which the caller then decodes in full.
func TestParseAck(t *testing.T) {
	for _, tc := range []struct {
		ack string
		ok  bool
	}{
		{`{"stream":"LEDGER","seq":1}`, true},
		{`{"stream":"LEDGER","seq":18446744073709551615}`, true},
		{`{"stream":"LEDGER","domain":"hub","seq":42}`, true},
		{`{"stream":"LEDGER","seq":42,"duplicate": true}`, true},
		{`{"stream":"LEDGER","seq":42,"duplicate":true}`, true},
		{`{"stream":"LEDGER","seq":42,"duplicate": false}`, false},
		{`{"stream":"LEDGER","seq":42,"batch":"b1","count":2}`, false},
		{`{"stream":"LEDGER","seq":42,"val":"1"}`, false},
		{`{"stream":"LEDGER","seq":18446744073709551616}`, false},
		{`{"stream":"LEDGER","seq":042}`, false},
		{`{"stream":"LEDGER","seq":}`, false},
		{`{"stream":"LEDGER","seq":42} `, false},
		{`{"stream":"LE\"DGER","seq":42}`, false},
		{`{"stream":"","seq":42}`, false},
		{`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"},"stream":"LEDGER","seq":0}`, false},
		{`{"stream":"LEDGER","seq":42,"error":{"code":503}}`, false},
		{``, false},
	} {
		seq, dup, ok := parseAck([]byte(tc.ack))
		if ok != tc.ok {
			t.Errorf("parseAck(%s): ok %v, want %v", tc.ack, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		var want pubAck
		if err := json.Unmarshal([]byte(tc.ack), &want); err != nil {
			t.Fatalf("%s: %v", tc.ack, err)
		}
		if seq != want.Sequence || dup != want.Duplicate {
			t.Errorf("parseAck(%s) = %d, %v; encoding/json reads %d, %v", tc.ack, seq, dup, want.Sequence, want.Duplicate)
		}
	}
}

// TestParseAckOfTheServer reads the acknowledgements of a real server,
// stored and duplicate, as the store receives them.
func TestParseAckOfTheServer(t *testing.T) {
	ctx := context.Background()
	s, err := Embedded(ctx, ServerConfig{DataDir: t.TempDir(), Port: -1}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, want := range []struct {
		seq uint64
		dup bool
	}{{1, false}, {1, true}, {2, false}} {
		m := nats.NewMsg("ledger.acme.SeatsPurchased")
		m.Header.Set(nats.MsgIdHdr, []string{"a", "a", "b"}[i])
		m.Data = []byte(`{}`)
		resp, err := s.nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		seq, dup, ok := parseAck(resp.Data)
		if !ok || seq != want.seq || dup != want.dup {
			t.Errorf("publish %d: parseAck(%s) = %d, %v, %v; want %d, %v, true", i, resp.Data, seq, dup, ok, want.seq, want.dup)
		}
		if seq, dup, err := s.publishOne(ctx, m); err != nil || seq != want.seq || !dup {
			// Published again: a duplicate of the message just stored.
			t.Errorf("publish %d again: %d, %v, %v; want %d, a duplicate", i, seq, dup, err, want.seq)
		}
	}
}

// BenchmarkAck is the reading of one acknowledgement of a stored message,
// by parseAck and by encoding/json (which the JetStream client uses).
//
//	go test -run '^$' -bench Ack -count 3 ./eventstore/jetstream/
func BenchmarkAck(b *testing.B) {
	ack := []byte(`{"stream":"LEDGER","seq":1234567}`)
	b.Run("parseAck", func(b *testing.B) {
		for b.Loop() {
			if _, _, ok := parseAck(ack); !ok {
				b.Fatal("not read")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		for b.Loop() {
			var a pubAck
			if err := json.Unmarshal(ack, &a); err != nil {
				b.Fatal(err)
			}
		}
	})
}
