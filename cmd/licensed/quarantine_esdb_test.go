package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/esdbtest"
)

// With EventStoreDB, records another client writes into the ledger's
// streams (garbage in an account's ledger stream, a forged copy of its
// purchase with 500 seats, and a copy of its opening in a ledger stream
// without an account) are quarantined by the read models and skipped by
// the relay: the service keeps serving correct seats, the account keeps
// taking commands, no foreign record reaches NATS, nothing stops, and the
// service restarts cleanly, from its snapshot and from the first event.
func TestForeignRecordsQuarantinedESDB(t *testing.T) {
	esrv, err := esdbtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(esrv.Close)
	dir := t.TempDir()
	logs := &syncBuffer{}
	svc := startService(t, dir, logs, "--store", esrv.ConnectionString())
	op := operatorToken(t, dir)
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "victim", "name": "Victim Ltd", "seats": 2})
	svc.expect(200, op, "POST", "/v1/accounts/victim/seats", map[string]any{"count": 1})
	ada := svc.expect(201, op, "POST", "/v1/accounts/victim/users", map[string]any{"name": "Ada Lovelace", "email": "ada@victim.test", "role": "admin"}).body["id"].(string)
	admin := svc.expect(201, op, "POST", "/v1/tokens", map[string]any{"role": "admin", "account": "victim"}).body["token"].(string)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conf, err := client.ParseConnectionString(esrv.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	conf.Logger = client.NoopLogging()
	raw, err := client.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var opened, purchase eventstore.Record
	for rec, err := range svc.m.store.ReadStream(ctx, eventstore.LedgerStream("victim"), 0) {
		if err != nil {
			t.Fatal(err)
		}
		switch rec.Type {
		case "AccountOpened":
			opened = rec
		case "SeatsPurchased":
			purchase = rec
		}
	}
	if !strings.Contains(string(purchase.Data), `"count":1`) || opened.Type == "" {
		t.Fatalf("the purchase is not where expected: %s", purchase.Data)
	}
	foreign := map[string]bool{}
	write := func(stream, typ string, ct client.ContentType, data, meta []byte) {
		t.Helper()
		id := uuid.New()
		foreign[id.String()] = true
		ev := client.EventData{EventID: id, EventType: typ, ContentType: ct, Data: data, Metadata: meta}
		if _, err := raw.AppendToStream(ctx, stream, client.AppendToStreamOptions{ExpectedRevision: client.Any{}}, ev); err != nil {
			t.Fatal(err)
		}
	}
	write("ledger-victim", "SeatsPurchased", client.ContentTypeBinary, []byte("{not json"), []byte("not json"))
	write("ledger-victim", purchase.Type, client.ContentTypeJson, []byte(strings.Replace(string(purchase.Data), `"count":1`, `"count":500`, 1)), purchase.Metadata)
	write("ledger-", opened.Type, client.ContentTypeJson, opened.Data, opened.Metadata)

	check := func(svc *running, seats int) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; {
			if strings.Contains(svc.expect(200, "", "GET", "/metrics", nil).raw, "\nledger_quarantined_records_total 3\n") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("metric never counted the three records:\n%s", svc.expect(200, "", "GET", "/metrics", nil).raw)
			}
			time.Sleep(20 * time.Millisecond)
		}
		svc.expect(200, "", "GET", "/readyz", nil)
		if got := svc.expect(200, admin, "GET", "/v1/accounts/victim/seats", nil).body; num(t, got, "seats") != seats {
			t.Fatalf("seats %v, want %d: the forged copies must not count", got, seats)
		}
		if q := svc.expect(200, op, "GET", "/v1/quarantine", nil); len(list(t, q.body, "records")) != 3 {
			t.Fatalf("quarantine lists %s, want the three records", q.raw)
		}
		// The relay publishes every event and none of the foreign records.
		var last eventstore.Position
		for rec, err := range svc.m.store.ReadAll(ctx, 0) {
			if err == nil {
				last = rec.Position
			}
		}
		for deadline := time.Now().Add(15 * time.Second); svc.m.backend.relay.Status().Relayed < last; {
			if time.Now().After(deadline) {
				t.Fatalf("the relay stands at %+v, the store at %d", svc.m.backend.relay.Status(), last)
			}
			time.Sleep(20 * time.Millisecond)
		}
		js, err := natsjs.New(connectAsLicensed(t, svc, dir))
		if err != nil {
			t.Fatal(err)
		}
		st, err := js.Stream(ctx, contract.Stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				t.Fatal(err)
			}
			if foreign[m.Header.Get(natsjs.MsgIDHeader)] {
				t.Fatalf("a foreign record was published as message %d on %s", seq, m.Subject)
			}
		}
		select {
		case err := <-svc.m.errs:
			t.Fatalf("a part of the service stopped: %v", err)
		default:
		}
		// The transparency log holds the foreign records as leaves, in the
		// store's order, and the account's audit bundle names them.
		logHoldsEveryRecord(t, svc, op, dir)
		bundleNamesForeignRecord(t, svc, op, dir, "victim")
	}
	check(svc, 3)
	// The account goes on taking commands, on the state without the copies.
	svc.expect(200, admin, "POST", "/v1/accounts/victim/seats", map[string]any{"count": 1})
	svc.expect(201, admin, "POST", "/v1/accounts/victim/activities", map[string]any{"user_id": ada, "kind": "note", "ref": "r1"})
	check(svc, 4)
	if !strings.Contains(svc.expect(200, "", "GET", "/metrics", nil).raw, "\nledger_relay_skipped_records_total 3\n") {
		t.Fatalf("the metric does not count the three records the relay skipped")
	}
	if n := strings.Count(logs.String(), "record skipped, not relayed"); n != 3 {
		t.Fatalf("%d relay log lines for skipped records, want one per record", n)
	}
	for _, secret := range []string{"not json", "Ada Lovelace", "ada@victim.test"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("the service logged %q", secret)
		}
	}
	svc.stop()

	again := startService(t, dir, logs, "--store", esrv.ConnectionString())
	check(again, 4)
	again.expect(200, admin, "POST", "/v1/accounts/victim/seats", map[string]any{"count": 1})
	check(again, 5)
	again.stop()

	if err := os.RemoveAll(filepath.Join(dir, "snapshots")); err != nil {
		t.Fatal(err)
	}
	third := startService(t, dir, logs, "--store", esrv.ConnectionString())
	defer third.stop()
	check(third, 5)
}
