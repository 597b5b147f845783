package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// connectAsLicensed connects to the service's embedded NATS server with
// the rights licensed itself has: its nkey seed in the data directory when
// the server requires one, as a client of its own otherwise.
func connectAsLicensed(t *testing.T, svc *running, dataDir string) *nats.Conn {
	t.Helper()
	var opts []nats.Option
	if seed := filepath.Join(dataDir, "licensed.nk"); fileExists(seed) {
		opt, err := nats.NkeyOptionFromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, opt)
	}
	nc, err := nats.Connect(svc.m.NATSURL(), append(opts, nats.Name("ledger-test-publisher"))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func operatorToken(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// A message that is not an event and a forged copy of an event, placed in
// the ledger stream by a client with the service's own rights, are
// quarantined: the service keeps serving correct reads, counts and lists
// them, reports them in the account's verification, keeps taking the
// account's commands, and restarts cleanly, from its snapshot and from the
// first event.
func TestForeignRecordsQuarantined(t *testing.T) {
	dir := t.TempDir()
	logs := &syncBuffer{}
	svc := startService(t, dir, logs)
	op := operatorToken(t, dir)
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "victim", "name": "Victim Ltd", "seats": 2})
	svc.expect(200, op, "POST", "/v1/accounts/victim/seats", map[string]any{"count": 1})
	ada := svc.expect(201, op, "POST", "/v1/accounts/victim/users", map[string]any{"name": "Ada Lovelace", "email": "ada@victim.test", "role": "admin"}).body["id"].(string)
	auditor := svc.expect(201, op, "POST", "/v1/tokens", map[string]any{"role": "auditor"}).body["token"].(string)
	admin := svc.expect(201, op, "POST", "/v1/tokens", map[string]any{"role": "admin", "account": "victim"}).body["token"].(string)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js, err := natsjs.New(connectAsLicensed(t, svc, dir))
	if err != nil {
		t.Fatal(err)
	}
	// The forged copy: the stored purchase with 500 seats, its headers but
	// a message id of its own and no expectation.
	st, err := js.Stream(ctx, "LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	orig, err := st.GetLastMsgForSubject(ctx, "ledger.victim.SeatsPurchased")
	if err != nil {
		t.Fatal(err)
	}
	if orig.Subject != "ledger.victim.SeatsPurchased" || !bytes.Contains(orig.Data, []byte(`"count":1`)) {
		t.Fatalf("the purchase is not where expected: %s %s", orig.Subject, orig.Data)
	}
	ack, err := js.Publish(ctx, "ledger.victim.SeatsPurchased", []byte("{not json"))
	if err != nil {
		t.Fatal(err)
	}
	garbage := ack.Sequence
	forged := nats.NewMsg(orig.Subject)
	forged.Header.Set(jetstream.RevisionHeader, orig.Header.Get(jetstream.RevisionHeader))
	forged.Header.Set("Content-Type", orig.Header.Get("Content-Type"))
	forged.Header.Set(natsjs.MsgIDHeader, uuid.NewString())
	forged.Data = bytes.Replace(orig.Data, []byte(`"count":1`), []byte(`"count":500`), 1)
	if ack, err = js.PublishMsg(ctx, forged); err != nil {
		t.Fatal(err)
	}
	copied := ack.Sequence

	check := func(svc *running, seats int) {
		t.Helper()
		// The read models see both records, whatever the order they are
		// read in: wait (bounded) until they are counted.
		for deadline := time.Now().Add(15 * time.Second); ; {
			if strings.Contains(svc.expect(200, "", "GET", "/metrics", nil).raw, "\nledger_quarantined_records_total 2\n") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("metric never counted the two records:\n%s", svc.expect(200, "", "GET", "/metrics", nil).raw)
			}
			time.Sleep(20 * time.Millisecond)
		}
		svc.expect(200, "", "GET", "/healthz", nil)
		svc.expect(200, "", "GET", "/readyz", nil)
		if got := svc.expect(200, admin, "GET", "/v1/accounts/victim/seats", nil).body; num(t, got, "seats") != seats {
			t.Fatalf("seats %v, want %d: the forged copy must not count", got, seats)
		}
		q := svc.expect(200, op, "GET", "/v1/quarantine", nil)
		recs := list(t, q.body, "records")
		if len(recs) != 2 || num(t, q.body, "total") != 2 {
			t.Fatalf("quarantine lists %s, want the two records", q.raw)
		}
		for i, want := range []uint64{garbage, copied} {
			r := recs[i]
			if uint64(num(t, r, "position")) != want || r["stream"] != "ledger-victim" || r["account"] != "victim" || r["reason"] == "" || r["recorded_at"] == "" {
				t.Fatalf("quarantined record %d: %v, want position %d of ledger-victim", i, r, want)
			}
		}
		if strings.Contains(q.raw, "not json") || strings.Contains(q.raw, `"status":500`) {
			t.Fatalf("the quarantine quotes a record: %s", q.raw)
		}
		page := svc.expect(200, auditor, "GET", "/v1/quarantine?limit=1", nil)
		if recs := list(t, page.body, "records"); len(recs) != 1 || page.body["has_more"] != true {
			t.Fatalf("first page of one: %s", page.raw)
		}
		rest := svc.expect(200, auditor, "GET", "/v1/quarantine?limit=1&cursor="+page.body["next_cursor"].(string), nil)
		if recs := list(t, rest.body, "records"); len(recs) != 1 || uint64(num(t, recs[0], "position")) != copied || rest.body["has_more"] != false {
			t.Fatalf("second page: %s", rest.raw)
		}
		svc.expect(403, admin, "GET", "/v1/quarantine", nil)
		v := svc.expect(200, auditor, "GET", "/v1/accounts/victim/audit/verify", nil)
		if v.body["ok"] != false || len(list(t, v.body, "quarantined")) != 2 {
			t.Fatalf("verification does not report the quarantined records: %s", v.raw)
		}
		// The transparency log holds the foreign records as leaves, in the
		// store's order, and the account's audit bundle names them.
		logHoldsEveryRecord(t, svc, op, dir)
		bundleNamesForeignRecord(t, svc, op, dir, "victim")
	}
	check(svc, 3)
	// The account goes on taking commands, on the state without the copy.
	svc.expect(200, admin, "POST", "/v1/accounts/victim/seats", map[string]any{"count": 1})
	svc.expect(201, admin, "POST", "/v1/accounts/victim/activities", map[string]any{"user_id": ada, "kind": "note", "ref": "r1"})
	check(svc, 4)
	if n := strings.Count(logs.String(), "record quarantined"); n != 2 {
		t.Fatalf("%d quarantine log lines, want one per record:\n%s", n, logs.String())
	}
	for _, secret := range []string{"not json", "Ada Lovelace", "ada@victim.test"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("the service logged %q", secret)
		}
	}
	svc.stop()

	again := startService(t, dir, logs)
	check(again, 4)
	again.expect(200, admin, "POST", "/v1/accounts/victim/seats", map[string]any{"count": 1})
	check(again, 5)
	again.stop()

	// Without a snapshot the fold from the first event quarantines the same
	// records.
	if err := os.RemoveAll(filepath.Join(dir, "snapshots")); err != nil {
		t.Fatal(err)
	}
	third := startService(t, dir, logs)
	defer third.stop()
	check(third, 5)
	if !strings.Contains(logs.String(), "position="+strconv.FormatUint(garbage, 10)) && !strings.Contains(logs.String(), `"position":`+strconv.FormatUint(garbage, 10)) {
		t.Fatalf("no log line names the garbage's position %d", garbage)
	}
}
