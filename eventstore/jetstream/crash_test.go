package jetstream_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

const (
	crashDirEnv = "LEDGER_JETSTREAM_CRASH_DIR"
	// crashCompressEnv set to 1 has the child compress the stream's
	// blocks and append events of about 10 KB, which fill them sooner.
	crashCompressEnv = "LEDGER_JETSTREAM_CRASH_COMPRESS"
)

// TestCrashChild is the child of TestCrash: it appends until killed,
// printing the id of every acknowledged event. It does nothing when run on
// its own.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	ctx := context.Background()
	compress := os.Getenv(crashCompressEnv) == "1"
	s, err := jetstream.Embedded(ctx, jetstream.ServerConfig{DataDir: dir, Port: -1}, jetstream.Config{Compress: compress})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	note := []byte(`{"seats":1,"note":"` + strings.Repeat("x", 10000) + `"}`)
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			// The same streams every round: a restarted writer goes on
			// from what the recovered store holds.
			stream := eventstore.LedgerStream(fmt.Sprintf("w%d", w))
			held := uint64(0)
			for _, err := range s.ReadStream(ctx, stream, 0) {
				if err == nil {
					held++
				}
			}
			mu.Lock()
			counts[stream] = held
			mu.Unlock()
			for n := uint64(0); ; n++ {
				evs := events(1 + int(n%3))
				for i := range evs {
					if compress {
						evs[i].Data = note
					}
				}
				if _, err := s.Append(ctx, stream, eventstore.ExpectRevisionAfter(revs(stream, &mu)), evs...); err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(3)
				}
				mu.Lock()
				for _, e := range evs {
					fmt.Fprintln(out, "ACK", stream.Account, e.ID)
				}
				counts[stream] += uint64(len(evs))
				out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

var counts = map[eventstore.StreamID]uint64{}

func revs(stream eventstore.StreamID, mu *sync.Mutex) uint64 {
	mu.Lock()
	defer mu.Unlock()
	return counts[stream]
}

// TestCrash kills a process appending with the default durability at
// random moments and checks, after each restart on the same directory,
// that every acknowledged event is stored exactly once with dense
// revisions. SIGKILL stops the process, not the OS, so this shows that no
// acknowledged write is held only in the process.
//
// The compressed variant has the server compress the stream's full
// blocks: a crash leaves compressed full blocks, the last one plain (and
// possibly a full block not compressed yet, or a compression's temporary
// file), and the store must read every acknowledged event back from them,
// from the block files as through the server.
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a child process")
	}
	t.Run("plain", func(t *testing.T) { testCrash(t, false) })
	t.Run("compressed", func(t *testing.T) { testCrash(t, true) })
}

func testCrash(t *testing.T, compress bool) {
	dir := t.TempDir()
	blocks := func() []string {
		t.Helper()
		blks, err := filepath.Glob(filepath.Join(dir, "jetstream", "*", "streams", "LEDGER", "msgs", "*.blk"))
		if err != nil {
			t.Fatal(err)
		}
		return blks
	}
	acked := map[uuid.UUID]string{}
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, fmt.Sprintf("%s=%d", crashCompressEnv, map[bool]int{true: 1}[compress]))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// The random moment is counted from the first acknowledgement, so
		// a slow start (a loaded machine, a server recovering) still gets
		// killed while appending.
		var kill <-chan time.Time
		started := time.After(60 * time.Second)
		n := 0
	read:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break read
				}
				f := strings.Fields(l)
				if len(f) != 3 || f[0] != "ACK" {
					t.Fatalf("round %d: child said %q; stderr: %s", round, l, stderr.String())
				}
				acked[uuid.MustParse(f[2])] = f[1]
				n++
				// Compressed, the first round runs until a block is
				// compressed, so that every restart finds one.
				if kill == nil && started != nil && (!compress || round > 0 || n%100 == 0 && countCompressed(t, blocks()) > 0) {
					kill, started = time.After(time.Duration(rand.IntN(1200))*time.Millisecond), nil
				}
			case <-started:
				cmd.Process.Signal(syscall.SIGKILL)
				t.Fatalf("round %d: 60 s and no kill scheduled (%d events acknowledged; compressed: waits for a compressed block); stderr: %s", round, n, stderr.String())
			case <-kill:
				cmd.Process.Signal(syscall.SIGKILL)
				kill = nil
			}
		}
		cmd.Wait()
		if n == 0 {
			t.Fatalf("round %d: child acknowledged nothing; stderr: %s", round, stderr.String())
		}
		t.Logf("round %d: %d events acknowledged before SIGKILL", round, n)
	}

	if compress {
		if n := countCompressed(t, blocks()); n == 0 {
			t.Fatalf("none of the %d blocks is compressed", len(blocks()))
		}
		// Every read of more than a few events from the files.
		defer jetstream.SetMinFileRead(jetstream.SetMinFileRead(16))
	}
	s, err := jetstream.Embedded(t.Context(), jetstream.ServerConfig{DataDir: dir, Port: -1}, jetstream.Config{Compress: compress})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	seen := map[uuid.UUID]int{}
	next := map[eventstore.StreamID]uint64{}
	for rec, err := range s.ReadAll(t.Context(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		seen[rec.ID]++
		if rec.Revision != next[rec.Stream] {
			t.Fatalf("%s: revision %d, want %d", rec.Stream, rec.Revision, next[rec.Stream])
		}
		next[rec.Stream]++
	}
	for id, acct := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged event %s of %s stored %d times", id, acct, seen[id])
		}
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("event %s stored %d times", id, n)
		}
	}
	t.Logf("%d acknowledged, %d stored, %d read from the block files, %d of %d blocks compressed",
		len(acked), len(seen), jetstream.FileReads(s), countCompressed(t, blocks()), len(blocks()))
	if compress && jetstream.FileReads(s) != uint64(len(seen)) {
		t.Errorf("%d of %d events read from the block files", jetstream.FileReads(s), len(seen))
	}
}
