package jetstream_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// A message an operator removes from the middle of the stream (nats
// stream rmm, DeleteMsg or SecureDeleteMsg) leaves a gap in the
// sequences: every read goes on past it, and a read of the whole log
// still ends at the last message.
func TestDeletedMessages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, secure := range []bool{false, true} {
		name := "delete"
		if secure {
			name = "secure"
		}
		t.Run(name, func(t *testing.T) {
			s := newStore(t, jetstream.Config{})
			st := storeStream(t, s)
			long, short := eventstore.LedgerStream("long"), eventstore.LedgerStream("short")
			var positions []eventstore.Position
			for i, ev := range events(40) {
				stream := long
				if i%8 == 0 {
					stream = short
				}
				res, err := s.Append(ctx, stream, eventstore.Any(), ev)
				if err != nil {
					t.Fatal(err)
				}
				positions = append(positions, res.Position)
			}
			del := func(p eventstore.Position) {
				t.Helper()
				var err error
				if secure {
					err = st.SecureDeleteMsg(ctx, uint64(p))
				} else {
					err = st.DeleteMsg(ctx, uint64(p))
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			// One event of each stream, two in a row of the long one, and
			// the last message of the stream.
			gone := []eventstore.Position{positions[8], positions[20], positions[21], positions[39]}
			for _, p := range gone {
				del(p)
			}
			want := slices.DeleteFunc(slices.Clone(positions), func(p eventstore.Position) bool { return slices.Contains(gone, p) })

			var got []eventstore.Position
			for rec, err := range s.ReadAll(ctx, 0) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, rec.Position)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("ReadAll(0) read positions %v, want %v", got, want)
			}
			if p, err := s.LastPosition(ctx); err != nil || p != positions[38] {
				t.Fatalf("LastPosition = %d, %v; want %d, the last message left", p, err, positions[38])
			}
			got = got[:0]
			for rec, err := range s.ReadAll(ctx, positions[7]) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, rec.Position)
			}
			if !slices.Equal(got, want[8:]) {
				t.Fatalf("ReadAll(%d) read positions %v, want %v", positions[7], got, want[8:])
			}

			// A subscription from before the gap reads past it, then an
			// event appended after it.
			sctx, scancel := context.WithCancel(ctx)
			defer scancel()
			after, err := s.Append(ctx, long, eventstore.Any(), events(1)...)
			if err != nil {
				t.Fatal(err)
			}
			if after.Position <= positions[39] {
				t.Fatalf("an append after the last message was removed is at %d, not after it (%d)", after.Position, positions[39])
			}
			got = got[:0]
			for rec, err := range s.Subscribe(sctx, 0) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, rec.Position)
				if rec.Position == after.Position {
					break
				}
			}
			if w := append(slices.Clone(want), after.Position); !slices.Equal(got, w) {
				t.Fatalf("Subscribe(0) read positions %v, want %v", got, w)
			}

			// Each stream reads on past its own gap, from its start and
			// from a revision on either side of it.
			for _, stream := range []eventstore.StreamID{short, long} {
				var all []eventstore.Position
				for _, p := range want {
					if (p-positions[0])%8 == 0 == (stream == short) {
						all = append(all, p)
					}
				}
				if stream == long {
					all = append(all, after.Position)
				}
				for _, from := range []uint64{0, 1, 5, 12} {
					got = got[:0]
					for rec, err := range s.ReadStream(ctx, stream, from) {
						if err != nil {
							t.Fatalf("ReadStream(%s, %d): %v", stream, from, err)
						}
						if rec.Revision < from {
							t.Fatalf("ReadStream(%s, %d) read revision %d", stream, from, rec.Revision)
						}
						got = append(got, rec.Position)
					}
					if len(got) == 0 && from < uint64(len(all)) {
						t.Fatalf("ReadStream(%s, %d) read nothing, want the events of %v from revision %d", stream, from, all, from)
					}
					if len(got) > 0 && got[len(got)-1] != all[len(all)-1] {
						t.Fatalf("ReadStream(%s, %d) read %v, want it to reach the last event at %d", stream, from, got, all[len(all)-1])
					}
				}
			}

			// With every message removed the stream reads as empty.
			for rec, err := range s.ReadAll(ctx, 0) {
				if err != nil {
					t.Fatal(err)
				}
				del(rec.Position)
			}
			if p, err := s.LastPosition(ctx); err != nil || p != 0 {
				t.Fatalf("LastPosition of a stream whose messages were all removed = %d, %v; want 0", p, err)
			}
			for rec, err := range s.ReadAll(ctx, 0) {
				t.Fatalf("ReadAll of a stream whose messages were all removed yielded %+v, %v", rec, err)
			}
		})
	}
}
