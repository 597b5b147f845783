package jetstream_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

const crashDirEnv = "LEDGER_JETSTREAM_CRASH_DIR"

// TestCrashChild is the child of TestCrash: it appends until killed,
// printing the id of every acknowledged event. It does nothing when run on
// its own.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestCrash")
	}
	ctx := context.Background()
	s, err := jetstream.Embedded(ctx, jetstream.ServerConfig{DataDir: dir, Port: -1}, jetstream.Config{})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
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
func TestCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a child process")
	}
	dir := t.TempDir()
	acked := map[uuid.UUID]string{}
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
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
				if n == 1 {
					kill, started = time.After(time.Duration(rand.IntN(1200))*time.Millisecond), nil
				}
			case <-started:
				cmd.Process.Signal(syscall.SIGKILL)
				t.Fatalf("round %d: child acknowledged nothing in 60 s; stderr: %s", round, stderr.String())
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

	s, err := jetstream.Embedded(t.Context(), jetstream.ServerConfig{DataDir: dir, Port: -1}, jetstream.Config{})
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
	t.Logf("%d acknowledged, %d stored", len(acked), len(seen))
}
