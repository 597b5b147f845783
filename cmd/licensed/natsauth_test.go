package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/auth"
)

// The embedded NATS server takes no anonymous client, and the credential
// licensed writes for downstream services can subscribe but place nothing:
// not an event on a ledger subject, not a token record in the token bucket.
// licensed's own seed is kept and reused across restarts; both files are
// readable by their owner only, and the log names their paths, never a
// seed.
func TestEmbeddedNATSRequiresCredentials(t *testing.T) {
	for name, backend := range backends(t) {
		t.Run(name, func(t *testing.T) { embeddedNATSAuth(t, backend(t)) })
	}
}

func embeddedNATSAuth(t *testing.T, store []string) {
	dir := t.TempDir()
	logs := &syncBuffer{}
	svc := startService(t, dir, logs, store...)
	stopped := false
	defer func() {
		if !stopped {
			svc.stop()
		}
	}()
	url := svc.m.NATSURL()
	// Anonymous clients are refused.
	if nc, err := nats.Connect(url, nats.NoReconnect()); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("anonymous client: %v, want an authorization violation", err)
	}
	svcSeed, downSeed := filepath.Join(dir, "licensed.nk"), filepath.Join(dir, "downstream.nk")
	seeds := map[string][]byte{}
	for _, p := range []string{svcSeed, downSeed} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("no credential file: %v", err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v, want 0600", p, fi.Mode().Perm())
		}
		seeds[p], _ = os.ReadFile(p)
	}

	raw, err := os.ReadFile(filepath.Join(dir, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	op := strings.TrimSpace(string(raw))
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 3})

	// The downstream credential subscribes...
	creds, err := nats.NkeyOptionFromSeed(downSeed)
	if err != nil {
		t.Fatal(err)
	}
	var violations []string
	errc := make(chan error, 16)
	nc, err := nats.Connect(url, creds, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errc <- err }))
	if err != nil {
		t.Fatalf("downstream credential: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("ledger.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	svc.expect(200, op, "POST", "/v1/accounts/acme/seats", map[string]any{"count": 1})
	var m *nats.Msg
	for m == nil || m.Subject != "ledger.acme.SeatsPurchased" { // the relay may publish the opening after the subscription
		if m, err = sub.NextMsg(10 * time.Second); err != nil {
			t.Fatalf("downstream subscriber: %v", err)
		}
	}

	// ...but a copy of that purchase published again, and a forged
	// operator token, are refused.
	secret := auth.Prefix + "forgedforgedforgedforgedforgedforgedforged"
	h := auth.HashSecret(secret)
	record, _ := json.Marshal(auth.Token{ID: uuid.NewString(), Hash: h, Role: auth.Operator, CreatedAt: time.Now()})
	for subj, data := range map[string][]byte{
		"ledger.acme.SeatsPurchased":           m.Data,
		"$KV.LEDGER_TOKENS.hash." + h.String(): record,
	} {
		if err := nc.Publish(subj, data); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			violations = append(violations, err.Error())
		case <-time.After(5 * time.Second):
			t.Fatalf("publish on %s: no permissions violation", subj)
		}
	}
	for _, v := range violations {
		if !strings.Contains(v, "Permissions Violation") {
			t.Fatalf("publish refused for another reason: %s", v)
		}
	}
	seats := svc.expect(200, op, "GET", "/v1/accounts/acme/seats", nil).body
	if num(t, seats, "seats") != 4 {
		t.Fatalf("seats %v, want 4", seats)
	}
	svc.expect(401, secret, "GET", "/v1/accounts/acme", nil)

	// The log says where the downstream credential is, and never a seed.
	if !strings.Contains(logs.String(), downSeed) {
		t.Fatalf("the log does not name %s", downSeed)
	}
	for p, seed := range seeds {
		if s := strings.TrimSpace(string(seed)); strings.Contains(logs.String(), s) {
			t.Fatalf("the log holds the seed of %s", p)
		}
	}

	// A restart keeps both identities.
	svc.stop()
	stopped = true
	again := startService(t, dir, logs, store...)
	defer again.stop()
	for p, seed := range seeds {
		if b, _ := os.ReadFile(p); !bytes.Equal(b, seed) {
			t.Fatalf("%s changed across a restart", p)
		}
	}
	nc2, err := nats.Connect(again.m.NATSURL(), creds)
	if err != nil {
		t.Fatalf("downstream credential after a restart: %v", err)
	}
	nc2.Close()
}

// "licensed nats-auth DIR" prepares an external nats-server as
// docker-compose.yml runs it: a server configured with the accounts file it
// writes refuses anonymous clients, takes licensed with --nats-creds, and
// gives downstream services their mirror of the event stream.
func TestNATSAuthCommandConfiguresAnExternalServer(t *testing.T) {
	dir := t.TempDir()
	authDir := filepath.Join(dir, "auth")
	var out bytes.Buffer
	if err := natsAuth([]string{authDir}, &out); err != nil {
		t.Fatal(err)
	}
	seeds := map[string][]byte{}
	for _, f := range []string{"licensed.nk", "downstream.nk"} {
		p := filepath.Join(authDir, f)
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", f, fi, err)
		}
		seeds[p], _ = os.ReadFile(p)
		if strings.Contains(out.String(), strings.TrimSpace(string(seeds[p]))) {
			t.Fatalf("nats-auth printed the seed of %s", f)
		}
	}
	// Run again, with another consumer limit: the seeds stay.
	if err := natsAuth([]string{"--downstream-consumers", "5", authDir}, io.Discard); err != nil {
		t.Fatal(err)
	}
	for p, seed := range seeds {
		if b, _ := os.ReadFile(p); !bytes.Equal(b, seed) {
			t.Fatalf("%s changed on a second run", p)
		}
	}

	// The server's configuration as in docker-compose.yml.
	srv := startNATSWithAccounts(t, dir)
	url := srv.ClientURL()

	if nc, err := nats.Connect(url, nats.NoReconnect()); !errors.Is(err, nats.ErrAuthorization) {
		if nc != nil {
			nc.Close()
		}
		t.Fatalf("anonymous client: %v, want an authorization violation", err)
	}
	svc := startService(t, filepath.Join(dir, "licensed"), io.Discard,
		"--nats-url", url, "--nats-creds", filepath.Join(authDir, "licensed.nk"))
	defer svc.stop()
	raw, err := os.ReadFile(filepath.Join(dir, "licensed", "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	op := strings.TrimSpace(string(raw))
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 3})

	creds, err := nats.NkeyOptionFromSeed(filepath.Join(authDir, "downstream.nk"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, creds)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := natsjs.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	// The downstream account's limits are those accounts.conf sets.
	ai, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if l := ai.Limits; l.MaxConsumers != 5 || l.MaxAckPending != jetstream.DownstreamMaxAckPending || l.MaxMemory != 0 || l.MaxStreams != 1 {
		t.Fatalf("downstream account limits on the external server %+v, want 5 consumers, %d pending acks, no memory, 1 stream", l, jetstream.DownstreamMaxAckPending)
	}
	c, err := js.CreateOrUpdateConsumer(ctx, "LEDGER", natsjs.ConsumerConfig{Durable: "crm", AckPolicy: natsjs.AckExplicitPolicy})
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
	}
	if len(got) != 1 || got[0] != "ledger.acme.AccountOpened" {
		t.Fatalf("durable consumer got %v, want the opening of acme", got)
	}

	// licensed without a credential is turned away.
	cfg, err := ParseConfig([]string{"--data-dir", filepath.Join(dir, "anon"), "--http-addr", "127.0.0.1:0", "--nats-url", url}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, slog.New(slog.DiscardHandler))
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := m.Start(sctx); err == nil {
		m.Close()
		t.Fatal("licensed started on the server without a credential")
	}
	m.Close()
}
