package projections_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/attribution"
	"github.com/licenseledger/ledger/projections/audit"
	"github.com/licenseledger/ledger/projections/billing"
	"github.com/licenseledger/ledger/projections/chain"
	"github.com/licenseledger/ledger/projections/internal/fixture"
	"github.com/licenseledger/ledger/projections/seats"
)

type models struct {
	seats *seats.Projection
	attr  *attribution.Projection
	audit *audit.Projection
	bill  *billing.Projection
}

func newModels() models {
	return models{seats.New(), attribution.New(), audit.New(), billing.New()}
}

func (m models) set() projections.Set { return projections.Set{m.seats, m.attr, m.audit, m.bill} }

func seeded(t *testing.T) *fixture.Log {
	t.Helper()
	l := fixture.New()
	if err := fixture.Seed(t.Context(), l); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestSeedStoryFromStore(t *testing.T) {
	ctx := t.Context()
	l := seeded(t)
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	if err := l.CopyTo(ctx, store); err != nil {
		t.Fatal(err)
	}
	m := newModels()
	pos, err := projections.Fold(ctx, store, l.Codec, 0, m.set()...)
	if err != nil {
		t.Fatal(err)
	}
	if want := eventstore.Position(len(l.Records())); pos != want {
		t.Fatalf("Fold returned position %d, want %d", pos, want)
	}

	u, err := m.seats.Usage("acme", fixture.H(17))
	if err != nil {
		t.Fatal(err)
	}
	want := seats.Usage{Account: "acme", Name: "Acme", OpenedAt: fixture.H(0), At: fixture.H(17),
		Purchased: 4, Seats: 4, Active: 2, Deactivated: 1, Deleted: 1, Available: 2, PeakActive: 4,
		Revision: 10, Position: pos}
	if u != want {
		t.Errorf("usage =\n %+v\nwant\n %+v", u, want)
	}

	users, err := m.seats.Users("acme", "")
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]seats.User{}
	for _, u := range users {
		byID[u.ID] = u
	}
	if len(users) != 4 {
		t.Fatalf("users = %+v, want ann, bob, cy, dee", users)
	}
	if b := byID["bob"]; b.Name != fixture.BobName || b.Email != fixture.BobEmail || b.Status != ledger.StatusDeactivated {
		t.Errorf("bob = %+v, want deactivated with name and email kept", b)
	}
	if c := byID["cy"]; c.Name != "" || c.Email != "" || c.Status != ledger.StatusDeleted || c.ReassignedTo != "ann" {
		t.Errorf("cy = %+v, want deleted, blank, reassigned to ann", c)
	}

	page, err := m.attr.Activities("acme", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]attribution.Activity{}
	for _, a := range page.Activities {
		got[a.ID] = a
	}
	if a := got["act-1"]; a.UserID != "bob" || a.UserName != fixture.BobName || a.OwnerID != "bob" || a.OwnerName != fixture.BobName {
		t.Errorf("act-1 = %+v, want logged and owned by Bob, named although deactivated", a)
	}
	for _, id := range []string{"act-3", "act-4"} {
		if a := got[id]; a.UserID != "cy" || a.UserName != "" || a.OwnerID != "ann" || a.OwnerName != fixture.AnnName {
			t.Errorf("%s = %+v, want logged by cy with a blank name, owned by Ann", id, a)
		}
	}

	entries, err := m.audit.Entries("acme", audit.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(l.Records()) {
		t.Errorf("audit has %d entries, want %d", len(entries), len(l.Records()))
	}
	for _, s := range []eventstore.StreamID{eventstore.LedgerStream("acme"), eventstore.ActivityStream("acme")} {
		rep, err := chain.Verify(ctx, store, s)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK || rep.Head != m.audit.Head(s) || rep.Head != l.Head(s) {
			t.Errorf("verify %s = %+v, audit head %s, log head %s", s, rep, m.audit.Head(s), l.Head(s))
		}
	}
}

// render collects everything the read models show or export about acme.
func render(t *testing.T, m models) map[string]any {
	t.Helper()
	out := map[string]any{}
	var err error
	if out["usage"], err = m.seats.Usage("acme", fixture.H(20)); err != nil {
		t.Fatal(err)
	}
	if out["users"], err = m.seats.Users("acme", ""); err != nil {
		t.Fatal(err)
	}
	if out["activities"], err = m.attr.Activities("acme", 0, 0); err != nil {
		t.Fatal(err)
	}
	if out["audit"], err = m.audit.Entries("acme", audit.Filter{}); err != nil {
		t.Fatal(err)
	}
	if out["billing"], err = m.bill.Cycle("acme", "2025-01", fixture.H(20)); err != nil {
		t.Fatal(err)
	}
	return out
}

func applyAll(t *testing.T, p projections.Projection, ds []codec.Decoded) {
	t.Helper()
	for _, d := range ds {
		if err := p.Apply(d); err != nil {
			t.Fatal(err)
		}
	}
}

func TestErasureRebuildMatchesLiveFold(t *testing.T) {
	l := seeded(t)
	live := newModels()
	applyAll(t, live.set(), l.Live())

	rebuilt, err := l.Rebuild(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	erased := 0
	for _, d := range rebuilt {
		if d.Erased {
			erased++
			if ledger.UserOf(d.Event) != "cy" {
				t.Errorf("event %s of %s decoded as erased", d.Record.Type, ledger.UserOf(d.Event))
			}
		}
	}
	if erased == 0 {
		t.Fatal("no event decoded as erased after cy's key was destroyed")
	}
	again := newModels()
	applyAll(t, again.set(), rebuilt)

	a, b := render(t, live), render(t, again)
	for k := range a {
		if !reflect.DeepEqual(a[k], b[k]) {
			t.Errorf("%s differs:\nlive    %+v\nrebuilt %+v", k, a[k], b[k])
		}
	}

	// Nothing any model shows, exports or snapshots holds cy's name or email.
	for name, m := range map[string]models{"live": live, "rebuilt": again} {
		var blobs [][]byte
		for _, s := range m.snapshotters() {
			b, err := s.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			blobs = append(blobs, b)
		}
		var jl bytes.Buffer
		if err := m.audit.Export(&jl, "acme", audit.Filter{}); err != nil {
			t.Fatal(err)
		}
		blobs = append(blobs, jl.Bytes())
		for _, b := range blobs {
			for _, secret := range []string{fixture.CyName, fixture.CyEmail} {
				if bytes.Contains(b, []byte(secret)) {
					t.Errorf("%s: %q found in %.80s...", name, secret, b)
				}
			}
		}
		if !bytes.Contains(blobs[0], []byte(fixture.BobName)) {
			t.Errorf("%s: seats snapshot lacks the deactivated user's name", name)
		}
	}
}

func (m models) snapshotters() []projections.Snapshotter {
	return []projections.Snapshotter{m.seats, m.attr, m.audit, m.bill}
}

// snapshotInto snapshots every model of from and restores it into the
// model of the same kind of to.
func snapshotInto(t *testing.T, from, to models) {
	t.Helper()
	dst := to.snapshotters()
	for i, src := range from.snapshotters() {
		b, err := src.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if err := dst[i].Restore(b); err != nil {
			t.Fatalf("%T: %v", dst[i], err)
		}
	}
}

func sameRender(t *testing.T, what string, a, b models) {
	t.Helper()
	ra, rb := render(t, a), render(t, b)
	for k := range ra {
		if !reflect.DeepEqual(ra[k], rb[k]) {
			t.Errorf("%s: %s differs:\nwant %+v\ngot  %+v", what, k, ra[k], rb[k])
		}
	}
	for _, s := range []eventstore.StreamID{eventstore.LedgerStream("acme"), eventstore.ActivityStream("acme")} {
		if a.audit.Head(s) != b.audit.Head(s) {
			t.Errorf("%s: audit head of %s differs", what, s)
		}
	}
	if a.seats.Position() != b.seats.Position() || a.attr.Position() != b.attr.Position() ||
		a.audit.Position() != b.audit.Position() || a.bill.Position() != b.bill.Position() {
		t.Errorf("%s: positions differ", what)
	}
}

func TestSnapshotRestore(t *testing.T) {
	l := seeded(t)
	live := l.Live()
	m := newModels()
	applyAll(t, m.set(), live)

	// A round trip answers every query as the live models do.
	restored := newModels()
	snapshotInto(t, m, restored)
	sameRender(t, "round trip", m, restored)

	// Restoring replaces: a model that folded another account first knows
	// only what the snapshot holds afterwards.
	other := fixture.New()
	if _, err := other.Do(t.Context(), "other", fixture.Operator,
		ledger.OpenAccount{Name: "Other", Seats: 1, At: fixture.H(0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Do(t.Context(), "other", fixture.Operator,
		ledger.AddUser{UserID: "zed", Name: "Zed", Email: "zed@other.test", Role: ledger.RoleAdmin, At: fixture.H(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Do(t.Context(), "other", fixture.Service,
		ledger.RecordActivity{ActivityID: "z1", UserID: "zed", Kind: "note", Ref: "r", At: fixture.H(2)}); err != nil {
		t.Fatal(err)
	}
	dirty := newModels()
	applyAll(t, dirty.set(), other.Live())
	snapshotInto(t, m, dirty)
	sameRender(t, "restored over another history", m, dirty)
	if _, err := dirty.seats.Usage("other", fixture.H(3)); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("seats kept an account the snapshot lacks: %v", err)
	}
	if _, err := dirty.attr.Activities("other", 0, 0); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("attribution kept an account the snapshot lacks: %v", err)
	}
	if _, err := dirty.audit.Entries("other", audit.Filter{}); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("audit kept an account the snapshot lacks: %v", err)
	}
	if _, err := dirty.bill.Current("other", fixture.H(3)); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("billing kept an account the snapshot lacks: %v", err)
	}

	// A snapshot taken mid-history, restored and fed the rest, ends where
	// the live fold does, at every cut.
	for _, cut := range []int{0, 1, 5, len(live) / 2, len(live) - 2} {
		half := newModels()
		applyAll(t, half.set(), live[:cut])
		resumed := newModels()
		snapshotInto(t, half, resumed)
		applyAll(t, resumed.set(), live[cut:])
		sameRender(t, fmt.Sprintf("resumed after %d events", cut), m, resumed)
	}

	// An empty model's snapshot empties a model (the runner resets so).
	emptied := newModels()
	applyAll(t, emptied.set(), live)
	snapshotInto(t, newModels(), emptied)
	if _, err := emptied.audit.Entries("acme", audit.Filter{}); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("audit after restoring an empty snapshot: %v", err)
	}
	if _, err := emptied.bill.Current("acme", fixture.H(3)); !errors.Is(err, projections.ErrNotFound) {
		t.Errorf("billing after restoring an empty snapshot: %v", err)
	}
	if p := emptied.seats.Position(); p != 0 {
		t.Errorf("seats at position %d after restoring an empty snapshot", p)
	}
}

// TestRestoreRefusesOtherFormats checks that every model refuses, with
// ErrSnapshotFormat and without changing, a snapshot of an unknown
// version, of another model, truncated or in the old JSON form.
func TestRestoreRefusesOtherFormats(t *testing.T) {
	l := seeded(t)
	m := newModels()
	applyAll(t, m.set(), l.Live())
	snaps := m.snapshotters()
	blobs := make([][]byte, len(snaps))
	for i, s := range snaps {
		b, err := s.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		blobs[i] = b
	}
	for i, s := range snaps {
		name := s.(projections.Projection).Name()
		// The header is the model's name then the format version: bump it.
		newer := bytes.Clone(blobs[i])
		newer[1+len(name)]++
		bad := map[string][]byte{
			"newer version": newer,
			"other model":   blobs[(i+1)%len(blobs)],
			"truncated":     blobs[i][:len(blobs[i])-1],
			"trailing":      append(bytes.Clone(blobs[i]), 0),
			"json":          []byte(`{"version":9}`),
			"empty":         nil,
		}
		for what, b := range bad {
			err := s.Restore(b)
			if !errors.Is(err, projections.ErrSnapshotFormat) {
				t.Errorf("%s: restoring a snapshot %s = %v, want ErrSnapshotFormat", name, what, err)
			}
		}
		if what := "newer version"; !strings.Contains(s.Restore(bad[what]).Error(), "version") {
			t.Errorf("%s: the error for a %s does not say so", name, what)
		}
	}
	// Refused snapshots left every model as it was.
	again := newModels()
	applyAll(t, again.set(), l.Live())
	sameRender(t, "after refused restores", again, m)
}

type failing struct{ err error }

func (f failing) Name() string              { return "failing" }
func (f failing) Apply(codec.Decoded) error { return f.err }

func TestSetAndFoldErrors(t *testing.T) {
	l := seeded(t)
	boom := errors.New("boom")
	s := seats.New()
	set := projections.Set{failing{boom}, s}
	err := set.Apply(l.Live()[0])
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "failing") {
		t.Errorf("Set.Apply error = %v, want boom naming the projection", err)
	}
	if _, err := s.Usage("acme", fixture.H(1)); err != nil {
		t.Errorf("the projection after the failing one did not get the event: %v", err)
	}

	pos, err := projections.Fold(t.Context(), l, l.Codec, 0, failing{boom})
	if !errors.Is(err, boom) || pos != 0 {
		t.Errorf("Fold = %d, %v; want 0, boom", pos, err)
	}
	l.Tamper(eventstore.LedgerStream("acme"), 1, func(r *eventstore.Record) { r.Type = "NoSuchEvent" })
	pos, err = projections.Fold(t.Context(), l, l.Codec, 0, seats.New())
	if !errors.Is(err, codec.ErrUnknownType) || pos != 1 {
		t.Errorf("Fold over an undecodable record = %d, %v; want 1, ErrUnknownType", pos, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := projections.Fold(ctx, l, l.Codec, 0, seats.New()); !errors.Is(err, context.Canceled) {
		t.Errorf("Fold with a cancelled context = %v", err)
	}
}

func TestApplyBatch(t *testing.T) {
	l := seeded(t)
	live := l.Live()
	want := newModels()
	applyAll(t, want.set(), live)
	for _, size := range []int{1, 2, 7, len(live)} {
		m := newModels()
		set := m.set()
		for i := 0; i < len(live); i += size {
			if err := set.ApplyBatch(live[i:min(i+size, len(live))]); err != nil {
				t.Fatal(err)
			}
		}
		sameRender(t, fmt.Sprintf("batches of %d", size), want, m)
	}

	// A failing read model does not stop the others; one that is not a
	// Batcher gets every event of the batch.
	boom := errors.New("boom")
	s := seats.New()
	var plain countingProjection
	err := projections.Set{failing{boom}, s, &plain}.ApplyBatch(live)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "failing") {
		t.Errorf("ApplyBatch error = %v, want boom naming the projection", err)
	}
	if s.Position() != live[len(live)-1].Record.Position || plain.n != len(live) {
		t.Errorf("after a failing read model: seats at %d, plain applied %d; want %d, %d",
			s.Position(), plain.n, live[len(live)-1].Record.Position, len(live))
	}
	// A Batcher that fails stops at the failing event: audit refuses an
	// unknown type.
	bad := slices.Clone(live[:4])
	bad[2].Record.Type = "NoSuchEvent"
	a := audit.New()
	if err := (projections.Set{a}).ApplyBatch(bad); !errors.Is(err, codec.ErrUnknownType) {
		t.Errorf("audit batch with an unknown type = %v", err)
	}
	if a.Position() != bad[1].Record.Position {
		t.Errorf("audit stopped at %d, want %d", a.Position(), bad[1].Record.Position)
	}
	if err := (projections.Set{a}).ApplyBatch(nil); err != nil {
		t.Errorf("empty batch: %v", err)
	}
}

type countingProjection struct{ n int }

func (c *countingProjection) Name() string              { return "counting" }
func (c *countingProjection) Apply(codec.Decoded) error { c.n++; return nil }

func TestFoldFromPosition(t *testing.T) {
	l := seeded(t)
	whole := audit.New()
	if _, err := projections.Fold(t.Context(), l, l.Codec, 0, whole); err != nil {
		t.Fatal(err)
	}
	part := audit.New()
	pos, err := projections.Fold(t.Context(), l, l.Codec, 10, part)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := whole.Entries("acme", audit.Filter{})
	tail, _ := part.Entries("acme", audit.Filter{})
	if pos != eventstore.Position(len(all)) || len(tail) != len(all)-10 || tail[0].Position != 11 {
		t.Errorf("fold after 10: position %d, %d entries starting at %d; want %d, %d, 11", pos, len(tail), tail[0].Position, len(all), len(all)-10)
	}
}

// TestConcurrentReads reads every model while events are applied; run
// with -race.
func TestConcurrentReads(t *testing.T) {
	l := seeded(t)
	m := newModels()
	set := m.set()
	// The account opens before the readers start.
	applyAll(t, set, l.Live()[:1])
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				u, err := m.seats.Usage("acme", fixture.H(20))
				if err != nil || u.Active > u.Purchased {
					t.Errorf("usage %+v, %v", u, err)
					return
				}
				users, _ := m.seats.Users("acme", "")
				for i := range users {
					users[i].Name = "changed by a reader"
				}
				_, _ = m.attr.Activities("acme", 0, 2)
				_, _ = m.audit.Entries("acme", audit.Filter{Limit: 3})
				_, _ = m.bill.Cycle("acme", "2025-01", fixture.H(20))
			}
		})
	}
	applyAll(t, set, l.Live()[1:])
	close(done)
	wg.Wait()
	users, _ := m.seats.Users("acme", "")
	for _, u := range users {
		if u.Name == "changed by a reader" {
			t.Errorf("a reader changed the model through a returned copy: %+v", u)
		}
	}
}

// countingLock counts how often it is taken and whether it is held.
type countingLock struct {
	taken int
	held  bool
}

func (l *countingLock) Lock()   { l.taken++; l.held = true }
func (l *countingLock) Unlock() { l.held = false }

func TestApplyLockedStopsAtFirstError(t *testing.T) {
	ds := make([]codec.Decoded, 5)
	for i := range ds {
		ds[i].Record.Position = eventstore.Position(i + 1)
	}
	var l countingLock
	var seen []eventstore.Position
	bad := errors.New("cannot fold")
	err := projections.ApplyLocked(&l, ds, func(d *codec.Decoded) error {
		if !l.held {
			t.Error("applied without the lock")
		}
		if d.Record.Position == 3 {
			return bad
		}
		seen = append(seen, d.Record.Position)
		return nil
	})
	if !errors.Is(err, bad) {
		t.Fatalf("ApplyLocked = %v, want the apply error", err)
	}
	if !slices.Equal(seen, []eventstore.Position{1, 2}) {
		t.Errorf("applied %v, want positions 1 and 2 only", seen)
	}
	if l.taken != 1 || l.held {
		t.Errorf("lock taken %d times, held after return %v; want once, released", l.taken, l.held)
	}
}
