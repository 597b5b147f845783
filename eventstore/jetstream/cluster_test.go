package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestCluster runs the store on a three-server JetStream cluster with a
// replicated stream, stops one server while appending and restarts it.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-server cluster")
	}
	const n = 3
	routePorts := make([]int, n)
	for i := range routePorts {
		routePorts[i] = freePort(t)
	}
	cfgs := make([]jetstream.ServerConfig, n)
	for i := range cfgs {
		var routes []string
		for j, p := range routePorts {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		cfgs[i] = jetstream.ServerConfig{
			DataDir:    t.TempDir(),
			Port:       freePort(t), // fixed, so a restarted server is found again
			ServerName: fmt.Sprintf("s%d", i),
			MaxStore:   1 << 30,
			Cluster:    jetstream.ClusterConfig{Name: "ledger", Port: routePorts[i], Routes: routes},
		}
	}
	servers := make([]*server.Server, n)
	for i, c := range cfgs {
		s, err := jetstream.StartServer(c)
		if err != nil {
			t.Fatal(err)
		}
		servers[i] = s
	}
	defer func() {
		for _, s := range servers {
			if s != nil {
				jetstream.StopServer(s)
			}
		}
	}()
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	store, err := jetstream.Connect(ctx, strings.Join(urls, ","), jetstream.Config{Replicas: 3}, nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	acked := map[string]int{} // event id -> account index
	revs := map[int]uint64{}
	appendSome := func(k int) {
		t.Helper()
		for range k {
			for a := range 4 {
				stream := eventstore.LedgerStream(fmt.Sprintf("acct%d", a))
				evs := events(2)
				// Retry with the same ids while the cluster fails over: a
				// retry is answered with the first result, never stored
				// twice.
				for attempt := 0; ; attempt++ {
					actx, acancel := context.WithTimeout(ctx, 2*time.Second)
					_, err := store.Append(actx, stream, eventstore.ExpectRevisionAfter(revs[a]), evs...)
					acancel()
					if err == nil {
						break
					}
					if errors.Is(err, eventstore.ErrConflict) || attempt > 50 {
						t.Fatalf("append to %s: %v", stream, err)
					}
					time.Sleep(100 * time.Millisecond)
				}
				revs[a] += 2
				for _, e := range evs {
					acked[e.ID.String()] = a
				}
			}
		}
	}
	appendSome(5)

	// Stop the stream's leader: the worst of the three to lose.
	down := 0
	for i, s := range servers {
		if s.JetStreamIsStreamLeader("$G", "LEDGER") {
			down = i
		}
	}
	jetstream.StopServer(servers[down])
	servers[down] = nil
	appendSome(5)

	s, err := jetstream.StartServer(cfgs[down])
	if err != nil {
		t.Fatal(err)
	}
	servers[down] = s
	appendSome(5)

	// A conflict on the replicated stream is ErrConflict too, with the
	// server's refusal as its cause: a second store moves acct0 on behind
	// the first one's cached head. A replicated stream answers 10071 when
	// the stream's last sequence is settled, 10164 while another write to
	// the same subjects is still being proposed; both are conflicts.
	// A process configured with fewer replicas (the default 1) opens the
	// stream without scaling it down, and without turning on direct gets,
	// which followers answer, possibly without the last writes.
	other, err := jetstream.Connect(ctx, strings.Join(urls, ","), jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	njs, err := natsjs.New(other.Conn())
	if err != nil {
		t.Fatal(err)
	}
	st, err := njs.Stream(ctx, "LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	if c := st.CachedInfo().Config; c.Replicas != 3 || c.AllowDirect {
		t.Fatalf("after a store with the default replicas opened it, the stream has %d replicas, direct gets %v; want 3 replicas kept, no direct gets", c.Replicas, c.AllowDirect)
	}
	acct0 := eventstore.LedgerStream("acct0")
	evs := events(1)
	if _, err := other.Append(ctx, acct0, eventstore.Exact(revs[0]-1), evs...); err != nil {
		t.Fatal(err)
	}
	acked[evs[0].ID.String()] = 0
	_, err = store.Append(ctx, acct0, eventstore.Exact(revs[0]-1), events(1)...)
	var apiErr *natsjs.APIError
	if !errors.Is(err, eventstore.ErrConflict) || !errors.As(err, &apiErr) || (apiErr.ErrorCode != 10071 && apiErr.ErrorCode != 10164) {
		t.Fatalf("stale append on R3: %v, want ErrConflict caused by error 10071 or 10164", err)
	}

	seen := map[string]int{}
	for rec, err := range store.ReadAll(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		seen[rec.ID.String()]++
	}
	for id := range acked {
		if seen[id] != 1 {
			t.Errorf("acknowledged event %s stored %d times", id, seen[id])
		}
	}
	if len(seen) != len(acked) {
		t.Errorf("%d events stored, %d acknowledged", len(seen), len(acked))
	}
}
