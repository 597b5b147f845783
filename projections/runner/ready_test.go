package runner_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/runner"
)

// readyWatch is a tally that notes an event of the history stored before
// the runner started being applied while the runner already said Ready.
type readyWatch struct {
	*tally
	r     atomic.Pointer[runner.Runner]
	last  eventstore.Position // the store's last position at start
	early atomic.Int64
}

func (w *readyWatch) Apply(d codec.Decoded) error {
	if r := w.r.Load(); r != nil && r.Ready() && d.Record.Position <= w.last {
		w.early.Add(1)
	}
	return w.tally.Apply(d)
}

// The runner reports Ready only once it has applied every event stored
// when it started: from the first event, and from a snapshot.
func TestReadyOnlyAfterCatchingUpWithStartPosition(t *testing.T) {
	f := newFixture(t)
	snaps := runner.FileSnapshots{Dir: t.TempDir()}
	for i, from := range []string{"first event", "snapshot"} {
		t.Run(from, func(t *testing.T) {
			last := f.story(t, fmt.Sprintf("acct-%d", i), 300)
			w := &readyWatch{tally: newTally(), last: last}
			cfg := runner.Config{Store: f.store, Codec: f.codec, Projections: []projections.Projection{w}, Snapshots: snaps}
			r := runner.New(cfg)
			w.r.Store(r)
			if r.Ready() {
				t.Fatal("ready before running")
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			for !r.Ready() {
				runtime.Gosched()
				if r.Position() > last {
					t.Fatalf("position %d beyond the start's %d and not ready", r.Position(), last)
				}
			}
			if p := r.Position(); p < last {
				t.Fatalf("ready at position %d, before the start's last position %d", p, last)
			}
			if n := w.early.Load(); n > 0 {
				t.Fatalf("%d stored events applied after the runner said ready", n)
			}
			if err := r.SaveSnapshot(ctx); err != nil {
				t.Fatal(err)
			}
			cancel()
			<-done
		})
	}
}
