package jetstream

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
)

// referenceMessages builds the messages of an append as the store built
// them before newMessage: a header map of separately made values, the
// expectation added to the first message afterwards.
func referenceMessages(stream eventstore.StreamID, events []eventstore.Proposed, bodies [][]byte, n uint64, over expectation, seq uint64, qualify bool) []*nats.Msg {
	msgs := make([]*nats.Msg, len(events))
	for i, e := range events {
		hdr := make(nats.Header, 8)
		if qualify {
			hdr[jetstream.MsgIDHeader] = []string{e.ID.String() + "@" + stream.String()}
		} else {
			hdr[jetstream.MsgIDHeader] = []string{e.ID.String()}
		}
		hdr[RevisionHeader] = []string{strconv.FormatUint(n+uint64(i), 10)}
		if len(e.Metadata) > 0 && emptyObject(e.Metadata) {
			hdr[MetadataHeader] = []string{string(e.Metadata)}
		}
		msgs[i] = &nats.Msg{Subject: Subject(stream, e.Type), Header: hdr, Data: bodies[i]}
	}
	switch over {
	case streamExpectation:
		msgs[0].Header[jetstream.ExpectedLastSubjSeqHeader] = []string{strconv.FormatUint(seq, 10)}
		msgs[0].Header[jetstream.ExpectedLastSubjSeqSubjHeader] = []string{filter(stream)}
	case accountExpectation:
		msgs[0].Header[jetstream.ExpectedLastSubjSeqHeader] = []string{strconv.FormatUint(seq, 10)}
		msgs[0].Header[jetstream.ExpectedLastSubjSeqSubjHeader] = []string{accountFilter(stream.Account)}
	}
	return msgs
}

// TestMessagesAsBefore checks that the messages of an append, made with
// their strings cut from one, carry the subject, headers and body the
// store wrote before, for every expectation, qualified ids or not,
// metadata with or without members, and any number of events; and that
// lastID gives the last event's id.
func TestMessagesAsBefore(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	types := []string{"UserAdded", "ActivityRecorded", "SeatsPurchased", "X"}
	metas := [][]byte{nil, []byte(`{}`), []byte(`{"account":"a"}`), []byte(`{ }`)}
	for i := range 2000 {
		stream := eventstore.StreamID{Category: []eventstore.Category{eventstore.Ledger, eventstore.Activity}[rng.IntN(2)],
			Account: fmt.Sprintf("acct-%d", rng.IntN(1<<uint(rng.IntN(40))))}
		if i%7 == 0 {
			stream.Account = string(make([]byte, 200)) // longer than the stack buffer
			for j := range []byte(stream.Account) {
				stream.Account = stream.Account[:j] + "a" + stream.Account[j+1:]
			}
		}
		events := make([]eventstore.Proposed, 1+rng.IntN(3))
		bodies := make([][]byte, len(events))
		for j := range events {
			var id uuid.UUID
			for k := range id {
				id[k] = byte(rng.Uint32())
			}
			events[j] = eventstore.Proposed{ID: id, Type: types[rng.IntN(len(types))], Metadata: metas[rng.IntN(len(metas))]}
			bodies[j] = fmt.Appendf(nil, `{"n":%d}`, j)
		}
		n, seq := rng.Uint64N(1<<uint(rng.IntN(64))), rng.Uint64()
		over := expectation(rng.IntN(3))
		qualify := rng.IntN(2) == 0
		var got []*nats.Msg
		if over == noExpectation {
			for j, e := range events {
				got = append(got, message(stream, e, bodies[j], n+uint64(j), qualify))
			}
		} else {
			got = messages(stream, events, bodies, n, over, seq, qualify)
		}
		want := referenceMessages(stream, events, bodies, n, over, seq, qualify)
		for j := range want {
			g, w := got[j], want[j]
			if g.Subject != w.Subject || string(g.Data) != string(w.Data) || g.Reply != "" {
				t.Fatalf("case %d message %d: subject %q data %s, want %q %s", i, j, g.Subject, g.Data, w.Subject, w.Data)
			}
			if !maps.EqualFunc(g.Header, w.Header, slices.Equal) {
				t.Fatalf("case %d message %d: headers %v, want %v", i, j, g.Header, w.Header)
			}
		}
		if id := lastID(got); id != events[len(events)-1].ID.String() {
			t.Fatalf("case %d: lastID %q, want %s", i, id, events[len(events)-1].ID)
		}
	}
}

// BenchmarkMessages makes the messages of a one-event append with the
// per-account expectation, as before (referenceMessages) and as now.
//
//	go test -run '^$' -bench Messages -count 5 ./eventstore/jetstream/
func BenchmarkMessages(b *testing.B) {
	stream := eventstore.ActivityStream("acct0042")
	events := []eventstore.Proposed{{ID: uuid.New(), Type: "ActivityRecorded", Metadata: []byte(`{"account":"acct0042"}`)}}
	bodies := [][]byte{[]byte(`{"id":"x"}`)}
	b.Run("before", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			msgs := referenceMessages(stream, events, bodies, 41, accountExpectation, 12345678, false)
			_ = msgs[0].Header[jetstream.MsgIDHeader][0] // the head's last id
			_ = events[0].ID.String()
		}
	})
	b.Run("now", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			msgs := messages(stream, events, bodies, 41, accountExpectation, 12345678, false)
			_ = lastID(msgs)
		}
	})
}
