package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cenats "github.com/cloudevents/sdk-go/protocol/nats/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// received is what a downstream service saw of one message.
type received struct {
	subject, msgID, id, typ, subjectAttr, contentType string
	source, dataschema, reply                         string
	header                                            nats.Header
	body                                              string
}

// decode reads a message the way the CloudEvents SDK's NATS binding does
// (structured mode) and checks it against its NATS headers.
func decode(t *testing.T, m *nats.Msg) received {
	t.Helper()
	ev, err := binding.ToEvent(context.Background(), cenats.NewMessage(m))
	if err != nil {
		t.Fatalf("the CloudEvents NATS binding cannot read %s: %v\n%s", m.Subject, err, m.Data)
	}
	if err := ev.Validate(); err != nil {
		t.Fatalf("invalid CloudEvent on %s: %v", m.Subject, err)
	}
	return received{
		subject: m.Subject, msgID: m.Header.Get("Nats-Msg-Id"), id: ev.ID(), typ: ev.Type(),
		subjectAttr: ev.Subject(), contentType: m.Header.Get("Content-Type"),
		source: ev.Source(), dataschema: ev.DataSchema(), reply: m.Reply, header: m.Header,
		body: string(m.Data),
	}
}

// Downstream services see every appended event on its subject: as plain
// NATS subscribers while they are connected, and through a durable
// JetStream consumer that resumes after a disconnect without losing or
// repeating an event.
//
// With EventStoreDB the relay publishes the same messages.
func TestDownstreamSubscribers(t *testing.T) {
	for name, backend := range backends(t) {
		t.Run(name, func(t *testing.T) { downstream(t, backend(t)) })
	}
}

func downstream(t *testing.T, store []string) {
	dir := t.TempDir()
	svc := startService(t, dir, io.Discard, store...)
	defer svc.stop()
	b, _ := os.ReadFile(filepath.Join(dir, "operator.token"))
	op := strings.TrimSpace(string(b))

	// A plain subscriber on its own connection, as a session-revoking
	// service would run it.
	// The subscribe-only credential licensed writes for them.
	creds, err := nats.NkeyOptionFromSeed(filepath.Join(dir, "downstream.nk"))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := nats.Connect(svc.m.NATSURL(), nats.Name("downstream-plain"), creds)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	var mu sync.Mutex
	var live []received
	sub, err := plain.Subscribe("ledger.>", func(m *nats.Msg) {
		r := decode(t, m)
		mu.Lock()
		live = append(live, r)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := plain.Flush(); err != nil {
		t.Fatal(err)
	}

	// A durable consumer on a third connection.
	consume := func(n int) []received {
		t.Helper()
		nc, err := nats.Connect(svc.m.NATSURL(), nats.Name("downstream-durable"), creds)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close() // the disconnect between the two halves
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := js.CreateOrUpdateConsumer(ctx, "LEDGER", jetstream.ConsumerConfig{
			Durable: "billing-sync", AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "ledger.>",
		})
		if err != nil {
			t.Fatal(err)
		}
		var got []received
		for len(got) < n {
			batch, err := c.Fetch(n-len(got), jetstream.FetchMaxWait(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			k := 0
			for m := range batch.Messages() {
				k++
				got = append(got, decode(t, &nats.Msg{Subject: m.Subject(), Data: m.Data(), Header: m.Headers()}))
				if err := m.DoubleAck(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if k == 0 {
				t.Fatalf("durable consumer got %d of %d events", len(got), n)
			}
		}
		// Nothing more is waiting: no event is delivered twice.
		extra, err := c.Fetch(1, jetstream.FetchMaxWait(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		for m := range extra.Messages() {
			t.Fatalf("durable consumer got an extra message on %s", m.Subject())
		}
		return got
	}

	svc.expectWith(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 3}, "Idempotency-Key", "idem-open-acme-4711")
	ada := svc.expect(201, op, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Ada Lovelace", "email": "ada@acme.test", "role": "admin"}).body["id"].(string)
	bob := svc.expect(201, op, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Bob Babbage", "email": "bob@acme.test", "role": "member"}).body["id"].(string)
	first := consume(3)

	svc.expect(200, op, "POST", "/v1/accounts/acme/users/"+bob+"/deactivate", nil)
	svc.expect(200, op, "POST", "/v1/accounts/acme/users/"+bob+"/activate", nil)
	svc.expect(200, op, "DELETE", "/v1/accounts/acme/users/"+bob+"?confirm="+bob, nil)
	second := consume(3)

	all := append(first, second...)
	wantTypes := []string{"AccountOpened", "UserAdded", "UserAdded", "UserDeactivated", "UserActivated", "UserDeleted"}
	v2 := map[string]string{
		"AccountOpened": "dev.licenseledger.account.opened.v2", "UserAdded": "dev.licenseledger.user.added.v2",
		"UserDeactivated": "dev.licenseledger.user.deactivated.v1", "UserActivated": "dev.licenseledger.user.activated.v1",
		"UserDeleted": "dev.licenseledger.user.deleted.v1",
	}
	seen := map[string]bool{}
	for i, r := range all {
		if r.typ != v2[wantTypes[i]] || r.subject != "ledger.acme."+wantTypes[i] {
			t.Fatalf("event %d: type %s on %s, want %s on ledger.acme.%s", i, r.typ, r.subject, v2[wantTypes[i]], wantTypes[i])
		}
		if r.id == "" || r.id != r.msgID || seen[r.id] {
			t.Fatalf("event %d: id %q, Nats-Msg-Id %q (seen before: %v)", i, r.id, r.msgID, seen[r.id])
		}
		seen[r.id] = true
		if r.contentType != "application/cloudevents+json" {
			t.Fatalf("event %d: Content-Type %q", i, r.contentType)
		}
		checkPublished(t, "durable consumer", r)
		if want := "http://" + svc.m.HTTPAddr() + "/schemas/" + r.typ + ".json"; r.dataschema != want {
			t.Fatalf("event %d: dataschema %q, want %q", i, r.dataschema, want)
		}
	}
	if all[1].subjectAttr != ada || all[5].subjectAttr != bob || all[0].subjectAttr != "" {
		t.Fatalf("CloudEvents subject attributes %q, %q and %q, want none and the user ids", all[0].subjectAttr, all[1].subjectAttr, all[5].subjectAttr)
	}
	// The dataschema is served, and the event's data is what it describes.
	sch := svc.expect(200, "", "GET", "/schemas/"+all[0].typ+".json", nil)
	if sch.body["title"] != all[0].typ {
		t.Fatalf("schema served at the dataschema URL has title %v", sch.body["title"])
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(live)
		mu.Unlock()
		if n == len(wantTypes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plain subscriber saw %d events, want %d", n, len(wantTypes))
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range live {
		if live[i].id != all[i].id {
			t.Fatalf("plain subscriber's event %d is %s, the durable consumer's %s", i, live[i].id, all[i].id)
		}
		checkPublished(t, "plain subscriber", live[i])
	}
	// Published messages carry no personal data in plaintext.
	var raw strings.Builder
	for _, r := range live {
		raw.WriteString(r.body)
	}
	if !strings.Contains(raw.String(), "name_sealed") {
		t.Fatal("control: the bodies of the published messages were not captured")
	}
	// Whole names and addresses: a three-letter name such as "Ada" turns up
	// by chance in base64 ciphertext.
	for _, s := range []string{"Ada Lovelace", "Lovelace", "Bob Babbage", "Babbage", "acme.test"} {
		if strings.Contains(raw.String(), s) {
			t.Fatalf("a published message holds %q", s)
		}
	}
}

// checkPublished checks what a downstream service receives against the
// contract: the event's envelope without the client's idempotency key, no
// reply inbox, and of the ledger's headers only Content-Type, Nats-Msg-Id
// and the documented position (a plain subscription also gets the
// headers JetStream adds to republished messages, Nats-Stream and the
// like).
func checkPublished(t *testing.T, who string, r received) {
	t.Helper()
	if r.reply != "" {
		t.Fatalf("%s got a reply subject %q", who, r.reply)
	}
	if !strings.HasPrefix(r.source, "urn:licenseledger:account:acme") {
		t.Fatalf("%s got source %q", who, r.source)
	}
	for _, s := range []string{"idempotencykey", "idem-open-acme-4711", "commandfingerprint"} {
		if strings.Contains(r.body, s) {
			t.Fatalf("%s got %q in %s", who, s, r.body)
		}
	}
	allowed := map[string]bool{
		"Content-Type": true, "Nats-Msg-Id": true, "Ledger-Position": true,
		// JetStream's republish headers.
		"Nats-Stream": true, "Nats-Subject": true, "Nats-Sequence": true, "Nats-Time-Stamp": true, "Nats-Last-Sequence": true,
	}
	for k := range r.header {
		if !allowed[k] {
			t.Fatalf("%s got header %s: %v", who, k, r.header)
		}
	}
}
