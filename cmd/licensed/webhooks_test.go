package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/cycleclose"
)

// TestWebhooks registers an endpoint through the API of the service as
// wired, on each backend, and checks that the events of the commands that
// follow reach it as they are published, signed, filtered by type, before
// and after a restart; that the delivery log pages; and that /metrics
// counts the deliveries.
func TestWebhooks(t *testing.T) {
	for name, backend := range backends(t) {
		t.Run(name, func(t *testing.T) { webhookDeliveries(t, backend(t)) })
	}
}

// hookEvent is what a test reads of a delivered CloudEvent.
type hookEvent struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Subject string `json:"subject"`
}

func webhookDeliveries(t *testing.T, store []string) {
	var mu sync.Mutex
	var got []*http.Request
	var bodies [][]byte
	var events []hookEvent
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var ev hookEvent
		_ = json.Unmarshal(b, &ev)
		mu.Lock()
		got, bodies, events = append(got, r), append(bodies, b), append(events, ev)
		mu.Unlock()
	}))
	defer recv.Close()
	// received waits until the subjects of the distinct events received
	// are want, in order.
	received := func(want []string) []hookEvent {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			var seen []string
			var evs []hookEvent
			for _, ev := range events {
				if !slices.ContainsFunc(evs, func(e hookEvent) bool { return e.ID == ev.ID }) {
					evs = append(evs, ev)
					seen = append(seen, ev.Type+" "+ev.Subject)
				}
			}
			mu.Unlock()
			if slices.Equal(seen, want) {
				return evs
			}
			if time.Now().After(deadline) || len(seen) > len(want) {
				t.Fatalf("received %v, want %v", seen, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	added := contract.TypeName("UserAdded", codec.Versions["UserAdded"])
	deactivated := contract.TypeName("UserDeactivated", codec.Versions["UserDeactivated"])

	dir := t.TempDir()
	args := append([]string{"--webhook-allow-private", "true"}, store...)
	svc := startService(t, dir, io.Discard, args...)
	b, _ := os.ReadFile(filepath.Join(dir, "operator.token"))
	op := strings.TrimSpace(string(b))
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 10})
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "beta", "name": "Beta", "seats": 10})
	admin := svc.expect(201, op, "POST", "/v1/tokens", map[string]string{"role": "admin", "account": "acme"}).body["token"].(string)
	svc.expect(400, admin, "POST", "/v1/accounts/acme/webhooks", map[string]any{"url": recv.URL, "event_types": []string{"UserAdded"}})
	reg := svc.expect(201, admin, "POST", "/v1/accounts/acme/webhooks", map[string]any{
		"url": recv.URL + "/ledger", "event_types": []string{added, deactivated}})
	id, secret := reg.body["id"].(string), reg.body["secret"].(string)

	addUser := func(account string, n int) string {
		t.Helper()
		return svc.expect(201, op, "POST", "/v1/accounts/"+account+"/users", map[string]string{
			"name": fmt.Sprintf("User %d", n), "email": fmt.Sprintf("u%d@%s.test", n, account), "role": "admin"}).body["id"].(string)
	}
	var want []string
	for n := range 3 {
		want = append(want, added+" "+addUser("acme", n))
		addUser("beta", n) // another account's: not delivered
	}
	svc.expect(200, op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 1}) // another type: not delivered
	u := addUser("acme", 3)
	want = append(want, added+" "+u)
	svc.expect(200, op, "POST", "/v1/accounts/acme/users/"+u+"/deactivate", map[string]string{"reason": "left"})
	want = append(want, deactivated+" "+u)
	received(want)

	// After a restart, the endpoint is still registered and delivered to.
	svc.stop()
	svc = startService(t, dir, io.Discard, args...)
	defer svc.stop()
	for n := 4; n < 6; n++ {
		want = append(want, added+" "+addUser("acme", n))
	}
	evs := received(want)

	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	for i, r := range got {
		if err := wh.Verify(bodies[i], r.Header); err != nil || r.Header.Get("webhook-id") != events[i].ID {
			t.Fatalf("delivery %d: %v, webhook-id %s of event %s", i, err, r.Header.Get("webhook-id"), events[i].ID)
		}
	}
	mu.Unlock()

	var logged, ids []string
	for _, ev := range evs {
		ids = append(ids, ev.ID)
	}
	cursor := ""
	// The log is written after each answer, without waiting: wait for it.
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		page := svc.expect(200, admin, "GET", "/v1/accounts/acme/webhooks/"+id+"/deliveries?limit=1000", nil)
		if len(list(t, page.body, "deliveries")) >= len(ids) {
			break
		}
	}
	for {
		page := svc.expect(200, admin, "GET", "/v1/accounts/acme/webhooks/"+id+"/deliveries?limit=2&cursor="+cursor, nil)
		for _, d := range list(t, page.body, "deliveries") {
			logged = append(logged, d["event_id"].(string))
		}
		cursor = page.body["next_cursor"].(string)
		if page.body["has_more"] != true {
			break
		}
	}
	if !slices.Equal(logged, ids) {
		t.Fatalf("delivery log %v, want %v", logged, ids)
	}
	metrics := svc.expect(200, "", "GET", "/metrics", nil).raw
	// At least once: a delivery the server handed out again (an
	// acknowledgement late on a loaded machine) counts twice.
	var ok int
	for line := range strings.Lines(metrics) {
		if v, found := strings.CutPrefix(strings.TrimSpace(line), `licensed_webhook_deliveries_total{outcome="ok"} `); found {
			fmt.Sscan(v, &ok)
		}
	}
	if ok < 2 || !strings.Contains(metrics, "licensed_webhook_pending_messages 0") {
		t.Fatalf("%d deliveries counted ok by this process, want at least its 2; metrics:\n%s", ok, metrics)
	}
}

// TestWebhookReceivesCycleClosed: the billing cycle's closing
// notification, published into the published stream by the service
// itself, reaches an endpoint filtered to its type, as it is in the
// stream and signed.
func TestWebhookReceivesCycleClosed(t *testing.T) {
	type delivery struct {
		header http.Header
		body   []byte
	}
	got := make(chan delivery, 10)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- delivery{r.Header.Clone(), b}
	}))
	defer recv.Close()

	dir := t.TempDir()
	cfg, err := ParseConfig([]string{"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--webhook-allow-private", "true"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	clock := &testClock{now: time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)}
	m := NewMain(cfg, slog.New(slog.DiscardHandler))
	m.clock = clock.Now
	ctx := context.Background()
	if err := m.Start(ctx); err != nil {
		m.Close()
		t.Fatal(err)
	}
	defer m.Close()
	svc := &running{t: t, m: m, base: "http://" + m.HTTPAddr()}
	svc.waitReady()
	b, _ := os.ReadFile(filepath.Join(dir, "operator.token"))
	op := strings.TrimSpace(string(b))
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 2})
	reg := svc.expect(201, op, "POST", "/v1/accounts/acme/webhooks", map[string]any{"url": recv.URL, "event_types": []string{cycleclose.Type}})
	secret := reg.body["secret"].(string)

	clock.Set(time.Date(2026, 4, 10, 0, 0, 0, 0, time.UTC).Add(cycleclose.DefaultGrace + time.Second))
	if n, err := m.cycles.CloseDue(ctx); err != nil || n != 1 {
		t.Fatalf("closed %d cycles: %v", n, err)
	}
	var d delivery
	select {
	case d = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("no delivery of the cycle's notification")
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(d.body, d.header); err != nil {
		t.Fatal(err)
	}
	creds, err := nats.NkeyOptionFromSeed(filepath.Join(dir, "licensed.nk"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(m.NATSURL(), creds)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	stream, err := js.Stream(ctx, contract.Stream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, contract.BillingSubject("acme"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.body, msg.Data) || d.header.Get("webhook-id") != msg.Header.Get(nats.MsgIdHdr) {
		t.Fatalf("delivered %s (id %s), published %s (id %s)", d.body, d.header.Get("webhook-id"), msg.Data, msg.Header.Get(nats.MsgIdHdr))
	}
}
