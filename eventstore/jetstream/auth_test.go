package jetstream_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/eventstore/jetstream/keys"
	"github.com/licenseledger/ledger/internal/contract"
)

// authServer is an embedded server requiring authentication, with the
// service's store open on it and the paths of both identities' seeds.
type authServer struct {
	store                 *jetstream.Store
	serviceSeed, downSeed string
}

func startAuthServer(t *testing.T, dir string) *authServer {
	t.Helper()
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
		Auth: &jetstream.Auth{Service: svc, Downstream: down},
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

// connect dials the server over TCP with the credential in the file at
// path ("" for none), collecting the permission errors the server sends.
func (a *authServer) connect(t *testing.T, path string) (*nats.Conn, *asyncErrs, error) {
	t.Helper()
	errs := &asyncErrs{}
	opts := []nats.Option{nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs.add(err) })}
	if path != "" {
		opt, err := jetstream.CredentialOption(path)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, opt)
	}
	nc, err := nats.Connect(a.store.Server().ClientURL(), opts...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, errs, err
}

type asyncErrs struct {
	mu   sync.Mutex
	errs []error
}

func (e *asyncErrs) add(err error) { e.mu.Lock(); e.errs = append(e.errs, err); e.mu.Unlock() }

// violation waits until the server has reported a permissions violation
// naming subject.
func (e *asyncErrs) violation(t *testing.T, subject string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		e.mu.Lock()
		for _, err := range e.errs {
			if strings.Contains(err.Error(), "Permissions Violation") && strings.Contains(err.Error(), subject) {
				e.mu.Unlock()
				return
			}
		}
		e.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("no permissions violation reported for %s", subject)
}

// createPublished creates the service account's published stream, which
// the downstream mirror follows (the publisher, internal/relay, creates it
// in the service).
func createPublished(t *testing.T, s *jetstream.Store) {
	t.Helper()
	js, err := natsjs.New(s.Conn())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateStream(t.Context(), natsjs.StreamConfig{Name: contract.Stream, Subjects: []string{contract.SubjectPrefix + ">"}}); err != nil {
		t.Fatal(err)
	}
}

// appendSeats appends an event to the store and, when the server has the
// published stream, publishes it there as the publisher would.
func appendSeats(t *testing.T, s *jetstream.Store, account string) eventstore.AppendResult {
	t.Helper()
	return appendEvent(t, s, eventstore.LedgerStream(account), "SeatsPurchased")
}

func appendEvent(t *testing.T, s *jetstream.Store, stream eventstore.StreamID, typ string) eventstore.AppendResult {
	t.Helper()
	p := eventstore.Proposed{ID: uuid.New(), Type: typ, Data: []byte(`{"count":3}`)}
	r, err := s.Append(t.Context(), stream, eventstore.Any(), p)
	if err != nil {
		t.Fatal(err)
	}
	js, err := natsjs.New(s.Conn())
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(contract.Subject(stream, typ))
	m.Header.Set("Content-Type", contract.ContentType)
	m.Header.Set(natsjs.MsgIDHeader, p.ID.String())
	m.Data = []byte(`{"specversion":"1.0","id":"` + p.ID.String() + `","source":"urn:licenseledger:account:` + stream.Account + `","type":"t"}`)
	if _, err := js.PublishMsg(t.Context(), m); err != nil && !errors.Is(err, natsjs.ErrNoStreamResponse) {
		t.Fatal(err)
	}
	return r
}

func TestAnonymousClientIsRefused(t *testing.T) {
	a := startAuthServer(t, t.TempDir())
	if _, _, err := a.connect(t, ""); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("anonymous connect: %v, want an authorization violation", err)
	}
	// Neither is a made-up identity.
	other := filepath.Join(t.TempDir(), "other.nk")
	if _, _, err := jetstream.UserSeed(other); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.connect(t, other); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("unknown nkey: %v, want an authorization violation", err)
	}
}

func TestDownstreamSubscribesAndConsumes(t *testing.T) {
	a := startAuthServer(t, t.TempDir())
	nc, _, err := a.connect(t, a.downSeed)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := nc.SubscribeSync("ledger.>")
	if err != nil {
		t.Fatal(err)
	}
	activities, err := nc.SubscribeSync("activity.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	appendSeats(t, a.store, "acme")
	appendEvent(t, a.store, eventstore.ActivityStream("acme"), "ActivityRecorded")
	m, err := plain.NextMsg(5 * time.Second)
	if err != nil || m.Subject != "ledger.acme.SeatsPurchased" {
		t.Fatalf("plain subscription: %v %v", m, err)
	}
	// The mirror republishes what it stores: no reply inbox, no
	// expectation header, and the message id.
	if m.Reply != "" || m.Header.Get(natsjs.MsgIDHeader) == "" || m.Header.Get("Content-Type") != contract.ContentType {
		t.Fatalf("plain subscription got reply %q, headers %v", m.Reply, m.Header)
	}
	for k := range m.Header {
		if strings.HasPrefix(k, "Nats-Expected") || k == jetstream.RevisionHeader || k == jetstream.MetadataHeader {
			t.Errorf("plain subscription got header %s", k)
		}
	}
	if m, err := activities.NextMsg(5 * time.Second); err != nil || m.Subject != "activity.acme.ActivityRecorded" {
		t.Fatalf("activity subscription: %v %v", m, err)
	}
	// The store's own messages never reach downstream subscribers.
	if m, err := plain.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("plain subscription got a second message %s %v", m.Subject, m.Header)
	}

	// A durable consumer on LEDGER, from the first event.
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c, err := js.CreateOrUpdateConsumer(ctx, "LEDGER", natsjs.ConsumerConfig{
		Durable: "billing", AckPolicy: natsjs.AckExplicitPolicy, FilterSubject: "ledger.>",
	})
	if err != nil {
		t.Fatalf("durable consumer: %v", err)
	}
	batch, err := c.Fetch(1, natsjs.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, m.Subject())
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatalf("ack: %v", err)
		}
	}
	if len(got) != 1 || got[0] != "ledger.acme.SeatsPurchased" {
		t.Fatalf("durable consumer got %v", got)
	}
	if info, err := c.Info(ctx); err != nil || info.AckFloor.Stream != 1 {
		t.Fatalf("consumer info after ack: %+v %v", info, err)
	}
	// nats.go's legacy API, bound to the stream (the mirror has no
	// subjects of its own to find it by).
	legacy, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	sub, err := legacy.PullSubscribe("ledger.>", "audit", nats.BindStream("LEDGER"))
	if err != nil {
		t.Fatalf("legacy durable: %v", err)
	}
	if msgs, err := sub.Fetch(1, nats.MaxWait(10*time.Second)); err != nil || len(msgs) != 1 {
		t.Fatalf("legacy fetch: %v %v", msgs, err)
	}
}

func TestDownstreamCannotWrite(t *testing.T) {
	a := startAuthServer(t, t.TempDir())
	ctx := t.Context()
	appendSeats(t, a.store, "victim")
	svc, err := natsjs.New(a.store.Conn())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := svc.CreateKeyValue(ctx, natsjs.KeyValueConfig{Bucket: "LEDGER_TOKENS"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.CreateStream(ctx, natsjs.StreamConfig{Name: "LEDGER_KEYS", Subjects: []string{"keys.*.*"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Publish(ctx, "keys.victim.u1", make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	// The shard streams of the key store, with one key.
	ks, err := keys.Open(ctx, svc, keys.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ks.Close(ctx)
	if err := ks.Put(ctx, "victim.u9", make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	shard, err := ks.StreamOf(ctx, "victim.u9")
	if err != nil {
		t.Fatal(err)
	}
	shardSubj := keys.DefaultSubjectPrefix + "." + strings.TrimPrefix(shard, keys.DefaultStream+"_") + ".victim.u2"

	nc, errs, err := a.connect(t, a.downSeed)
	if err != nil {
		t.Fatal(err)
	}
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Direct publishes.
	for _, subj := range []string{
		"ledger.victim.SeatsPurchased", "activity.victim.ActivityRecorded", "billing.victim.CycleClosed",
		"events.ledger.victim.SeatsPurchased",
		"$KV.LEDGER_TOKENS.hash.forged", "keys.victim.u2", shardSubj,
	} {
		if err := nc.Publish(subj, []byte(`{"count":500}`)); err != nil {
			t.Fatal(err)
		}
		errs.violation(t, subj)
	}
	// JetStream API calls beyond consuming.
	// JetStream API calls beyond consuming: the server refuses them as
	// permission violations (the calls themselves then time out).
	stream := func(ctx context.Context) (natsjs.Stream, error) { return js.Stream(ctx, "LEDGER") }
	denied := []struct {
		subject string
		call    func(ctx context.Context) error
	}{
		{"$JS.API.STREAM.PURGE.LEDGER", func(ctx context.Context) error {
			s, err := stream(ctx)
			if err != nil {
				return err
			}
			return s.Purge(ctx)
		}},
		{"$JS.API.STREAM.DELETE.LEDGER", func(ctx context.Context) error { return js.DeleteStream(ctx, "LEDGER") }},
		{"$JS.API.STREAM.UPDATE.LEDGER", func(ctx context.Context) error {
			_, err := js.UpdateStream(ctx, natsjs.StreamConfig{Name: "LEDGER", Subjects: []string{"ledger.>"}})
			return err
		}},
		{"$JS.API.STREAM.CREATE.FORGED", func(ctx context.Context) error {
			_, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "FORGED", Subjects: []string{"forged.>"}})
			return err
		}},
		{"$JS.API.STREAM.INFO.LEDGER_KEYS", func(ctx context.Context) error { _, err := js.Stream(ctx, "LEDGER_KEYS"); return err }},
		{"$JS.API.STREAM.INFO." + shard, func(ctx context.Context) error { _, err := js.Stream(ctx, shard); return err }},
		{"$JS.API.STREAM.MSG.GET." + shard, func(ctx context.Context) error {
			_, err := js.Conn().Request("$JS.API.STREAM.MSG.GET."+shard, []byte(`{"last_by_subj":"keys.>"}`), 300*time.Millisecond)
			return err
		}},
		{"$JS.API.STREAM.INFO.KV_LEDGER_TOKENS", func(ctx context.Context) error { _, err := js.KeyValue(ctx, "LEDGER_TOKENS"); return err }},
		{"$JS.API.STREAM.MSG.GET.LEDGER", func(ctx context.Context) error {
			s, err := stream(ctx)
			if err != nil {
				return err
			}
			_, err = s.GetMsg(ctx, 1)
			return err
		}},
		{"$JS.API.STREAM.MSG.DELETE.LEDGER", func(ctx context.Context) error {
			s, err := stream(ctx)
			if err != nil {
				return err
			}
			return s.DeleteMsg(ctx, 1)
		}},
	}
	for _, d := range denied {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err := d.call(cctx)
		cancel()
		if err == nil {
			t.Errorf("%s: allowed", d.subject)
		}
		errs.violation(t, d.subject)
	}
	// Making the server write for it: an API answer sent to a ledger
	// subject or into the token bucket, and a push consumer delivering
	// there.
	for _, reply := range []string{"ledger.victim.SeatsPurchased", "$KV.LEDGER_TOKENS.hash.forged", "keys.victim.u3", shardSubj} {
		if err := nc.PublishRequest("$JS.API.INFO", reply, nil); err != nil {
			t.Fatal(err)
		}
	}
	for i, deliver := range []string{"$KV.LEDGER_TOKENS.hash.pushed", "keys.victim.u4", strings.Replace(shardSubj, "u2", "u4", 1)} {
		// Refused or harmless: deliveries stay in the downstream account.
		_, _ = js.CreateOrUpdateConsumer(ctx, "LEDGER", natsjs.ConsumerConfig{
			Durable: "push" + string(rune('a'+i)), DeliverSubject: deliver, AckPolicy: natsjs.AckNonePolicy,
		})
	}
	if _, err := nc.Request("$JS.API.INFO", nil, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // deliveries a wrong setup would make

	// Nothing reached the service's streams.
	st, err := svc.Stream(ctx, "LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := st.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Errorf("service LEDGER holds %+v (%v), want the 1 appended event", info.State, err)
	}
	tokenKeys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for k := range tokenKeys.Keys() {
		t.Errorf("token bucket holds %q", k)
	}
	kst, err := svc.Stream(ctx, "LEDGER_KEYS")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := kst.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Errorf("key stream holds %+v (%v), want 1 key", info.State, err)
	}
	for i := range keys.Shards {
		name := keys.ShardStream(keys.DefaultStream, i)
		st, err := svc.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		want := uint64(0)
		if name == shard {
			want = 1
		}
		if n := st.CachedInfo().State.Msgs; n != want {
			t.Errorf("key shard %s holds %d messages, want %d", name, n, want)
		}
	}
}

func TestUserSeedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "licensed.nk")
	pub, created, err := jetstream.UserSeed(path)
	if err != nil || !created || !strings.HasPrefix(pub, "U") {
		t.Fatalf("first: %q %v %v", pub, created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v, want 0600", fi.Mode(), err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	again, created, err := jetstream.UserSeed(path)
	if err != nil || created || again != pub {
		t.Fatalf("second: %q %v %v, want %q reused", again, created, err, pub)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode after reuse %v, want 0600", fi.Mode())
	}
	bad := filepath.Join(t.TempDir(), "bad.nk")
	if err := os.WriteFile(bad, []byte("not a seed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := jetstream.UserSeed(bad); err == nil {
		t.Fatal("garbage accepted as a seed")
	}
	if _, err := jetstream.CredentialOption(bad); err == nil {
		t.Fatal("garbage accepted as a credential")
	}
}

func TestAccountsConfigRejectsBadKeys(t *testing.T) {
	if _, err := jetstream.AccountsConfig(jetstream.Auth{Service: "nope", Downstream: "UA"}); err == nil {
		t.Fatal("bad keys accepted")
	}
}

// A data directory written by a server without authentication keeps its
// streams when the server starts requiring it: they move to the service's
// account.
func TestAuthKeepsStreamsOfAnUnauthenticatedServer(t *testing.T) {
	dir := t.TempDir()
	old, err := jetstream.Embedded(t.Context(), jetstream.ServerConfig{DataDir: filepath.Join(dir, "nats"), Port: -1}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	want := appendSeats(t, old, "acme")
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	a := startAuthServer(t, dir)
	var n int
	for r, err := range a.store.ReadStream(t.Context(), eventstore.LedgerStream("acme"), 0) {
		if err != nil {
			t.Fatal(err)
		}
		if r.Position != want.Position {
			t.Fatalf("event at %v, want %v", r.Position, want.Position)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d events after enabling authentication, want 1", n)
	}
}

// A data directory of a version whose downstream mirror followed the
// store's stream: EnsureDownstreamMirror replaces that mirror (a mirror's
// source cannot change) with one of the published stream, which then
// holds the published events.
func TestDownstreamMirrorOfTheStoreReplaced(t *testing.T) {
	a := startAuthServer(t, t.TempDir())
	ctx := t.Context()
	djs, err := natsjs.NewWithAPIPrefix(a.store.Conn(), jetstream.DownstreamAPIPrefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := djs.DeleteStream(ctx, jetstream.DownstreamStream); err != nil {
		t.Fatal(err)
	}
	old := jetstream.MirrorConfig(1, false)
	old.Mirror = &natsjs.StreamSource{Name: "LEDGER", External: old.Mirror.External}
	old.RePublish = nil
	if _, err := djs.CreateStream(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := jetstream.EnsureDownstreamMirror(ctx, a.store.Conn(), 1, false); err != nil {
		t.Fatal(err)
	}
	st, err := djs.Stream(ctx, jetstream.DownstreamStream)
	if err != nil {
		t.Fatal(err)
	}
	if m := st.CachedInfo().Config.Mirror; m == nil || m.Name != contract.Stream || len(m.SubjectTransforms) != 3 {
		t.Fatalf("mirror after the update: %+v", m)
	}
	appendSeats(t, a.store, "acme")
	nc, _, err := a.connect(t, a.downSeed)
	if err != nil {
		t.Fatal(err)
	}
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := js.OrderedConsumer(ctx, jetstream.DownstreamStream, natsjs.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Next(natsjs.FetchMaxWait(10 * time.Second))
	if err != nil || m.Subject() != "ledger.acme.SeatsPurchased" {
		t.Fatalf("the replaced mirror's first message: %v %v", m, err)
	}
}
