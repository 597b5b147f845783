package jetstream_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// TestReadAllFromFiles checks that ReadAll on an embedded server reads
// the stream's block files (for reads of more than a few messages; the
// test lowers that threshold), over several blocks and from any position,
// yielding what a read through the server yields (the same store opened
// over a connection of its own reads that way): events, a foreign
// message as unreadable, times and positions. Once a message is removed
// it reads through the server again, and skips the removed message.
func TestReadAllFromFiles(t *testing.T) {
	defer jetstream.SetMinFileRead(jetstream.SetMinFileRead(16))
	t.Run("plain", func(t *testing.T) { testReadAllFromFiles(t, false) })
	t.Run("compressed", func(t *testing.T) { testReadAllFromFiles(t, true) })
}

func testReadAllFromFiles(t *testing.T, compress bool) {
	ctx := context.Background()
	s := newStore(t, jetstream.Config{Compress: compress})
	// About 10 MB: more than one block of the file store.
	big := strings.Repeat("x", 3000)
	ledger, activity := eventstore.LedgerStream("acme"), eventstore.ActivityStream("acme")
	for i := range 40 {
		evs := events(100)
		for j := range evs {
			evs[j].Data = []byte(`{"seats":1,"note":"` + big + `"}`)
		}
		stream := ledger
		if i%2 == 1 {
			stream = activity
		}
		if _, err := s.Append(ctx, stream, eventstore.Any(), evs...); err != nil {
			t.Fatal(err)
		}
	}
	js, err := natsjs.New(s.Conn())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "ledger.acme.SeatsPurchased", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, ledger, eventstore.Any(), events(3)...); err != nil {
		t.Fatal(err)
	}
	// The same stream through a connection of the store's own: no files.
	nc, err := nats.Connect(s.Server().ClientURL(), nats.InProcessServer(s.Server()))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	viaServer, err := jetstream.Open(ctx, nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer viaServer.Close()

	type read struct {
		rec eventstore.Record
		err string
	}
	readAll := func(st *jetstream.Store, after eventstore.Position) []read {
		t.Helper()
		var out []read
		for rec, err := range st.ReadAll(ctx, after) {
			r := read{rec: rec}
			if err != nil {
				if !errors.Is(err, eventstore.ErrUnreadable) {
					t.Fatalf("read after %d: %v", after, err)
				}
				r.err = err.Error()
			}
			out = append(out, r)
		}
		return out
	}
	same := func(after eventstore.Position, want int) {
		t.Helper()
		before := jetstream.FileReads(s)
		got, exp := readAll(s, after), readAll(viaServer, after)
		fromFiles := uint64(len(got))
		if want < 16 {
			fromFiles = 0 // a short read goes through the server
		}
		if n := jetstream.FileReads(s) - before; n != fromFiles {
			t.Errorf("read after %d: %d of %d messages read from the files, want %d", after, n, len(got), fromFiles)
		}
		if len(got) != want || len(exp) != want {
			t.Fatalf("read after %d: %d messages from the files, %d through the server, want %d", after, len(got), len(exp), want)
		}
		for i := range got {
			g, e := got[i], exp[i]
			if g.err != e.err || g.rec.ID != e.rec.ID || g.rec.Stream != e.rec.Stream || g.rec.Type != e.rec.Type ||
				g.rec.Revision != e.rec.Revision || g.rec.Position != e.rec.Position || !g.rec.Stored.Equal(e.rec.Stored) ||
				string(g.rec.Data) != string(e.rec.Data) || string(g.rec.Metadata) != string(e.rec.Metadata) {
				t.Fatalf("read after %d, message %d:\nfiles  %+v %q\nserver %+v %q", after, i, g.rec, g.err, e.rec, e.err)
			}
		}
	}
	blks, err := filepath.Glob(filepath.Join(s.Server().JetStreamConfig().StoreDir, "*", "streams", jetstream.StreamName(s), "msgs", "*.blk"))
	if err != nil || len(blks) < 2 {
		t.Fatalf("the stream has %d block files (%v), want several", len(blks), err)
	}
	if compress {
		// The server compresses a block once it is full, in the
		// background.
		deadline := time.Now().Add(10 * time.Second)
		for !compressed(t, blks) {
			if time.Now().After(deadline) {
				t.Fatal("no block was compressed")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	const total = 40*100 + 1 + 3
	same(0, total)
	same(1234, total-1234)
	same(total-20, 20)
	same(total-2, 2)
	if got := readAll(s, total); len(got) != 0 {
		t.Fatalf("read after the last message: %d messages", len(got))
	}

	st, err := js.Stream(ctx, jetstream.StreamName(s))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, 10); err != nil {
		t.Fatal(err)
	}
	before := jetstream.FileReads(s)
	got := readAll(s, 0)
	if n := jetstream.FileReads(s) - before; n != 0 {
		t.Errorf("%d messages read from the files of a stream with a removed message", n)
	}
	if len(got) != total-1 || got[9].rec.Position != 11 {
		t.Errorf("read after a removal: %d messages, the 10th at %d; want %d, at 11", len(got), got[9].rec.Position, total-1)
	}
}

// TestLastEvent checks that LastEvent returns a stream's last event as a
// read of the stream yields it, and not found for an empty stream.
func TestLastEvent(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, jetstream.Config{})
	stream := eventstore.LedgerStream("acme")
	if _, err := s.LastEvent(ctx, stream); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("LastEvent of an empty stream: %v, want ErrStreamNotFound", err)
	}
	if _, err := s.Append(ctx, stream, eventstore.NoStream(), events(3)...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, eventstore.ActivityStream("acme"), eventstore.NoStream(), events(2)...); err != nil {
		t.Fatal(err)
	}
	var last eventstore.Record
	for rec, err := range s.ReadStream(ctx, stream, 0) {
		if err != nil {
			t.Fatal(err)
		}
		last = rec
	}
	got, err := s.LastEvent(ctx, stream)
	if err != nil || got.ID != last.ID || got.Revision != 2 || got.Position != last.Position ||
		string(got.Data) != string(last.Data) || string(got.Metadata) != string(last.Metadata) {
		t.Fatalf("LastEvent = %+v, %v; want %+v", got, err, last)
	}
}

// compressed reports whether one of the block files is compressed.
func compressed(t *testing.T, blks []string) bool {
	for _, f := range blks {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 4 && string(b[:3]) == "cmp" {
			return true
		}
	}
	return false
}

// TestBlocksFrom checks that a read from any sequence starts at the last
// block file that begins at or before it, over streams of 0 to 40 blocks
// with gaps between their indexes, the last one sometimes just created and
// still empty.
func TestBlocksFrom(t *testing.T) {
	for n := range 41 {
		for _, emptyLast := range []bool{false, true} {
			dir := t.TempDir()
			var idx []uint64    // the blocks' indexes
			var starts []uint64 // the first sequence of each
			seq := uint64(1)
			for i := range n {
				var h [22]byte
				binary.LittleEndian.PutUint32(h[:], 22)
				binary.LittleEndian.PutUint64(h[4:], seq)
				idx = append(idx, uint64(3*i+1+i%2))
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.blk", idx[i])), h[:], 0o600); err != nil {
					t.Fatal(err)
				}
				starts = append(starts, seq)
				seq += uint64(1 + i*i%7)
			}
			if emptyLast {
				last := uint64(3*n + 5)
				idx = append(idx, last)
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%d.blk", last)), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			for first := range seq + 2 {
				from := 0 // the last block that begins at or before first
				for i, s := range starts {
					if s <= first {
						from = i
					}
				}
				got, err := jetstream.BlocksFrom(dir, first)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, idx[from:]) {
					t.Fatalf("%d blocks beginning at %v (one more empty: %v): a read from %d opens %v, want %v", n, starts, emptyLast, first, got, idx[from:])
				}
			}
		}
	}
}
