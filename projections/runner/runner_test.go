package runner_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/runner"
)

// tally is a read model for these tests: how many events of each type it
// applied, the names of users not deleted, and how many Apply calls it saw
// since it was created (not part of its state).
type tally struct {
	mu    sync.Mutex
	State struct {
		Types map[string]int
		Names map[string]string
	}
	calls int
}

func newTally() *tally {
	t := &tally{}
	t.State.Types = map[string]int{}
	t.State.Names = map[string]string{}
	return t
}

func (t *tally) Name() string { return "tally" }

func (t *tally) Apply(d codec.Decoded) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls++
	t.State.Types[d.Event.EventType()]++
	switch e := d.Event.(type) {
	case ledger.UserAdded:
		t.State.Names[e.UserID] = e.Name
	case ledger.UserDeleted:
		delete(t.State.Names, e.UserID)
	}
	return nil
}

func (t *tally) Snapshot() ([]byte, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return json.Marshal(t.State)
}

func (t *tally) Restore(b []byte) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.State.Types, t.State.Names = nil, nil
	return json.Unmarshal(b, &t.State)
}

func (t *tally) snapshot() (types map[string]int, calls int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	types = map[string]int{}
	for k, v := range t.State.Types {
		types[k] = v
	}
	return types, t.calls
}

type fixture struct {
	store eventstore.Store
	keys  *pii.MemoryKeys
	svc   *accounts.Service
	codec *codec.Codec
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st := memory.New()
	t.Cleanup(func() { st.Close() })
	keys := pii.NewMemoryKeys()
	cdc := codec.New(pii.NewKeyring(keys, rand.Reader))
	return &fixture{store: st, keys: keys, codec: cdc, svc: accounts.New(accounts.Config{
		Store: st, Codec: cdc, Clock: time.Now, NewEventID: uuid.New, NewULID: ulid.Make,
	})}
}

// story appends a small lifecycle to account acct and returns the last
// position reached.
func (f *fixture) story(t *testing.T, acct string, users int) eventstore.Position {
	t.Helper()
	ctx := context.Background()
	now := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	var last eventstore.Position
	run := func(cmd ledger.Command) {
		t.Helper()
		r, err := f.svc.Execute(ctx, acct, cmd, accounts.Request{Actor: codec.Actor{ID: "op", Role: "operator"}})
		if err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
		if r.Position > last {
			last = r.Position
		}
	}
	run(ledger.OpenAccount{Account: acct, Name: "Account " + acct, Seats: users, At: now})
	for i := range users {
		id := fmt.Sprintf("u%d", i)
		run(ledger.AddUser{UserID: id, Name: "Secret Person " + acct + id, Email: id + "@" + acct + ".test", Role: ledger.RoleMember, At: now})
		run(ledger.RecordActivity{ActivityID: "a" + id, UserID: id, Kind: "note", Ref: "r", At: now})
	}
	return last
}

func start(t *testing.T, cfg runner.Config) (*runner.Runner, func()) {
	t.Helper()
	r := runner.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return r, func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("runner stopped with %v", err)
		}
	}
}

func waitFor(t *testing.T, r *runner.Runner, p eventstore.Position) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Wait(ctx, p); err != nil {
		t.Fatal(err)
	}
}

func TestCatchUpThenFollowLive(t *testing.T) {
	f := newFixture(t)
	p1 := f.story(t, "acme", 3)
	tl := newTally()
	r, stop := start(t, runner.Config{Store: f.store, Codec: f.codec, Projections: []projections.Projection{tl}})
	defer stop()
	waitFor(t, r, p1)
	p2 := f.story(t, "globex", 2)
	r.Observe(p2)
	waitFor(t, r, p2)
	types, calls := tl.snapshot()
	if types["UserAdded"] != 5 || types["ActivityRecorded"] != 5 || types["AccountOpened"] != 2 || calls != 12 {
		t.Fatalf("applied %v in %d calls", types, calls)
	}
	if !r.Ready() || r.Lag() != 0 {
		t.Fatalf("ready %v lag %d", r.Ready(), r.Lag())
	}
}

// A restart restores the snapshot and applies only the events after it:
// nothing is counted twice.
func TestRestartResumesFromSnapshot(t *testing.T) {
	f := newFixture(t)
	snaps := runner.FileSnapshots{Dir: t.TempDir()}
	p1 := f.story(t, "acme", 4)
	first := newTally()
	r1, stop1 := start(t, runner.Config{Store: f.store, Codec: f.codec, Projections: []projections.Projection{first}, Snapshots: snaps})
	waitFor(t, r1, p1)
	if err := r1.SaveSnapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop1()
	p2 := f.story(t, "globex", 2)

	second := newTally()
	r2, stop2 := start(t, runner.Config{Store: f.store, Codec: f.codec, Projections: []projections.Projection{second}, Snapshots: snaps})
	defer stop2()
	waitFor(t, r2, p2)
	types, calls := second.snapshot()
	if calls != 5 { // globex: opened, 2 added, 2 activities
		t.Fatalf("restarted runner applied %d events, want only the 5 after the snapshot", calls)
	}
	if types["UserAdded"] != 6 || types["AccountOpened"] != 2 || types["ActivityRecorded"] != 6 {
		t.Fatalf("state after restart %v, want the whole history counted once", types)
	}
}

// A rebuild from zero ends in the same state as the live read model.
func TestRebuildEqualsLive(t *testing.T) {
	f := newFixture(t)
	f.story(t, "acme", 3)
	tl := newTally()
	r, stop := start(t, runner.Config{Store: f.store, Codec: f.codec, Projections: []projections.Projection{tl},
		Fresh: func() []projections.Projection { return []projections.Projection{newTally()} }})
	defer stop()
	p := f.story(t, "globex", 3)
	waitFor(t, r, p)
	live, _ := tl.Snapshot()
	if err := r.Rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, p)
	rebuilt, _ := tl.Snapshot()
	if !bytes.Equal(live, rebuilt) {
		t.Fatalf("rebuilt %s, live %s", rebuilt, live)
	}
	if _, calls := tl.snapshot(); calls != 2*14 {
		t.Fatalf("%d applies, want every event twice (live, then rebuild)", calls)
	}
}

// Soon after a deletion the runner saves a snapshot, so that the older one
// holding the deleted user's name is gone.
func TestSnapshotRewrittenAfterDeletion(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	snaps := runner.FileSnapshots{Dir: dir}
	f.story(t, "acme", 2)
	tl := newTally()
	r, stop := start(t, runner.Config{Store: f.store, Codec: f.codec, Projections: []projections.Projection{tl},
		Snapshots: snaps, ErasureDelay: 50 * time.Millisecond})
	defer stop()
	f.snapshotNamingU1(t, r, dir)
	res, err := f.svc.Execute(context.Background(), "acme", ledger.DeleteUser{UserID: "u1", Confirm: "u1", At: time.Now()}, accounts.Request{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, res.Position)
	deadline := time.Now().Add(5 * time.Second)
	for filesContain(t, dir, "Secret Person acmeu1") {
		if time.Now().After(deadline) {
			t.Fatal("the snapshot still holds the deleted user's name")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// snapshotNamingU1 records an activity, waits for r to apply it and saves
// a snapshot into dir, which must then hold the name of acme's user u1
// (the control of the erasure tests).
func (f *fixture) snapshotNamingU1(t *testing.T, r *runner.Runner, dir string) {
	t.Helper()
	res, err := f.svc.Execute(context.Background(), "acme", ledger.RecordActivity{ActivityID: "x", UserID: "u0", Kind: "note", Ref: "r", At: time.Now()}, accounts.Request{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, res.Position)
	if err := r.SaveSnapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !filesContain(t, dir, "Secret Person acmeu1") {
		t.Fatal("control: the snapshot should hold the name of a user not deleted")
	}
}

func filesContain(t *testing.T, dir, s string) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		found = found || bytes.Contains(b, []byte(s))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// A damaged snapshot file costs a rebuild, not the service.
func TestCorruptSnapshotRebuilds(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	snaps := runner.FileSnapshots{Dir: dir}
	p := f.story(t, "acme", 3)
	first := newTally()
	r1, stop1 := start(t, runner.Config{Store: f.store, Codec: f.codec, Projections: []projections.Projection{first}, Snapshots: snaps})
	waitFor(t, r1, p)
	if err := r1.SaveSnapshot(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop1()
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) != 1 {
		t.Fatalf("snapshot files %v, %v", files, err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := snaps.Load(context.Background()); err != nil {
		t.Fatalf("control: the intact snapshot loads: %v", err)
	}
	b[len(b)/2] ^= 0x40
	if err := os.WriteFile(files[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := snaps.Load(context.Background()); err == nil {
		t.Fatal("a snapshot with a flipped bit loaded")
	}
	second := newTally()
	r2, stop2 := start(t, runner.Config{Store: f.store, Codec: f.codec, Projections: []projections.Projection{second}, Snapshots: snaps})
	defer stop2()
	waitFor(t, r2, p)
	if _, calls := second.snapshot(); calls != 7 { // the whole history: opened, 3 added, 3 activities
		t.Fatalf("after a corrupt snapshot the runner applied %d events, want all 7", calls)
	}
}

// failingOnce fails its first Save.
type failingOnce struct {
	runner.FileSnapshots
	failed atomic.Bool
}

func (f *failingOnce) Save(ctx context.Context, s runner.Snapshot) error {
	if f.failed.CompareAndSwap(false, true) {
		return errors.New("disk full")
	}
	return f.FileSnapshots.Save(ctx, s)
}

// A snapshot save that fails after a deletion is tried again: the older
// snapshot holding the deleted user's name does not stay.
func TestFailedSnapshotAfterDeletionRetried(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	f.story(t, "acme", 2)
	tl := newTally()
	plain := runner.FileSnapshots{Dir: dir}
	snaps := &failingOnce{FileSnapshots: plain}
	snaps.failed.Store(true) // the first save works
	r, stop := start(t, runner.Config{Store: f.store, Codec: f.codec, Projections: []projections.Projection{tl},
		Snapshots: snaps, ErasureDelay: 50 * time.Millisecond})
	defer stop()
	f.snapshotNamingU1(t, r, dir)
	snaps.failed.Store(false) // the next save fails
	res, err := f.svc.Execute(context.Background(), "acme", ledger.DeleteUser{UserID: "u1", Confirm: "u1", At: time.Now()}, accounts.Request{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, r, res.Position)
	deadline := time.Now().Add(15 * time.Second)
	for filesContain(t, dir, "Secret Person acmeu1") {
		if time.Now().After(deadline) {
			t.Fatal("after a failed save the snapshot still holds the deleted user's name")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !snaps.failed.Load() {
		t.Fatal("control: the save after the deletion was meant to fail once")
	}
}

// TestChanged: the channel Changed returns is open while the position
// stays and closed once it moves, so that waiting on it in turn, reading
// Position after each, reaches every position applied.
func TestChanged(t *testing.T) {
	f := newFixture(t)
	p1 := f.story(t, "acme", 2)
	r, stop := start(t, runner.Config{Store: f.store, Codec: f.codec, Projections: []projections.Projection{newTally()}})
	defer stop()
	waitFor(t, r, p1)
	changed := r.Changed()
	select {
	case <-changed:
		if r.Position() == p1 {
			t.Fatal("Changed closed while the position stayed")
		}
	default:
	}
	p2 := f.story(t, "globex", 2)
	r.Observe(p2)
	guard := time.After(10 * time.Second)
	for {
		changed := r.Changed()
		if r.Position() >= p2 {
			break
		}
		select {
		case <-changed:
		case <-guard:
			t.Fatalf("position %d after 10 s, want %d", r.Position(), p2)
		}
	}
	select {
	case <-changed:
	default:
		t.Fatal("the first channel stayed open after the position moved")
	}
}
