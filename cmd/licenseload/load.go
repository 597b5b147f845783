package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// user is a client's knowledge of one user; deleted users are dropped.
type user struct {
	id     string
	active bool
}

// account is a client's exact model of one account it alone drives.
type account struct {
	id     string
	seats  int
	active int
	users  []user // users[0] is the admin, never deactivated or deleted
	emails int    // emails drawn so far; each is new
}

// target is the service under load.
type target struct {
	base   string // e.g. http://127.0.0.1:8080
	auth   string // Authorization header value
	client *http.Client
}

// newTarget checks that base is a loopback URL and returns a target with a
// keep-alive client holding an idle connection for every client.
func newTarget(base, token string, clients int) (*target, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("url %q: %w", base, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("url %q: only http:// is supported", base)
	}
	if err := checkLoopback(u.Hostname()); err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        clients * 2,
		MaxIdleConnsPerHost: clients * 2,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &target{
		base:   u.Scheme + "://" + u.Host,
		auth:   "Bearer " + token,
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
	}, nil
}

// checkLoopback refuses hosts that are not loopback addresses.
func checkLoopback(host string) error {
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("host %q: traffic goes to loopback addresses only (127.0.0.1, ::1, localhost)", host)
	}
	return nil
}

// call sends one request and reads the whole answer, so the connection
// goes back to the pool.
func (t *target) call(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", t.auth)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, b, nil
}

// outcome is how a command ended.
type outcome int

const (
	outOK      outcome = iota // 2xx
	outRefused                // an expected refusal: 409, 410, 412, 428
	outError                  // any other status, or no answer
)

func classify(status int, err error) outcome {
	switch {
	case err != nil:
		return outError
	case status >= 200 && status < 300:
		return outOK
	case status == http.StatusConflict, status == http.StatusGone,
		status == http.StatusPreconditionFailed, status == http.StatusPreconditionRequired:
		return outRefused
	}
	return outError
}

// tally is what one client measured in one phase.
type tally struct {
	lat      [numKinds][]time.Duration
	status   map[int]int
	refused  [numKinds]int
	errors   int
	errFirst []string
}

func newTally() *tally { return &tally{status: make(map[int]int)} }

func (t *tally) record(k kind, d time.Duration, status int, err error) outcome {
	o := classify(status, err)
	t.lat[k] = append(t.lat[k], d)
	t.status[status]++
	switch o {
	case outRefused:
		t.refused[k]++
	case outError:
		t.errors++
		if len(t.errFirst) < 5 {
			if err != nil {
				t.errFirst = append(t.errFirst, fmt.Sprintf("%s: %v", k, err))
			} else {
				t.errFirst = append(t.errFirst, fmt.Sprintf("%s: status %d", k, status))
			}
		}
	}
	return o
}

// client drives its share of the accounts, one command at a time.
type client struct {
	t     *target
	rnd   *rand.Rand
	mix   mix
	accts []*account
	seq   int // ids of this client's activities and refs
}

// warmUp opens the client's accounts and adds their first users.
func (c *client) warmUp(ctx context.Context, users, seats int) error {
	for _, a := range c.accts {
		body, _ := json.Marshal(map[string]any{"id": a.id, "name": "Load " + a.id, "seats": seats})
		st, b, err := c.t.call(ctx, http.MethodPost, "/v1/accounts", body)
		if err != nil {
			return fmt.Errorf("open %s: %w", a.id, err)
		}
		if st != http.StatusCreated {
			return fmt.Errorf("open %s: status %d: %s", a.id, st, b)
		}
		a.seats = seats
		for i := range users {
			role := "member"
			if i == 0 {
				role = "admin"
			}
			st, err := c.add(ctx, a, role)
			if err != nil {
				return fmt.Errorf("add user to %s: %w", a.id, err)
			}
			if st != http.StatusCreated && st != http.StatusConflict {
				return fmt.Errorf("add user to %s: status %d", a.id, st)
			}
		}
		if len(a.users) == 0 {
			return fmt.Errorf("account %s has no admin: give it at least one seat", a.id)
		}
	}
	return nil
}

// add adds a user with a new email and, when it is created, models it.
func (c *client) add(ctx context.Context, a *account, role string) (int, error) {
	a.emails++
	body, _ := json.Marshal(map[string]string{
		"name": "User " + strconv.Itoa(a.emails), "email": "u" + strconv.Itoa(a.emails) + "@" + a.id + ".test", "role": role,
	})
	st, b, err := c.t.call(ctx, http.MethodPost, "/v1/accounts/"+a.id+"/users", body)
	if err != nil || st != http.StatusCreated {
		return st, err
	}
	var created struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(b, &created); err != nil || created.ID == "" {
		return st, fmt.Errorf("add user answered %q: %w", b, errors.Join(err, errors.New("no user id")))
	}
	a.users = append(a.users, user{id: created.ID, active: true})
	a.active++
	return st, nil
}

// pickUser returns the index of a random user other than the admin for
// which ok holds, or -1.
func (c *client) pickUser(a *account, ok func(user) bool) int {
	n := len(a.users) - 1
	if n <= 0 {
		return -1
	}
	start := c.rnd.IntN(n)
	for i := range n {
		j := 1 + (start+i)%n
		if ok(a.users[j]) {
			return j
		}
	}
	return -1
}

// step sends one command drawn from the mix to a random account of the
// client and updates the model from the answer.
func (c *client) step(ctx context.Context, tl *tally) {
	a := c.accts[c.rnd.IntN(len(c.accts))]
	k := c.mix.pick(c.rnd.IntN(c.mix.total))
	var j int
	switch k {
	case kindDeactivate:
		j = c.pickUser(a, func(u user) bool { return u.active })
	case kindActivate:
		j = c.pickUser(a, func(u user) bool { return !u.active })
	case kindDelete:
		j = c.pickUser(a, func(user) bool { return true })
	}
	if j < 0 {
		k = kindActivity // nobody to act on: log an activity instead
	}
	start := time.Now()
	var st int
	var err error
	switch k {
	case kindActivity:
		u := a.users[0]
		if j := c.pickUser(a, func(u user) bool { return u.active }); j > 0 && c.rnd.IntN(2) == 0 {
			u = a.users[j]
		}
		c.seq++
		body := []byte(`{"user_id":"` + u.id + `","kind":"note","ref":"candidate-` + strconv.Itoa(c.seq) + `"}`)
		st, _, err = c.t.call(ctx, http.MethodPost, "/v1/accounts/"+a.id+"/activities", body)
	case kindDeactivate:
		st, _, err = c.t.call(ctx, http.MethodPost, "/v1/accounts/"+a.id+"/users/"+a.users[j].id+"/deactivate", []byte(`{"reason":"load cycle"}`))
		if err == nil && st == http.StatusOK {
			a.users[j].active = false
			a.active--
		}
	case kindActivate:
		st, _, err = c.t.call(ctx, http.MethodPost, "/v1/accounts/"+a.id+"/users/"+a.users[j].id+"/activate", nil)
		if err == nil && st == http.StatusOK {
			a.users[j].active = true
			a.active++
		}
	case kindAdd:
		st, err = c.add(ctx, a, "member")
	case kindPurchase:
		st, _, err = c.t.call(ctx, http.MethodPost, "/v1/accounts/"+a.id+"/seats", []byte(`{"count":1}`))
		if err == nil && st == http.StatusOK {
			a.seats++
		}
	case kindDelete:
		u := a.users[j]
		q := "?confirm=" + u.id
		if c.rnd.IntN(2) == 0 {
			q += "&reassign_to=" + a.users[0].id
		}
		st, _, err = c.t.call(ctx, http.MethodDelete, "/v1/accounts/"+a.id+"/users/"+u.id+q, nil)
		if err == nil && st == http.StatusOK {
			if u.active {
				a.active--
			}
			a.users = append(a.users[:j], a.users[j+1:]...)
		}
	}
	tl.record(k, time.Since(start), st, err)
}

// phase runs f on every client until stop or until limit calls in all
// (0: no limit), and returns the tallies and the wall time it took.
func phase(clients []*client, stop time.Time, limit int, f func(c *client, tl *tally)) ([]*tally, time.Duration) {
	tallies := make([]*tally, len(clients))
	var done atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range clients {
		tl := newTally()
		tallies[i] = tl
		wg.Go(func() {
			for time.Now().Before(stop) {
				if limit > 0 && done.Add(1) > int64(limit) {
					return
				}
				f(c, tl)
			}
		})
	}
	wg.Wait()
	return tallies, time.Since(start)
}
