package systemtest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/contract"
)

// publishedMsg is one message read from a stream.
type publishedMsg struct {
	id      string
	subject string
	header  nats.Header
	body    []byte
}

// readAll reads every message of stream with an ordered consumer.
func readAll(t *testing.T, ctx context.Context, js jetstream.JetStream, stream string) []publishedMsg {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []publishedMsg
	if info.State.LastSeq == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			id := m.Headers().Get("Nats-Msg-Id")
			if stream == ledgerStream {
				// The store's message ids name their stream too
				// ("<event id>@<stream>", sequenced appends); the
				// published stream's are the event id alone.
				id, _, _ = strings.Cut(id, "@")
			}
			out = append(out, publishedMsg{id: id, subject: m.Subject(), header: m.Headers(), body: m.Data()})
			if md.Sequence.Stream >= info.State.LastSeq {
				return out
			}
		}
		if n == 0 {
			t.Fatalf("%s: stopped at %d messages before sequence %d", stream, len(out), info.State.LastSeq)
		}
	}
}

// Every stored event is published once, in the store's order, although
// licensed is killed (SIGKILL) while commands arrive and its publisher
// copies them: the restarted publisher resumes from its checkpoint in the
// published stream. The downstream mirror holds the same events in the
// same order, without the events. prefix, with no internal header.
func TestPublishedOnceInOrderAcrossKill(t *testing.T) {
	p := newProc(t, "pub", "")
	p.start()
	p.ready()
	op := p.file("operator.token")
	p.expect(http.StatusCreated, "POST", "/v1/accounts", op, map[string]any{"id": "acme", "name": "Acme", "seats": 100000}, nil)

	var acked atomic.Int64
	ctx, stopWriting := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil; n++ {
				body := map[string]any{"name": fmt.Sprintf("User %d %d", w, n), "email": fmt.Sprintf("u%d-%d@pub.test", w, n), "role": "member"}
				if st, _, _, err := p.do("POST", "/v1/accounts/acme/users", op, body); err == nil && st == http.StatusCreated {
					acked.Add(1)
				} else {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	for acked.Load() < 300 && p.running() {
		time.Sleep(5 * time.Millisecond)
	}
	_ = p.stop(syscall.SIGKILL) // mid-stream: the writers are still writing
	before := acked.Load()
	p.start()
	p.ready()
	for acked.Load() < before+100 {
		time.Sleep(5 * time.Millisecond)
	}
	stopWriting()
	wg.Wait()

	nc, err := connect(t, p.natsURL, serviceCreds(p.dir))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store := readAll(t, rctx, js, ledgerStream)
	var published []publishedMsg
	for deadline := time.Now().Add(30 * time.Second); ; {
		published = readAll(t, rctx, js, contract.Stream)
		if len(published) >= len(store) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(store) < 400 {
		t.Fatalf("the store holds %d events, want at least 400", len(store))
	}
	if len(published) != len(store) {
		t.Fatalf("%d events stored, %d published", len(store), len(published))
	}
	lastPos := -1
	for i := range store {
		s, m := store[i], published[i]
		if m.id != s.id || m.subject != contract.SubjectPrefix+s.subject {
			t.Fatalf("published message %d is %s on %s, the store's event %d is %s on %s", i, m.id, m.subject, i, s.id, s.subject)
		}
		pos, err := strconv.Atoi(m.header.Get("Ledger-Position"))
		if err != nil || pos <= lastPos {
			t.Fatalf("published message %d: position %q after %d", i, m.header.Get("Ledger-Position"), lastPos)
		}
		lastPos = pos
		if m.header.Get("Content-Type") != contract.ContentType || bytes.Contains(m.body, []byte("idempotencykey")) ||
			!bytes.Contains(m.body, []byte(`"type":"`+contract.TypePrefix)) || !bytes.Contains(m.body, []byte(`"dataschema":"`+p.base+"/schemas/")) {
			t.Fatalf("published message %d: %v %s", i, m.header, m.body)
		}
		for _, h := range []string{"Ledger-Revision", "Ledger-Metadata"} {
			if m.header.Get(h) != "" {
				t.Fatalf("published message %d carries the store's header %s", i, h)
			}
		}
	}

	// Downstream, in the mirror: the same events in the same order.
	dc, err := connect(t, p.natsURL, p.dir+"/downstream.nk")
	if err != nil {
		t.Fatal(err)
	}
	defer dc.Close()
	djs, err := jetstream.New(dc)
	if err != nil {
		t.Fatal(err)
	}
	var mirrored []publishedMsg
	for deadline := time.Now().Add(30 * time.Second); ; {
		cons, err := djs.OrderedConsumer(rctx, contract.DownstreamStream, jetstream.OrderedConsumerConfig{})
		if err != nil {
			t.Fatal(err)
		}
		mirrored = mirrored[:0]
		for len(mirrored) < len(store) {
			m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
			if err != nil {
				break
			}
			mirrored = append(mirrored, publishedMsg{id: m.Headers().Get("Nats-Msg-Id"), subject: m.Subject(), header: m.Headers()})
		}
		if len(mirrored) >= len(store) || time.Now().After(deadline) {
			break
		}
	}
	if len(mirrored) != len(store) {
		t.Fatalf("the downstream mirror holds %d events, want %d", len(mirrored), len(store))
	}
	for i, m := range mirrored {
		if m.id != store[i].id || m.subject != store[i].subject {
			t.Fatalf("mirror message %d is %s on %s, want %s on %s", i, m.id, m.subject, store[i].id, store[i].subject)
		}
		for k := range m.header {
			if strings.HasPrefix(k, "Nats-Expected") || k == "Ledger-Revision" {
				t.Fatalf("mirror message %d carries %s", i, k)
			}
		}
	}
}
