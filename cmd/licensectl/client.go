package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
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

// send sends req and returns the response, its body unread, when the
// status is 2xx; any other status is returned as an error.
func (c *cli) send(ctx context.Context, req request) (*http.Response, error) {
	if err := c.resolveToken(); err != nil {
		return nil, err
	}
	u := *c.baseURL
	raw := c.baseURL.EscapedPath()
	for _, s := range req.path {
		u.Path += "/" + s
		raw += "/" + url.PathEscape(s)
	}
	u.RawPath = raw
	u.RawQuery = req.query.Encode()
	var body io.Reader
	if req.body != nil {
		b, err := json.Marshal(req.body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	hr, err := http.NewRequestWithContext(ctx, req.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		hr.Header.Set("Content-Type", "application/json")
	}
	hr.Header.Set("Accept", "application/json, application/problem+json")
	hr.Header.Set("User-Agent", "licensectl")
	hr.Header.Set("Authorization", "Bearer "+c.token)
	if req.write {
		if c.g.idemKey.set {
			hr.Header.Set("Idempotency-Key", c.g.idemKey.value)
		}
		if c.g.ifMatch.set {
			hr.Header.Set("If-Match", etag(c.g.ifMatch.value))
		}
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		// The error names the URL and the cause, never the headers.
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, fmt.Errorf("cannot reach %s: %w", c.baseURL.Redacted(), ue.Err)
		}
		return nil, fmt.Errorf("cannot reach %s: %w", c.baseURL.Redacted(), err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return nil, c.refusal(resp, b)
}

// call sends req and reads the answer whole.
func (c *cli) call(ctx context.Context, req request) (reply, error) {
	resp, err := c.send(ctx, req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return reply{}, fmt.Errorf("read answer: %w", err)
	}
	r := reply{status: resp.StatusCode, header: resp.Header, body: b}
	if r.replayed() {
		fmt.Fprintln(c.stderr, "licensectl: this idempotency key was used before: the first answer is shown, nothing changed")
	}
	return r, nil
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
