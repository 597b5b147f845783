package jetstream_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// TestStreamBlocks checks the stream's per-subject limit and the block
// size the server derives from it: 4 MB blocks by default, from the
// creation of the stream, and after a change of the setting on an
// existing data directory (the server takes a stream's block size from
// its configuration when it loads the stream, so a change applies to the
// blocks written from the start after the one that updated it); 8 MB
// with LargeBlocks. Every event appended reads back at every step: the
// limit set is the largest the server accepts, which no subject's count
// can exceed.
func TestStreamBlocks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	scfg := jetstream.ServerConfig{DataDir: dir, Port: -1, Durability: jetstream.DurabilityInterval}
	big := strings.Repeat("x", 3000)
	var ids []string
	const (
		small = 4 << 20
		large = 8 << 20
	)

	// start opens the store, checks the stream's per-subject limit and
	// appends mb megabytes, on three accounts, each on one subject.
	start := func(largeBlocks bool, mb int) *jetstream.Store {
		t.Helper()
		s, err := jetstream.Embedded(ctx, scfg, jetstream.Config{LargeBlocks: largeBlocks})
		if err != nil {
			t.Fatal(err)
		}
		st := storeStream(t, s)
		want := int64(math.MaxInt64)
		if largeBlocks {
			want = -1
		}
		if got := st.CachedInfo().Config.MaxMsgsPerSubject; got != want {
			t.Fatalf("large blocks %v: stream's max messages per subject %d, want %d", largeBlocks, got, want)
		}
		for i := 0; i < mb*1024*1024/(len(big)+200)/100+1; i++ {
			evs := events(100)
			for j := range evs {
				evs[j].Data = []byte(`{"seats":1,"note":"` + big + `"}`)
			}
			if _, err := s.Append(ctx, eventstore.LedgerStream(fmt.Sprintf("acct%d", i%3)), eventstore.Any(), evs...); err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				ids = append(ids, e.ID.String())
			}
		}
		return s
	}
	// blocks returns the sizes of the stream's block files, in order.
	blocks := func(s *jetstream.Store) []int64 {
		t.Helper()
		blks, err := filepath.Glob(filepath.Join(s.Server().JetStreamConfig().StoreDir, "*", "streams", jetstream.StreamName(s), "msgs", "*.blk"))
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(blks, func(a, b string) int {
			na, _ := strconv.Atoi(strings.TrimSuffix(filepath.Base(a), ".blk"))
			nb, _ := strconv.Atoi(strings.TrimSuffix(filepath.Base(b), ".blk"))
			return na - nb
		})
		var out []int64
		for _, f := range blks {
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fi.Size())
		}
		return out
	}
	// check reads every event back, in order, and closes the store.
	check := func(s *jetstream.Store, step string) {
		t.Helper()
		var got []string
		for rec, err := range s.ReadAll(ctx, 0) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, rec.ID.String())
		}
		if !slices.Equal(got, ids) {
			t.Fatalf("%s: read back %d events, want %d in order", step, len(got), len(ids))
		}
		s.Close()
	}
	// largest returns the largest of the blocks from the index from on.
	largest := func(sizes []int64, from int) int64 {
		return slices.Max(sizes[from:])
	}

	// Created by default: 4 MB blocks from the first.
	s := start(false, 6)
	sizes := blocks(s)
	if len(sizes) < 2 || largest(sizes, 0) > small {
		t.Fatalf("created with the default: blocks of %v bytes, want two or more of at most %d", sizes, small)
	}
	check(s, "created")

	// Changed to large blocks: the stream is updated at the first start,
	// and loaded with 8 MB blocks at the next one, whose blocks pass 4 MB.
	check(start(true, 0), "updated to large blocks")
	s = start(true, 6)
	grown := blocks(s)
	if l := largest(grown, len(sizes)-1); l <= small || l > large {
		t.Fatalf("large blocks: blocks of %v bytes after %v, want one past %d", grown, sizes, small)
	}
	check(s, "large blocks")

	// And back: 4 MB blocks again from the start after the update.
	check(start(false, 0), "updated to the default")
	s = start(false, 6)
	back := blocks(s)
	if len(back) < len(grown)+1 || largest(back, len(grown)) > small {
		t.Fatalf("back to the default: blocks of %v bytes after %v, want new ones of at most %d", back, grown, small)
	}
	check(s, "back to the default")
}
