package webhooks_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/webhooks"
)

var (
	benchRate     = flag.Int("webhooks.rate", 1000, "events published per second in the delivery benchmarks (0: as fast as possible)")
	benchAccounts = flag.Int("webhooks.accounts", 100, "accounts, each with one endpoint, in the delivery benchmarks")
)

// loadMix are the published types of cmd/licenseload's default mix
// (activity=60, deactivate=12, activate=12, add=8, purchase=4, delete=4),
// with the stored type of each.
var loadMix = []struct {
	stored, typ string
	weight      int
}{
	{"ActivityRecorded", "dev.licenseledger.activity.recorded.v1", 60},
	{"UserDeactivated", "dev.licenseledger.user.deactivated.v1", 12},
	{"UserActivated", "dev.licenseledger.user.activated.v1", 12},
	{"UserAdded", "dev.licenseledger.user.added.v1", 8},
	{"SeatsPurchased", "dev.licenseledger.seats.purchased.v1", 4},
	{"UserDeleted", "dev.licenseledger.user.deleted.v1", 4},
}

// latencies records when each event was published and received.
type latencies struct {
	mu        sync.Mutex
	published map[string]time.Time
	delays    []time.Duration
	last      time.Time
	// published0 is when the last event was published.
	published0 time.Time
	done       chan struct{}
	want       int
}

func (l *latencies) receive(id string) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.published[id]
	if !ok {
		return // a repeat
	}
	delete(l.published, id)
	l.delays = append(l.delays, now.Sub(t))
	l.last = now
	if len(l.delays) == l.want {
		close(l.done)
	}
}

// BenchmarkDelivery publishes b.N events of the default load mix over
// -webhooks.accounts accounts at -webhooks.rate events/s into the
// published stream and measures how fast they reach their accounts'
// endpoints and the delay from publish to receipt (p50, p99). The
// baseline reads the same messages with a plain durable pull consumer
// per account, one in flight, acknowledged on receipt: what reading the
// stream costs without HTTP, signing and the delivery log.
func BenchmarkDelivery(b *testing.B) {
	for _, mode := range []string{"baseline-consumer", "webhooks"} {
		b.Run(mode, func(b *testing.B) { benchDelivery(b, mode) })
	}
}

func benchDelivery(b *testing.B, mode string) {
	srv := startNATS(b)
	js, _ := connect(b, srv)
	ensureEvents(b, js)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lat := &latencies{published: make(map[string]time.Time, b.N), done: make(chan struct{}), want: b.N}
	accounts := make([]string, *benchAccounts)
	for i := range accounts {
		accounts[i] = fmt.Sprintf("acct-%04d", i)
	}
	switch mode {
	case "webhooks":
		rc := newReceiver(b, false, func(r *http.Request) int {
			lat.receive(r.Header.Get("webhook-id"))
			return 200
		})
		s := openService(b, js, func(c *webhooks.Config) { c.Guard.AllowPrivate = true })
		for _, a := range accounts {
			if _, _, err := s.Register(ctx, a, webhooks.Registration{URL: rc.url()}); err != nil {
				b.Fatal(err)
			}
		}
		run(b, s)
	default:
		for i, a := range accounts {
			c, err := js.CreateConsumer(ctx, contract.Stream, natsjs.ConsumerConfig{
				Durable: fmt.Sprintf("plain_%d", i), FilterSubjects: contract.AccountFilters(a),
				AckPolicy: natsjs.AckExplicitPolicy, MaxAckPending: 1, DeliverPolicy: natsjs.DeliverNewPolicy,
			})
			if err != nil {
				b.Fatal(err)
			}
			go func() {
				for ctx.Err() == nil {
					batch, err := c.Fetch(1, natsjs.FetchMaxWait(time.Second))
					if err != nil {
						continue
					}
					for m := range batch.Messages() {
						lat.receive(m.Headers().Get(nats.MsgIdHdr))
						_ = m.DoubleAck(ctx)
					}
				}
			}()
		}
	}
	total := 0
	for _, m := range loadMix {
		total += m.weight
	}
	rng := rand.New(rand.NewPCG(1, 2))
	msgs := make([]*nats.Msg, b.N)
	for i := range msgs {
		k := rng.IntN(total)
		mi := 0
		for k >= loadMix[mi].weight {
			k -= loadMix[mi].weight
			mi++
		}
		id := uuid.NewString()
		a := accounts[rng.IntN(len(accounts))]
		m := nats.NewMsg(contract.LedgerSubject(a, loadMix[mi].stored))
		m.Data = fmt.Appendf(nil, `{"specversion":"1.0","id":%q,"source":"urn:licenseledger:account:%s","type":%q,"subject":"01JABCDEFGHJKMNPQRSTVWXYZ0","datacontenttype":"application/json","data":{"user_id":"01JABCDEFGHJKMNPQRSTVWXYZ0","kind":"note","ref":"r"}}`, id, a, loadMix[mi].typ)
		m.Header.Set(nats.MsgIdHdr, id)
		m.Header.Set("Content-Type", "application/cloudevents+json")
		msgs[i] = m
	}
	time.Sleep(200 * time.Millisecond) // consumers created
	b.ResetTimer()
	start := time.Now()
	var interval time.Duration
	if *benchRate > 0 {
		interval = time.Second / time.Duration(*benchRate)
	}
	for i, m := range msgs {
		if interval > 0 {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
		}
		lat.mu.Lock()
		lat.published[m.Header.Get(nats.MsgIdHdr)] = time.Now()
		lat.mu.Unlock()
		if _, err := js.PublishMsg(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	lat.mu.Lock()
	lat.published0 = time.Now()
	lat.mu.Unlock()
	select {
	case <-lat.done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%d of %d received", len(lat.delays), b.N)
	}
	b.StopTimer()
	lat.mu.Lock()
	defer lat.mu.Unlock()
	slices.Sort(lat.delays)
	elapsed := lat.last.Sub(start)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(lat.delays[len(lat.delays)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat.delays[len(lat.delays)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat.delays[len(lat.delays)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(lat.published0.Sub(start).Seconds()), "publish-s")
	b.ReportMetric(0, "ns/op")
}
