package systemtest

import (
	"bytes"
	"context"
	"encoding/json"

	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
)

// What reaches the embedded NATS port without the service's credential
// cannot change the ledger: an anonymous client cannot connect; the
// downstream credential subscribes and consumes but cannot publish an
// event nor a token. Records placed in the stream with the server's own
// rights (garbage, a forged copy of a purchase) are quarantined: the
// service stays up, its reads stay correct, it lists and counts them, and
// it restarts.
func TestHostilePublishes(t *testing.T) {
	p := newProc(t, "licensed", "")
	p.ready()
	op := p.file("operator.token")
	p.expect(http.StatusCreated, "POST", "/v1/accounts", op, map[string]any{"id": "victim", "name": "Victim", "seats": 2}, nil)
	p.expect(http.StatusOK, "POST", "/v1/accounts/victim/seats", op, map[string]any{"count": 1}, nil)
	p.expect(http.StatusCreated, "POST", "/v1/accounts/victim/users", op, map[string]any{"name": "Ada Lovelace", "email": "ada@victim.test", "role": "admin"}, nil)
	p.expect(http.StatusCreated, "POST", "/v1/accounts", op, map[string]any{"id": "bystander", "name": "Bystander", "seats": 5}, nil)

	t.Run("anonymous", func(t *testing.T) {
		defer p.on(t)()
		nc, err := connect(t, p.natsURL, "", nats.NoReconnect())
		if err == nil {
			nc.Close()
			t.Fatal("an anonymous client connected to the embedded NATS server")
		}
		if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Fatalf("anonymous connect: %v, want an authorization violation", err)
		}
		// Control: the server is there for who has a credential.
		nc, err = connect(t, p.natsURL, serviceCreds(p.dir), nats.NoReconnect())
		if err != nil {
			t.Fatalf("connect with the service's credential: %v", err)
		}
		nc.Close()
	})

	t.Run("downstream", func(t *testing.T) {
		defer p.on(t)()
		creds := filepath.Join(p.dir, "downstream.nk")
		fi, err := os.Stat(creds)
		if err != nil {
			t.Fatalf("no downstream credential: %v", err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", creds, fi.Mode().Perm())
		}
		denied := make(chan error, 16)
		nc, err := connect(t, p.natsURL, creds, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case denied <- err:
			default:
			}
		}))
		if err != nil {
			t.Fatalf("connect with the downstream credential: %v", err)
		}
		defer nc.Close()

		// A plain subscription sees the events.
		sub, err := nc.SubscribeSync("ledger.>")
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		p.expect(http.StatusCreated, "POST", "/v1/accounts/bystander/users", op, map[string]any{"name": "Bob Babbage", "email": "bob@bystander.test", "role": "member"}, nil)
		// Events are published after they are stored: those stored just
		// before the subscription may come first.
		for m := (*nats.Msg)(nil); m == nil || m.Subject != "ledger.bystander.UserAdded"; {
			if m, err = sub.NextMsg(30 * time.Second); err != nil {
				t.Fatalf("downstream subscriber: %v", err)
			}
		}

		// A durable consumer on the stream reads from the start.
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := js.CreateOrUpdateConsumer(ctx, ledgerStream, jetstream.ConsumerConfig{
			Durable: "billing-sync", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "ledger.>",
		})
		if err != nil {
			t.Fatalf("downstream durable consumer: %v", err)
		}
		batch, err := c.Fetch(1, jetstream.FetchMaxWait(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if m.Subject() != "ledger.victim.AccountOpened" {
				t.Errorf("durable consumer's first message is on %s", m.Subject())
			}
			if err := m.DoubleAck(ctx); err != nil {
				t.Error(err)
			}
		}
		if got != 1 {
			t.Fatalf("durable consumer fetched %d messages: %v", got, batch.Error())
		}

		// Publishing an event or a token record is refused.
		before := lastSeq(t, p)
		for _, subj := range []string{"ledger.victim.SeatsPurchased", "activity.victim.ActivityRecorded", "$KV.LEDGER_TOKENS.forged"} {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := js.Publish(pctx, subj, []byte(`{"count":500}`))
			cancel()
			if err == nil {
				t.Errorf("the downstream credential published on %s", subj)
				continue
			}
			if !permissionDenied(t, denied, subj) {
				t.Errorf("publish on %s: %v, and no permissions violation reported for it", subj, err)
			}
		}
		if after := lastSeq(t, p); after != before {
			t.Errorf("the ledger stream moved from %d to %d on publishes with the downstream credential", before, after)
		}
	})

	t.Run("quarantine", func(t *testing.T) {
		defer p.on(t)()
		creds := serviceCreds(p.dir)
		if creds == "" {
			t.Errorf("no %s: publishing anonymously", filepath.Join(p.dir, "licensed.nk"))
		}
		nc, err := connect(t, p.natsURL, creds)
		if err != nil {
			t.Fatalf("connect with the service's credential: %v", err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s, err := js.Stream(ctx, ledgerStream)
		if err != nil {
			t.Fatal(err)
		}
		orig, err := s.GetLastMsgForSubject(ctx, "ledger.victim.SeatsPurchased")
		if err != nil {
			t.Fatal(err)
		}
		var usage struct {
			Purchased int `json:"purchased"`
			Seats     int `json:"seats"`
		}
		p.expect(http.StatusOK, "GET", "/v1/accounts/victim", op, nil, &usage)
		if usage.Purchased != 3 {
			t.Fatalf("victim holds %d seats before the forgery, want 3", usage.Purchased)
		}

		garbage, err := js.PublishMsg(ctx, &nats.Msg{Subject: "ledger.victim.SeatsPurchased", Data: []byte("{not json")})
		if err != nil {
			t.Fatal(err)
		}
		forged := &nats.Msg{Subject: orig.Subject, Header: nats.Header{}, Data: bytes.Replace(orig.Data, []byte(`"count":1`), []byte(`"count":500`), 1)}
		if bytes.Equal(forged.Data, orig.Data) {
			t.Fatalf("no count to change in %s", orig.Data)
		}
		for k, v := range orig.Header {
			if !strings.HasPrefix(k, "Nats-") {
				forged.Header[k] = v
			}
		}
		forged.Header.Set("Nats-Msg-Id", uuid.NewString()) // not a duplicate of the original
		copied, err := js.PublishMsg(ctx, forged)
		if err != nil {
			t.Fatal(err)
		}
		planted := map[eventstore.Position]bool{
			eventstore.Position(garbage.Sequence): true,
			eventstore.Position(copied.Sequence):  true,
		}
		t.Logf("garbage at %d, forged copy at %d", garbage.Sequence, copied.Sequence)

		// The read models reach the planted records and quarantine them:
		// the operators' list names both, the metric counts them.
		for deadline := time.Now().Add(time.Minute); ; {
			var list any
			p.expect(http.StatusOK, "GET", "/v1/quarantine", op, nil, &list)
			listed := 0
			for pos := range planted {
				if holdsNumber(list, uint64(pos)) {
					listed++
				}
			}
			if listed == len(planted) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET /v1/quarantine does not list positions %v: %v", planted, list)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if n := metric(t, p, "ledger_quarantined_records_total"); n < 2 {
			t.Errorf("ledger_quarantined_records_total %v, want 2 or more", n)
		}
		checkReads := func() {
			t.Helper()
			// The purchase is as it was.
			p.expect(http.StatusOK, "GET", "/v1/accounts/victim", op, nil, &usage)
			if usage.Purchased != 3 {
				t.Errorf("victim holds %d seats after the forgery, want 3", usage.Purchased)
			}
			st, _, raw, err := p.do("GET", "/v1/accounts/victim/audit/verify", op, nil)
			var v struct {
				OK bool `json:"ok"`
			}
			if err != nil || st != http.StatusOK || json.Unmarshal(raw, &v) != nil || (v.OK && !strings.Contains(string(raw), "quarantin")) {
				t.Errorf("verify victim after the forgery: %d %v %s", st, err, raw)
			}
			p.expect(http.StatusCreated, "POST", "/v1/accounts/bystander/users", op, map[string]any{"name": "Cy Quill", "email": uuid.NewString() + "@bystander.test", "role": "member"}, nil)
			if !p.running() {
				t.Fatal("the service stopped")
			}
		}
		checkReads()
		checkInvariants(t, p.natsURL, creds, p, op, planted, "victim")

		// The next start succeeds and reads the same.
		if err := p.stop(syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM: exit %v", err)
		}
		p.ready()
		checkReads()
		checkInvariants(t, p.natsURL, creds, p, op, planted, "victim")
		if err := p.stop(syscall.SIGTERM); err != nil {
			t.Errorf("SIGTERM after the restart: exit %v", err)
		}
	})
}

// permissionDenied reports whether the connection's error handler got a
// permissions violation for subj within a generous time. Other errors fail
// the test.
func permissionDenied(t *testing.T, denied <-chan error, subj string) bool {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case err := <-denied:
			msg := strings.ToLower(err.Error())
			if strings.Contains(msg, "permissions violation") && strings.Contains(msg, strings.ToLower(subj)) {
				return true
			}
			t.Errorf("downstream connection: %v", err)
		case <-timeout:
			return false
		}
	}
}

// lastSeq returns the ledger stream's last sequence, read with the
// service's credential.
func lastSeq(t *testing.T, p *proc) uint64 {
	t.Helper()
	nc, err := connect(t, p.natsURL, serviceCreds(p.dir))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, ledgerStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// holdsNumber reports whether a decoded JSON value holds n anywhere, as a
// number or a decimal string.
func holdsNumber(v any, n uint64) bool {
	switch v := v.(type) {
	case float64:
		return v == float64(n)
	case string:
		return v == itoa(n)
	case []any:
		for _, e := range v {
			if holdsNumber(e, n) {
				return true
			}
		}
	case map[string]any:
		for _, e := range v {
			if holdsNumber(e, n) {
				return true
			}
		}
	}
	return false
}

// metric returns the sum of a metric's samples in /metrics, -1 when it
// is missing.
func metric(t *testing.T, p *proc, name string) float64 {
	t.Helper()
	raw := p.expect(http.StatusOK, "GET", "/metrics", "", nil, nil)
	sum, found := 0.0, false
	for line := range strings.Lines(string(raw)) {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum, found = sum+v, true
	}
	if !found {
		return -1
	}
	return sum
}
