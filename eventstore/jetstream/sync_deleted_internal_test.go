package jetstream

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// appendStreamFile appends data to the file name under the streams
// directory, making its directories.
func appendStreamFile(t *testing.T, streams, name, data string) {
	t.Helper()
	fn := filepath.Join(streams, name)
	if err := os.MkdirAll(filepath.Dir(fn), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(fn, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(data); err != nil {
		t.Fatal(err)
	}
}

// recordSyncs makes the syncer record the names it fsyncs, relative to
// the streams directory, instead of fsyncing them, and returns a
// function that takes the names recorded since its last call.
func recordSyncs(y *syncer, streams string) func() []string {
	var mu sync.Mutex
	var synced []string
	y.mu.Lock()
	y.fsync = func(f *os.File) error {
		rel, err := filepath.Rel(streams, f.Name())
		if err != nil {
			rel = f.Name()
		}
		mu.Lock()
		synced = append(synced, rel)
		mu.Unlock()
		return nil
	}
	y.mu.Unlock()
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		s := synced
		synced = nil
		return s
	}
}

// deleteStream deletes a stream directory as the server does: renamed to
// ".<name>", then removed.
func deleteStream(t *testing.T, streams, name string) {
	t.Helper()
	if err := os.Rename(filepath.Join(streams, name), filepath.Join(streams, "."+name)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(streams, "."+name)); err != nil {
		t.Fatal(err)
	}
}

// TestSyncerSurvivesDeletedStream checks that a stream deleted while a
// round looks at its files does not fail the round, nor, since a failed
// round fails every later one, every append after it: whether the round
// finds the directory under the name the server renames it to before
// removing it, or under its own name as it goes.
func TestSyncerSurvivesDeletedStream(t *testing.T) {
	for _, renamed := range []bool{true, false} {
		t.Run("renamed="+strconv.FormatBool(renamed), func(t *testing.T) {
			streams := filepath.Join(t.TempDir(), "jetstream", "$G", "streams")
			appendStreamFile(t, streams, "A/meta.inf", "{}")
			appendStreamFile(t, streams, "A/msgs/1.blk", "one")
			appendStreamFile(t, streams, "B/meta.inf", "{}")
			appendStreamFile(t, streams, "B/msgs/1.blk", "one")
			y := newSyncer(streams, slog.New(slog.DiscardHandler))
			defer y.close()
			if err := y.wait(t.Context()); err != nil {
				t.Fatal(err)
			}
			gone := filepath.Join(streams, "A")
			if renamed {
				if err := os.Rename(gone, filepath.Join(streams, ".A")); err != nil {
					t.Fatal(err)
				}
				gone = filepath.Join(streams, ".A")
			} else {
				// A write, for the round to look at the stream.
				appendStreamFile(t, streams, "A/msgs/1.blk", "two")
			}
			// The server's removal runs while the round looks at the
			// stream's files: right after the fsync of its block.
			var once sync.Once
			y.mu.Lock()
			y.fsync = func(f *os.File) error {
				if strings.HasPrefix(f.Name(), gone+string(filepath.Separator)) {
					once.Do(func() { os.RemoveAll(gone) })
				}
				return nil
			}
			y.mu.Unlock()
			if err := y.wait(t.Context()); err != nil {
				t.Fatalf("round while a stream is deleted: %v", err)
			}
			appendStreamFile(t, streams, "B/msgs/1.blk", "two")
			if err := y.wait(t.Context()); err != nil {
				t.Fatalf("append after a stream deletion refused: %v", err)
			}
		})
	}
}

// TestSyncerSyncsRecreatedStream checks that the blocks of a stream
// deleted and created again under the same name are fsynced, though their
// indices start again at 1, below the last block the syncer knew of the
// old stream: whether a round ran between the deletion and the creation
// or not.
func TestSyncerSyncsRecreatedStream(t *testing.T) {
	for _, between := range []bool{true, false} {
		t.Run("round between="+strconv.FormatBool(between), func(t *testing.T) {
			streams := filepath.Join(t.TempDir(), "jetstream", "$G", "streams")
			appendStreamFile(t, streams, "A/meta.inf", "{}")
			appendStreamFile(t, streams, "A/msgs/1.blk", "one")
			appendStreamFile(t, streams, "A/msgs/2.blk", "one")
			appendStreamFile(t, streams, "A/msgs/3.blk", "one")
			y := newSyncer(streams, slog.New(slog.DiscardHandler))
			defer y.close()
			synced := recordSyncs(y, streams)
			if err := y.wait(t.Context()); err != nil {
				t.Fatal(err)
			}
			deleteStream(t, streams, "A")
			if between {
				if err := y.wait(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			appendStreamFile(t, streams, "A/meta.inf", "{}")
			appendStreamFile(t, streams, "A/msgs/1.blk", "acknowledged")
			synced()
			if err := y.wait(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := synced(); !slices.Contains(got, filepath.FromSlash("A/msgs/1.blk")) {
				t.Fatalf("new block of the recreated stream never fsynced; synced %q", got)
			}
			// And its next write too, found by the watch of the new
			// directory.
			time.Sleep(2 * racyWindow)
			appendStreamFile(t, streams, "A/msgs/1.blk", "acknowledged")
			if err := y.wait(t.Context()); err != nil {
				t.Fatal(err)
			}
			if got := synced(); !slices.Contains(got, filepath.FromSlash("A/msgs/1.blk")) {
				t.Fatalf("write to the recreated stream never fsynced; synced %q", got)
			}
		})
	}
}

// TestSyncerClosesDeletedStreamBlock checks that the syncer forgets a
// deleted stream, and closes the block file it kept open for it, instead
// of holding it for the life of the process.
func TestSyncerClosesDeletedStreamBlock(t *testing.T) {
	streams := filepath.Join(t.TempDir(), "jetstream", "$G", "streams")
	appendStreamFile(t, streams, "A/meta.inf", "{}")
	appendStreamFile(t, streams, "A/msgs/1.blk", "one")
	appendStreamFile(t, streams, "B/meta.inf", "{}")
	appendStreamFile(t, streams, "B/msgs/1.blk", "one")
	y := newSyncer(streams, slog.New(slog.DiscardHandler))
	defer y.close()
	if err := y.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The round's state is the loop's; a round that ended was its last
	// use until the next wait.
	if st := y.streams["A"]; st == nil || st.open == nil {
		t.Fatalf("stream A's last block not kept open: %+v", st)
	}
	deleteStream(t, streams, "A")
	for range 3 {
		appendStreamFile(t, streams, "B/msgs/1.blk", "x")
		if err := y.wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if st := y.streams["A"]; st != nil {
		if st.open != nil {
			t.Fatalf("deleted stream's block %s still open", st.open.Name())
		}
		t.Fatalf("deleted stream still known: %+v", st)
	}
}
