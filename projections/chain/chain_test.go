package chain_test

import (
	"errors"
	"testing"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections/chain"
	"github.com/licenseledger/ledger/projections/internal/fixture"
)

func TestVerify(t *testing.T) {
	ledgerStream := eventstore.LedgerStream("acme")
	activity := eventstore.ActivityStream("acme")
	flipData := func(r *eventstore.Record) { r.Data[len(r.Data)/2] ^= 0x01 }
	cases := []struct {
		name   string
		stream eventstore.StreamID
		rev    uint64 // tampered revision
		change func(*eventstore.Record)
		// broken is the revision reported, or -1 for an intact chain.
		broken int
	}{
		{"intact ledger", ledgerStream, 0, nil, -1},
		{"intact activity", activity, 0, nil, -1},
		{"one byte of a ledger event", ledgerStream, 4, flipData, 5},
		{"one byte of the first event", ledgerStream, 0, flipData, 1},
		{"one byte of an activity", activity, 1, flipData, 2},
		{"a claimed link", ledgerStream, 3, func(r *eventstore.Record) {
			m := string(r.Metadata)
			i := len(m) - 10 // inside the prevhash hex digits, the last member
			r.Metadata = []byte(m[:i] + string(rune('0'+('7'-m[i])%8)) + m[i+1:])
		}, 3},
		{"the last event, caught only by its head", ledgerStream, 10, flipData, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			l := fixture.New()
			if err := fixture.Seed(ctx, l); err != nil {
				t.Fatal(err)
			}
			store := memory.New()
			defer store.Close()
			if err := l.CopyTo(ctx, store); err != nil {
				t.Fatal(err)
			}
			var events []eventstore.Record
			for r, err := range store.ReadStream(ctx, tc.stream, 0) {
				if err != nil {
					t.Fatal(err)
				}
				events = append(events, r)
			}
			if tc.change != nil {
				if err := store.Tamper(tc.stream, tc.rev, tc.change); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := chain.Verify(ctx, store, tc.stream)
			if err != nil {
				t.Fatal(err)
			}
			if tc.broken < 0 {
				if !rep.OK || rep.Broken != nil || rep.Checked != len(events) {
					t.Fatalf("report = %+v, want ok over %d events", rep, len(events))
				}
				if (rep.Head == l.Head(tc.stream)) != (tc.change == nil) {
					t.Errorf("head %s, stored chain head %s, tampered %v", rep.Head, l.Head(tc.stream), tc.change != nil)
				}
				return
			}
			b := rep.Broken
			if rep.OK || b == nil {
				t.Fatalf("report = %+v, want a broken link", rep)
			}
			want := events[tc.broken]
			claimed, _ := codec.DecodeMetadata(want)
			if b.Revision != uint64(tc.broken) || b.EventID != want.ID || b.Stream != tc.stream.String() || rep.Checked != tc.broken+1 {
				t.Errorf("broken = %+v after %d checked, want revision %d, event %s", b, rep.Checked, tc.broken, want.ID)
			}
			if b.Expected == b.Found {
				t.Errorf("broken link with expected == found: %+v", b)
			}
			if tc.rev != uint64(tc.broken) && b.Found != claimed.PrevHash {
				t.Errorf("found %s, the event claims %s", b.Found, claimed.PrevHash)
			}
			if b.Error() == "" {
				t.Error("empty break description")
			}
		})
	}
}

func TestVerifyEmptyStream(t *testing.T) {
	store := memory.New()
	defer store.Close()
	_, err := chain.Verify(t.Context(), store, eventstore.LedgerStream("none"))
	if !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Errorf("err = %v, want ErrStreamNotFound", err)
	}
}
