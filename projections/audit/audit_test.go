package audit_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/audit"
	"github.com/licenseledger/ledger/projections/internal/fixture"
)

func TestEntries(t *testing.T) {
	l := fixture.New()
	if err := fixture.Seed(t.Context(), l); err != nil {
		t.Fatal(err)
	}
	p := audit.New()
	for _, d := range l.Live() {
		if err := p.Apply(d); err != nil {
			t.Fatal(err)
		}
	}
	all, err := p.Entries("acme", audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	// Every entry matches its record, and hashes chain per stream.
	recs := l.Records()
	heads := map[string]codec.Hash{}
	for i, e := range all {
		r := recs[i]
		heads[e.Stream] = codec.RecordHash(heads[e.Stream], r)
		m, _ := codec.DecodeMetadata(r)
		if e.Position != r.Position || e.Revision != r.Revision || e.EventID != r.ID || e.Action != r.Type ||
			e.Stream != r.Stream.String() || e.Hash != heads[e.Stream] || e.ActorID != m.Actor.ID ||
			e.ActorRole != m.Actor.Role || e.IdempotencyKey != m.IdempotencyKey || e.CorrelationID != m.CorrelationID ||
			!e.Time.Equal(m.Time) || e.UserID != m.Subject {
			t.Errorf("entry %d = %+v does not match record %+v / %+v", i, e, r, m)
		}
	}
	if p.Head(eventstore.LedgerStream("acme")) != l.Head(eventstore.LedgerStream("acme")) {
		t.Error("ledger head differs from the stored chain's")
	}

	count := func(pred func(audit.Entry) bool) int {
		n := 0
		for _, e := range all {
			if pred(e) {
				n++
			}
		}
		return n
	}
	cases := []struct {
		name string
		f    audit.Filter
		want int
	}{
		{"everything", audit.Filter{}, len(all)},
		{"about bob", audit.Filter{User: "bob"}, 5}, // added, act-1, deactivated, activated, deactivated
		{"by the service", audit.Filter{Actor: fixture.Service.ID}, 4},
		{"by ann about cy", audit.Filter{Actor: fixture.AnnActor.ID, User: "cy"}, 2},
		{"since h12", audit.Filter{Since: fixture.H(12)}, count(func(e audit.Entry) bool { return !e.Time.Before(fixture.H(12)) })},
		{"until h12", audit.Filter{Until: fixture.H(12)}, count(func(e audit.Entry) bool { return e.Time.Before(fixture.H(12)) })},
		{"[h4, h9)", audit.Filter{Since: fixture.H(4), Until: fixture.H(9)}, 5},
		{"limit", audit.Filter{Limit: 3}, 3},
		{"nobody", audit.Filter{User: "zed"}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.Entries("acme", tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Fatalf("%d entries, want %d: %+v", len(got), tc.want, got)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Position <= got[i-1].Position {
					t.Errorf("entries out of order at %d", i)
				}
			}
			for _, e := range got {
				if tc.f.User != "" && e.UserID != tc.f.User || tc.f.Actor != "" && e.ActorID != tc.f.Actor {
					t.Errorf("entry %+v does not match %+v", e, tc.f)
				}
			}
		})
	}
	if _, err := p.Entries("nope", audit.Filter{}); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("unknown account: %v", err)
	}

	var buf bytes.Buffer
	if err := p.Export(&buf, "acme", audit.Filter{User: "cy"}); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	lines := 0
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d: %v", lines, err)
		}
		if m["user_id"] != "cy" || m["hash"] == "" || m["event_id"] == "" {
			t.Errorf("line %d = %v", lines, m)
		}
		lines++
		for _, pii := range []string{fixture.CyName, fixture.CyEmail, fixture.AnnName} {
			if strings.Contains(sc.Text(), pii) {
				t.Errorf("export holds %q", pii)
			}
		}
	}
	if want := count(func(e audit.Entry) bool { return e.UserID == "cy" }); lines != want || want == 0 {
		t.Errorf("%d lines exported, want %d", lines, want)
	}
}

// chained returns the links of records recomputed from their stored
// bytes, per stream.
func chained(recs []eventstore.Record) []codec.Hash {
	heads := map[eventstore.StreamID]codec.Hash{}
	out := make([]codec.Hash, len(recs))
	for i, r := range recs {
		heads[r.Stream] = codec.RecordHash(heads[r.Stream], r)
		out[i] = heads[r.Stream]
	}
	return out
}

func checkHashes(t *testing.T, p *audit.Projection, want []codec.Hash) {
	t.Helper()
	all, err := p.Entries("acme", audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(want) {
		t.Fatalf("%d entries, want %d", len(all), len(want))
	}
	for i, e := range all {
		if e.Hash != want[i] {
			t.Errorf("entry %d (%s rev %d): hash %s, want %s", i, e.Stream, e.Revision, e.Hash, want[i])
		}
	}
}

// The link of an entry whose successor claims no previous hash is
// computed from the stored record.
func TestHashWithoutClaimedLink(t *testing.T) {
	l := fixture.New()
	if err := fixture.Seed(t.Context(), l); err != nil {
		t.Fatal(err)
	}
	p := audit.New()
	for i, d := range l.Live() {
		if i%2 == 1 {
			d.Meta.PrevHash = codec.Hash{}
		}
		if err := p.Apply(d); err != nil {
			t.Fatal(err)
		}
	}
	checkHashes(t, p, chained(l.Records()))
}

// An entry shows the link its successor claims; package chain is what
// recomputes and reports a false claim.
func TestHashIsTheClaimedLink(t *testing.T) {
	l := fixture.New()
	if err := fixture.Seed(t.Context(), l); err != nil {
		t.Fatal(err)
	}
	want := chained(l.Records())
	live := l.Live()
	// k: a ledger event, neither the first nor the last of its stream,
	// claiming a false link for its predecessor j.
	k, seen := len(live)-1, 0
	for live[k].Record.Stream.Category != eventstore.Ledger || seen < 2 {
		if live[k].Record.Stream.Category == eventstore.Ledger {
			seen++
		}
		k--
	}
	if live[k].Record.Revision == 0 {
		t.Fatal("the seed's ledger is too short")
	}
	j := k - 1
	for live[j].Record.Stream != live[k].Record.Stream {
		j--
	}
	false_ := codec.Hash{1, 2, 3}
	live[k].Meta.PrevHash = false_
	want[j] = false_
	p := audit.New()
	if err := p.ApplyBatch(live); err != nil {
		t.Fatal(err)
	}
	checkHashes(t, p, want)
}

// A snapshot taken while streams' last links are still unsettled restores
// them, and the restored model goes on chaining exactly as the live one.
func TestHashesAcrossSnapshot(t *testing.T) {
	l := fixture.New()
	if err := fixture.Seed(t.Context(), l); err != nil {
		t.Fatal(err)
	}
	live := l.Live()
	want := chained(l.Records())
	for _, cut := range []int{1, len(live) / 3, len(live) / 2, len(live) - 1} {
		a, b := audit.New(), audit.New()
		if err := a.ApplyBatch(live[:cut]); err != nil {
			t.Fatal(err)
		}
		s, err := a.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Restore(s); err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		for _, st := range []eventstore.StreamID{eventstore.LedgerStream("acme"), eventstore.ActivityStream("acme")} {
			if a.Head(st) != b.Head(st) {
				t.Errorf("cut %d: head of %s differs after restore", cut, st)
			}
		}
		for i, d := range live[cut:] {
			if i%3 == 0 {
				d.Meta.PrevHash = codec.Hash{} // the restored link must not be needed from a kept record
			}
			if err := b.Apply(d); err != nil {
				t.Fatal(err)
			}
		}
		checkHashes(t, b, want)
		if b.Head(eventstore.LedgerStream("acme")) != l.Head(eventstore.LedgerStream("acme")) {
			t.Errorf("cut %d: ledger head differs from the stored chain's", cut)
		}
	}
}

// A snapshot whose chain head is not its stream's last entry's hash is
// refused.
func TestRestoreRefusesInconsistentHead(t *testing.T) {
	l := fixture.New()
	if err := fixture.Seed(t.Context(), l); err != nil {
		t.Fatal(err)
	}
	a := audit.New()
	if err := a.ApplyBatch(l.Live()); err != nil {
		t.Fatal(err)
	}
	s, err := a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	h := a.Head(eventstore.LedgerStream("acme"))
	i := bytes.Index(s, h[:])
	if i < 0 {
		t.Fatal("ledger head not found in the snapshot")
	}
	s[i] ^= 1
	b := audit.New()
	if err := b.Restore(s); !errors.Is(err, projections.ErrSnapshotFormat) {
		t.Fatalf("restore of a snapshot with a false head: %v", err)
	}
}
