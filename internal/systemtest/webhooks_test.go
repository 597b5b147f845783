package systemtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/contract"
)

// Two licensed processes on one NATS deliver to one webhook endpoint
// while users are added; the joining process is killed (SIGKILL)
// during the deliveries, then the first one (and its embedded NATS
// server with it), which is started again. The endpoint receives every
// event, first in the published order, never two at once, each signed as
// the Standard Webhooks library verifies.
func TestWebhookDeliveriesSurviveKilledProcesses(t *testing.T) {
	const events = 90
	var (
		mu          sync.Mutex
		ids         []string
		inflight    int
		maxInflight int
		bad         error
		secret      string
		changed     = make(chan struct{}, 1)
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		inflight++
		maxInflight = max(maxInflight, inflight)
		wh, err := standardwebhooks.NewWebhook(secret)
		if err == nil {
			err = wh.Verify(body, r.Header)
		}
		if err != nil && bad == nil {
			bad = err
		}
		mu.Unlock()
		time.Sleep(3 * time.Millisecond)
		var ev struct {
			ID      string `json:"id"`
			Subject string `json:"subject"`
		}
		_ = json.Unmarshal(body, &ev)
		mu.Lock()
		if ev.ID != r.Header.Get("webhook-id") && bad == nil {
			bad = fmt.Errorf("webhook-id %s for event %s", r.Header.Get("webhook-id"), ev.ID)
		}
		inflight--
		ids = append(ids, ev.Subject)
		mu.Unlock()
		select {
		case changed <- struct{}{}:
		default:
		}
	}))
	defer recv.Close()
	distinct := func() int {
		mu.Lock()
		defer mu.Unlock()
		seen := map[string]bool{}
		for _, id := range ids {
			seen[id] = true
		}
		return len(seen)
	}
	waitFor := func(n int) {
		t.Helper()
		deadline := time.After(2 * time.Minute)
		for distinct() < n {
			select {
			case <-changed:
			case <-time.After(50 * time.Millisecond):
			case <-deadline:
				t.Fatalf("%d of %d events received", distinct(), n)
			}
		}
	}

	a := newProc(t, "A", "", "--webhook-allow-private", "true")
	a.ready()
	creds := filepath.Join(a.dir, "licensed.nk")
	b := newProc(t, "B", "", "--nats-url", a.natsURL, "--nats-creds", creds, "--webhook-allow-private", "true")
	b.ready()
	op := a.file("operator.token")
	a.expect(http.StatusCreated, "POST", "/v1/accounts", op, map[string]any{"id": "hooked", "name": "Hooked", "seats": 500}, nil)
	var reg struct {
		ID     string `json:"id"`
		Secret string `json:"secret"`
	}
	added := contract.TypeName("UserAdded", codec.Versions["UserAdded"])
	a.expect(http.StatusCreated, "POST", "/v1/accounts/hooked/webhooks", op, map[string]any{"url": recv.URL + "/ledger", "event_types": []string{added}}, &reg)
	mu.Lock()
	secret = reg.Secret
	mu.Unlock()

	// The users added, in order: the subjects of the events delivered.
	var want []string
	add := func(n int) {
		t.Helper()
		for range n {
			var u struct {
				ID string `json:"id"`
			}
			k := len(want)
			a.expect(http.StatusCreated, "POST", "/v1/accounts/hooked/users", op,
				map[string]string{"name": fmt.Sprintf("User %d", k), "email": fmt.Sprintf("u%d@hooked.test", k), "role": "member"}, &u)
			want = append(want, u.ID)
		}
	}
	add(events)
	waitFor(events / 3)
	b.signal(syscall.SIGKILL)
	<-b.exited
	waitFor(2 * events / 3)
	a.signal(syscall.SIGKILL)
	<-a.exited
	a.ready()
	add(10)
	waitFor(len(want))

	mu.Lock()
	defer mu.Unlock()
	if bad != nil {
		t.Fatalf("a delivery did not verify: %v", bad)
	}
	if maxInflight != 1 {
		t.Fatalf("%d deliveries at once to one endpoint, want 1", maxInflight)
	}
	// In order: every event is first received after every earlier one.
	// At least once: a process killed before its acknowledgement reached
	// the server gets its event sent again; and the embedded server, killed
	// with A, may come back with its consumer's acknowledgements of the
	// last moments lost, which sends those last events again, in order.
	// So a receipt is the next new event, a repeat, or the start or
	// continuation of such a rewind; at most one rewind per kill.
	index := map[string]int{}
	for i, id := range want {
		index[id] = i
	}
	furthest, prev, rewinds := -1, -1, 0
	for n, id := range ids {
		i, ok := index[id]
		switch {
		case !ok || i > furthest+1:
			t.Fatalf("receipt %d: event %d (ok %v) before event %d", n, i, ok, furthest+1)
		case i < prev:
			rewinds++
		case i > prev+1:
			t.Fatalf("receipt %d: event %d right after event %d: a rewind skipped events", n, i, prev)
		}
		furthest, prev = max(furthest, i), i
	}
	if rewinds > 2 {
		t.Fatalf("%d rewinds for 2 kills", rewinds)
	}
	t.Logf("%d events, %d requests, %d rewinds", len(want), len(ids), rewinds)
}
