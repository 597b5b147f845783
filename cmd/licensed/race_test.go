package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
)

// joinService starts a second licensed process on the NATS server of
// first, with its own data directory: the way every test starts one.
func joinService(t *testing.T, first *running, extra ...string) *running {
	t.Helper()
	args := append([]string{"--nats-url", first.m.NATSURL(),
		"--nats-creds", filepath.Join(first.m.cfg.DataDir, "licensed.nk")}, extra...)
	return startService(t, t.TempDir(), io.Discard, args...)
}

// post sends a JSON POST or DELETE from any goroutine and returns the
// status (no testing.T: it runs off the test's goroutine).
func post(base, token, method, path string, body any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// Two processes on one NATS: one records activities for a user as fast as
// it can while the other deactivates or deletes that user. The stored
// history never holds an activity of a user after their deactivation or
// deletion: the service appends activities on condition that the ledger
// has not moved, a capability of the store that the wiring must not hide.
func TestNoActivityStoredAfterDeactivationAcrossProcesses(t *testing.T) {
	const rounds, concurrent = 50, 30
	a := startService(t, t.TempDir(), io.Discard, "--durability", "interval")
	defer a.stop()
	b := joinService(t, a, "--durability", "interval")
	defer b.stop()

	raw, err := os.ReadFile(filepath.Join(a.m.cfg.DataDir, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	op := strings.TrimSpace(string(raw))
	a.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "race", "name": "Race", "seats": 5})
	admin, _ := a.expect(201, op, "POST", "/v1/tokens", map[string]any{"role": "admin", "account": "race"}).body["token"].(string)

	ended := map[string]string{} // user -> the event that ended them
	var recorded, refused atomic.Int64
	for round := range rounds {
		user := a.expect(201, admin, "POST", "/v1/accounts/race/users",
			map[string]any{"name": fmt.Sprintf("Racer %d", round), "email": fmt.Sprintf("racer%d@race.test", round), "role": "member"}).body["id"].(string)
		// b records one activity first, so that it knows the user is
		// active; the others race the deactivation or deletion.
		b.expect(201, admin, "POST", "/v1/accounts/race/activities", map[string]any{"user_id": user, "kind": "note", "ref": "first"})
		var wg sync.WaitGroup
		errs := make(chan error, concurrent)
		started := make(chan struct{})
		for i := range concurrent {
			wg.Go(func() {
				if i == concurrent/3 {
					close(started)
				}
				st, err := post(b.base, admin, "POST", "/v1/accounts/race/activities", map[string]any{"user_id": user, "kind": "note", "ref": fmt.Sprint(i)})
				switch {
				case err != nil:
					errs <- err
				case st == 201:
					recorded.Add(1)
				case st == 409 || st == 410 || st == 404:
					refused.Add(1)
				case st != 409 && st != 410 && st != 404 && st != 503:
					errs <- fmt.Errorf("activity answered %d", st)
				}
			})
		}
		<-started
		if round%2 == 0 {
			ended[user] = "UserDeactivated"
			a.expect(200, admin, "POST", "/v1/accounts/race/users/"+user+"/deactivate", nil)
		} else {
			ended[user] = "UserDeleted"
			a.expect(200, admin, "DELETE", "/v1/accounts/race/users/"+user+"?confirm="+user, nil)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
	// The race was run only if some activities were stored and others
	// refused because the user had ended meanwhile.
	t.Logf("%d activities recorded, %d refused, in %d rounds", recorded.Load(), refused.Load(), rounds)
	if recorded.Load() == 0 || refused.Load() == 0 {
		t.Fatalf("control: %d activities recorded and %d refused in %d rounds, the race was not run", recorded.Load(), refused.Load(), rounds)
	}

	// The stored history: the position of each user's end, then every
	// activity's position.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	endedAt := map[string]eventstore.Position{}
	for d := range decodedStream(t, ctx, a, eventstore.LedgerStream("race")) {
		switch e := d.Event.(type) {
		case ledger.UserDeactivated:
			endedAt[e.UserID] = d.Record.Position
		case ledger.UserDeleted:
			endedAt[e.UserID] = d.Record.Position
		}
	}
	if len(endedAt) != rounds {
		t.Fatalf("the ledger holds the end of %d users, want %d", len(endedAt), rounds)
	}
	late := 0
	for d := range decodedStream(t, ctx, a, eventstore.ActivityStream("race")) {
		e, ok := d.Event.(ledger.ActivityRecorded)
		if !ok {
			continue
		}
		if at, ok := endedAt[e.UserID]; ok && d.Record.Position > at {
			late++
			t.Errorf("activity at position %d by user %s, stored after their %s at %d", d.Record.Position, e.UserID, ended[e.UserID], at)
		}
	}
	if late > 0 {
		t.Fatalf("%d activities stored after their user's deactivation or deletion", late)
	}
}

// decodedStream reads one stream as stored and decodes it with the
// service's codec.
func decodedStream(t *testing.T, ctx context.Context, svc *running, stream eventstore.StreamID) iter.Seq[codec.Decoded] {
	t.Helper()
	return func(yield func(codec.Decoded) bool) {
		for rec, err := range svc.m.store.ReadStream(ctx, stream, 0) {
			if err != nil && !errors.Is(err, eventstore.ErrStreamNotFound) {
				t.Fatalf("read %s: %v", stream, err)
			}
			if err != nil {
				return
			}
			d, err := svc.m.codec.Decode(ctx, rec)
			if err != nil {
				t.Fatalf("decode %s at %d: %v", stream, rec.Position, err)
			}
			if !yield(d) {
				return
			}
		}
	}
}
