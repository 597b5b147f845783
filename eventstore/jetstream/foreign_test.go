package jetstream_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"

	"github.com/google/uuid"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// Messages the store did not write, published on a stream's subjects by a
// client with the store's own rights, take no revision: those published
// without the expectation every append carries are yielded as unreadable
// records by every read, which goes on past them; a copy of an earlier
// event placed with an expectation reads back with its stale revision.
// Appends that follow number their events as if neither were there,
// whether the last message of the stream is one of them or not.
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
			// A copy of the first event with its headers, published without
			// an expectation, then a message with no header at all: the
			// last message of the stream is not an event.
			first, err := jetstream.Message(stream, evs[0], 0, false)
			if err != nil {
				t.Fatal(err)
			}
			first.Header.Set(natsjs.MsgIDHeader, uuid.NewString())
			ack, err := js.PublishMsg(ctx, first)
			if err != nil {
				t.Fatal(err)
			}
			copied := eventstore.Position(ack.Sequence)
			if ack, err = js.Publish(ctx, "ledger.victim.SeatsPurchased", []byte("{not json")); err != nil {
				t.Fatal(err)
			}
			garbage := eventstore.Position(ack.Sequence)
			res, err := s.Append(ctx, stream, eventstore.Exact(1), evs[2])
			if err != nil || res.NextRevision != 2 {
				t.Fatalf("append after a foreign message: %+v, %v; want revision 2", res, err)
			}
			// A copy that follows the protocol, placed with the
			// expectation the server checks, is now the last message: an
			// append by a caller that knows three events still lands.
			first.Header.Set(natsjs.MsgIDHeader, uuid.NewString())
			first.Header.Set(natsjs.ExpectedLastSubjSeqHeader, strconv.FormatUint(uint64(res.Position), 10))
			first.Header.Set(natsjs.ExpectedLastSubjSeqSubjHeader, "ledger.victim.*")
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
			if !slices.Equal(unreadable, []eventstore.Position{copied, garbage}) {
				t.Fatalf("unreadable records at %v, want the copy without expectation at %d and the garbage at %d", unreadable, copied, garbage)
			}
			// The copy placed with an expectation reads back with the
			// revision it carries; the events are numbered 0 to 3.
			if want := []uint64{0, 1, 2, 0, 3}; !slices.Equal(revs, want) {
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
