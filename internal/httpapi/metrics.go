package httpapi

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Metrics holds the service's metrics and writes them in the Prometheus
// text exposition format (version 0.0.4), followed by the Go runtime's
// (go_*) and the process's (process_*) under the Prometheus Go client's
// names. The HTTP API records requests
// and commands; the projection runner calls SetProjectionLag, the publisher
// EventsPublished, and the wiring ObserveAppend for every append the
// application service makes. It is safe for concurrent use.
type Metrics struct {
	mu        sync.Mutex
	commands  map[[2]string]uint64 // command, outcome
	requests  map[[2]string]uint64 // route, status
	appendLat histogram
	cmdLat    histogram
	reqLat    histogram
	panics    uint64
	lag       map[string]float64
	published uint64
	// cyclesClosed counts the billing cycle notifications published.
	cyclesClosed uint64
	// quarantined counts the records the read models quarantined; nil
	// until CountQuarantined names it.
	quarantined func() uint64
	// relaySkipped counts the records the relay did not publish; nil
	// (and the metric absent) without a relay.
	relaySkipped func() uint64
	// webhooks reports the webhook deliveries; nil (and the metrics
	// absent) without webhooks.
	webhooks func() WebhookCounts
}

// WebhookCounts are the webhook deliveries of a process.
type WebhookCounts struct {
	// Delivered and Failed count attempts answered 2xx and not.
	Delivered, Failed uint64
	// Pending is how many messages the endpoints delivered by this process
	// have still to receive.
	Pending uint64
}

// CountWebhooks makes n the source of the webhook delivery metrics.
func (m *Metrics) CountWebhooks(n func() WebhookCounts) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.webhooks = n
}

// latencyBuckets are upper bounds in seconds, from 100 us (an in-memory
// append) to 2.5 s (a slow replicated store).
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

type histogram struct {
	counts []uint64 // per bucket, then +Inf
	sum    float64
	n      uint64
}

func (h *histogram) observe(d time.Duration) {
	if h.counts == nil {
		h.counts = make([]uint64, len(latencyBuckets)+1)
	}
	s := d.Seconds()
	i, _ := slices.BinarySearch(latencyBuckets, s)
	h.counts[i]++
	h.sum += s
	h.n++
}

// NewMetrics returns empty metrics.
func NewMetrics() *Metrics {
	return &Metrics{commands: make(map[[2]string]uint64), requests: make(map[[2]string]uint64), lag: make(map[string]float64)}
}

func (m *Metrics) commandDone(command, outcome string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.commands[[2]string{command, outcome}]++
	m.cmdLat.observe(d)
}

func (m *Metrics) request(route string, status int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[[2]string{route, strconv.Itoa(status)}]++
	m.reqLat.observe(d)
}

func (m *Metrics) panicked() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.panics++
}

// ObserveAppend records the latency of one append to the store.
func (m *Metrics) ObserveAppend(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.appendLat.observe(d)
}

// SetProjectionLag records how many positions a read model is behind the
// store's last position.
func (m *Metrics) SetProjectionLag(projection string, behind uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lag[projection] = float64(behind)
}

// EventsPublished counts n events published downstream.
func (m *Metrics) EventsPublished(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.published += uint64(n)
}

// CycleClosed counts a billing cycle notification published.
func (m *Metrics) CycleClosed() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cyclesClosed++
}

// CountQuarantined makes n the source of ledger_quarantined_records_total:
// the records the read models skipped as unreadable, unverifiable or
// undecodable (the projection runner's QuarantinedCount).
func (m *Metrics) CountQuarantined(n func() uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.quarantined = n
}

// CountRelaySkipped makes n the source of
// ledger_relay_skipped_records_total: the stored records the relay to NATS
// did not publish because they are not events of the ledger (the relay's
// Status().Skipped). Without it the metric is not written.
func (m *Metrics) CountRelaySkipped(n func() uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.relaySkipped = n
}

// WriteTo writes every metric in the text exposition format.
func (m *Metrics) WriteTo(w io.Writer) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cw := &countWriter{w: bufio.NewWriter(w)}
	counter2 := func(name, help, l1, l2 string, vals map[[2]string]uint64) {
		fmt.Fprintf(cw, "# HELP %s %s\n# TYPE %s counter\n", name, help, name)
		keys := slices.SortedFunc(maps.Keys(vals), func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) })
		for _, k := range keys {
			fmt.Fprintf(cw, "%s{%s=%s,%s=%s} %d\n", name, l1, quote(k[0]), l2, quote(k[1]), vals[k])
		}
	}
	hist := func(name, help string, h *histogram) {
		fmt.Fprintf(cw, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
		var cum uint64
		for i, le := range latencyBuckets {
			if h.counts != nil {
				cum += h.counts[i]
			}
			fmt.Fprintf(cw, "%s_bucket{le=\"%s\"} %d\n", name, strconv.FormatFloat(le, 'g', -1, 64), cum)
		}
		fmt.Fprintf(cw, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %s\n%s_count %d\n", name, h.n, name, strconv.FormatFloat(h.sum, 'g', -1, 64), name, h.n)
	}
	counter2("licensed_commands_total", "Commands run, by command and outcome.", "command", "outcome", m.commands)
	hist("licensed_command_duration_seconds", "Time to run a command, append included.", &m.cmdLat)
	hist("licensed_append_duration_seconds", "Time to append to the event store.", &m.appendLat)
	counter2("licensed_http_requests_total", "HTTP requests, by route pattern and status.", "route", "status", m.requests)
	hist("licensed_http_request_duration_seconds", "Time to answer an HTTP request.", &m.reqLat)
	fmt.Fprintf(cw, "# HELP licensed_http_panics_total Panics recovered while answering HTTP requests (each logged with its stack).\n# TYPE licensed_http_panics_total counter\nlicensed_http_panics_total %d\n", m.panics)
	fmt.Fprintf(cw, "# HELP licensed_projection_lag_positions How far each read model is behind the store.\n# TYPE licensed_projection_lag_positions gauge\n")
	for _, k := range slices.Sorted(maps.Keys(m.lag)) {
		fmt.Fprintf(cw, "licensed_projection_lag_positions{projection=%s} %s\n", quote(k), strconv.FormatFloat(m.lag[k], 'g', -1, 64))
	}
	fmt.Fprintf(cw, "# HELP licensed_events_published_total Events published downstream.\n# TYPE licensed_events_published_total counter\nlicensed_events_published_total %d\n", m.published)
	fmt.Fprintf(cw, "# HELP licensed_billing_cycles_closed_total Billing cycle notifications (CycleClosed) this process published.\n# TYPE licensed_billing_cycles_closed_total counter\nlicensed_billing_cycles_closed_total %d\n", m.cyclesClosed)
	var quarantined uint64
	if m.quarantined != nil {
		quarantined = m.quarantined()
	}
	fmt.Fprintf(cw, "# HELP ledger_quarantined_records_total Stored records the read models skipped as unreadable, off their stream's chain, or undecodable.\n# TYPE ledger_quarantined_records_total counter\nledger_quarantined_records_total %d\n", quarantined)
	if m.relaySkipped != nil {
		fmt.Fprintf(cw, "# HELP ledger_relay_skipped_records_total Stored records the relay did not publish downstream: unreadable, off their stream's chain, or not a message.\n# TYPE ledger_relay_skipped_records_total counter\nledger_relay_skipped_records_total %d\n", m.relaySkipped())
	}
	writeRuntime(cw)
	if m.webhooks != nil {
		c := m.webhooks()
		fmt.Fprintf(cw, "# HELP licensed_webhook_deliveries_total Attempts to deliver an event to a webhook endpoint, by outcome (ok: answered 2xx).\n# TYPE licensed_webhook_deliveries_total counter\n")
		fmt.Fprintf(cw, "licensed_webhook_deliveries_total{outcome=\"ok\"} %d\nlicensed_webhook_deliveries_total{outcome=\"failed\"} %d\n", c.Delivered, c.Failed)
		fmt.Fprintf(cw, "# HELP licensed_webhook_pending_messages Messages the webhook endpoints this process delivers to have still to receive.\n# TYPE licensed_webhook_pending_messages gauge\nlicensed_webhook_pending_messages %d\n", c.Pending)
	}
	if err := cw.w.Flush(); err != nil {
		return cw.n, err
	}
	return cw.n, cw.err
}

type countWriter struct {
	w   *bufio.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if err != nil && c.err == nil {
		c.err = err
	}
	return n, err
}

// quote quotes a label value: backslash, double quote and newline escaped.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}
