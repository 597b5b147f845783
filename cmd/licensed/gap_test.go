package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
)

// Messages an operator removes from the ledger's stream (nats stream rmm:
// garbage, the events of an account, the last message) leave gaps in its
// sequences. The service reads past them: after a restart, from its
// snapshot and from the first event, it turns ready and serves the events
// stored after every gap.
func TestRemovedMessagesLeaveNoHole(t *testing.T) {
	dir := t.TempDir()
	svc := startService(t, dir, io.Discard)
	op := operatorToken(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js, err := natsjs.New(connectAsLicensed(t, svc, dir))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	last := func() uint64 {
		t.Helper()
		m, err := st.GetLastMsgForSubject(ctx, ">")
		if err != nil {
			t.Fatal(err)
		}
		return m.Sequence
	}
	garbage := func() uint64 {
		t.Helper()
		ack, err := js.Publish(ctx, "ledger.acme.SeatsPurchased", []byte("{not json"))
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}

	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 2})
	gone := []uint64{garbage()}
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "gone", "name": "Gone", "seats": 1})
	gone = append(gone, last())
	svc.expect(200, op, "POST", "/v1/accounts/acme/seats", map[string]any{"count": 1})
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "later", "name": "Later", "seats": 5})
	lastEvent := last()
	gone = append(gone, garbage()) // the last message of the stream
	for i, seq := range gone {
		del := st.DeleteMsg
		if i%2 == 1 {
			del = st.SecureDeleteMsg
		}
		if err := del(ctx, seq); err != nil {
			t.Fatalf("remove message %d: %v", seq, err)
		}
	}
	svc.stop()

	check := func(svc *running, later int) {
		t.Helper()
		svc.expect(200, "", "GET", "/readyz", nil)
		if got := svc.expect(200, op, "GET", "/v1/accounts/acme/seats", nil).body; num(t, got, "seats") != 3 {
			t.Fatalf("acme's seats %v, want 3: the purchase after the gap is missing", got)
		}
		if got := svc.expect(200, op, "GET", "/v1/accounts/later/seats", nil).body; num(t, got, "seats") != later {
			t.Fatalf("later's seats %v, want %d", got, later)
		}
	}
	// Without a snapshot the read models fold every event from the first:
	// the removed account is not there, nor the removed garbage to
	// quarantine.
	if err := os.RemoveAll(filepath.Join(dir, "snapshots")); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	again := startService(t, dir, logs)
	// Ready means caught up with the last message left, not with nothing.
	if !strings.Contains(caughtUp(logs.String()), `"position":`+strconv.FormatUint(lastEvent, 10)+`,`) {
		t.Fatalf("the read models were ready before reaching the last event at %d:\n%s", lastEvent, caughtUp(logs.String()))
	}
	check(again, 5)
	// The transparency log held the removed last message as its last
	// leaf: it cannot follow this history and says so on its endpoints,
	// while the ledger goes on.
	for deadline := time.Now().Add(10 * time.Second); ; {
		p := again.expect(503, op, "GET", "/v1/log/checkpoint", nil)
		if strings.Contains(p.raw, "log-unavailable") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log's checkpoint answered %s, want log-unavailable", p.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-again.m.errs:
		t.Fatalf("the service stopped: %v", err)
	default:
	}
	again.expect(404, op, "GET", "/v1/accounts/gone/seats", nil)
	if m := again.expect(200, "", "GET", "/metrics", nil).raw; !strings.Contains(m, "\nledger_quarantined_records_total 0\n") {
		t.Fatalf("quarantined records after a fold without the removed garbage:\n%s", m)
	}
	// The account goes on taking commands after the gaps, and a restart
	// from the snapshot has it.
	again.expect(200, op, "POST", "/v1/accounts/later/seats", map[string]any{"count": 1})
	again.stop()
	third := startService(t, dir, io.Discard)
	defer third.stop()
	check(third, 6)
}

// caughtUp returns the log lines of the read models catching up.
func caughtUp(logs string) string {
	var out []string
	for line := range strings.Lines(logs) {
		if strings.Contains(line, `"msg":"read models caught up"`) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
