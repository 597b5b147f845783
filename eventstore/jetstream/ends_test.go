package jetstream_test

import (
	"context"
	"errors"
	"testing"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// endsFixture is a store holding acme's ledger (3 events) and activity
// stream (2 events) and globex's ledger (1 event, stored last).
type endsFixture struct {
	s                *jetstream.Store
	js               natsjs.JetStream
	ledger, activity eventstore.StreamEnd // acme's, as a reader of every record finds them
	last             eventstore.Position  // the store's last position
}

func newEndsFixture(t *testing.T) *endsFixture {
	t.Helper()
	ctx := context.Background()
	s := newStore(t, jetstream.Config{})
	js, err := natsjs.New(s.Conn())
	if err != nil {
		t.Fatal(err)
	}
	f := &endsFixture{s: s, js: js}
	for _, a := range []struct {
		stream eventstore.StreamID
		n      int
		end    *eventstore.StreamEnd
	}{
		{eventstore.LedgerStream("acme"), 2, &f.ledger},
		{eventstore.ActivityStream("acme"), 2, &f.activity},
		{eventstore.LedgerStream("acme"), 1, &f.ledger},
		{eventstore.LedgerStream("globex"), 1, nil},
	} {
		res, err := s.Append(ctx, a.stream, eventstore.Any(), events(a.n)...)
		if err != nil {
			t.Fatal(err)
		}
		if a.end != nil {
			*a.end = eventstore.StreamEnd{Revisions: res.NextRevision + 1, Position: res.Position}
		}
		f.last = res.Position
	}
	return f
}

// confirm asks a new store over the same server (a restarted process,
// with nothing cached) to confirm acme's ends.
func (f *endsFixture) confirm(t *testing.T, after eventstore.Position, ledger, activity eventstore.StreamEnd) (*jetstream.Store, bool) {
	t.Helper()
	s, err := jetstream.Open(context.Background(), f.s.Conn(), jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ok, err := s.ConfirmEnds(context.Background(), "acme", after, ledger, activity)
	if err != nil {
		t.Fatal(err)
	}
	return s, ok
}

// The ends a reader of every record found are confirmed, and the store's
// next appends to either stream, plain or conditional, continue from them.
func TestConfirmEnds(t *testing.T) {
	ctx := context.Background()
	f := newEndsFixture(t)
	s, ok := f.confirm(t, f.last, f.ledger, f.activity)
	if !ok {
		t.Fatal("exact ends not confirmed")
	}
	res, err := s.Append(ctx, eventstore.LedgerStream("acme"), eventstore.ExpectRevisionAfter(f.ledger.Revisions), events(1)...)
	if err != nil || res.NextRevision != f.ledger.Revisions || res.Position <= f.last {
		t.Fatalf("append after the confirmed end: %+v, %v; want revision %d after position %d", res, err, f.ledger.Revisions, f.last)
	}
	cond := eventstore.Condition{Stream: eventstore.LedgerStream("acme"), Expected: eventstore.ExpectRevisionAfter(f.ledger.Revisions + 1)}
	res, err = s.AppendIf(ctx, eventstore.ActivityStream("acme"), eventstore.ExpectRevisionAfter(f.activity.Revisions), cond, events(1)...)
	if err != nil || res.NextRevision != f.activity.Revisions {
		t.Fatalf("conditional append after the confirmed ends: %+v, %v; want revision %d", res, err, f.activity.Revisions)
	}
	// Both read back as the store's events, each at its revision.
	for _, st := range []eventstore.StreamID{eventstore.LedgerStream("acme"), eventstore.ActivityStream("acme")} {
		var n uint64
		for rec, err := range f.s.ReadStream(ctx, st, 0) {
			if err != nil || rec.Revision != n {
				t.Fatalf("%s read back: revision %d, %v; want revision %d", st, rec.Revision, err, n)
			}
			n++
		}
		if want := map[eventstore.Category]uint64{eventstore.Ledger: f.ledger.Revisions + 1, eventstore.Activity: f.activity.Revisions + 1}[st.Category]; n != want {
			t.Fatalf("%s read back: %d events, want %d", st, n, want)
		}
	}
	// An account with no event at all, after the others' events.
	if ok, err := s.ConfirmEnds(ctx, "initech", f.last, eventstore.StreamEnd{}, eventstore.StreamEnd{}); err != nil || !ok {
		t.Fatalf("the empty streams of an account: %v, %v; want confirmed", ok, err)
	}
}

// An append confirmed ends turned stale for (another process appended
// since) is refused by the server's check and decided again on the
// stream's real end: a conflict for the stale expectation, the right
// revision for the current one.
func TestConfirmEndsThenAnotherProcess(t *testing.T) {
	ctx := context.Background()
	f := newEndsFixture(t)
	s, ok := f.confirm(t, f.last, f.ledger, f.activity)
	if !ok {
		t.Fatal("exact ends not confirmed")
	}
	stream := eventstore.LedgerStream("acme")
	if _, err := f.s.Append(ctx, stream, eventstore.ExpectRevisionAfter(f.ledger.Revisions), events(1)...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, stream, eventstore.ExpectRevisionAfter(f.ledger.Revisions), events(1)...); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("append at the confirmed end after another process appended: %v, want a conflict", err)
	}
	res, err := s.Append(ctx, stream, eventstore.ExpectRevisionAfter(f.ledger.Revisions+1), events(1)...)
	if err != nil || res.NextRevision != f.ledger.Revisions+1 {
		t.Fatalf("append at the stream's end: %+v, %v; want revision %d", res, err, f.ledger.Revisions+1)
	}
}

// Each way the streams can differ from what the reader folded keeps the
// ends unconfirmed.
func TestConfirmEndsRefused(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// change alters the store, or what is asked (after, ledger and
		// activity start as the reader found them).
		change func(t *testing.T, f *endsFixture, after *eventstore.Position, ledger, activity *eventstore.StreamEnd)
	}{
		{"ledger event after", func(t *testing.T, f *endsFixture, _ *eventstore.Position, _, _ *eventstore.StreamEnd) {
			if _, err := f.s.Append(ctx, eventstore.LedgerStream("acme"), eventstore.Any(), events(1)...); err != nil {
				t.Fatal(err)
			}
		}},
		{"activity after", func(t *testing.T, f *endsFixture, _ *eventstore.Position, _, _ *eventstore.StreamEnd) {
			if _, err := f.s.Append(ctx, eventstore.ActivityStream("acme"), eventstore.Any(), events(1)...); err != nil {
				t.Fatal(err)
			}
		}},
		{"foreign message before the position", func(t *testing.T, f *endsFixture, after *eventstore.Position, _, _ *eventstore.StreamEnd) {
			ack, err := f.js.Publish(ctx, "ledger.acme.SeatsPurchased", []byte("{not json"))
			if err != nil {
				t.Fatal(err)
			}
			*after = eventstore.Position(ack.Sequence) // the reader saw it and skipped it
		}},
		{"last event not folded", func(t *testing.T, f *endsFixture, _ *eventstore.Position, ledger, _ *eventstore.StreamEnd) {
			// The reader skipped (quarantined) the ledger's last event:
			// it folded one revision less, the last at an earlier place.
			var prev eventstore.Position
			for rec, err := range f.s.ReadStream(ctx, eventstore.LedgerStream("acme"), 0) {
				if err != nil {
					t.Fatal(err)
				}
				if rec.Revision == ledger.Revisions-2 {
					prev = rec.Position
				}
			}
			*ledger = eventstore.StreamEnd{Revisions: ledger.Revisions - 1, Position: prev}
		}},
		{"reader ahead of the store", func(t *testing.T, f *endsFixture, after *eventstore.Position, _, _ *eventstore.StreamEnd) {
			*after += 5 // the store lost records the reader saw
		}},
		{"position unknown", func(t *testing.T, f *endsFixture, _ *eventstore.Position, ledger, _ *eventstore.StreamEnd) {
			ledger.Position = 0 // a read model snapshot from before positions were kept
		}},
		{"event removed, another appended", func(t *testing.T, f *endsFixture, _ *eventstore.Position, ledger, _ *eventstore.StreamEnd) {
			// As many ledger messages as the reader folded, the last one
			// after it.
			st, err := f.js.Stream(ctx, jetstream.StreamName(f.s))
			if err != nil {
				t.Fatal(err)
			}
			if err := st.DeleteMsg(ctx, 1); err != nil {
				t.Fatal(err)
			}
			if _, err := f.s.Append(ctx, eventstore.LedgerStream("acme"), eventstore.Any(), events(1)...); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newEndsFixture(t)
			after, ledger, activity := f.last, f.ledger, f.activity
			tc.change(t, f, &after, &ledger, &activity)
			if _, ok := f.confirm(t, after, ledger, activity); ok {
				t.Fatalf("confirmed after %d: ledger %+v, activity %+v", after, ledger, activity)
			}
		})
	}
}

// Another account's append between a confirmation and the account's next
// append leaves the confirmed heads good: the append is stored at the
// right revision, plain or conditional, and the next one after it.
func TestConfirmEndsThenOtherAccounts(t *testing.T) {
	ctx := context.Background()
	for _, conditional := range []bool{false, true} {
		f := newEndsFixture(t)
		s, ok := f.confirm(t, f.last, f.ledger, f.activity)
		if !ok {
			t.Fatal("exact ends not confirmed")
		}
		if _, err := f.s.Append(ctx, eventstore.LedgerStream("globex"), eventstore.Any(), events(1)...); err != nil {
			t.Fatal(err)
		}
		var res eventstore.AppendResult
		var err error
		want := f.ledger.Revisions
		if conditional {
			cond := eventstore.Condition{Stream: eventstore.LedgerStream("acme"), Expected: eventstore.ExpectRevisionAfter(f.ledger.Revisions)}
			res, err = s.AppendIf(ctx, eventstore.ActivityStream("acme"), eventstore.ExpectRevisionAfter(f.activity.Revisions), cond, events(1)...)
			want = f.activity.Revisions
		} else {
			res, err = s.Append(ctx, eventstore.LedgerStream("acme"), eventstore.ExpectRevisionAfter(f.ledger.Revisions), events(1)...)
		}
		if err != nil || res.NextRevision != want || res.Position <= f.last+1 {
			t.Fatalf("conditional %v: append after another account's: %+v, %v; want revision %d after position %d", conditional, res, err, want, f.last+1)
		}
		// The next append expects the account's streams as usual.
		res, err = s.Append(ctx, eventstore.LedgerStream("acme"), eventstore.Any(), events(1)...)
		if err != nil || res.Position <= f.last+2 {
			t.Fatalf("conditional %v: the next append: %+v, %v", conditional, res, err)
		}
	}
}
