package httpapi_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/httpapi"
)

// followLinks walks a list from path by its next_link members, checking
// that each page's Link header says the same, and returns the pages'
// items under key.
func (e *env) followLinks(token, path, key string) (items []map[string]any, pages int) {
	e.t.Helper()
	for next := path; next != ""; pages++ {
		if pages > 200 {
			e.t.Fatalf("%s: no end after %d pages", path, pages)
		}
		r := e.must(200, token, "GET", next, nil)
		var body map[string]json.RawMessage
		if err := json.Unmarshal(r.Body, &body); err != nil {
			e.t.Fatal(err)
		}
		var page []map[string]any
		if err := json.Unmarshal(body[key], &page); err != nil {
			e.t.Fatalf("GET %s: %s: %v", next, key, err)
		}
		items = append(items, page...)
		var more bool
		json.Unmarshal(body["has_more"], &more)
		var link string
		if raw, ok := body["next_link"]; ok {
			json.Unmarshal(raw, &link)
		}
		if more != (link != "") {
			e.t.Fatalf("GET %s: has_more %v with next_link %q", next, more, link)
		}
		want := ""
		if link != "" {
			want = "<" + link + `>; rel="next"`
			if !strings.HasPrefix(link, "/") || !strings.Contains(link, "cursor=") {
				e.t.Fatalf("GET %s: next_link %q is not a path with a cursor", next, link)
			}
		}
		if got := r.Header.Get("Link"); got != want {
			e.t.Fatalf("GET %s: Link %q, want %q", next, got, want)
		}
		next = link
	}
	return items, pages
}

// TestBillingOfAPeriod reads every account's cycle of a period page by
// page through next links: each account once, in id order, with the
// billing read model's quantities; accounts without a cycle in the period
// are not listed.
func TestBillingOfAPeriod(t *testing.T) {
	e := newEnv(t)
	for i := range 7 {
		e.open(fmt.Sprintf("acct-%d", i), i+1)
	}
	e.addUser("acct-3", "Ada", "ada@x.test", "admin")
	e.must(200, e.operator, "POST", "/v1/accounts/acct-3/seats", map[string]int{"count": 2})
	// Two months later, a late account opens in May.
	e.clock.mu.Lock()
	e.clock.now = time.Date(2026, 5, 20, 0, 0, 0, 0, time.UTC)
	e.clock.mu.Unlock()
	e.open("acct-late", 1)

	items, pages := e.followLinks(e.operator, "/v1/billing?period=2026-03&limit=3", "cycles")
	if pages != 3 || len(items) != 7 {
		t.Fatalf("%d cycles in %d pages, want 7 in 3", len(items), pages)
	}
	var ids []string
	for i, c := range items {
		ids = append(ids, c["account"].(string))
		if c["period"] != "2026-03" || c["in_progress"] != false {
			t.Fatalf("cycle %v", c)
		}
		want := float64(i + 1)
		if c["seats_billed"] != want {
			t.Fatalf("%s: seats_billed %v, want %v", ids[i], c["seats_billed"], want)
		}
	}
	if !slices.IsSorted(ids) || slices.Contains(ids, "acct-late") {
		t.Fatalf("accounts %v", ids)
	}
	if got := items[3]["totals"].(map[string]any)["purchased_seats"]; got != float64(2) {
		t.Fatalf("acct-3 purchased %v, want 2", got)
	}
	if got := items[3]["peak_active"]; got != float64(1) {
		t.Fatalf("acct-3 peak %v, want 1", got)
	}

	// May: every account, the late one's cycle in progress.
	may, _ := e.followLinks(e.operator, "/v1/billing?period=2026-05", "cycles")
	if len(may) != 8 || may[7]["account"] != "acct-late" || may[7]["in_progress"] != true {
		t.Fatalf("May: %v", may)
	}
	// An auditor of every account reads it too.
	auditor := e.mint(auth.Auditor, "")
	if a, _ := e.followLinks(auditor, "/v1/billing?period=2026-04&limit=1000", "cycles"); len(a) != 7 {
		t.Fatalf("April for an auditor: %d cycles", len(a))
	}
	// Nothing before the first opening.
	if none, _ := e.followLinks(e.operator, "/v1/billing?period=2026-02", "cycles"); len(none) != 0 {
		t.Fatalf("February: %v", none)
	}
}

// TestBillingOfAPeriodRefusals: a bad period, limit or cursor is a 400
// problem, a token of one account or of another role 403.
func TestBillingOfAPeriodRefusals(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 2)
	for _, q := range []string{"?period=2026-13", "?period=2026-3", "?period=march",
		"?period=2026-03&limit=0", "?period=2026-03&limit=1001", "?period=2026-03&cursor=xyz"} {
		r := e.must(400, e.operator, "GET", "/v1/billing"+q, nil)
		if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
			t.Fatalf("%s: %s", q, ct)
		}
	}
	// Without a period, the clock's month.
	if now := e.must(200, e.operator, "GET", "/v1/billing", nil).json(t); now["period"] != "2026-03" {
		t.Fatalf("default period: %v", now)
	}
	// A cursor of another period is refused.
	first := e.must(200, e.operator, "GET", "/v1/billing?period=2026-03", nil).json(t)
	p := e.must(400, e.operator, "GET", "/v1/billing?period=2026-04&cursor="+first["next_cursor"].(string), nil).json(t)
	if p["type"] != httpapi.ProblemBase+httpapi.ProblemInvalidCursor {
		t.Fatalf("foreign cursor: %v", p)
	}
	for _, tok := range []string{e.mint(auth.Admin, "acme"), e.mint(auth.Auditor, "acme"), e.mint(auth.Service, "acme")} {
		e.must(403, tok, "GET", "/v1/billing?period=2026-03", nil)
	}
	e.must(401, "", "GET", "/v1/billing?period=2026-03", nil)
}

// TestNextLinks: every JSON list follows the same scheme: next_link and a
// Link header while has_more, neither on the last page, and following
// the links reads the same items as one large page.
func TestNextLinks(t *testing.T) {
	e := newEnv(t)
	for i := range 3 {
		e.open(fmt.Sprintf("acme-%d", i), 10)
	}
	var users []string
	for i := range 5 {
		users = append(users, e.addUser("acme-0", fmt.Sprintf("U %d", i), fmt.Sprintf("u%d@x.test", i), "member"))
	}
	for _, u := range users {
		e.must(201, e.operator, "POST", "/v1/accounts/acme-0/activities", map[string]string{"user_id": u, "kind": "note", "ref": "r"})
	}
	for _, l := range []struct{ path, key string }{
		{"/v1/accounts", "accounts"},
		{"/v1/accounts/acme-0/users?status=active", "users"},
		{"/v1/accounts/acme-0/activities", "activities"},
		{"/v1/accounts/acme-0/audit?user=" + users[2], "entries"},
		{"/v1/accounts/acme-0/audit", "entries"},
		{"/v1/billing?period=2026-03", "cycles"},
		{"/v1/quarantine", "records"},
	} {
		whole, pages := e.followLinks(e.operator, l.path, l.key)
		if pages != 1 {
			t.Fatalf("%s: %d pages without a limit", l.path, pages)
		}
		sep := "?"
		if strings.Contains(l.path, "?") {
			sep = "&"
		}
		paged, pages := e.followLinks(e.operator, l.path+sep+"limit=2", l.key)
		if want := max(1, (len(whole)+1)/2); pages != want {
			t.Fatalf("%s: %d pages of 2 for %d items, want %d", l.path, pages, len(whole), want)
		}
		for _, it := range append(slices.Clone(whole), paged...) {
			// A cycle in progress is counted up to the clock, which moves.
			delete(it, "until")
			delete(it, "active_user_days")
		}
		a, _ := json.Marshal(whole)
		b, _ := json.Marshal(paged)
		if string(a) != string(b) {
			t.Fatalf("%s: paged by links\n%s\nwhole\n%s", l.path, b, a)
		}
	}
	// An activity page asked with after continues by cursor alone.
	r := e.must(200, e.operator, "GET", "/v1/accounts/acme-0/activities?after=1&limit=1", nil).json(t)
	if link := r["next_link"].(string); strings.Contains(link, "after=") || !strings.Contains(link, "limit=1") {
		t.Fatalf("next_link %q", link)
	}
}

// TestQuarantinePagingRefusals: the quarantine pages like every list: a
// limit outside 1..1000 and a cursor it did not give (the bare position
// it used to give, another list's) are 400 problems.
func TestQuarantinePagingRefusals(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 2)
	accounts := e.must(200, e.operator, "GET", "/v1/accounts", nil).json(t)["next_cursor"].(string)
	for _, q := range []string{"limit=0", "limit=1001", "limit=x", "cursor=12", "cursor=" + accounts} {
		p := e.must(400, e.operator, "GET", "/v1/quarantine?"+q, nil).json(t)
		if !strings.HasPrefix(p["type"].(string), httpapi.ProblemBase) {
			t.Fatalf("%s: %v", q, p)
		}
	}
	page := e.must(200, e.operator, "GET", "/v1/quarantine?limit=5", nil).json(t)
	e.must(200, e.operator, "GET", "/v1/quarantine?cursor="+page["next_cursor"].(string), nil)
}
