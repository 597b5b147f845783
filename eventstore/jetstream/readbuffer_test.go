package jetstream_test

import (
	"iter"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// maxReadAhead is the most messages a read of a long stream may have
// delivered to it and not yet read: what it holds in memory, whatever the
// stream's length.
const maxReadAhead = 256

// TestReadStreamBoundedReadAhead checks that a read of a long stream whose
// caller pauses holds no more than maxReadAhead messages delivered and not
// read, as the server's consumer counts them.
func TestReadStreamBoundedReadAhead(t *testing.T) {
	srv, err := jetstream.StartServer(jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jetstream.StopServer(srv) })
	nc, err := nats.Connect(srv.ClientURL(), nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx := t.Context()
	s, err := jetstream.Open(ctx, nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	stream := eventstore.ActivityStream("acme")
	const total = 2000
	for range total / 100 {
		if _, err := s.Append(ctx, stream, eventstore.Any(), events(100)...); err != nil {
			t.Fatal(err)
		}
	}
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, jetstream.StreamName(s))
	if err != nil {
		t.Fatal(err)
	}
	// delivered returns how many messages the read's consumer delivered.
	delivered := func() uint64 {
		t.Helper()
		var n uint64
		found := 0
		for ci := range st.ListConsumers(ctx).Info() {
			n += ci.Delivered.Consumer
			found++
		}
		if found != 1 {
			t.Fatalf("%d consumers on the stream, want the read's one", found)
		}
		return n
	}
	next, stop := iter.Pull2(s.ReadStream(ctx, stream, 0))
	defer stop()
	read := 0
	for _, want := range []int{1, 500, 1500} {
		for ; read < want; read++ {
			if _, err, ok := next(); !ok || err != nil {
				t.Fatalf("read %d: %v %v", read, ok, err)
			}
		}
		// The read pauses: wait until the server stops delivering.
		n, stable := delivered(), 0
		for deadline := time.Now().Add(5 * time.Second); stable < 4 && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
			if m := delivered(); m != n {
				n, stable = m, 0
			} else {
				stable++
			}
		}
		if ahead := n - uint64(read); ahead > maxReadAhead {
			t.Errorf("after %d events read, %d delivered: %d held ahead, want at most %d", read, n, ahead, maxReadAhead)
		}
		if n < uint64(read) {
			t.Fatalf("after %d events read, the consumer counts %d delivered", read, n)
		}
	}
}
