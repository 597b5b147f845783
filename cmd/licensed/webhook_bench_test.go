package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
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

	"github.com/licenseledger/ledger/internal/contract"
)

// delays records when each event was appended (its CloudEvent time) and
// when a reader received it.
type delays struct {
	mu    sync.Mutex
	since time.Time // events recorded before are not counted
	got   map[string]time.Duration
	last  time.Time
}

func (d *delays) receive(body []byte) {
	now := time.Now()
	var ev struct {
		ID   string    `json:"id"`
		Time time.Time `json:"time"`
	}
	if json.Unmarshal(body, &ev) != nil || ev.ID == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if ev.Time.Before(d.since) {
		return
	}
	if _, seen := d.got[ev.ID]; !seen {
		d.got[ev.ID] = now.Sub(ev.Time)
		d.last = now
	}
}

func (d *delays) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.got)
}

func (d *delays) quantiles() (p50, p99 time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var ds []time.Duration
	for _, v := range d.got {
		ds = append(ds, v)
	}
	if len(ds) == 0 {
		return 0, 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2], ds[len(ds)*99/100]
}

// BenchmarkWebhookDelivery runs the service as wired (embedded NATS, fsync
// durability), opens 100 accounts of 8 seats with 5 users each, registers
// one webhook endpoint per account, and sends b.N commands of
// cmd/licenseload's default mix (activity 60, deactivate 12, activate 12,
// add 8, purchase 4, delete 4) from 16 clients over HTTP. It reports the
// rate of webhook deliveries and their delay from the append (the event's
// recorded time) to the receipt, beside the same delay for a plain
// durable consumer of the published stream in the same run (baseline).
func BenchmarkWebhookDelivery(b *testing.B) {
	const (
		accounts = 100
		clients  = 16
	)
	hooks := &delays{got: map[string]time.Duration{}}
	base := &delays{got: map[string]time.Duration{}}
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		hooks.receive(body)
	}))
	defer recv.Close()

	dir := b.TempDir()
	cfg, err := ParseConfig([]string{"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0", "--webhook-allow-private", "true"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	m := NewMain(cfg, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	if err := m.Start(ctx); err != nil {
		m.Close()
		b.Fatal(err)
	}
	defer m.Close()
	tok, _ := os.ReadFile(filepath.Join(dir, "operator.token"))
	api := &benchAPI{base: "http://" + m.HTTPAddr(), token: strings.TrimSpace(string(tok)),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	for deadline := time.Now().Add(30 * time.Second); api.call(b, "GET", "/readyz", nil, nil) != 200; {
		if time.Now().After(deadline) {
			b.Fatal("not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}

	states := make([]*benchAccount, accounts)
	for i := range states {
		a := &benchAccount{id: fmt.Sprintf("bench-%03d", i)}
		if st := api.call(b, "POST", "/v1/accounts", map[string]any{"id": a.id, "name": "Bench", "seats": 8}, nil); st != 201 {
			b.Fatalf("open %s: %d", a.id, st)
		}
		for u := range 5 {
			role := "member"
			if u == 0 {
				role = "admin"
			}
			var user struct {
				ID string `json:"id"`
			}
			if st := api.call(b, "POST", "/v1/accounts/"+a.id+"/users", map[string]string{"name": "U", "email": fmt.Sprintf("u%d@%s.test", u, a.id), "role": role}, &user); st != 201 {
				b.Fatalf("add user: %d", st)
			}
			if u == 0 {
				a.admin = user.ID
			} else {
				a.active = append(a.active, user.ID)
			}
		}
		a.n = 5
		if st := api.call(b, "POST", "/v1/accounts/"+a.id+"/webhooks", map[string]any{"url": recv.URL + "/" + a.id}, nil); st != 201 {
			b.Fatalf("register: %d", st)
		}
		states[i] = a
	}

	// The baseline: a durable consumer of the published stream.
	creds, err := nats.NkeyOptionFromSeed(filepath.Join(dir, "licensed.nk"))
	if err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(m.NATSURL(), creds)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cons, err := js.CreateConsumer(ctx, contract.Stream, jetstream.ConsumerConfig{
		Durable: "bench_baseline", FilterSubjects: []string{contract.SubjectPrefix + "ledger.>", contract.SubjectPrefix + "activity.>"}, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		base.receive(msg.Data())
		_ = msg.Ack()
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()

	start := time.Now()
	hooks.since, base.since = start, start
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N / clients
	for c := range clients {
		n := per
		if c == 0 {
			n += b.N % clients
		}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for range n {
				a := states[rng.IntN(accounts/clients)*clients+c%clients]
				a.step(b, api, rng)
			}
		})
	}
	wg.Wait()
	loadEnd := time.Now()
	// Every event the baseline saw reaches the endpoints.
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		nb, nh := base.count(), hooks.count()
		if nh >= nb && time.Since(loadEnd) > time.Second {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d events delivered of %d published", nh, nb)
		}
	}
	b.StopTimer()
	hp50, hp99 := hooks.quantiles()
	bp50, bp99 := base.quantiles()
	hooks.mu.Lock()
	elapsed := hooks.last.Sub(start)
	n := len(hooks.got)
	hooks.mu.Unlock()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(n)/loadEnd.Sub(start).Seconds(), "events/s")
	b.ReportMetric(float64(hp50.Microseconds())/1000, "hook-p50-ms")
	b.ReportMetric(float64(hp99.Microseconds())/1000, "hook-p99-ms")
	b.ReportMetric(float64(bp50.Microseconds())/1000, "base-p50-ms")
	b.ReportMetric(float64(bp99.Microseconds())/1000, "base-p99-ms")
	b.ReportMetric(0, "ns/op")
}

// benchAPI calls the HTTP API with the operator token.
type benchAPI struct {
	base, token string
	client      *http.Client
}

func (a *benchAPI) call(b *testing.B, method, path string, body, out any) int {
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		b.Error(err)
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		b.Error(err)
		return 0
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil {
		_ = json.Unmarshal(raw, out)
	}
	return resp.StatusCode
}

// benchAccount is what a client knows of one of its accounts.
type benchAccount struct {
	id, admin        string
	active, inactive []string
	n                int // users added so far, for unique emails
}

// step sends one command of the default mix; a refusal (no seat) is part
// of the load.
func (a *benchAccount) step(b *testing.B, api *benchAPI, rng *rand.Rand) {
	users := "/v1/accounts/" + a.id + "/users/"
	pick := func(from *[]string) string {
		i := rng.IntN(len(*from))
		u := (*from)[i]
		*from = slices.Delete(*from, i, i+1)
		return u
	}
	switch k := rng.IntN(100); {
	case k < 60 || (k < 72 && len(a.active) == 0):
		api.call(b, "POST", "/v1/accounts/"+a.id+"/activities", map[string]string{"user_id": a.admin, "kind": "note", "ref": "r"}, nil)
	case k < 72:
		u := pick(&a.active)
		api.call(b, "POST", users+u+"/deactivate", map[string]string{"reason": "r"}, nil)
		a.inactive = append(a.inactive, u)
	case k < 84:
		if len(a.inactive) == 0 {
			return
		}
		u := pick(&a.inactive)
		if api.call(b, "POST", users+u+"/activate", nil, nil) == 200 {
			a.active = append(a.active, u)
		} else {
			a.inactive = append(a.inactive, u)
		}
	case k < 92:
		var user struct {
			ID string `json:"id"`
		}
		a.n++
		if api.call(b, "POST", "/v1/accounts/"+a.id+"/users", map[string]string{"name": "U", "email": fmt.Sprintf("u%d@%s.test", a.n, a.id), "role": "member"}, &user) == 201 {
			a.active = append(a.active, user.ID)
		}
	case k < 96:
		api.call(b, "POST", "/v1/accounts/"+a.id+"/seats", map[string]int{"count": 1}, nil)
	default:
		from := &a.inactive
		if len(*from) == 0 {
			from = &a.active
		}
		if len(*from) == 0 {
			return
		}
		u := pick(from)
		api.call(b, "DELETE", users+u+"?confirm="+u, nil, nil)
	}
}
