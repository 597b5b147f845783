package jetstream

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/licenseledger/ledger/internal/cputime"
)

// TestRequestReplyBoxes checks the store's own request: answers come back
// to the publish that asked, a box is kept for the next publish once
// answered, a box whose publish was abandoned is dropped so that its late
// answer never reaches another publish, a publish nothing listens to gets
// nats.ErrNoResponders, and Close unsubscribes the boxes kept.
func TestRequestReplyBoxes(t *testing.T) {
	ctx := context.Background()
	s, err := Embedded(ctx, ServerConfig{DataDir: t.TempDir(), Port: -1, Durability: DurabilityInterval}, Config{MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	release := make(chan struct{})
	answered := make(chan struct{})
	responder, err := s.nc.Subscribe("svc.*", func(m *nats.Msg) {
		if m.Subject == "svc.late" {
			<-release
			defer close(answered)
		}
		_ = m.Respond([]byte("answer to " + m.Subject + " " + string(m.Data)))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer responder.Unsubscribe()
	subs := s.nc.NumSubscriptions()
	ask := func(ctx context.Context, subj, data string) (string, error) {
		m := &nats.Msg{Subject: subj, Data: []byte(data)}
		resp, err := s.boxes.Request(ctx, m)
		if m.Reply != "" {
			t.Errorf("request left reply %q on the message", m.Reply)
		}
		if err != nil {
			return "", err
		}
		return string(resp.Data), nil
	}
	for i := range 5 {
		got, err := ask(ctx, "svc.now", fmt.Sprint(i))
		if want := fmt.Sprintf("answer to svc.now %d", i); err != nil || got != want {
			t.Fatalf("request %d: %q, %v; want %q", i, got, err, want)
		}
	}
	if n := s.nc.NumSubscriptions() - subs; n != 1 {
		t.Fatalf("%d reply boxes after 5 requests one after the other, want 1 kept", n)
	}

	// Abandoned: the answer comes after the caller gave up, and before
	// the next request, which must not take it.
	actx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = ask(actx, "svc.late", "x")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("abandoned request: %v, want the deadline", err)
	}
	close(release)
	<-answered
	if err := s.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the late answer reaches the client
	got, err := ask(ctx, "svc.now", "after")
	if want := "answer to svc.now after"; err != nil || got != want {
		t.Fatalf("request after an abandoned one: %q, %v; want %q", got, err, want)
	}

	if _, err := ask(ctx, "nobody.listens", "x"); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("request to no one: %v, want no responders", err)
	}
	if got, err := ask(ctx, "svc.now", "again"); err != nil || got != "answer to svc.now again" {
		t.Fatalf("request after no responders: %q, %v", got, err)
	}
	if n := s.nc.NumSubscriptions() - subs; n != 1 {
		t.Fatalf("%d reply boxes kept, want 1", n)
	}
	s.boxes.Close()
	if n := s.nc.NumSubscriptions() - subs; n != 0 {
		t.Fatalf("%d reply boxes left after close, want 0", n)
	}
}

// BenchmarkPublishOne publishes single messages to the store's stream
// from 64 goroutines, each waiting for its acknowledgement, on a server
// that leaves syncing to the operating system (no group sync: only the
// client's round trip and the server's store are measured), with the
// connection's request call (RequestMsgWithContext, as before) and with
// the store's reply boxes. It reports the process's CPU time per publish
// (client and embedded server) and the allocations per publish.
//
//	go test -run '^$' -bench PublishOne -count 5 ./eventstore/jetstream/
func BenchmarkPublishOne(b *testing.B) {
	ctx := context.Background()
	s, err := Embedded(ctx, ServerConfig{DataDir: b.TempDir(), Port: -1, Durability: DurabilityInterval}, Config{MaxBatch: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, way := range []struct {
		name    string
		request func(context.Context, *nats.Msg) (*nats.Msg, error)
	}{
		{"request", s.nc.RequestMsgWithContext},
		{"reply-box", s.boxes.Request},
	} {
		b.Run(way.name, func(b *testing.B) {
			const writers = 64
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			cpu := cputime.Process()
			b.ResetTimer()
			for w := range writers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						m := &nats.Msg{Subject: fmt.Sprintf("ledger.bench%02d.SeatsPurchased", w), Data: []byte(`{"count":1}`)}
						resp, err := way.request(ctx, m)
						if err != nil {
							b.Error(err)
							return
						}
						if _, _, ok := parseAck(resp.Data); !ok {
							b.Errorf("acknowledgement %s", resp.Data)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64((cputime.Process()-cpu).Microseconds())/float64(b.N), "cpu-us/op")
		})
	}
}

// TestReplyBoxesStaySmall: the boxes kept after many publishes at once
// hold little memory. A box subscribed synchronously holds a queue of
// 65,536 message pointers (512 KiB) for its lifetime, so the 256 boxes
// kept here would hold 128 MiB.
func TestReplyBoxesStaySmall(t *testing.T) {
	ctx := context.Background()
	s, err := Embedded(ctx, ServerConfig{DataDir: t.TempDir(), Port: -1, Durability: DurabilityInterval}, Config{MaxBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const boxes = 256
	var arrived sync.WaitGroup
	arrived.Add(boxes)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	responder, err := s.nc.Subscribe("svc.wait", func(m *nats.Msg) {
		arrived.Done()
		go func() {
			<-all
			_ = m.Respond([]byte("ok"))
		}()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer responder.Unsubscribe()
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	before := heap()
	subs := s.nc.NumSubscriptions()
	var wg sync.WaitGroup
	for range boxes {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if _, err := s.boxes.Request(rctx, &nats.Msg{Subject: "svc.wait"}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := s.nc.NumSubscriptions() - subs; n != boxes {
		t.Fatalf("%d reply boxes kept after %d requests at once, want %d", n, boxes, boxes)
	}
	if grew := int64(heap()) - int64(before); grew > 32<<20 {
		t.Fatalf("%d reply boxes kept hold %d MiB", boxes, grew>>20)
	}
}
