package systemtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
)

// Two processes on one NATS, the second joining with the first's
// credential: in every round one process records activities for a user
// while the other deactivates or deletes that user. Both acknowledge
// writes, and the stored history holds no activity after its user's
// deactivation or deletion.
func TestTwoProcessesRaceActivitiesAgainstDeactivation(t *testing.T) {
	const (
		accounts         = 5
		roundsPerAccount = 11 // 55 rounds in all
	)
	a := newProc(t, "A", "")
	a.ready()
	creds := filepath.Join(a.dir, "licensed.nk")
	b := newProc(t, "B", "", "--nats-url", a.natsURL, "--nats-creds", creds)
	b.ready()
	op := a.file("operator.token")

	r := &race{op: op, procs: [2]*proc{a, b}}
	var rounds sync.WaitGroup
	for i := range accounts {
		account := fmt.Sprintf("race%d", i)
		a.expect(http.StatusCreated, "POST", "/v1/accounts", op, map[string]any{"id": account, "name": "Race " + account, "seats": 2}, nil)
		rounds.Go(func() {
			for n := range roundsPerAccount {
				if err := r.round(account, n); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	rounds.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d rounds; activities acknowledged by A: %d, by B: %d", accounts*roundsPerAccount, r.ackedBy[0].Load(), r.ackedBy[1].Load())
	if r.ackedBy[0].Load() == 0 || r.ackedBy[1].Load() == 0 {
		t.Fatal("one of the processes acknowledged no activity")
	}
	h := checkInvariants(t, a.natsURL, serviceCreds(a.dir), a, op, nil)
	ackedOnce(t, h, "activity", r.acked, func(e ledger.Event) (string, bool) {
		a, ok := e.(ledger.ActivityRecorded)
		return a.ActivityID, ok
	})
	for _, p := range []*proc{b, a} {
		if err := p.stop(syscall.SIGTERM); err != nil {
			t.Errorf("%s: SIGTERM: exit %v", p.name, err)
		}
	}
}

// race runs the rounds of activities against deactivation and deletion.
type race struct {
	op      string
	procs   [2]*proc
	ackedBy [2]atomic.Int64
	mu      sync.Mutex
	acked   []string // acknowledged activity ids
}

// activitiesInRound is how many activities a round records concurrently.
const activitiesInRound = 16

// round adds a user through one process, then records activities for them
// through it while the other process deactivates (rounds 0 and 1 of
// every 4) or deletes them.
func (r *race) round(account string, n int) error {
	actor, other := n%2, 1-n%2 // the process recording activities; the one ending the user
	var user struct {
		ID string `json:"id"`
	}
	body := map[string]any{"name": fmt.Sprintf("User %d", n), "email": fmt.Sprintf("u%d@%s.test", n, account), "role": "member"}
	if _, err := r.procs[other].try(http.StatusCreated, "POST", "/v1/accounts/"+account+"/users", r.op, body, &user); err != nil {
		return err
	}
	// The recording process knows the user before the race.
	if err := r.firstActivity(r.procs[actor], actor, account, user.ID); err != nil {
		return err
	}

	// The user is ended once the first activities of the round are stored,
	// while the others are in flight.
	start, recorded := make(chan struct{}), make(chan struct{}, activitiesInRound)
	errs := make(chan error, activitiesInRound+1)
	var wg sync.WaitGroup
	for k := range activitiesInRound {
		wg.Go(func() {
			<-start
			body := map[string]any{"user_id": user.ID, "kind": "note", "ref": fmt.Sprintf("%d-%d", n, k)}
			p := r.procs[actor]
			st, _, raw, err := p.do("POST", "/v1/accounts/"+account+"/activities", r.op, body)
			switch {
			case err != nil:
				errs <- fmt.Errorf("%s: record activity: %w", p.name, err)
			case st == http.StatusCreated:
				if err := r.ack(actor, raw); err != nil {
					errs <- err
					return
				}
				recorded <- struct{}{}
			case st < 400 || st >= 500:
				errs <- fmt.Errorf("%s: record activity for a user being ended: %d %s", p.name, st, raw)
			}
		})
	}
	wg.Go(func() {
		<-start
		for range 2 {
			select {
			case <-recorded:
			case <-time.After(10 * time.Second):
			}
		}
		p, path := r.procs[other], "/v1/accounts/"+account+"/users/"+user.ID
		var err error
		if n%4 < 2 {
			_, err = p.try(http.StatusOK, "POST", path+"/deactivate", r.op, nil, nil)
		} else {
			_, err = p.try(http.StatusOK, "DELETE", path+"?confirm="+user.ID, r.op, nil, nil)
		}
		if err != nil {
			errs <- err
		}
	})
	close(start)
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// ack records an acknowledged activity.
func (r *race) ack(by int, raw []byte) error {
	var out struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || out.ID == "" {
		return fmt.Errorf("record activity answered %s", raw)
	}
	r.mu.Lock()
	r.acked = append(r.acked, out.ID)
	r.mu.Unlock()
	r.ackedBy[by].Add(1)
	return nil
}

// firstActivity records an activity for user u through p, retrying while
// p has not seen the user yet (it was added through the other process).
func (r *race) firstActivity(p *proc, by int, account, u string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _, raw, err := p.do("POST", "/v1/accounts/"+account+"/activities", r.op, map[string]any{"user_id": u, "kind": "note", "ref": "first"})
		if err == nil && st == http.StatusCreated {
			return r.ack(by, raw)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: the first activity of a user added through the other process: %d %v %s", p.name, st, err, raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
