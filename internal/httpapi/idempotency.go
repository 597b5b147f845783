package httpapi

import (
	"container/list"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/licenseledger/ledger/internal/auth"
)

// idemCache keeps, per idempotency key, a fingerprint of the first request
// and its response, in memory only. The application service judges
// repeats of commands itself, from the fingerprints in event metadata;
// this cache remains for what the service cannot do: replaying a minted
// token (tokens are not events), making a concurrent repeat wait for the
// first request instead of racing it, and answering a repeat byte for byte.
//
// It holds no plain hash of personal data: the fingerprint is an
// HMAC-SHA-256 of the request under a key drawn when the process starts
// and never stored. Responses about users hold their names and emails, so
// every entry of an account is dropped when a user of the account is
// deleted ([idemCache.forgetAccount]); a repeat is then judged by the
// service, which answers with the erased result. It holds at most max
// keys, evicting the least recently used, and forgets a key ttl after its
// response.
type idemCache struct {
	mu     sync.Mutex
	max    int
	ttl    time.Duration
	clock  func() time.Time
	secret [32]byte // the fingerprints' HMAC key
	byKey  map[string]*list.Element
	lru    *list.List // of *idemEntry, most recently used first
}

type idemEntry struct {
	key     string
	account string // the account the request was for, "" for none
	fp      [sha256.Size]byte
	done    chan struct{} // closed when resp is set or the entry dropped
	resp    *response
	expires time.Time
}

func newIdemCache(max int, ttl time.Duration, clock func() time.Time) *idemCache {
	c := &idemCache{max: max, ttl: ttl, clock: clock, byKey: make(map[string]*list.Element), lru: list.New()}
	rand.Read(c.secret[:]) // never fails (crypto/rand)
	return c
}

// fingerprint returns the keyed fingerprint of a request: its method,
// path, query and body.
func (c *idemCache) fingerprint(r *http.Request, body []byte) [sha256.Size]byte {
	h := hmac.New(sha256.New, c.secret[:])
	for _, part := range [][]byte{[]byte(r.Method), []byte(r.URL.Path), []byte(r.URL.RawQuery), body} {
		h.Write([]byte(strconv.Itoa(len(part)) + ":"))
		h.Write(part)
	}
	var fp [sha256.Size]byte
	h.Sum(fp[:0])
	return fp
}

// begin looks key, used for account, up. It returns the kept response for
// a repeat, an idempotency-key-reused problem for a different request, or,
// for a new key, a done func the caller must call with its response. A
// concurrent request with the same key and fingerprint waits for the first
// one.
func (c *idemCache) begin(ctx context.Context, account, key string, fp [sha256.Size]byte) (*response, func(*response), error) {
	for {
		c.mu.Lock()
		el, ok := c.byKey[key]
		if ok {
			e := el.Value.(*idemEntry)
			if e.resp != nil && c.clock().After(e.expires) {
				c.remove(el)
				ok = false
			}
		}
		if !ok {
			e := &idemEntry{key: key, account: account, fp: fp, done: make(chan struct{})}
			c.byKey[key] = c.lru.PushFront(e)
			c.evict()
			c.mu.Unlock()
			return nil, func(resp *response) { c.finish(e, resp) }, nil
		}
		e := el.Value.(*idemEntry)
		if e.fp != fp {
			c.mu.Unlock()
			return nil, nil, newProblem(ProblemIdempotencyReused, http.StatusUnprocessableEntity,
				"this Idempotency-Key was used for a different request (method, path or body): use a new key for a new request")
		}
		if e.resp != nil {
			c.lru.MoveToFront(el)
			resp := e.resp.replay()
			c.mu.Unlock()
			return resp, nil, nil
		}
		done := e.done
		c.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// finish keeps a successful response; any other, or none (the request
// panicked), is forgotten so that a retry is decided again.
func (c *idemCache) finish(e *idemEntry, resp *response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer close(e.done)
	el, ok := c.byKey[e.key]
	if !ok || el.Value.(*idemEntry) != e {
		return // evicted or forgotten meanwhile
	}
	if resp == nil || resp.status < 200 || resp.status > 299 {
		c.remove(el)
		return
	}
	e.resp = resp.clone()
	e.expires = c.clock().Add(c.ttl)
}

// forgetAccount drops every key used for account, kept or in flight: a
// request in flight then keeps nothing when it finishes, and its
// concurrent repeats are decided again.
func (c *idemCache) forgetAccount(account string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for el := c.lru.Front(); el != nil; {
		next := el.Next()
		if el.Value.(*idemEntry).account == account {
			c.remove(el)
		}
		el = next
	}
}

func (c *idemCache) remove(el *list.Element) {
	delete(c.byKey, el.Value.(*idemEntry).key)
	c.lru.Remove(el)
}

func (c *idemCache) evict() {
	for c.lru.Len() > c.max {
		c.remove(c.lru.Back())
	}
}

// len returns the number of keys held.
func (c *idemCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

func (r *response) clone() *response {
	return &response{status: r.status, header: r.header.Clone(), body: append([]byte(nil), r.body...), problem: r.problem}
}

func (r *response) replay() *response {
	c := r.clone()
	c.header.Set(HeaderReplayed, "true")
	return c
}

// checkIdemKey refuses an Idempotency-Key that is not 1 to 255 visible
// ASCII characters.
func checkIdemKey(key string) error {
	if len(key) > 255 || strings.ContainsFunc(key, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
		return badRequest("Idempotency-Key must be 1 to 255 visible ASCII characters")
	}
	return nil
}

// idemScope names a key within the principal and the account it was used
// for: tenants cannot collide on a key, nor see that another used it.
func idemScope(p auth.Principal, account, key string) string {
	return p.TokenID + "\x00" + account + "\x00" + key
}
