package jetstream

import (
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSyncerWatchesAfterOverflow checks that after inotify lost events
// (its queue overflowed) a directory replaced meanwhile, whose lost
// events said its watch was gone, is watched again: a later write to it
// is fsynced. The directory is a stream's msgs directory, replaced as a
// purge replaces it (renamed away, removed, made again), which changes
// neither the stream's directory nor its block indices.
func TestSyncerWatchesAfterOverflow(t *testing.T) {
	b, err := os.ReadFile("/proc/sys/fs/inotify/max_queued_events")
	if err != nil {
		t.Skipf("no inotify queue limit: %v", err)
	}
	limit, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || limit > 1<<16 {
		t.Skipf("inotify queue limit %q too large to fill in a test", b)
	}
	streams := filepath.Join(t.TempDir(), "jetstream", "$G", "streams")
	// A has no block yet: the syncer holds none of its files open, which
	// would keep its msgs directory, and its watch, after its removal.
	appendStreamFile(t, streams, "A/meta.inf", "{}")
	if err := os.Mkdir(filepath.Join(streams, "A", "msgs"), 0o755); err != nil {
		t.Fatal(err)
	}
	appendStreamFile(t, streams, "B/meta.inf", "{}")
	appendStreamFile(t, streams, "B/msgs/1.blk", "one")
	y := newSyncer(streams, slog.New(slog.DiscardHandler))
	defer y.close()
	if y.watch == nil {
		t.Skip("no inotify")
	}
	synced := recordSyncs(y, streams)
	if err := y.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The round's state is the loop's; a round that ended was its last
	// use until the next wait.
	var aWatches []int32
	for wd, w := range y.watch.wds {
		if w.name == "A" {
			aWatches = append(aWatches, wd)
		}
	}
	liveA := func() int {
		live := watches(t, y.watch.fd)
		n := 0
		for _, wd := range aWatches {
			if live[wd] {
				n++
			}
		}
		return n
	}
	if len(aWatches) != 2 || liveA() != 2 {
		t.Skipf("the watches of A (%v) are not listed in the inotify instance's fdinfo", aWatches)
	}
	// Fill the queue: one event per file made in a watched directory.
	for i := range limit + 16 {
		f, err := os.Create(filepath.Join(streams, "B", "msgs", "x"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	// The events of this are lost, among them the one saying the kernel
	// dropped the watch of A's msgs directory, once it has dropped it (it
	// may do so after the removal returned): it leaves the instance's
	// list of watches.
	msgs := filepath.Join(streams, "A", "msgs")
	if err := os.Rename(msgs, filepath.Join(streams, "A", "__msgs__")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(streams, "A", "__msgs__")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); liveA() != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("the kernel kept the watch of a removed directory among %v", aWatches)
		}
		time.Sleep(time.Millisecond)
	}
	appendStreamFile(t, streams, "A/msgs/1.blk", "new")
	if err := y.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if !y.changed.overflow {
		t.Fatal("the inotify queue did not overflow")
	}
	time.Sleep(2 * racyWindow)
	appendStreamFile(t, streams, "A/msgs/1.blk", "acknowledged")
	synced()
	if err := y.wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := synced(); !slices.Contains(got, filepath.FromSlash("A/msgs/1.blk")) {
		t.Fatalf("write to A after an overflow never fsynced; synced %q", got)
	}
}

// watches returns the watch descriptors of the inotify instance fd, as
// its fdinfo lists them.
func watches(t *testing.T, fd int) map[int32]bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(fd))
	if err != nil {
		t.Skipf("no fdinfo of the inotify instance: %v", err)
	}
	wds := make(map[int32]bool)
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "inotify wd:")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, " ")
		wd, err := strconv.ParseInt(n, 16, 32)
		if err != nil {
			t.Fatalf("fdinfo line %q: %v", line, err)
		}
		wds[int32(wd)] = true
	}
	return wds
}
