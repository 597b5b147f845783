package jetstream_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// startLimitedAuthServer is startAuthServer with a downstream consumer
// limit of maxConsumers.
func startLimitedAuthServer(t *testing.T, maxConsumers int) *authServer {
	t.Helper()
	dir := t.TempDir()
	a := &authServer{serviceSeed: filepath.Join(dir, "licensed.nk"), downSeed: filepath.Join(dir, "downstream.nk")}
	svc, _, err := jetstream.UserSeed(a.serviceSeed)
	if err != nil {
		t.Fatal(err)
	}
	down, _, err := jetstream.UserSeed(a.downSeed)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := jetstream.CredentialOption(a.serviceSeed)
	if err != nil {
		t.Fatal(err)
	}
	a.store, err = jetstream.Embedded(t.Context(), jetstream.ServerConfig{
		DataDir: filepath.Join(dir, "nats"), Port: -1,
		Auth: &jetstream.Auth{Service: svc, Downstream: down, DownstreamMaxConsumers: maxConsumers},
	}, jetstream.Config{}, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.store.Close() })
	createPublished(t, a.store)
	if err := jetstream.EnsureDownstreamMirror(t.Context(), a.store.Conn(), 1, false); err != nil {
		t.Fatal(err)
	}
	return a
}

// downstreamJS connects with the downstream credential.
func (a *authServer) downstreamJS(t *testing.T) natsjs.JetStream {
	t.Helper()
	nc, _, err := a.connect(t, a.downSeed)
	if err != nil {
		t.Fatal(err)
	}
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func TestDownstreamAccountLimits(t *testing.T) {
	a := startAuthServer(t, t.TempDir())
	info, err := a.downstreamJS(t).AccountInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	l := info.Limits
	if l.MaxConsumers != jetstream.DefaultDownstreamMaxConsumers || l.MaxAckPending != jetstream.DownstreamMaxAckPending ||
		l.MaxMemory != 0 || l.MaxStreams != 1 || l.MaxStore != -1 {
		t.Fatalf("downstream account limits %+v, want %d consumers, %d ack pending, no memory, 1 stream, file store unbounded",
			l, jetstream.DefaultDownstreamMaxConsumers, jetstream.DownstreamMaxAckPending)
	}
	if info.Streams != 1 {
		t.Fatalf("downstream account holds %d streams, want the mirror", info.Streams)
	}
	if _, err := jetstream.AccountsConfig(jetstream.Auth{Service: "$A", Downstream: "$B", DownstreamMaxConsumers: -1}); err == nil {
		t.Fatal("a negative consumer limit accepted")
	}
}

func TestDownstreamConsumersAreBounded(t *testing.T) {
	a := startLimitedAuthServer(t, 3)
	appendSeats(t, a.store, "acme")
	js := a.downstreamJS(t)
	ctx := t.Context()
	for i := range 3 {
		if _, err := js.CreateOrUpdateConsumer(ctx, "LEDGER", natsjs.ConsumerConfig{
			Durable: fmt.Sprintf("c%d", i), AckPolicy: natsjs.AckExplicitPolicy,
		}); err != nil {
			t.Fatalf("consumer %d of 3: %v", i+1, err)
		}
	}
	_, err := js.CreateOrUpdateConsumer(ctx, "LEDGER", natsjs.ConsumerConfig{Durable: "c3", AckPolicy: natsjs.AckExplicitPolicy})
	if !errors.Is(err, natsjs.ErrMaximumConsumersLimit) {
		t.Fatalf("fourth consumer: %v, want %v", err, natsjs.ErrMaximumConsumersLimit)
	}
	if err := js.DeleteConsumer(ctx, "LEDGER", "c2"); err != nil {
		t.Fatal(err)
	}
	// More unacknowledged messages than the account allows.
	_, err = js.CreateOrUpdateConsumer(ctx, "LEDGER", natsjs.ConsumerConfig{
		Durable: "greedy", AckPolicy: natsjs.AckExplicitPolicy, MaxAckPending: jetstream.DownstreamMaxAckPending + 1,
	})
	var apiErr *natsjs.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != natsjs.ErrorCode(10121) {
		t.Fatalf("consumer with %d pending acks: %v, want refused (10121)", jetstream.DownstreamMaxAckPending+1, err)
	}

	// The mirror still follows the service's stream.
	c, err := js.CreateOrUpdateConsumer(ctx, "LEDGER", natsjs.ConsumerConfig{Durable: "follow", AckPolicy: natsjs.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	appendSeats(t, a.store, "acme")
	var got []uint64
	for len(got) < 2 {
		batch, err := c.Fetch(2-len(got), natsjs.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := len(got)
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, md.Sequence.Stream)
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		if len(got) == n {
			t.Fatalf("mirror delivered %v, want events 1 and 2", got)
		}
	}
	if got[0] != 1 || got[1] != 2 {
		t.Fatalf("mirror delivered %v, want events 1 and 2", got)
	}
}

// A downstream client names, as a pull request's reply subject or a push
// consumer's delivery subject, a subject the downstream account imports
// from the service's account: copies of events must not reach the
// service account's consumer API.
func TestDownstreamDeliveriesDoNotReachTheServiceAPI(t *testing.T) {
	a := startAuthServer(t, t.TempDir())
	appendSeats(t, a.store, "acme")
	spy, err := a.store.Conn().SubscribeSync("$JS.API.CONSUMER.CREATE.EVENTS.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.store.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	nc, _, err := a.connect(t, a.downSeed)
	if err != nil {
		t.Fatal(err)
	}
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateOrUpdateConsumer(ctx, "LEDGER", natsjs.ConsumerConfig{Durable: "pull", AckPolicy: natsjs.AckNonePolicy}); err != nil {
		t.Fatal(err)
	}
	if err := nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT.LEDGER.pull", "$JS.ledger.API.CONSUMER.CREATE.EVENTS.pulled", []byte(`{"batch":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, "LEDGER", natsjs.ConsumerConfig{
		Durable: "push", DeliverSubject: "$JS.ledger.API.CONSUMER.CREATE.EVENTS.pushed", AckPolicy: natsjs.AckNonePolicy,
	}); err != nil {
		t.Fatal(err)
	}
	// A control: the same consumers deliver to a subject of the
	// downstream account itself.
	control, err := nc.SubscribeSync("_INBOX.control")
	if err != nil {
		t.Fatal(err)
	}
	appendSeats(t, a.store, "acme")
	if err := nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT.LEDGER.pull", "_INBOX.control", []byte(`{"batch":1}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := control.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("control delivery: %v", err)
	}
	if err := a.store.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := spy.NextMsg(time.Second); err == nil {
		t.Fatalf("the service account's consumer API received %q from a downstream consumer: %.60s", m.Subject, m.Data)
	}
}
