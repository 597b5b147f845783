package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
)

// A restart, clean (SIGTERM) or a crash (SIGKILL), while writers add
// users, record activities and deactivate users: from the moment the
// restarted process answers, every read is either 503 with Retry-After or
// complete and correct (never a 404 for an existing account nor a partial
// user list), and once it is ready every acknowledged write is stored
// exactly once.
func TestRestartUnderLoad(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(strings.ToUpper(sig.String()), func(t *testing.T) { restartUnderLoad(t, sig) })
	}
}

// Sizes of the load: enough history that catching up after a restart takes
// a while, small enough for a few seconds of CI.
const (
	loadAccounts     = 4
	loadWriters      = 8
	usersPerWriter   = 120
	writesBeforeStop = 1500
)

// ledgerState is what writers know of the accounts: the writes that were
// acknowledged, and those whose outcome is unknown (no answer, or a 5xx).
type ledgerState struct {
	mu sync.Mutex
	// users by id: account and status as acknowledged.
	users map[string]*knownUser
	// unknownAdds counts adds per account without an answer.
	unknownAdds map[string]int
	activities  []string // acknowledged activity ids
	deactivated []string // acknowledged deactivations' user ids
	acked       atomic.Int64
}

type knownUser struct {
	account string
	status  ledger.Status
	// maybeDeactivated: a deactivation was sent but not acknowledged.
	maybeDeactivated bool
}

func newLedgerState() *ledgerState {
	return &ledgerState{users: map[string]*knownUser{}, unknownAdds: map[string]int{}}
}

// writer runs one client's writes on account until ctx ends: it adds its
// own users, records activities for those active and deactivates some.
func (l *ledgerState) writer(ctx context.Context, t *testing.T, p *proc, op, account string, w int) {
	rng := rand.New(rand.NewPCG(uint64(w), 7))
	var mine []string // this writer's users, active as far as it knows
	added := 0
	for n := 0; ctx.Err() == nil; n++ {
		switch r := rng.IntN(100); {
		case added < usersPerWriter && (len(mine) < 3 || r < 35):
			added++
			body := map[string]any{"name": fmt.Sprintf("User %d %d", w, n), "email": fmt.Sprintf("u%d-%d@load.test", w, n), "role": "member"}
			st, _, raw, err := p.do("POST", "/v1/accounts/"+account+"/users", op, body)
			if !l.answered(t, "add user", st, raw, err) {
				l.mu.Lock()
				l.unknownAdds[account]++
				l.mu.Unlock()
				continue
			}
			var out struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(raw, &out); err != nil || out.ID == "" {
				t.Errorf("add user answered %s", raw)
				return
			}
			l.mu.Lock()
			l.users[out.ID] = &knownUser{account: account, status: ledger.StatusActive}
			l.mu.Unlock()
			mine = append(mine, out.ID)
		case len(mine) > 0 && (r < 90 || added >= usersPerWriter && r < 97):
			u := mine[rng.IntN(len(mine))]
			body := map[string]any{"user_id": u, "kind": "note", "ref": fmt.Sprintf("r%d", n)}
			st, _, raw, err := p.do("POST", "/v1/accounts/"+account+"/activities", op, body)
			if !l.answered(t, "record activity", st, raw, err) {
				continue
			}
			var out struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(raw, &out); err != nil || out.ID == "" {
				t.Errorf("record activity answered %s", raw)
				return
			}
			l.mu.Lock()
			l.activities = append(l.activities, out.ID)
			l.mu.Unlock()
		case len(mine) > 0:
			i := rng.IntN(len(mine))
			u := mine[i]
			mine = append(mine[:i], mine[i+1:]...)
			l.mu.Lock()
			l.users[u].maybeDeactivated = true
			l.mu.Unlock()
			st, _, raw, err := p.do("POST", "/v1/accounts/"+account+"/users/"+u+"/deactivate", op, nil)
			if !l.answered(t, "deactivate", st, raw, err) {
				continue
			}
			l.mu.Lock()
			l.users[u].status, l.users[u].maybeDeactivated = ledger.StatusDeactivated, false
			l.deactivated = append(l.deactivated, u)
			l.mu.Unlock()
		default:
			return // every user added and deactivated
		}
	}
}

// answered reports whether a write was acknowledged; a refusal (4xx) is
// a failure of the test, no answer or a 5xx an unknown outcome.
func (l *ledgerState) answered(t *testing.T, what string, st int, raw []byte, err error) bool {
	switch {
	case err != nil || st >= 500:
		return false
	case st >= 300:
		t.Errorf("%s: %d %s", what, st, raw)
		return false
	}
	l.acked.Add(1)
	return true
}

// checkUsers compares a user list of account with the acknowledged writes;
// it returns what is wrong.
func (l *ledgerState) checkUsers(account string, list []user) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var bad []string
	seen := map[string]int{}
	for _, u := range list {
		seen[u.ID]++
		k, ok := l.users[u.ID]
		switch {
		case seen[u.ID] > 1:
			bad = append(bad, fmt.Sprintf("%s: user %s listed twice", account, u.ID))
		case ok && k.account != account:
			bad = append(bad, fmt.Sprintf("%s: user %s of %s listed", account, u.ID, k.account))
		case ok && string(k.status) != u.Status && !k.maybeDeactivated:
			bad = append(bad, fmt.Sprintf("%s: user %s is %s, acknowledged %s", account, u.ID, u.Status, k.status))
		}
	}
	want, missing := 0, 0
	for id, k := range l.users {
		if k.account != account {
			continue
		}
		want++
		if seen[id] == 0 {
			missing++
		}
	}
	if missing > 0 {
		bad = append(bad, fmt.Sprintf("%s: %d of %d acknowledged users missing from a list of %d", account, missing, want, len(list)))
	}
	if extra := len(list) - want; extra > l.unknownAdds[account] {
		bad = append(bad, fmt.Sprintf("%s: %d users listed beyond the %d acknowledged and %d unanswered adds", account, len(list), want, l.unknownAdds[account]))
	}
	return bad
}

// poll reads an account and its users until stop is closed, checking that
// every answer is 503 with Retry-After or complete and correct. It counts
// each full round in rounds.
func (l *ledgerState) poll(p *proc, op string, accounts []string, stop <-chan struct{}, rounds *atomic.Int64, report func(string), answers *sync.Map) {
	for {
		for _, a := range accounts {
			select {
			case <-stop:
				return
			default:
			}
			st, h, raw, err := p.do("GET", "/v1/accounts/"+a, op, nil)
			kind := classify(st, err)
			answers.Store(kind, counter(answers, kind)+1)
			switch {
			case err != nil:
				time.Sleep(time.Millisecond) // not answering yet
				continue
			case st == http.StatusServiceUnavailable:
				if h.Get("Retry-After") == "" || h.Get("Content-Type") != "application/problem+json" {
					report(fmt.Sprintf("GET %s: 503 without Retry-After or as %q: %s", a, h.Get("Content-Type"), raw))
				}
				continue
			case st != http.StatusOK:
				report(fmt.Sprintf("GET %s: %d %s", a, st, raw))
				continue
			}
			list, st, h, raw, err := p.users(a, op)
			switch {
			case err != nil:
			case st == http.StatusServiceUnavailable:
				if h.Get("Retry-After") == "" || h.Get("Content-Type") != "application/problem+json" {
					report(fmt.Sprintf("GET %s/users: 503 without Retry-After or as %q: %s", a, h.Get("Content-Type"), raw))
				}
			case st != http.StatusOK:
				report(fmt.Sprintf("GET %s/users: %d %s", a, st, raw))
			default:
				for _, b := range l.checkUsers(a, list) {
					report("GET users: " + b)
				}
			}
		}
		rounds.Add(1)
	}
}

func classify(st int, err error) string {
	if err != nil {
		return "no answer"
	}
	return fmt.Sprint(st)
}

func counter(m *sync.Map, k string) int {
	v, _ := m.Load(k)
	n, _ := v.(int)
	return n
}

func restartUnderLoad(t *testing.T, sig syscall.Signal) {
	p := newProc(t, "licensed", "")
	p.ready()
	op := p.file("operator.token")
	var accounts []string
	for i := range loadAccounts {
		a := fmt.Sprintf("acct%d", i)
		accounts = append(accounts, a)
		p.expect(http.StatusCreated, "POST", "/v1/accounts", op, map[string]any{"id": a, "name": "Account " + a, "seats": 1000}, nil)
	}

	l := newLedgerState()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var writers sync.WaitGroup
	for w := range loadWriters {
		writers.Go(func() { l.writer(ctx, t, p, op, accounts[w%len(accounts)], w) })
	}
	writing := make(chan struct{})
	go func() { writers.Wait(); close(writing) }()
	for l.acked.Load() < writesBeforeStop && !t.Failed() && p.running() {
		select {
		case <-writing:
			t.Fatalf("the writers stopped after %d acknowledged writes", l.acked.Load())
		default:
		}
		waitABit()
	}
	// Stop (or crash) the service while the writers keep writing.
	err := p.stop(sig)
	cancel()
	writers.Wait()
	if sig == syscall.SIGTERM && err != nil {
		t.Fatalf("SIGTERM: exit %v", err)
	}
	if t.Failed() {
		return
	}
	t.Logf("%d writes acknowledged (%d users, %d activities, %d deactivations) before %v",
		l.acked.Load(), len(l.users), len(l.activities), len(l.deactivated), sig)

	// Restart and read from the moment the port answers.
	var (
		mu      sync.Mutex
		bad     []string
		rounds  atomic.Int64
		answers sync.Map
	)
	report := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		bad = append(bad, s)
	}
	stop := make(chan struct{})
	var pollers sync.WaitGroup
	stopPolling := sync.OnceFunc(func() { close(stop); pollers.Wait() })
	defer stopPolling()
	const nPollers = 3
	p.start()
	for range nPollers {
		pollers.Go(func() { l.poll(p, op, accounts, stop, &rounds, report, &answers) })
	}
	p.ready()
	// Every poller reads every account once more after the service said
	// it is ready.
	for start := rounds.Load(); rounds.Load() < start+2*nPollers && p.running(); {
		waitABit()
	}
	stopPolling()
	var seen []string
	answers.Range(func(k, v any) bool { seen = append(seen, fmt.Sprintf("%v: %v", k, v)); return true })
	t.Logf("answers to GET /v1/accounts/{a} while restarting: %s", strings.Join(seen, ", "))
	for i, b := range bad {
		if i == 10 {
			t.Errorf("... %d stale or wrong reads in all", len(bad))
			break
		}
		t.Error(b)
	}

	// Every acknowledged write is stored, once.
	for _, a := range accounts {
		list, st, _, raw, err := p.users(a, op)
		if err != nil || st != http.StatusOK {
			t.Fatalf("users of %s: %d %v %s", a, st, err, raw)
		}
		for _, b := range l.checkUsers(a, list) {
			t.Error(b)
		}
	}
	h := checkInvariants(t, p.natsURL, serviceCreds(p.dir), p, op, nil)
	var users []string
	for id := range l.users {
		users = append(users, id)
	}
	ackedOnce(t, h, "user", users, func(e ledger.Event) (string, bool) {
		u, ok := e.(ledger.UserAdded)
		return u.UserID, ok
	})
	ackedOnce(t, h, "activity", l.activities, func(e ledger.Event) (string, bool) {
		a, ok := e.(ledger.ActivityRecorded)
		return a.ActivityID, ok
	})
	ackedOnce(t, h, "deactivation", l.deactivated, func(e ledger.Event) (string, bool) {
		d, ok := e.(ledger.UserDeactivated)
		return d.UserID, ok
	})
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM after the restart: exit %v", err)
	}
}
