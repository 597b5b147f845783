package webhooks_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/webhooks"
)

const deactivated = "dev.licenseledger.user.deactivated.v1"
const added = "dev.licenseledger.user.added.v1"

// TestDeliveriesSignedInOrderAndFiltered registers two endpoints of one
// account on TLS receivers, one for every type and one filtered, and
// checks each receives its events in the published order, signed as the
// Standard Webhooks library verifies, with the published body as is, and
// nothing of another account.
func TestDeliveriesSignedInOrderAndFiltered(t *testing.T) {
	srv := startNATS(t)
	js, _ := connect(t, srv)
	ensureEvents(t, js)
	all, only, other := newReceiver(t, true, nil), newReceiver(t, true, nil), newReceiver(t, true, nil)
	roots := all.roots()
	roots.AddCert(only.srv.Certificate())
	s := openService(t, js, func(c *webhooks.Config) {
		c.RootCAs = roots
		c.Guard.ExemptAddr(all.addr())
		c.Guard.ExemptAddr(only.addr())
		c.EventTypes = []string{added, deactivated}
	})
	ctx := context.Background()
	publish(t, js, "acme", "UserAdded", added, 3) // before registration: not delivered
	epAll, secretAll, err := s.Register(ctx, "acme", webhooks.Registration{URL: all.url()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Register(ctx, "acme", webhooks.Registration{URL: other.url()}); err == nil {
		t.Fatal("an endpoint on a loopback address not exempted was registered")
	}
	if _, _, err := s.Register(ctx, "acme", webhooks.Registration{URL: only.url(), EventTypes: []string{"dev.licenseledger.user.renamed.v1"}}); err == nil {
		t.Fatal("a filter of an unknown type was accepted")
	}
	_, secretOnly, err := s.Register(ctx, "acme", webhooks.Registration{URL: only.url(), EventTypes: []string{deactivated}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	var evs, deact []event
	for range 5 {
		evs = append(evs, publish(t, js, "acme", "UserAdded", added, 2)...)
		d := publish(t, js, "acme", "UserDeactivated", deactivated, 1)
		evs, deact = append(evs, d...), append(deact, d...)
		publish(t, js, "beta", "UserAdded", added, 1)
	}
	got := all.waitFor("every event", atLeast(len(evs)))
	checkOrder(t, evs, got)
	verify(t, secretAll, got)
	for i, r := range got {
		if !bytes.Equal(r.Body, evs[i].Body) || r.Header.Get("Content-Type") != "application/cloudevents+json" {
			t.Fatalf("delivery %d: body %s, content type %q", i, r.Body, r.Header.Get("Content-Type"))
		}
	}
	gotOnly := only.waitFor("the deactivations", atLeast(len(deact)))
	checkOrder(t, deact, gotOnly)
	verify(t, secretOnly, gotOnly)
	if err := mustVerifyFails(secretAll, gotOnly[0]); err != nil {
		t.Fatal(err)
	}

	// The delivery log of the first endpoint pages, oldest first.
	waitLog(t, s, "acme", epAll.ID, len(evs))
	var logged []webhooks.Delivery
	var after uint64
	pages := 0
	for {
		page, more, err := s.Deliveries(ctx, "acme", epAll.ID, after, 4)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		logged = append(logged, page...)
		if !more {
			break
		}
		if len(page) != 4 {
			t.Fatalf("a page of %d with more after it", len(page))
		}
		after = page[len(page)-1].LogSequence
	}
	if len(logged) != len(evs) || pages != (len(evs)+3)/4 {
		t.Fatalf("%d deliveries logged in %d pages, want %d", len(logged), pages, len(evs))
	}
	for i, d := range logged {
		if d.EventID != evs[i].ID || d.Sequence != evs[i].Seq || d.Outcome != webhooks.OutcomeDelivered || d.Status != 200 || d.Attempt != 1 {
			t.Fatalf("log entry %d: %+v, want event %s", i, d, evs[i].ID)
		}
	}
	// Another account's endpoint is not found under this one.
	if _, err := s.Get(ctx, "beta", epAll.ID); err != webhooks.ErrNotFound {
		t.Fatalf("another account's endpoint: %v", err)
	}
	if _, _, err := s.Deliveries(ctx, "beta", epAll.ID, 0, 10); err != webhooks.ErrNotFound {
		t.Fatalf("another account's delivery log: %v", err)
	}
}

func mustVerifyFails(secret string, r receipt) error {
	err := verifyOne(secret, r)
	if err == nil {
		return errString("a delivery verified under another endpoint's secret")
	}
	return nil
}

type errString string

func (e errString) Error() string { return string(e) }

// TestKilledDuringDeliveries runs two delivering processes on one NATS
// server, kills one (its connection closed, its deliveries abandoned
// mid-request) and then the other while events flow, starts a third,
// and checks that every event arrived, in order, never two at once.
func TestKilledDuringDeliveries(t *testing.T) {
	srv := startNATS(t)
	js, _ := connect(t, srv)
	ensureEvents(t, js)
	var calls atomic.Int64
	rc := newReceiver(t, true, func(*http.Request) int {
		calls.Add(1)
		time.Sleep(2 * time.Millisecond)
		return 200
	})
	adjust := func(c *webhooks.Config) {
		c.RootCAs = rc.roots()
		c.Guard.ExemptAddr(rc.addr())
		c.AckWait = time.Second
	}
	ctx := context.Background()
	first := openService(t, js, adjust)
	ep, secret, err := first.Register(ctx, "acme", webhooks.Registration{URL: rc.url()})
	if err != nil {
		t.Fatal(err)
	}
	// Two processes, each with its own connection.
	jsA, ncA := connect(t, srv)
	jsB, ncB := connect(t, srv)
	a, b := openService(t, jsA, adjust), openService(t, jsB, adjust)
	stopA := runMayFail(t, a, true)
	stopB := runMayFail(t, b, true)
	evs := publish(t, js, "acme", "UserAdded", added, 60)
	rc.waitFor("a third of the events", atLeast(20))
	ncA.Close() // killed: its connection gone, whatever it held unacknowledged
	stopA()
	evs = append(evs, publish(t, js, "acme", "UserDeactivated", deactivated, 60)...)
	rc.waitFor("two thirds of the events", atLeast(80))
	ncB.Close()
	stopB()
	evs = append(evs, publish(t, js, "acme", "UserAdded", added, 30)...)
	jsC, _ := connect(t, srv)
	run(t, openService(t, jsC, adjust))
	got := rc.waitFor("every event", atLeast(len(evs)))
	checkOrder(t, evs, got)
	verify(t, secret, got)
	rc.mu.Lock()
	maxInflight := rc.maxInflight
	rc.mu.Unlock()
	if maxInflight != 1 {
		t.Fatalf("%d deliveries to the endpoint at once, want 1", maxInflight)
	}
	waitLog(t, first, "acme", ep.ID, len(evs))
	t.Logf("%d events, %d requests", len(evs), calls.Load())
}

// TestSlowEndpointDoesNotHoldUpAnother blocks one endpoint's receiver
// until the other endpoint received every event.
func TestSlowEndpointDoesNotHoldUpAnother(t *testing.T) {
	srv := startNATS(t)
	js, _ := connect(t, srv)
	ensureEvents(t, js)
	release := make(chan struct{})
	var slowCalls atomic.Int64
	slow := newReceiver(t, false, func(r *http.Request) int {
		slowCalls.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return 200
	})
	fast := newReceiver(t, false, nil)
	s := openService(t, js, func(c *webhooks.Config) {
		c.Guard.AllowPrivate = true
		c.Timeout = time.Minute
		c.AckWait = 2 * time.Minute
	})
	ctx := context.Background()
	if _, _, err := s.Register(ctx, "acme", webhooks.Registration{URL: slow.url()}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Register(ctx, "acme", webhooks.Registration{URL: fast.url()}); err != nil {
		t.Fatal(err)
	}
	run(t, s)
	evs := publish(t, js, "acme", "UserAdded", added, 40)
	checkOrder(t, evs, fast.waitFor("every event at the fast endpoint", atLeast(len(evs))))
	if n := slowCalls.Load(); n != 1 {
		t.Fatalf("the slow endpoint got %d requests while its first was unanswered, want 1", n)
	}
	close(release)
	checkOrder(t, evs, slow.waitFor("every event at the slow endpoint", atLeast(len(evs))))
}

// TestFailingEndpointDisabledThenEnabled makes an endpoint fail every
// attempt: it is retried on the schedule, logged, disabled after the
// last attempt, receives nothing while disabled, and once enabled gets the
// failed event again and what came after, in order.
func TestFailingEndpointDisabledThenEnabled(t *testing.T) {
	srv := startNATS(t)
	js, _ := connect(t, srv)
	ensureEvents(t, js)
	var failing atomic.Bool
	failing.Store(true)
	var calls atomic.Int64
	rc := newReceiver(t, false, func(*http.Request) int {
		calls.Add(1)
		if failing.Load() {
			return 503
		}
		return 204
	})
	control := newReceiver(t, false, nil)
	logs := &syncBuffer{}
	s := openService(t, js, func(c *webhooks.Config) {
		c.Guard.AllowPrivate = true
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := context.Background()
	ep, secret, err := s.Register(ctx, "acme", webhooks.Registration{URL: rc.url()})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	evs := publish(t, js, "acme", "UserAdded", added, 1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := s.Get(ctx, "acme", ep.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Enabled {
			if got.DisabledAt == nil || got.DisabledReason == "" {
				t.Fatalf("disabled without when or why: %+v", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not disabled after %d attempts", calls.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d attempts before disabling, want 3 (1 + 2 retries)", n)
	}
	log := waitLog(t, s, "acme", ep.ID, 3)
	var outcomes []string
	for i, d := range log {
		outcomes = append(outcomes, d.Outcome)
		if d.EventID != evs[0].ID || d.Attempt != i+1 || d.Status != 503 {
			t.Fatalf("log entry %d: %+v", i, d)
		}
	}
	if !slices.Equal(outcomes, []string{webhooks.OutcomeFailed, webhooks.OutcomeFailed, webhooks.OutcomeGaveUp}) {
		t.Fatalf("outcomes %v", outcomes)
	}
	if log[0].NextAttemptAt == nil || log[2].NextAttemptAt != nil {
		t.Fatalf("next attempts: %+v", log)
	}

	// While disabled: another endpoint of the account receives what is
	// published, this one nothing.
	if _, _, err := s.Register(ctx, "acme", webhooks.Registration{URL: control.url()}); err != nil {
		t.Fatal(err)
	}
	more := publish(t, js, "acme", "UserDeactivated", deactivated, 3)
	control.waitFor("the control endpoint", atLeast(3))
	if n := calls.Load(); n != 3 {
		t.Fatalf("a disabled endpoint got %d requests", n-3)
	}

	failing.Store(false)
	if _, err := s.Enable(ctx, "acme", ep.ID); err != nil {
		t.Fatal(err)
	}
	got := rc.waitFor("the failed event and the later ones", atLeast(4))
	checkOrder(t, append(evs, more...), got)
	if e, _ := s.Get(ctx, "acme", ep.ID); !e.Enabled {
		t.Fatalf("still disabled: %+v", e)
	}
	// The service logged the registration, the failures, the disabling and
	// the enabling, never the secret.
	out := logs.String()
	if !strings.Contains(out, "webhook endpoint disabled") || strings.Contains(out, secret) || strings.Contains(out, strings.TrimPrefix(secret, "whsec_")) {
		t.Fatalf("logs:\n%s", out)
	}
}

// TestReplay delivers events, then replays from a sequence of the log
// and from an instant.
func TestReplay(t *testing.T) {
	srv := startNATS(t)
	js, _ := connect(t, srv)
	ensureEvents(t, js)
	rc := newReceiver(t, false, nil)
	s := openService(t, js, func(c *webhooks.Config) { c.Guard.AllowPrivate = true })
	ctx := context.Background()
	ep, _, err := s.Register(ctx, "acme", webhooks.Registration{URL: rc.url()})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	evs := publish(t, js, "acme", "UserAdded", added, 3)
	mid := time.Now()
	time.Sleep(5 * time.Millisecond)
	evs = append(evs, publish(t, js, "acme", "UserAdded", added, 3)...)
	rc.waitFor("every event", atLeast(6))
	if _, err := s.Replay(ctx, "acme", ep.ID, webhooks.From{Sequence: evs[1].Seq}); err != nil {
		t.Fatal(err)
	}
	got := rc.waitFor("the replay", func(r []receipt) bool { return len(r) >= 6+5 })
	checkOrder(t, evs[1:], got[6:])
	if _, err := s.Replay(ctx, "acme", ep.ID, webhooks.From{Time: &mid}); err != nil {
		t.Fatal(err)
	}
	got = rc.waitFor("the replay from an instant", func(r []receipt) bool { return len(r) >= 11+3 })
	checkOrder(t, evs[3:], got[11:])
	if _, err := s.Replay(ctx, "acme", ep.ID, webhooks.From{}); err == nil {
		t.Fatal("a replay from nowhere was accepted")
	}
	// Deleted: gone with its log; nothing more delivered.
	if err := s.Delete(ctx, "acme", ep.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "acme", ep.ID); err != webhooks.ErrNotFound {
		t.Fatalf("deleted endpoint: %v", err)
	}
	if list, _, err := s.List(ctx, "acme", "", 10); err != nil || len(list) != 0 {
		t.Fatalf("list after delete: %v %v", list, err)
	}
}
