package systemtest

import (
	"encoding/json"
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
		accounts          = 5
		roundsPerAccount  = 11 // 55 rounds in all
		activitiesInRound = 16
	)
	a := newProc(t, "A", "")
	a.ready()
	creds := filepath.Join(a.dir, "licensed.nk")
	b := newProc(t, "B", "", "--nats-url", a.natsURL, "--nats-creds", creds)
	b.ready()
	op := a.file("operator.token")

	var acked []string
	var ackedBy [2]atomic.Int64
	var mu sync.Mutex
	var rounds sync.WaitGroup
	for i := range accounts {
		account := fmt.Sprintf("race%d", i)
		a.expect(http.StatusCreated, "POST", "/v1/accounts", op, map[string]any{"id": account, "name": "Race " + account, "seats": 2}, nil)
		rounds.Go(func() {
			for r := range roundsPerAccount {
				procs := [2]*proc{a, b}
				actor, other := r%2, 1-r%2 // who records the activities; the other ends the user
				var out struct {
					ID string `json:"id"`
				}
				body := map[string]any{"name": fmt.Sprintf("User %d", r), "email": fmt.Sprintf("u%d@%s.test", r, account), "role": "member"}
				procs[other].expect(http.StatusCreated, "POST", "/v1/accounts/"+account+"/users", op, body, &out)
				u := out.ID
				// The recording process knows the user before the race.
				first := recordUntilKnown(t, procs[actor], op, account, u)
				mu.Lock()
				acked = append(acked, first)
				mu.Unlock()
				ackedBy[actor].Add(1)

				// The user is ended once the first activities of the round
				// are stored, while the others are in flight.
				start, recorded := make(chan struct{}), make(chan struct{}, activitiesInRound)
				var race sync.WaitGroup
				for k := range activitiesInRound {
					race.Go(func() {
						<-start
						body := map[string]any{"user_id": u, "kind": "note", "ref": fmt.Sprintf("%d-%d", r, k)}
						st, _, raw, err := procs[actor].do("POST", "/v1/accounts/"+account+"/activities", op, body)
						switch {
						case err != nil:
							t.Errorf("%s: record activity: %v", procs[actor].name, err)
						case st == http.StatusCreated:
							var out struct {
								ID string `json:"id"`
							}
							if err := json.Unmarshal(raw, &out); err != nil || out.ID == "" {
								t.Errorf("record activity answered %s", raw)
								return
							}
							mu.Lock()
							acked = append(acked, out.ID)
							mu.Unlock()
							ackedBy[actor].Add(1)
							recorded <- struct{}{}
						case st < 400 || st >= 500:
							t.Errorf("%s: record activity for a user being ended: %d %s", procs[actor].name, st, raw)
						}
					})
				}
				race.Go(func() {
					<-start
					for range 2 {
						select {
						case <-recorded:
						case <-time.After(10 * time.Second):
						}
					}
					if r%4 < 2 {
						procs[other].expect(http.StatusOK, "POST", "/v1/accounts/"+account+"/users/"+u+"/deactivate", op, nil, nil)
					} else {
						procs[other].expect(http.StatusOK, "DELETE", "/v1/accounts/"+account+"/users/"+u+"?confirm="+u, op, nil, nil)
					}
				})
				close(start)
				race.Wait()
				if t.Failed() {
					return
				}
			}
		})
	}
	rounds.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d rounds; activities acknowledged by A: %d, by B: %d", accounts*roundsPerAccount, ackedBy[0].Load(), ackedBy[1].Load())
	if ackedBy[0].Load() == 0 || ackedBy[1].Load() == 0 {
		t.Fatal("one of the processes acknowledged no activity")
	}
	h := checkInvariants(t, a.natsURL, serviceCreds(a.dir), a, op, nil)
	ackedOnce(t, h, "activity", acked, func(e ledger.Event) (string, bool) {
		a, ok := e.(ledger.ActivityRecorded)
		return a.ActivityID, ok
	})
	for _, p := range []*proc{b, a} {
		if err := p.stop(syscall.SIGTERM); err != nil {
			t.Errorf("%s: SIGTERM: exit %v", p.name, err)
		}
	}
}

// recordUntilKnown records an activity for user u through p, retrying
// while p has not seen the user yet (it was added through the other
// process); it returns the activity's id.
func recordUntilKnown(t *testing.T, p *proc, op, account, u string) string {
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _, raw, err := p.do("POST", "/v1/accounts/"+account+"/activities", op, map[string]any{"user_id": u, "kind": "note", "ref": "first"})
		if err == nil && st == http.StatusCreated {
			var out struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(raw, &out); err != nil || out.ID == "" {
				t.Fatalf("record activity answered %s", raw)
			}
			return out.ID
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the first activity of a user added through the other process: %d %v %s", p.name, st, err, raw)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
