package jetstream

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
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

// TestSyncerSyncsWrittenBlockByName checks the rounds that sync a stream
// through its open block alone, where the system tells which files
// changed: a round after writes only to the block the previous round left
// open syncs that file without a stat, and every other change of the
// stream (the block replaced by a new file renamed over it, as an erasure
// does; a new block; a meta file renamed) sends the round through the
// stats, so that the file synced is always the one holding the data. The
// data a round syncs is read through the file it syncs, so syncing a
// replaced file's old inode fails it.
func TestSyncerSyncsWrittenBlockByName(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the system does not tell which files changed")
	}
	streams := filepath.Join(t.TempDir(), "jetstream", "$G", "streams")
	write := func(name, data string) { appendStreamFile(t, streams, name, data) }
	for _, s := range []string{"A", "B"} {
		write(s+"/meta.inf", "{}")
		write(s+"/msgs/1.blk", "one;")
	}
	y := newSyncer(streams, slog.New(slog.DiscardHandler))
	defer y.close()
	if y.watch == nil {
		t.Fatal("no inotify instance")
	}
	// What each fsync of a block file saw through the file it synced.
	var mu sync.Mutex
	seen := map[string]string{}
	var synced []string
	y.mu.Lock()
	y.fsync = func(f *os.File) error {
		rel, _ := filepath.Rel(streams, f.Name())
		mu.Lock()
		defer mu.Unlock()
		synced = append(synced, rel)
		if strings.HasSuffix(rel, ".blk") {
			data, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<20))
			if err != nil {
				return err
			}
			seen[rel] = string(data)
		}
		return nil
	}
	y.mu.Unlock()
	round := func(byName uint64, want map[string]string, wantSynced ...string) {
		t.Helper()
		mu.Lock()
		clear(seen)
		synced = nil
		mu.Unlock()
		before := y.named.Load()
		if err := y.wait(t.Context()); err != nil {
			t.Fatal(err)
		}
		if n := y.named.Load() - before; n != byName {
			t.Errorf("round synced %d streams by name alone, want %d", n, byName)
		}
		mu.Lock()
		defer mu.Unlock()
		for name, data := range want {
			if seen[name] != data {
				t.Errorf("round synced %s holding %q, want %q (synced %q)", name, seen[name], data, synced)
			}
		}
		for _, w := range wantSynced {
			if !slices.Contains(synced, w) {
				t.Errorf("round synced %q, not %s", synced, w)
			}
		}
	}
	round(0, map[string]string{"A/msgs/1.blk": "one;", "B/msgs/1.blk": "one;"})

	// The server appends through a file it keeps open.
	blk, err := os.OpenFile(filepath.Join(streams, "A/msgs/1.blk"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer blk.Close()
	if _, err := blk.WriteString("two;"); err != nil {
		t.Fatal(err)
	}
	round(1, map[string]string{"A/msgs/1.blk": "one;two;"})
	write("A/msgs/1.blk", "three;")
	write("B/msgs/1.blk", "two;")
	round(2, map[string]string{"A/msgs/1.blk": "one;two;three;", "B/msgs/1.blk": "one;two;"})

	// An erasure: the block rewritten into a new file renamed over it,
	// then appended to. The round must sync the new file. The new file is
	// made outside the watched directories: the rename and the write are
	// the only events.
	if err := os.WriteFile(filepath.Join(streams, "..", "1.blk.tmp"), []byte("one;xxx;three;"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(streams, "..", "1.blk.tmp"), filepath.Join(streams, "A/msgs/1.blk")); err != nil {
		t.Fatal(err)
	}
	write("A/msgs/1.blk", "four;")
	round(0, map[string]string{"A/msgs/1.blk": "one;xxx;three;four;"}, "A/msgs")
	// The new file is the open one from now on.
	write("A/msgs/1.blk", "five;")
	round(1, map[string]string{"A/msgs/1.blk": "one;xxx;three;four;five;"})

	// A new block: looked at through the stats.
	write("A/msgs/1.blk", "six;")
	write("A/msgs/2.blk", "seven;")
	round(0, map[string]string{"A/msgs/1.blk": "one;xxx;three;four;five;six;", "A/msgs/2.blk": "seven;"}, "A/msgs")
	write("A/msgs/2.blk", "eight;")
	round(1, map[string]string{"A/msgs/2.blk": "seven;eight;"})

	// A meta file replaced, and the block written, in the same round.
	write("A/meta.inf.tmp", `{"v":2}`)
	if err := os.Rename(filepath.Join(streams, "A/meta.inf.tmp"), filepath.Join(streams, "A/meta.inf")); err != nil {
		t.Fatal(err)
	}
	write("A/msgs/2.blk", "nine;")
	round(0, map[string]string{"A/msgs/2.blk": "seven;eight;nine;"}, "A", "A/meta.inf")

	// The old block's file was replaced while open elsewhere: writes to the
	// old inode, no longer in the directory, are not the stream's.
	if _, err := blk.WriteString("stale;"); err != nil {
		t.Fatal(err)
	}
	round(0, nil)
}
