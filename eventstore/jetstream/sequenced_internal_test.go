package jetstream

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
)

// A foreign message stored just before an append that is in flight with a
// second one pipelined behind it: the first is refused (the stream's last
// sequence moved), and the second, whose check counted on the first,
// must be refused too, although the stream's last sequence is the one it
// expects: the message there is not the first append's. Both then retry
// on the stream as it is, and the stream numbers its events with no gap.
func TestSequencedForeignBeforePipelined(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := Embedded(ctx, ServerConfig{DataDir: t.TempDir(), Port: -1}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.chain == nil {
		t.Fatal("the store does not sequence its appends")
	}
	nc, err := nats.Connect(s.Server().ClientURL(), nats.InProcessServer(s.Server()))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream := eventstore.LedgerStream("piped")
	firstSent, secondSent := make(chan struct{}), make(chan struct{})
	sends, answers := 0, 0
	var hookErr error
	s.chain.sendHook = func() {
		switch sends++; sends {
		case 1:
			// Another writer's message, no store headers, lands first.
			if _, err := js.Publish(ctx, "ledger.piped.SeatsPurchased", []byte(`{}`)); err != nil {
				hookErr = err
			}
			close(firstSent)
		case 2:
			close(secondSent)
		}
	}
	var answerMu sync.Mutex
	s.chain.answerHook = func() {
		answerMu.Lock()
		answers++
		n := answers
		answerMu.Unlock()
		if n == 1 {
			select { // hold the first answer until the second append is sent
			case <-secondSent:
			case <-ctx.Done():
			}
		}
	}
	e1 := eventstore.Proposed{ID: uuid.New(), Type: "SeatsPurchased", Data: []byte(`{"seats":1}`)}
	e2 := eventstore.Proposed{ID: uuid.New(), Type: "SeatsPurchased", Data: []byte(`{"seats":2}`)}
	var wg sync.WaitGroup
	var err1, err2 error
	var res1, res2 eventstore.AppendResult
	wg.Go(func() { res1, err1 = s.Append(ctx, stream, eventstore.NoStream(), e1) })
	wg.Go(func() {
		<-firstSent
		res2, err2 = s.Append(ctx, stream, eventstore.Exact(0), e2)
	})
	wg.Wait()
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	if s.chain.pipelined == 0 {
		t.Fatal("the second append was not pipelined")
	}
	acked := map[uuid.UUID]eventstore.AppendResult{}
	for _, a := range []struct {
		id  uuid.UUID
		res eventstore.AppendResult
		err error
	}{{e1.ID, res1, err1}, {e2.ID, res2, err2}} {
		switch {
		case a.err == nil:
			acked[a.id] = a.res
		case !errors.Is(a.err, eventstore.ErrConflict):
			t.Fatal(a.err)
		}
	}
	var rev uint64
	found := 0
	for rec, err := range s.ReadStream(ctx, stream, 0) {
		if errors.Is(err, eventstore.ErrUnreadable) {
			continue // the foreign message
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Revision != rev {
			t.Fatalf("event %s has revision %d, want %d", rec.ID, rec.Revision, rev)
		}
		res, ok := acked[rec.ID]
		if !ok {
			t.Fatalf("event %s stored, its append refused", rec.ID)
		}
		if res.NextRevision != rec.Revision || res.Position != rec.Position {
			t.Fatalf("event %s stored at %d (%d), acknowledged at %d (%d)", rec.ID, rec.Revision, rec.Position, res.NextRevision, res.Position)
		}
		rev++
		found++
	}
	if found != len(acked) {
		t.Fatalf("%d events stored, %d acknowledged", found, len(acked))
	}
}
