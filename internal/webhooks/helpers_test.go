package webhooks_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/webhooks"
)

// startNATS starts a NATS server with JetStream for the test.
func startNATS(t testing.TB) *server.Server {
	t.Helper()
	srv, err := jetstream.StartServer(jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1, Durability: jetstream.DurabilityInterval})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { jetstream.StopServer(srv) })
	return srv
}

// connect opens a connection of its own, as a process of the service
// would, and returns JetStream on it and the connection.
func connect(t testing.TB, srv *server.Server) (natsjs.JetStream, *nats.Conn) {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js, nc
}

// ensureEvents creates the published stream as the publisher does.
func ensureEvents(t testing.TB, js natsjs.JetStream) {
	t.Helper()
	_, err := js.CreateOrUpdateStream(context.Background(), natsjs.StreamConfig{
		Name: contract.Stream, Subjects: []string{contract.SubjectPrefix + ">"}, Storage: natsjs.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// event is a published message as a webhook receives it.
type event struct {
	ID   string
	Type string
	Body []byte
	Seq  uint64
}

// publish publishes n CloudEvents of account into the published stream,
// of the v2 type typ, and returns them in order.
func publish(t testing.TB, js natsjs.JetStream, account, storedType, typ string, n int) []event {
	t.Helper()
	var out []event
	for i := range n {
		id := uuid.NewString()
		body, err := json.Marshal(map[string]any{
			"specversion": "1.0", "id": id, "source": "https://ledger.test/v1/accounts/" + account,
			"type": typ, "subject": "01JUSER" + fmt.Sprint(i), "time": time.Now().UTC(),
			"datacontenttype": "application/json", "data": map[string]any{"n": i},
		})
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(contract.LedgerSubject(account, storedType))
		m.Data = body
		m.Header.Set("Content-Type", "application/cloudevents+json")
		m.Header.Set(nats.MsgIdHdr, id)
		ack, err := js.PublishMsg(context.Background(), m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, event{ID: id, Type: typ, Body: body, Seq: ack.Sequence})
	}
	return out
}

// receipt is one request a receiver got.
type receipt struct {
	ID     string
	Body   []byte
	Header http.Header
}

// receiver is an endpoint's server: TLS unless plain, recording every
// request, answering with answer (200 when nil).
type receiver struct {
	t      testing.TB
	srv    *httptest.Server
	mu     sync.Mutex
	got    []receipt
	signal chan struct{}
	answer func(r *http.Request) int
	// inflight and maxInflight count requests being answered at once.
	inflight, maxInflight int
}

func newReceiver(t testing.TB, tls bool, answer func(*http.Request) int) *receiver {
	rc := &receiver{t: t, answer: answer, signal: make(chan struct{}, 1)}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.inflight++
		rc.maxInflight = max(rc.maxInflight, rc.inflight)
		rc.mu.Unlock()
		status := 200
		if rc.answer != nil {
			status = rc.answer(r)
		}
		rc.mu.Lock()
		rc.inflight--
		if status >= 200 && status < 300 {
			rc.got = append(rc.got, receipt{ID: r.Header.Get("webhook-id"), Body: body, Header: r.Header.Clone()})
		}
		rc.mu.Unlock()
		select {
		case rc.signal <- struct{}{}:
		default:
		}
		w.WriteHeader(status)
	})
	if tls {
		rc.srv = httptest.NewTLSServer(h)
	} else {
		rc.srv = httptest.NewServer(h)
	}
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url() string { return rc.srv.URL + "/hooks/ledger" }

func (rc *receiver) addr() netip.AddrPort {
	u, _ := url.Parse(rc.srv.URL)
	return netip.MustParseAddrPort(u.Host)
}

func (rc *receiver) roots() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(rc.srv.Certificate())
	return p
}

func (rc *receiver) receipts() []receipt {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]receipt(nil), rc.got...)
}

// waitFor waits until cond holds for the receipts, or fails the test
// after a generous while.
func (rc *receiver) waitFor(what string, cond func([]receipt) bool) []receipt {
	rc.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		got := rc.receipts()
		if cond(got) {
			return got
		}
		select {
		case <-rc.signal:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			rc.t.Fatalf("waiting for %s: %d receipts", what, len(got))
		}
	}
}

func atLeast(n int) func([]receipt) bool { return func(r []receipt) bool { return distinct(r) >= n } }

func distinct(rs []receipt) int {
	seen := map[string]bool{}
	for _, r := range rs {
		seen[r.ID] = true
	}
	return len(seen)
}

// openService opens the webhook service on js.
func openService(t testing.TB, js natsjs.JetStream, adjust func(*webhooks.Config)) *webhooks.Service {
	t.Helper()
	cfg := webhooks.Config{JS: js, Retries: []time.Duration{20 * time.Millisecond, 20 * time.Millisecond}, AckWait: 2 * time.Second, Timeout: 5 * time.Second}
	if adjust != nil {
		adjust(&cfg)
	}
	s, err := webhooks.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run runs the deliveries of s until the returned stop is called (or the
// test ends).
func run(t testing.TB, s *webhooks.Service) (stop func()) {
	return runMayFail(t, s, false)
}

// runMayFail is run for a process whose connection a test closes: its
// end with an error is expected.
func runMayFail(t testing.TB, s *webhooks.Service, mayFail bool) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Run(ctx); err != nil && !errors.Is(err, context.Canceled) && !mayFail {
			t.Errorf("run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				buf := make([]byte, 1<<20)
				n := runtime.Stack(buf, true)
				t.Logf("slow stop:\n%s", buf[:n])
				<-done
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// verify checks every receipt's signature with the Standard Webhooks
// library and that its webhook-id is its event's id.
func verify(t testing.TB, secret string, rs []receipt) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if err := wh.Verify(r.Body, r.Header); err != nil {
			t.Fatalf("delivery %s: signature: %v", r.ID, err)
		}
		var env struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(r.Body, &env, json.RejectUnknownMembers(false)); err != nil || env.ID != r.ID {
			t.Fatalf("delivery %s carries event %q (%v)", r.ID, env.ID, err)
		}
	}
}

// checkOrder checks that receipts follow the events' order with nothing
// missing: each receipt is the event after the furthest one received, or
// that one again (at least once: a delivery whose acknowledgement was
// lost comes again, before anything after it).
func checkOrder(t testing.TB, evs []event, rs []receipt) {
	t.Helper()
	index := map[string]int{}
	for i, e := range evs {
		index[e.ID] = i
	}
	furthest := -1
	for n, r := range rs {
		i, ok := index[r.ID]
		if !ok {
			t.Fatalf("receipt %d: event %s was not published to this endpoint", n, r.ID)
		}
		if i > furthest+1 || i < furthest {
			t.Fatalf("receipt %d: event %d after event %d", n, i, furthest)
		}
		furthest = max(furthest, i)
	}
	if furthest != len(evs)-1 {
		t.Fatalf("received up to event %d of %d", furthest, len(evs))
	}
}

func verifyOne(secret string, r receipt) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return err
	}
	return wh.Verify(r.Body, r.Header)
}

// waitLog waits until the delivery log of an endpoint holds at least n
// entries (it is written after each answer, without waiting) and returns
// them.
func waitLog(t testing.TB, s *webhooks.Service, account, id string, n int) []webhooks.Delivery {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		log, _, err := s.Deliveries(context.Background(), account, id, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(log) >= n {
			return log
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries logged, want %d", len(log), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}
