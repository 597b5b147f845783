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
