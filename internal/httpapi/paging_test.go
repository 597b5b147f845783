package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/projections/audit"
)

// page is one answer of a list: its items as raw JSON and its paging.
type page struct {
	items   []json.RawMessage
	more    bool
	cursor  string
	trailer http.Header
}

// listKey is the member holding the items of each list.
var listKey = map[string]string{"accounts": "accounts", "users": "users", "activities": "activities", "audit": "entries"}

// getPage reads one page of a list: a JSON answer, or, for a JSON Lines
// one, its lines and trailers.
func (e *env) getPage(token, path string) page {
	e.t.Helper()
	req, err := http.NewRequest("GET", e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		e.t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	var p page
	if resp.Header.Get("Content-Type") == "application/jsonl" {
		for line := range bytes.Lines(b) {
			p.items = append(p.items, json.RawMessage(bytes.TrimSpace(line)))
		}
		p.trailer = resp.Trailer
		p.cursor = resp.Trailer.Get(httpapi.HeaderNextCursor)
		p.more = resp.Trailer.Get(httpapi.HeaderHasMore) == "true"
		if p.cursor == "" || resp.Trailer.Get(httpapi.HeaderHasMore) == "" {
			e.t.Fatalf("GET %s: JSON Lines without paging trailers: %v", path, resp.Trailer)
		}
		return p
	}
	u, _ := url.Parse(path)
	name := u.Path[strings.LastIndexByte(u.Path, '/')+1:]
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		e.t.Fatalf("GET %s: %v: %s", path, err, b)
	}
	if err := json.Unmarshal(m[listKey[name]], &p.items); err != nil {
		e.t.Fatalf("GET %s: %s: %v", path, listKey[name], err)
	}
	if err := json.Unmarshal(m["has_more"], &p.more); err != nil {
		e.t.Fatalf("GET %s: has_more: %v: %s", path, err, b)
	}
	if err := json.Unmarshal(m["next_cursor"], &p.cursor); err != nil || p.cursor == "" {
		e.t.Fatalf("GET %s: next_cursor: %v: %s", path, err, b)
	}
	return p
}

// identity is what identifies an item of each list.
func identity(t testing.TB, item json.RawMessage) string {
	t.Helper()
	var v struct {
		ID       string `json:"id"`
		EventID  string `json:"event_id"`
		Position uint64 `json:"position"`
	}
	if err := json.Unmarshal(item, &v); err != nil {
		t.Fatal(err)
	}
	switch {
	case v.EventID != "":
		return v.EventID
	case v.ID != "":
		return v.ID
	}
	t.Fatalf("item without identity: %s", item)
	return ""
}

// walk follows a list's cursors from its start to the end, calling
// between(n) after page n, and returns the identities seen, in order.
func (e *env) walk(token, path string, between func(n int)) []string {
	e.t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	var ids []string
	cursor := ""
	for n := 0; ; n++ {
		if n > 1000 {
			e.t.Fatalf("%s: no end after %d pages", path, n)
		}
		q := path
		if cursor != "" {
			q += sep + "cursor=" + url.QueryEscape(cursor)
		}
		p := e.getPage(token, q)
		for _, it := range p.items {
			ids = append(ids, identity(e.t, it))
		}
		if !p.more {
			return ids
		}
		if len(p.items) == 0 {
			e.t.Fatalf("%s: an empty page says more follow", q)
		}
		cursor = p.cursor
		if between != nil {
			between(n)
		}
	}
}

// pagingEnv opens acme with users and activities: more users, activities
// and audit entries than a default page holds.
func pagingEnv(t *testing.T) (*env, []string) {
	t.Helper()
	e := newEnv(t)
	e.open("acme", 400)
	var users []string
	for i := range 110 {
		role := "member"
		if i == 0 {
			role = "admin"
		}
		users = append(users, e.addUser("acme", fmt.Sprintf("User %d", i), fmt.Sprintf("u%d@acme.test", i), role))
	}
	for i := range 110 {
		e.must(201, e.operator, "POST", "/v1/accounts/acme/activities",
			map[string]string{"user_id": users[i%7], "kind": "note", "ref": fmt.Sprintf("r%d", i)})
	}
	for _, u := range users[100:105] {
		e.must(200, e.operator, "POST", "/v1/accounts/acme/users/"+u+"/deactivate", nil)
	}
	return e, users
}

// A list answers the default page without a limit, refuses a limit
// outside 1 to 1000, and says when more follow.
func TestListLimits(t *testing.T) {
	e, _ := pagingEnv(t)
	op := e.operator
	for _, path := range []string{"/v1/accounts/acme/users", "/v1/accounts/acme/activities", "/v1/accounts/acme/audit"} {
		p := e.getPage(op, path)
		if len(p.items) != httpapi.DefaultLimit || !p.more {
			t.Errorf("%s: %d items, has_more %v; want the default page of %d and more", path, len(p.items), p.more, httpapi.DefaultLimit)
		}
		if p := e.getPage(op, path+"?limit=1000"); len(p.items) <= httpapi.DefaultLimit || len(p.items) > 1000 || p.more {
			t.Errorf("%s?limit=1000: %d items, has_more %v; want every item", path, len(p.items), p.more)
		}
		if p := e.getPage(op, path+"?limit=3"); len(p.items) != 3 || !p.more {
			t.Errorf("%s?limit=3: %d items, has_more %v", path, len(p.items), p.more)
		}
	}
	for _, path := range []string{"/v1/accounts/acme/users", "/v1/accounts/acme/activities", "/v1/accounts/acme/audit",
		"/v1/accounts/acme/audit?format=jsonl", "/v1/accounts/acme/events"} {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		for _, limit := range []string{"1001", "0", "-1", "many", "1e3"} {
			r := e.must(400, op, "GET", path+sep+"limit="+limit, nil)
			if r.Header.Get("Content-Type") != "application/problem+json" || !strings.Contains(string(r.Body), "1000") {
				t.Errorf("%s limit=%s: %s %s", path, limit, r.Header.Get("Content-Type"), r.Body)
			}
		}
	}
	// An export without a limit is the whole selection.
	all := e.getPage(op, "/v1/accounts/acme/audit?limit=1000")
	if p := e.getPage(op, "/v1/accounts/acme/audit?format=jsonl"); len(p.items) != len(all.items) || p.more {
		t.Errorf("audit export: %d lines, has more %v; want all %d entries", len(p.items), p.more, len(all.items))
	}
	if p := e.getPage(op, "/v1/accounts/acme/events?limit=5"); len(p.items) != 5 || !p.more {
		t.Errorf("events limit 5: %d lines, has more %v", len(p.items), p.more)
	}
}

// Walking any list page by page, while new items are added between
// pages, yields every item exactly once: those there at the start and
// those added during the walk.
func TestCursorWalkWhileAppending(t *testing.T) {
	e, users := pagingEnv(t)
	op := e.operator
	added := 0
	grow := func(n int) {
		if n >= 4 {
			return
		}
		added++
		u := e.addUser("acme", fmt.Sprintf("Late %d", added), fmt.Sprintf("late%d@acme.test", added), "member")
		e.must(201, op, "POST", "/v1/accounts/acme/activities", map[string]string{"user_id": users[0], "kind": "call", "ref": "late"})
		e.must(201, op, "POST", "/v1/accounts/acme/activities", map[string]string{"user_id": u, "kind": "call", "ref": "late"})
	}
	for _, list := range []string{
		"/v1/accounts/acme/users?limit=9",
		"/v1/accounts/acme/users?status=active&limit=9",
		"/v1/accounts/acme/activities?limit=9",
		"/v1/accounts/acme/audit?limit=9",
		"/v1/accounts/acme/audit?format=jsonl&limit=9",
		"/v1/accounts/acme/audit?user=" + users[1] + "&limit=2",
		"/v1/accounts/acme/events?limit=9",
	} {
		t.Run(list, func(t *testing.T) {
			parent := e.t
			e.t = t
			defer func() { e.t = parent }()
			got := e.walk(op, list, grow)
			// Everything, read at once after the walk.
			u, _ := url.Parse(list)
			q := u.Query()
			q.Del("limit")
			whole := u.Path + "?" + q.Encode()
			if !strings.Contains(list, "jsonl") && !strings.Contains(list, "events") {
				whole += "&limit=1000"
			}
			want := e.getPage(op, whole)
			seen := map[string]int{}
			for _, id := range got {
				seen[id]++
			}
			for id, n := range seen {
				if n > 1 {
					t.Errorf("%s appeared %d times", id, n)
				}
			}
			if len(got) != len(want.items) {
				t.Errorf("walk saw %d items, the list holds %d", len(got), len(want.items))
			}
			for i, it := range want.items {
				if id := identity(t, it); seen[id] != 1 {
					t.Errorf("item %d (%s) seen %d times", i, id, seen[id])
				}
			}
		})
	}
	if added == 0 {
		t.Fatal("control: nothing was added during the walks")
	}
}

// Filters hold on every page: a walk of the audit trail about one user
// and of the deactivated users returns those and only those.
func TestPagingKeepsFilters(t *testing.T) {
	e, users := pagingEnv(t)
	op := e.operator
	ids := e.walk(op, "/v1/accounts/acme/users?status=deactivated&limit=2", nil)
	if strings.Join(ids, ",") != strings.Join(users[100:105], ",") {
		t.Errorf("deactivated users %v, want %v", ids, users[100:105])
	}
	var entries []audit.Entry
	for cursor, n := "", 0; n == 0 || cursor != ""; n++ {
		path := "/v1/accounts/acme/audit?user=" + users[3] + "&limit=3"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var l struct {
			Entries    []audit.Entry `json:"entries"`
			HasMore    bool          `json:"has_more"`
			NextCursor string        `json:"next_cursor"`
		}
		if err := json.Unmarshal(e.must(200, op, "GET", path, nil).Body, &l); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, l.Entries...)
		cursor = ""
		if l.HasMore {
			cursor = l.NextCursor
		}
	}
	// Added, and 110/7 activities rounded up.
	if len(entries) != 1+16 {
		t.Errorf("%d entries about user 3, want 17", len(entries))
	}
	for _, en := range entries {
		if en.UserID != users[3] {
			t.Errorf("entry about %q in the pages about %q", en.UserID, users[3])
		}
	}
}

// A cursor that was altered, or is given to another list, account or
// filter than the one that returned it, is refused with 400.
func TestBadCursor(t *testing.T) {
	e, users := pagingEnv(t)
	op := e.operator
	e.open("beta", 2)
	e.addUser("beta", "Bea", "bea@beta.test", "admin")
	audit := e.getPage(op, "/v1/accounts/acme/audit?limit=5").cursor
	usersCursor := e.getPage(op, "/v1/accounts/acme/users?limit=5").cursor
	filtered := e.getPage(op, "/v1/accounts/acme/audit?limit=1&user="+users[2]).cursor
	events := e.getPage(op, "/v1/accounts/acme/events?limit=5").cursor
	flip := func(s string) string {
		b := []byte(s)
		i := len(b) / 2
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for _, tc := range []struct{ name, path string }{
		{"altered", "/v1/accounts/acme/audit?cursor=" + flip(audit)},
		{"truncated", "/v1/accounts/acme/audit?cursor=" + audit[:len(audit)-2]},
		{"not base64", "/v1/accounts/acme/audit?cursor=%2F%2F%2F"},
		{"empty bytes", "/v1/accounts/acme/users?cursor=AAAA"},
		{"of another list", "/v1/accounts/acme/audit?cursor=" + usersCursor},
		{"users cursor to activities", "/v1/accounts/acme/activities?cursor=" + usersCursor},
		{"of another account", "/v1/accounts/beta/users?cursor=" + usersCursor},
		{"without its filter", "/v1/accounts/acme/audit?cursor=" + filtered},
		{"with another filter", "/v1/accounts/acme/audit?user=" + users[3] + "&cursor=" + filtered},
		{"users cursor with a status", "/v1/accounts/acme/users?status=active&cursor=" + usersCursor},
		{"audit cursor to events", "/v1/accounts/acme/events?cursor=" + audit},
		{"events altered", "/v1/accounts/acme/events?cursor=" + flip(events)},
		{"export with another filter", "/v1/accounts/acme/audit?format=jsonl&actor=x&cursor=" + audit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(op, "GET", tc.path, nil)
			var p httpapi.Problem
			if err := json.Unmarshal(r.Body, &p); err != nil || r.Status != 400 || p.Rule != httpapi.ProblemInvalidCursor ||
				r.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("status %d %s %s", r.Status, r.Header.Get("Content-Type"), r.Body)
			}
		})
	}
	// The same cursor with its own filter, and an export of the same
	// selection, continue.
	e.must(200, op, "GET", "/v1/accounts/acme/audit?user="+users[2]+"&cursor="+filtered, nil)
	e.must(200, op, "GET", "/v1/accounts/acme/audit?format=jsonl&cursor="+audit, nil)
	e.must(400, op, "GET", "/v1/accounts/acme/activities?after=3&cursor="+e.getPage(op, "/v1/accounts/acme/activities?limit=5").cursor, nil)
}

// gatedAudit yields the first entries of a scan, then waits for release.
type gatedAudit struct {
	httpapi.AuditReader
	first   int
	release chan struct{}
}

func (g gatedAudit) Scan(account string, f audit.Filter, after eventstore.Position) (iter.Seq[audit.Entry], error) {
	entries, err := g.AuditReader.Scan(account, f, after)
	if err != nil {
		return nil, err
	}
	return func(yield func(audit.Entry) bool) {
		n := 0
		for e := range entries {
			if n == g.first {
				<-g.release
			}
			n++
			if !yield(e) {
				return
			}
		}
	}, nil
}

// gatedHistory yields the first records of the ledger stream, then waits
// for release.
type gatedHistory struct {
	httpapi.History
	first   int
	release chan struct{}
}

func (g gatedHistory) ReadStream(ctx context.Context, s eventstore.StreamID, from uint64) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		n := 0
		for r, err := range g.History.ReadStream(ctx, s, from) {
			if n == g.first && s.Category == eventstore.Ledger {
				<-g.release
			}
			n++
			if !yield(r, err) {
				return
			}
		}
	}
}

// JSON Lines answers stream: the first line reaches the client while the
// handler is still producing the rest, and the trailers close it.
func TestExportsStream(t *testing.T) {
	e, _ := pagingEnv(t)
	total := len(e.getPage(e.operator, "/v1/accounts/acme/audit?limit=1000").items)
	events := len(e.getPage(e.operator, "/v1/accounts/acme/events").items)
	for _, tc := range []struct {
		path   string
		adjust func(c *httpapi.Config, release chan struct{})
		lines  int
	}{
		{"/v1/accounts/acme/audit?format=jsonl", func(c *httpapi.Config, release chan struct{}) {
			c.Audit = gatedAudit{AuditReader: c.Audit, first: 2, release: release}
		}, total},
		{"/v1/accounts/acme/events", func(c *httpapi.Config, release chan struct{}) {
			c.History = gatedHistory{History: c.History, first: 2, release: release}
		}, events},
	} {
		t.Run(tc.path, func(t *testing.T) {
			release := make(chan struct{})
			var once sync.Once
			open := func() { once.Do(func() { close(release) }) }
			defer open()
			cfg := e.cfg
			tc.adjust(&cfg, release)
			srv := newTestServer(t, cfg)
			req, _ := http.NewRequest("GET", srv+tc.path, nil)
			req.Header.Set("Authorization", "Bearer "+e.operator)
			type head struct {
				resp *http.Response
				br   *bufio.Reader
				line string
				err  error
			}
			first := make(chan head, 1)
			go func() {
				// Even the headers wait for a flush: the request is sent
				// here too, under the same deadline.
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					first <- head{err: err}
					return
				}
				br := bufio.NewReader(resp.Body)
				line, err := br.ReadString('\n')
				first <- head{resp, br, line, err}
			}()
			var h head
			select {
			case h = <-first:
				if h.err != nil {
					t.Fatal(h.err)
				}
				defer h.resp.Body.Close()
				if !strings.HasPrefix(h.line, "{") {
					t.Fatalf("first line %q", h.line)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no line reached the client while the export was held: it is buffered, not streamed")
			}
			resp, br := h.resp, h.br
			open()
			rest, err := io.ReadAll(br)
			if err != nil {
				t.Fatal(err)
			}
			if n := 1 + bytes.Count(rest, []byte("\n")); n != tc.lines {
				t.Errorf("%d lines, want %d", n, tc.lines)
			}
			if resp.Trailer.Get(httpapi.HeaderNextCursor) == "" || resp.Trailer.Get(httpapi.HeaderHasMore) != "false" {
				t.Errorf("trailers %v", resp.Trailer)
			}
		})
	}
}

// An auditor scoped to acme cannot walk another account with a cursor of
// acme's: the cursor grants nothing.
func TestCursorGrantsNothing(t *testing.T) {
	e, _ := pagingEnv(t)
	e.open("beta", 2)
	auditor := e.mint(auth.Auditor, "acme")
	c := e.getPage(auditor, "/v1/accounts/acme/audit?limit=2").cursor
	e.must(404, auditor, "GET", "/v1/accounts/beta/audit?cursor="+c, nil)
}

func newTestServer(t *testing.T, cfg httpapi.Config) string {
	t.Helper()
	srv := httptest.NewServer(httpapi.New(cfg))
	t.Cleanup(srv.Close)
	return srv.URL
}
