package audit_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/audit"
	"github.com/licenseledger/ledger/projections/internal/fixture"
)

// Scan walks an account's entries from any position, a filter applied
// across its lock batches, stops at the account's end when it started,
// and holds no lock while the caller handles an entry: the model takes
// events in the middle of a scan.
func TestScan(t *testing.T) {
	ctx := t.Context()
	l, err := fixture.History(ctx, 2, 2400)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := l.Rebuild(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := audit.New()
	split := len(ds) * 2 / 3
	if err := p.ApplyBatch(ds[:split]); err != nil {
		t.Fatal(err)
	}
	const account = "acct-0001"
	before, err := p.Entries(account, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(before) < 1200 {
		t.Fatalf("control: %d entries, want several lock batches", len(before))
	}

	entries, err := p.Scan(account, audit.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []audit.Entry
	rest := ds[split:]
	for e := range entries {
		got = append(got, e)
		if len(rest) == 0 {
			continue
		}
		// The scan is paused here: an update must not wait for it.
		done := make(chan error, 1)
		go func() { done <- p.ApplyBatch(rest[:1]) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("applying an event waited for a paused scan")
		}
		rest = rest[1:]
	}
	if !slices.EqualFunc(got, before, func(a, b audit.Entry) bool { return a == b }) {
		t.Fatalf("scan returned %d entries, want the %d the account had when it started", len(got), len(before))
	}

	all, err := p.Entries(account, audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, from := range []int{0, 1, 511, 512, 513, len(all) / 2, len(all) - 1, len(all)} {
		after := eventstore.Position(0)
		if from > 0 {
			after = all[from-1].Position
		}
		entries, err := p.Scan(account, audit.Filter{}, after)
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Collect(entries); !slices.Equal(got, all[from:]) {
			t.Errorf("scan after entry %d: %d entries, want %d", from, len(got), len(all)-from)
		}
	}

	f := audit.Filter{User: "u1", Since: all[len(all)/4].Time}
	want, err := p.Entries(account, f)
	if err != nil {
		t.Fatal(err)
	}
	entries, err = p.Scan(account, f, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Collect(entries); len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("filtered scan: %d entries, want %d (and some)", len(got), len(want))
	}

	if _, err := p.Scan("nobody", audit.Filter{}, 0); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("scan of an unknown account: %v, want ErrNotFound", err)
	}
}
