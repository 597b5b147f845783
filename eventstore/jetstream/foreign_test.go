package jetstream_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// Messages the store did not write, published on a stream's subjects by a
// client with the store's own rights, are yielded as unreadable records by
// every read, which goes on past them, and take no revision: appends that
// follow number their events as if they were not there, whether the last
// message of the stream is one of them or a copy of an earlier event.
func TestForeignMessages(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  jetstream.Config
	}{{"alone", jetstream.Config{MaxBatch: 1}}, {"coalesced", jetstream.Config{}}} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, tc.cfg)
			js, err := natsjs.New(s.Conn())
			if err != nil {
				t.Fatal(err)
			}
			stream := eventstore.LedgerStream("victim")
			evs := events(4)
			if _, err := s.Append(ctx, stream, eventstore.NoStream(), evs[:2]...); err != nil {
				t.Fatal(err)
			}
			// A copy of the first event with its revision header, then a
			// message with no header at all: the last message of the
			// stream is not an event.
			first, err := jetstream.Message(stream, evs[0], 0, false)
			if err != nil {
				t.Fatal(err)
			}
			first.Header.Set(natsjs.MsgIDHeader, uuid.NewString())
			if _, err := js.PublishMsg(ctx, first); err != nil {
				t.Fatal(err)
			}
			ack, err := js.Publish(ctx, "ledger.victim.SeatsPurchased", []byte("{not json"))
			if err != nil {
				t.Fatal(err)
			}
			garbage := eventstore.Position(ack.Sequence)
			res, err := s.Append(ctx, stream, eventstore.Exact(1), evs[2])
			if err != nil || res.NextRevision != 2 {
				t.Fatalf("append after a foreign message: %+v, %v; want revision 2", res, err)
			}
			// Now a copy of the first event is the last message: an
			// append by a caller that knows three events still lands.
			first.Header.Set(natsjs.MsgIDHeader, uuid.NewString())
			if _, err := js.PublishMsg(ctx, first); err != nil {
				t.Fatal(err)
			}
			fresh, err := jetstream.Open(ctx, s.Conn(), tc.cfg) // no cached head
			if err != nil {
				t.Fatal(err)
			}
			defer fresh.Close()
			if res, err := fresh.Append(ctx, stream, eventstore.Exact(2), evs[3]); err != nil || res.NextRevision != 3 {
				t.Fatalf("append after a copy of an earlier event: %+v, %v; want revision 3", res, err)
			}

			var revs []uint64
			var unreadable []eventstore.Position
			for rec, err := range s.ReadAll(ctx, 0) {
				var u *eventstore.UnreadableError
				switch {
				case errors.As(err, &u):
					if !errors.Is(err, eventstore.ErrUnreadable) || u.Stream != stream || rec.Position != u.Position {
						t.Fatalf("unreadable record %+v: %v", rec, err)
					}
					unreadable = append(unreadable, u.Position)
				case err != nil:
					t.Fatal(err)
				default:
					revs = append(revs, rec.Revision)
				}
			}
			if len(unreadable) != 1 || unreadable[0] != garbage {
				t.Fatalf("unreadable records at %v, want the one at %d", unreadable, garbage)
			}
			// The copies read back with the revision they carry; the events
			// are numbered 0 to 3.
			if want := []uint64{0, 1, 0, 2, 0, 3}; !slices.Equal(revs, want) {
				t.Fatalf("revisions read %v, want %v", revs, want)
			}
			n := 0
			for _, err := range s.ReadStream(ctx, stream, 0) {
				if err != nil && !errors.Is(err, eventstore.ErrUnreadable) {
					t.Fatal(err)
				}
				n++
			}
			if n != 7 {
				t.Fatalf("ReadStream yielded %d records, want all 7", n)
			}
		})
	}
}
