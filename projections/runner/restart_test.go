package runner_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/runner"
)

// logRecorder is a slog.Handler keeping every record it handles.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}

func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// find returns the attributes of the records with message msg.
func (l *logRecorder) find(msg string) []map[string]slog.Value {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]slog.Value
	for _, r := range l.records {
		if r.Message != msg {
			continue
		}
		attrs := map[string]slog.Value{}
		r.Attrs(func(a slog.Attr) bool {
			attrs[a.Key] = a.Value.Resolve()
			return true
		})
		out = append(out, attrs)
	}
	return out
}

// above returns the messages of the records at level or above.
func (l *logRecorder) above(level slog.Level) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.records {
		if r.Level >= level {
			out = append(out, r.Message)
		}
	}
	return out
}

func waitReady(t *testing.T, r *runner.Runner) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !r.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("the runner did not catch up within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// After a clean stop, which saves a snapshot as licensed does at
// shutdown, a restart of the four read models over several accounts
// restores every one of them from the snapshot, says so in one line, and
// applies no event again.
func TestCleanRestartRestoresEveryReadModel(t *testing.T) {
	f := newFixture(t)
	f.story(t, "acme", 3)
	f.story(t, "globex", 2)
	f.story(t, "initech", 2)
	res, err := f.svc.Execute(context.Background(), "globex",
		ledger.DeleteUser{UserID: "u1", Confirm: "u1", ReassignTo: "u0", At: time.Now()}, accounts.Request{})
	if err != nil {
		t.Fatal(err)
	}
	last := res.Position
	snaps := runner.FileSnapshots{Dir: t.TempDir()}

	first := freshModels()
	r1, stop1 := start(t, runner.Config{Store: f.store, Codec: f.codec, Projections: first, Fresh: freshModels, Snapshots: snaps})
	waitFor(t, r1, last)
	stop1()
	if err := r1.SaveSnapshot(context.Background()); err != nil {
		t.Fatal(err)
	}

	logs := &logRecorder{}
	second := freshModels()
	r2, stop2 := start(t, runner.Config{Store: f.store, Codec: f.codec, Projections: second, Fresh: freshModels,
		Snapshots: snaps, Logger: slog.New(logs)})
	defer stop2()
	waitReady(t, r2)

	if msgs := logs.above(slog.LevelWarn); len(msgs) != 0 {
		t.Errorf("a clean restart logged warnings or errors: %q", msgs)
	}
	restored := logs.find("read models restored from snapshot")
	if len(restored) != 1 {
		t.Fatalf("%d lines saying the read models were restored, want 1", len(restored))
	}
	names, _ := restored[0]["read_models"].Any().([]string)
	if want := []string{"seats", "attribution", "audit", "billing"}; !slices.Equal(names, want) {
		t.Errorf("restored read models %v, want %v", restored[0]["read_models"], want)
	}
	if p := restored[0]["position"]; fmt.Sprint(p.Any()) != fmt.Sprint(last) {
		t.Errorf("restored at position %v, want %d", p, last)
	}
	caught := logs.find("read models caught up")
	if len(caught) != 1 {
		t.Fatalf("%d lines saying the read models caught up, want 1", len(caught))
	}
	if n := caught[0]["events"]; n.Int64() != 0 {
		t.Errorf("the restart applied %d events again, want none", n.Int64())
	}
	if r2.Position() != last {
		t.Errorf("restarted at position %d, want %d", r2.Position(), last)
	}
	// The restored models hold what the first ones did, byte for byte.
	for i, p := range first {
		want, err := p.(projections.Snapshotter).Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		got, err := second[i].(projections.Snapshotter).Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s after the restart differs from before it (%d bytes, want %d)", p.Name(), len(got), len(want))
		}
	}
}
