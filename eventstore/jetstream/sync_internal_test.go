package jetstream

import (
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSyncerFindsNewFiles checks, on a directory laid out as the server
// lays out its streams, that a round fsyncs what changed since the
// previous one and only that, whether the change comes long after the
// previous round (the directory's time changes) or right after it, in the
// same tick of the clock that stamps directories: a new block file, a
// block file appended to, a new stream, a rewritten meta file. Skipping
// the listing of an unchanged directory must not skip any of them.
func TestSyncerFindsNewFiles(t *testing.T) {
	for _, after := range []time.Duration{0, 2 * racyWindow} {
		t.Run(after.String(), func(t *testing.T) {
			streams := filepath.Join(t.TempDir(), "jetstream", "$G", "streams")
			write := func(name, data string) { appendStreamFile(t, streams, name, data) }
			write("A/meta.inf", "{}")
			write("A/msgs/1.blk", "one")

			y := newSyncer(streams, slog.New(slog.DiscardHandler))
			defer y.close()
			synced := recordSyncs(y, streams)
			round := func(want ...string) []string {
				t.Helper()
				synced()
				if err := y.wait(t.Context()); err != nil {
					t.Fatal(err)
				}
				got := synced()
				for _, w := range want {
					if !slices.Contains(got, w) {
						t.Errorf("round synced %q, not %s", got, w)
					}
				}
				// A directory changed within racyWindow of its last fsync
				// is synced again; a file only when it changed.
				for _, g := range got {
					fi, err := os.Stat(filepath.Join(streams, g))
					if err == nil && !fi.IsDir() && !slices.Contains(want, g) {
						t.Errorf("round synced %s, which did not change", g)
					}
				}
				return got
			}
			round(".", "A", "A/meta.inf", "A/msgs", "A/msgs/1.blk")
			time.Sleep(after)
			round() // nothing changed
			write("A/msgs/1.blk", "more")
			round("A/msgs/1.blk")
			time.Sleep(after)
			write("A/msgs/1.blk", "last")
			write("A/msgs/2.blk", "two")
			round("A/msgs/1.blk", "A/msgs/2.blk", "A/msgs")
			time.Sleep(after)
			write("A/msgs/2.blk", "more")
			write("B/msgs/1.blk", "b")
			round(".", "A/msgs/2.blk", "B", "B/msgs", "B/msgs/1.blk")
			time.Sleep(after)
			// A meta file rewritten as the server does: a new file renamed
			// over the old one.
			write("A/meta.inf.tmp", `{"v":2}`)
			if err := os.Rename(filepath.Join(streams, "A/meta.inf.tmp"), filepath.Join(streams, "A/meta.inf")); err != nil {
				t.Fatal(err)
			}
			round("A", "A/meta.inf")
			// Once every directory is older than racyWindow, a round
			// syncs nothing.
			time.Sleep(2 * racyWindow)
			round()
			if got := round(); len(got) != 0 {
				t.Errorf("round with nothing changed long ago synced %q", got)
			}
		})
	}
}

// TestSyncerLeavesOutUnsynced checks that a round never fsyncs a file or
// directory of a stream named unsynced, whether the stream was there
// before the first round or appeared later, while it fsyncs the other
// streams' changes as before.
func TestSyncerLeavesOutUnsynced(t *testing.T) {
	streams := filepath.Join(t.TempDir(), "jetstream", "$G", "streams")
	write := func(name, data string) { appendStreamFile(t, streams, name, data) }
	write("A/meta.inf", "{}")
	write("A/msgs/1.blk", "one")
	write("EVENTS/meta.inf", "{}")
	write("EVENTS/msgs/1.blk", "one")

	y := newSyncer(streams, slog.New(slog.DiscardHandler), "EVENTS", "LATER")
	defer y.close()
	synced := recordSyncs(y, streams)
	round := func(want ...string) {
		t.Helper()
		synced()
		if err := y.wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		got := synced()
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("round synced %q, not %s", got, w)
			}
		}
		for _, g := range got {
			if first, _, _ := strings.Cut(g, string(filepath.Separator)); first == "EVENTS" || first == "LATER" {
				t.Errorf("round synced %s, of a stream left out", g)
			}
		}
	}
	round(".", "A", "A/meta.inf", "A/msgs", "A/msgs/1.blk")
	write("A/msgs/1.blk", "more")
	write("EVENTS/msgs/1.blk", "more")
	write("EVENTS/msgs/2.blk", "two")
	round("A/msgs/1.blk")
	write("LATER/meta.inf", "{}")
	write("LATER/msgs/1.blk", "one")
	write("B/msgs/1.blk", "b")
	round(".", "B", "B/msgs", "B/msgs/1.blk")
}

// TestSyncerLooksAtChangedStreams checks that, where the system tells
// which directories changed, a round looks only at the streams written
// since the previous one, and still fsyncs every change: a block appended
// to, a new stream, a meta file replaced, a new block file.
func TestSyncerLooksAtChangedStreams(t *testing.T) {
	streams := filepath.Join(t.TempDir(), "jetstream", "$G", "streams")
	write := func(name, data string) { appendStreamFile(t, streams, name, data) }
	if runtime.GOOS != "linux" {
		t.Skip("the system does not tell which directories changed")
	}
	// Made before the streams directory, as when the service starts on
	// an empty data directory.
	y := newSyncer(streams, slog.New(slog.DiscardHandler))
	defer y.close()
	if y.watch == nil {
		t.Fatal("no inotify instance")
	}
	for _, s := range []string{"A", "B", "C"} {
		write(s+"/meta.inf", "{}")
		write(s+"/msgs/1.blk", "one")
	}
	synced := recordSyncs(y, streams)
	round := func(looked uint64, want ...string) {
		t.Helper()
		synced()
		before := y.looked.Load()
		if err := y.wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := y.looked.Load() - before; n != looked {
			t.Errorf("round looked at %d streams, want %d", n, looked)
		}
		got := synced()
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("round synced %q, not %s", got, w)
			}
		}
	}
	round(3, "A/msgs/1.blk", "B/msgs/1.blk", "C/msgs/1.blk")
	round(0)
	write("B/msgs/1.blk", "more")
	round(1, "B/msgs/1.blk")
	round(0)
	write("D/msgs/1.blk", "d")
	round(1, ".", "D", "D/msgs", "D/msgs/1.blk")
	write("C/meta.inf.tmp", `{"v":2}`)
	if err := os.Rename(filepath.Join(streams, "C/meta.inf.tmp"), filepath.Join(streams, "C/meta.inf")); err != nil {
		t.Fatal(err)
	}
	round(1, "C", "C/meta.inf")
	write("A/msgs/1.blk", "last")
	write("A/msgs/2.blk", "two")
	write("D/msgs/1.blk", "more")
	round(2, "A/msgs/1.blk", "A/msgs/2.blk", "A/msgs", "D/msgs/1.blk")
	// A stream removed and made again is watched again.
	if err := os.RemoveAll(filepath.Join(streams, "B")); err != nil {
		t.Fatal(err)
	}
	round(0)
	write("B/meta.inf", "{}")
	write("B/msgs/1.blk", "new")
	round(1, "B", "B/msgs", "B/msgs/1.blk")
	write("B/msgs/1.blk", "more")
	round(1, "B/msgs/1.blk")
	round(0)
}
