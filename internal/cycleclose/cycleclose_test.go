package cycleclose_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	storejs "github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/cycleclose"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/projections/billing"
)

func startNATS(t testing.TB) *server.Server {
	t.Helper()
	srv, err := storejs.StartServer(storejs.ServerConfig{DataDir: t.TempDir(), Port: -1, Durability: storejs.DurabilityInterval})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { storejs.StopServer(srv) })
	return srv
}

// connect opens a connection of its own, as another process would.
func connect(t testing.TB, srv *server.Server) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// ledgerFeed applies events to a billing read model with increasing
// positions, as the projection runner would, and tells the store's head.
type ledgerFeed struct {
	mu      sync.Mutex
	billing *billing.Projection
	tracker *httpapi.Tracker
	pos     eventstore.Position
	// stored is the head: events stored, applied or not.
	stored eventstore.Position
}

func newFeed() *ledgerFeed {
	return &ledgerFeed{billing: billing.New(), tracker: httpapi.NewTracker()}
}

func (f *ledgerFeed) LastPosition(context.Context) (eventstore.Position, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stored, nil
}

// apply stores and applies events of account.
func (f *ledgerFeed) apply(t testing.TB, account string, events ...ledger.Event) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range events {
		f.pos++
		f.stored = max(f.stored, f.pos)
		d := codec.Decoded{Event: e, Record: eventstore.Record{Stream: eventstore.LedgerStream(account), Position: f.pos}}
		if err := f.billing.Apply(d); err != nil {
			t.Fatal(err)
		}
	}
	f.tracker.Advance(f.pos)
}

func at(y int, m time.Month, d, h, min int) time.Time {
	return time.Date(y, m, d, h, min, 0, 0, time.UTC)
}

func newNotifier(js jetstream.JetStream, f *ledgerFeed, c *clock) *cycleclose.Notifier {
	return cycleclose.New(cycleclose.Config{JS: js, Billing: f.billing, Head: f, Progress: f.tracker, Clock: c.Now})
}

// notices returns the notifications stored on an account's subject.
func notices(t testing.TB, js jetstream.JetStream, account string) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(t.Context(), contract.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(contract.BillingSubject(account)))
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			continue // another account's message was never there, or deleted
		}
		if m.Subject == contract.BillingSubject(account) {
			out = append(out, m)
		}
	}
	return out
}

func decode(t testing.TB, m *jetstream.RawStreamMsg) cycleclose.Envelope {
	t.Helper()
	var env cycleclose.Envelope
	if err := json.Unmarshal(m.Data, &env); err != nil {
		t.Fatalf("%s: %v", m.Data, err)
	}
	return env
}

// TestCyclesClosedOnce: each ended cycle's notification is published
// once, after the grace, in cycle order, with the billing read model's
// final quantities, a stable id and the CloudEvents envelope; a second
// pass and a restarted notifier publish nothing more.
func TestCyclesClosedOnce(t *testing.T) {
	srv := startNATS(t)
	js := connect(t, srv)
	if err := cycleclose.EnsureStream(t.Context(), js, 1); err != nil {
		t.Fatal(err)
	}
	f := newFeed()
	f.apply(t, "acme",
		ledger.AccountOpened{Account: "acme", Name: "Acme", Seats: 2, At: at(2026, 1, 10, 9, 0)},
		ledger.UserAdded{UserID: "u1", Role: ledger.RoleAdmin, At: at(2026, 1, 10, 9, 0)},
		ledger.UserAdded{UserID: "u2", Role: ledger.RoleMember, At: at(2026, 1, 20, 0, 0)},
		ledger.SeatsPurchased{Count: 1, At: at(2026, 1, 25, 0, 0)},
		ledger.UserDeactivated{UserID: "u2", At: at(2026, 2, 1, 0, 0)},
	)
	f.apply(t, "beta", ledger.AccountOpened{Account: "beta", Name: "Beta", Seats: 5, At: at(2026, 2, 3, 12, 0)})
	c := &clock{now: at(2026, 2, 10, 0, 1)}
	n := newNotifier(js, f, c)

	// The first cycle ended at 10 February 00:00: within the grace.
	if k, err := n.CloseDue(t.Context()); err != nil || k != 0 {
		t.Fatalf("within the grace: %d published, %v", k, err)
	}
	c.Set(at(2026, 2, 10, 0, 3))
	if k, err := n.CloseDue(t.Context()); err != nil || k != 1 {
		t.Fatalf("after the grace: %d published, %v", k, err)
	}
	got := notices(t, js, "acme")
	if len(got) != 1 || len(notices(t, js, "beta")) != 0 {
		t.Fatalf("%d notifications of acme, want 1", len(got))
	}
	m := got[0]
	want, err := f.billing.Cycle("acme", "2026-01", c.Now())
	if err != nil {
		t.Fatal(err)
	}
	env := decode(t, m)
	if env.SpecVersion != "1.0" || env.Type != cycleclose.Type || env.Source != "urn:licenseledger:account:acme" ||
		env.Subject != "2026-01" || !env.Time.Equal(at(2026, 2, 10, 0, 0)) || env.DataSchema != cycleclose.DataSchema("") ||
		env.DataContentType != "application/json" || env.ID != cycleclose.ID("acme", "2026-01") {
		t.Fatalf("envelope %+v", env)
	}
	if m.Header.Get("Nats-Msg-Id") != env.ID || m.Header.Get("Content-Type") != "application/cloudevents+json" ||
		m.Header.Get("Nats-Expected-Last-Subject-Sequence") != "0" || len(m.Header) != 3 {
		t.Fatalf("headers %v", m.Header)
	}
	d := env.Data
	if d.SeatsBilled != want.SeatsBilled || d.SeatsBilled != 2 || d.PeakActive != 2 || len(d.Purchases) != 1 ||
		d.ActiveUserDays != want.ActiveUserDays || d.Totals != want.Totals || d.Index != 0 {
		t.Fatalf("data %+v, read model %+v", d, want)
	}
	// u1 from 9:00 on the first day to the end, u2 from 20 January to 1
	// February.
	if wantDays := (31*24.0-9)/24 + 12; d.ActiveUserDays != wantDays {
		t.Fatalf("active user-days %v, want %v", d.ActiveUserDays, wantDays)
	}
	// The same cycle gives the same bytes: a retry sends no other final.
	again, err := cycleclose.Message(want, "")
	if err != nil || !bytes.Equal(again, m.Data) {
		t.Fatalf("message of the same cycle differs:\n%s\n%s", again, m.Data)
	}

	if k, err := n.CloseDue(t.Context()); err != nil || k != 0 {
		t.Fatalf("second pass: %d published, %v", k, err)
	}
	// Two months on: acme's February and March, beta's first two
	// cycles (3 Feb to 3 Mar, 3 Mar to 3 Apr), in order.
	c.Set(at(2026, 4, 12, 0, 0))
	if k, err := n.CloseDue(t.Context()); err != nil || k != 4 {
		t.Fatalf("two months on: %d published, %v", k, err)
	}
	for acct, periods := range map[string][]string{"acme": {"2026-01", "2026-02", "2026-03"}, "beta": {"2026-02", "2026-03"}} {
		got := notices(t, js, acct)
		if len(got) != len(periods) {
			t.Fatalf("%s: %d notifications, want %d", acct, len(got), len(periods))
		}
		for i, m := range got {
			if e := decode(t, m); e.Data.Period != periods[i] || e.Data.Index != i {
				t.Fatalf("%s notification %d: %s", acct, i, m.Data)
			}
		}
	}
	if d := decode(t, notices(t, js, "acme")[1]).Data; d.SeatsBilled != 3 || d.PeakActive != 1 {
		t.Fatalf("acme February: %+v", d)
	}
	// A restarted notifier reads where the subject stands.
	if k, err := newNotifier(connect(t, srv), f, c).CloseDue(t.Context()); err != nil || k != 0 {
		t.Fatalf("restarted: %d published, %v", k, err)
	}
}

// TestWaitsForTheReadModel: a cycle is not closed while the billing read
// model has not applied every event the store holds: an event stored
// before the cycle's end but not yet applied would be missing from the
// final.
func TestWaitsForTheReadModel(t *testing.T) {
	srv := startNATS(t)
	js := connect(t, srv)
	if err := cycleclose.EnsureStream(t.Context(), js, 1); err != nil {
		t.Fatal(err)
	}
	f := newFeed()
	f.apply(t, "acme", ledger.AccountOpened{Account: "acme", Name: "Acme", Seats: 2, At: at(2026, 1, 10, 9, 0)})
	f.mu.Lock()
	f.stored += 1 // stored, not yet applied
	f.mu.Unlock()
	c := &clock{now: at(2026, 3, 1, 0, 0)}
	n := newNotifier(js, f, c)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if k, err := n.CloseDue(ctx); err == nil || k != 0 {
		t.Fatalf("read model behind: %d published, %v", k, err)
	}
	if got := notices(t, js, "acme"); len(got) != 0 {
		t.Fatalf("%d notifications while the read model is behind", len(got))
	}
	// The late-applied event: a purchase timed before the cycle's end.
	f.mu.Lock()
	f.stored--
	f.mu.Unlock()
	f.apply(t, "acme", ledger.SeatsPurchased{Count: 3, At: at(2026, 2, 9, 23, 59)})
	if k, err := n.CloseDue(t.Context()); err != nil || k != 1 {
		t.Fatalf("caught up: %d published, %v", k, err)
	}
	if d := decode(t, notices(t, js, "acme")[0]).Data; d.Totals.PurchasedSeats != 3 {
		t.Fatalf("final without the purchase: %+v", d)
	}
}

// TestTwoProcessesRace: two notifiers on their own connections to one
// server close the same cycles of many accounts at the same time, each
// several times over; every account has exactly one notification per
// cycle, in order, and the two together report exactly that many
// publishes.
func TestTwoProcessesRace(t *testing.T) {
	srv := startNATS(t)
	js1, js2 := connect(t, srv), connect(t, srv)
	if err := cycleclose.EnsureStream(t.Context(), js1, 1); err != nil {
		t.Fatal(err)
	}
	f := newFeed()
	const accounts = 30
	for i := range accounts {
		id := fmt.Sprintf("acct-%02d", i)
		f.apply(t, id, ledger.AccountOpened{Account: id, Name: id, Seats: i + 1, At: at(2026, 1, 1+i%28, 8, 0)})
	}
	c := &clock{now: at(2026, 4, 1, 0, 0)}
	var total atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, js := range []jetstream.JetStream{js1, js2, js1, js2} {
		n := newNotifier(js, f, c) // a process of its own: its own memory
		wg.Go(func() {
			<-start
			for range 3 {
				k, err := n.CloseDue(t.Context())
				if err != nil {
					t.Error(err)
					return
				}
				total.Add(int64(k))
			}
		})
	}
	close(start)
	wg.Wait()
	want := 0
	for i := range accounts {
		id := fmt.Sprintf("acct-%02d", i)
		opened := at(2026, 1, 1+i%28, 8, 0)
		cycles := ledger.CycleIndex(opened, c.Now().Add(-cycleclose.DefaultGrace))
		got := notices(t, js1, id)
		if len(got) != cycles {
			t.Fatalf("%s: %d notifications, want %d", id, len(got), cycles)
		}
		for k, m := range got {
			if e := decode(t, m); e.Data.Index != k || e.Data.SeatsBilled != i+1 {
				t.Fatalf("%s notification %d: %s", id, k, m.Data)
			}
		}
		want += cycles
	}
	if total.Load() != int64(want) || want < 2*accounts {
		t.Fatalf("processes report %d publishes, %d notifications stored", total.Load(), want)
	}
}

// TestNotificationMatchesSchema validates the data of a notification
// against docs/schemas/dev.licenseledger.billing.cycle_closed.v1.json, and checks that the
// schema refuses data that breaks it.
func TestNotificationMatchesSchema(t *testing.T) {
	f := newFeed()
	f.apply(t, "acme",
		ledger.AccountOpened{Account: "acme", Name: "Acme", Seats: 2, At: at(2026, 1, 10, 9, 0)},
		ledger.UserAdded{UserID: "u1", Role: ledger.RoleAdmin, At: at(2026, 1, 10, 9, 0)},
		ledger.SeatsPurchased{Count: 1, At: at(2026, 1, 25, 0, 0)},
		ledger.SeatReductionScheduled{Count: 1, At: at(2026, 1, 26, 0, 0), EffectiveAt: at(2026, 2, 10, 0, 0)},
	)
	c, err := f.billing.Cycle("acme", "2026-01", at(2026, 3, 1, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	body, err := cycleclose.Message(c, "")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../../docs/schemas/dev.licenseledger.billing.cycle_closed.v1.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	comp := jsonschema.NewCompiler()
	comp.DefaultDraft(jsonschema.Draft2020)
	comp.AssertFormat()
	if err := comp.AddResource(cycleclose.DataSchema(""), doc); err != nil {
		t.Fatal(err)
	}
	sch, err := comp.Compile(cycleclose.DataSchema(""))
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Data       any    `json:"data"`
		DataSchema string `json:"dataschema"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	if env.DataSchema != cycleclose.DataSchema("") {
		t.Fatalf("dataschema %q", env.DataSchema)
	}
	if err := sch.Validate(env.Data); err != nil {
		t.Fatalf("notification does not match its schema: %v\n%s", err, body)
	}
	data := env.Data.(map[string]any)
	if len(data["purchases"].([]any)) != 1 || len(data["scheduled_reductions"].([]any)) != 1 {
		t.Fatalf("control: the example lacks a purchase or a reduction: %s", body)
	}
	data["seats_billed"] = -1
	if err := sch.Validate(data); err == nil {
		t.Fatalf("schema accepts negative seats")
	}
	data["seats_billed"] = 2
	data["surprise"] = true
	if err := sch.Validate(data); err == nil {
		t.Fatalf("schema accepts an unknown member")
	}
	// A cycle in progress has no final.
	cur, _ := f.billing.Cycle("acme", "2026-02", at(2026, 2, 20, 0, 0))
	if _, err := cycleclose.Message(cur, ""); err == nil {
		t.Fatal("a message for a cycle in progress")
	}
}

// TestFinalStands: an event timed inside a cycle already closed (which
// the service cannot store: its clock only moves forward and no command
// takes a time from its client) would change what the read model says of
// the cycle, but not what was published: the first final stands, no
// second one is sent, and the later cycles go on.
func TestFinalStands(t *testing.T) {
	srv := startNATS(t)
	js := connect(t, srv)
	if err := cycleclose.EnsureStream(t.Context(), js, 1); err != nil {
		t.Fatal(err)
	}
	f := newFeed()
	f.apply(t, "acme", ledger.AccountOpened{Account: "acme", Name: "Acme", Seats: 2, At: at(2026, 1, 10, 9, 0)})
	c := &clock{now: at(2026, 2, 11, 0, 0)}
	n := newNotifier(js, f, c)
	if k, err := n.CloseDue(t.Context()); err != nil || k != 1 {
		t.Fatalf("%d published, %v", k, err)
	}
	first := notices(t, js, "acme")[0].Data
	f.apply(t, "acme", ledger.SeatsPurchased{Count: 4, At: at(2026, 1, 20, 0, 0)})
	for _, notifier := range []*cycleclose.Notifier{n, newNotifier(connect(t, srv), f, c)} {
		if k, err := notifier.CloseDue(t.Context()); err != nil || k != 0 {
			t.Fatalf("after a back-dated event: %d published, %v", k, err)
		}
	}
	got := notices(t, js, "acme")
	if len(got) != 1 || !bytes.Equal(got[0].Data, first) {
		t.Fatalf("the final changed or was sent again: %d notifications", len(got))
	}
	c.Set(at(2026, 3, 11, 0, 0))
	if k, err := n.CloseDue(t.Context()); err != nil || k != 1 {
		t.Fatalf("next cycle: %d published, %v", k, err)
	}
	if d := decode(t, notices(t, js, "acme")[1]).Data; d.Period != "2026-02" || d.SeatsBilled != 6 {
		t.Fatalf("February: %+v", d)
	}
}

// TestForeignMessageOnSubject: a message on an account's billing subject
// that is not a notification stops that account's notifications (rather
// than guessing where they stand) and no other account's.
func TestForeignMessageOnSubject(t *testing.T) {
	srv := startNATS(t)
	js := connect(t, srv)
	if err := cycleclose.EnsureStream(t.Context(), js, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), contract.BillingSubject("acme"), []byte("not a notification")); err != nil {
		t.Fatal(err)
	}
	f := newFeed()
	f.apply(t, "acme", ledger.AccountOpened{Account: "acme", Name: "Acme", Seats: 2, At: at(2026, 1, 10, 9, 0)})
	f.apply(t, "beta", ledger.AccountOpened{Account: "beta", Name: "Beta", Seats: 2, At: at(2026, 1, 10, 9, 0)})
	n := newNotifier(js, f, &clock{now: at(2026, 2, 11, 0, 0)})
	k, err := n.CloseDue(t.Context())
	if err == nil || k != 1 || !strings.Contains(err.Error(), "not a CycleClosed notification") {
		t.Fatalf("%d published, %v", k, err)
	}
	if len(notices(t, js, "beta")) != 1 || len(notices(t, js, "acme")) != 1 {
		t.Fatal("beta not closed, or acme closed past a foreign message")
	}
}
