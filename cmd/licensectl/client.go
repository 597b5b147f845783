package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxBody caps what is read of an answer kept whole; the raw event export
// is streamed instead.
const maxBody = 64 << 20

// problem is an RFC 9457 problem details body as the API writes it.
type problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance"`
	Rule     string `json:"rule"`
}

// problemError is a refusal by the API.
type problemError struct {
	problem
	hint string // what to do about it, when licensectl knows better
}

func (e *problemError) Error() string { return e.line() }

// line is the problem as one line: detail, then rule and status.
func (e *problemError) line() string {
	msg := e.Detail
	if msg == "" {
		msg = strings.ToLower(e.Title)
	}
	if msg == "" {
		msg = strings.ToLower(http.StatusText(e.Status))
	}
	rule := e.Rule
	if rule == "" && e.Type != "" && e.Type != "about:blank" {
		rule = e.Type[strings.LastIndexByte(e.Type, '/')+1:]
	}
	s := msg + " ("
	if rule != "" {
		s += rule + ", "
	}
	s += strconv.Itoa(e.Status) + ")"
	if e.hint != "" {
		s += ": " + e.hint
	}
	return s
}

// request is one call of the API.
type request struct {
	method string
	path   []string // segments under the base URL, e.g. v1 accounts acme
	query  url.Values
	body   any // marshalled as JSON when not nil
	write  bool
}

// reply is an answer read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// replayed reports whether the API answered a repeat of an idempotency
// key with the first answer.
func (r reply) replayed() bool { return r.header.Get("Idempotent-Replayed") == "true" }

// Retries: a request the API answers 503 with Retry-After (it is starting
// and its read models are catching up), or whose connection is reset or
// closed before an answer, is sent again, up to maxAttempts times in all.
// A write carries an Idempotency-Key, drawn here when --idempotency-key is
// not given, so that a write the API did apply before the connection broke
// is answered with its first result instead of being done twice.
const (
	maxAttempts   = 5
	firstBackoff  = 250 * time.Millisecond
	maxBackoff    = 5 * time.Second
	maxRetryAfter = 30 * time.Second
)

// errRetry is a failed attempt worth repeating; after is how long to wait
// first (0: the backoff decides).
type errRetry struct {
	err   error
	after time.Duration
}

func (e *errRetry) Error() string { return e.err.Error() }
func (e *errRetry) Unwrap() error { return e.err }

// idempotencyKey is the key the writes of this run carry: --idempotency-key,
// or one drawn at random once, so that every retry of a write repeats it.
func (c *cli) idempotencyKey() string {
	if c.g.idemKey.set {
		return c.g.idemKey.value
	}
	if c.autoKey == "" {
		var b [16]byte
		if _, err := io.ReadFull(crand.Reader, b[:]); err != nil {
			// crypto/rand does not fail on supported systems.
			panic(fmt.Sprintf("draw an idempotency key: %v", err))
		}
		c.autoKey = "licensectl-" + hex.EncodeToString(b[:])
	}
	return c.autoKey
}

// send sends req and returns the response, its body unread, when the
// status is 2xx; any other status is returned as an error. Each attempt
// has --timeout to connect and be answered; the body of the response then
// has --timeout between reads, however long it runs in all.
func (c *cli) send(ctx context.Context, req request) (*http.Response, error) {
	if err := c.resolveToken(); err != nil {
		return nil, err
	}
	var body []byte
	if req.body != nil {
		b, err := json.Marshal(req.body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = b
	}
	if req.write && c.verbose {
		fmt.Fprintf(c.stderr, "licensectl: Idempotency-Key: %s\n", c.idempotencyKey())
	}
	for attempt := 1; ; attempt++ {
		resp, err := c.attempt(ctx, req, body)
		var re *errRetry
		if err == nil || !errors.As(err, &re) {
			return resp, err
		}
		if attempt >= maxAttempts || ctx.Err() != nil {
			return nil, re.err
		}
		wait := re.after
		if wait == 0 {
			wait = backoff(attempt)
		}
		fmt.Fprintf(c.stderr, "licensectl: %v; trying again in %s (attempt %d of %d)\n", re.err, wait, attempt+1, maxAttempts)
		if err := c.pause(ctx, wait); err != nil {
			return nil, re.err
		}
	}
}

// backoff is the wait before attempt n+1 when the API did not say: it
// doubles from firstBackoff up to maxBackoff, with up to a quarter more
// drawn at random so that clients cut off together do not return together.
func backoff(n int) time.Duration {
	d := firstBackoff << (n - 1)
	if d > maxBackoff || d <= 0 {
		d = maxBackoff
	}
	return d + rand.N(d/4+1)
}

// pause waits d, or until ctx ends.
func (c *cli) pause(ctx context.Context, d time.Duration) error {
	if c.sleep != nil {
		return c.sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// attempt sends req once.
func (c *cli) attempt(parent context.Context, req request, body []byte) (*http.Response, error) {
	u := *c.baseURL
	raw := c.baseURL.EscapedPath()
	for _, s := range req.path {
		u.Path += "/" + s
		raw += "/" + url.PathEscape(s)
	}
	u.RawPath = raw
	u.RawQuery = req.query.Encode()
	ctx, cancel := context.WithCancel(parent)
	// The timer covers connecting and waiting for the answer; once it has
	// come, reads of the body rearm it (see idleBody).
	timer := time.AfterFunc(c.timeout, cancel)
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u.String(), rd)
	if err != nil {
		timer.Stop()
		cancel()
		return nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	hr.Header.Set("Accept", "application/json, application/problem+json")
	hr.Header.Set("User-Agent", "licensectl/"+versionString())
	hr.Header.Set("Authorization", "Bearer "+c.token)
	if req.write {
		hr.Header.Set("Idempotency-Key", c.idempotencyKey())
		if c.g.ifMatch.set {
			hr.Header.Set("If-Match", etag(c.g.ifMatch.value))
		}
	}
	resp, err := c.httpClient().Do(hr)
	if err != nil {
		timedOut := !timer.Stop() && parent.Err() == nil
		cancel()
		// The error names the URL and the cause, never the headers.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if timedOut {
			err = fmt.Errorf("no answer within --timeout %s: %w", c.timeout, err)
		}
		err = fmt.Errorf("cannot reach %s: %w", c.baseURL.Redacted(), err)
		if !timedOut && connectionLost(err) {
			return nil, &errRetry{err: err}
		}
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		timer.Reset(c.timeout)
		resp.Body = &idleBody{rc: resp.Body, timer: timer, timeout: c.timeout, cancel: cancel}
		return resp, nil
	}
	defer cancel()
	defer timer.Stop()
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	err = c.refusal(resp, b)
	if resp.StatusCode == http.StatusServiceUnavailable {
		if after, ok := retryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return nil, &errRetry{err: err, after: after}
		}
	}
	return nil, err
}

// httpClient is the client of this run: its dialer gives up connecting
// after --timeout.
func (c *cli) httpClient() *http.Client {
	if c.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{Timeout: c.timeout, KeepAlive: 30 * time.Second}).DialContext
		tr.TLSHandshakeTimeout = c.timeout
		c.client = &http.Client{Transport: tr}
	}
	return c.client
}

// connectionLost reports whether err is a connection reset or closed by
// the other side before the answer: the request may or may not have been
// handled, and is worth sending again.
func connectionLost(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// retryAfter reads a Retry-After header: delay-seconds or an HTTP date.
// A wait past maxRetryAfter is not waited for.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0, false
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(t.Sub(now), 0)
	} else {
		return 0, false
	}
	if d > maxRetryAfter {
		return 0, false
	}
	// A zero wait still backs off a little.
	return max(d, firstBackoff), true
}

// idleBody is a response body whose reads must each come within timeout:
// a stream may run as long as it keeps moving.
type idleBody struct {
	rc      io.ReadCloser
	timer   *time.Timer
	timeout time.Duration
	cancel  context.CancelFunc
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.timeout)
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel()
	return err
}

// call sends req and reads the answer whole. An answer cut before its end
// is asked again, as a connection lost before the answer is.
func (c *cli) call(ctx context.Context, req request) (reply, error) {
	for attempt := 1; ; attempt++ {
		resp, err := c.send(ctx, req)
		if err != nil {
			return reply{}, err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		if err != nil {
			if connectionLost(err) && attempt < maxAttempts && ctx.Err() == nil {
				fmt.Fprintf(c.stderr, "licensectl: the answer was cut: %v; trying again\n", err)
				continue
			}
			return reply{}, fmt.Errorf("read answer: %w", err)
		}
		r := reply{status: resp.StatusCode, header: resp.Header, body: b}
		if r.replayed() {
			if c.g.idemKey.set {
				fmt.Fprintln(c.stderr, "licensectl: this idempotency key was used before: the first answer is shown, nothing changed")
			} else {
				fmt.Fprintln(c.stderr, "licensectl: the API had done this before the connection was lost: its answer is shown, nothing was done twice")
			}
		}
		return r, nil
	}
}

// refusal turns a non-2xx answer into an error: its problem when it has
// one, its status and first line otherwise.
func (c *cli) refusal(resp *http.Response, body []byte) error {
	pe := &problemError{problem: problem{Status: resp.StatusCode}}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == "application/problem+json" || mt == "application/json" {
		var p problem
		if json.Unmarshal(body, &p) == nil && (p.Detail != "" || p.Type != "" || p.Title != "") {
			pe.problem = p
			if pe.Status == 0 {
				pe.Status = resp.StatusCode
			}
		}
	}
	if pe.Detail == "" && pe.Type == "" {
		line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		if len(line) > 200 {
			line = line[:200] + "..."
		}
		pe.Title = http.StatusText(resp.StatusCode)
		if line != "" {
			pe.Detail = strings.ToLower(pe.Title) + ": " + line
		}
	}
	if resp.StatusCode == http.StatusUnauthorized {
		pe.hint = "check --token, LICENSECTL_TOKEN or --token-file"
	}
	return pe
}

// etag quotes a bare revision ("7" -> "\"7\""); anything else is sent as
// given, for the API to judge.
func etag(v string) string {
	v = strings.TrimSpace(v)
	if _, err := strconv.ParseUint(v, 10, 64); err == nil {
		return `"` + v + `"`
	}
	return v
}
