package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/console"
)

// consoleStory is an account with two seats held by Ada (admin) and Bob
// (member), an admin token for it, served by the real wiring.
type consoleStory struct {
	svc                *running
	op, admin, adminID string
	ada, bob           string
}

func startConsoleStory(t *testing.T) *consoleStory {
	t.Helper()
	dir := t.TempDir()
	svc := startService(t, dir, io.Discard)
	t.Cleanup(svc.stop)
	b, err := os.ReadFile(filepath.Join(dir, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	st := &consoleStory{svc: svc, op: strings.TrimSpace(string(b))}
	svc.expect(201, st.op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme Recruiting", "seats": 2})
	minted := svc.expect(201, st.op, "POST", "/v1/tokens", map[string]any{"role": "admin", "account": "acme"})
	st.admin, _ = minted.body["token"].(string)
	st.adminID, _ = minted.body["id"].(string)
	if st.admin == "" || st.adminID == "" {
		t.Fatalf("minted token missing: %s", minted.raw)
	}
	st.ada = svc.expect(201, st.admin, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Ada Lovelace", "email": "ada@acme.test", "role": "admin"}).body["id"].(string)
	st.bob = svc.expect(201, st.admin, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Bob Babbage", "email": "bob@acme.test", "role": "member"}).body["id"].(string)
	return st
}

// browserless is a cookie-keeping client that does not follow redirects.
type browserless struct {
	t    *testing.T
	base string
	c    *http.Client
	// urls are every URL requested, redirected to, or found in a page.
	urls []string
}

func newBrowserless(t *testing.T, base string) *browserless {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browserless{t: t, base: base, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

var (
	csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	urlAttr   = regexp.MustCompile(`(?:href|action|src)="([^"]*)"`)
)

func (b *browserless) do(method, path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	b.urls = append(b.urls, req.URL.String(), resp.Header.Get("Location"))
	for _, m := range urlAttr.FindAllStringSubmatch(string(raw), -1) {
		b.urls = append(b.urls, m[1])
	}
	return resp, string(raw)
}

// csrf returns the form token of the page at path.
func (b *browserless) csrf(path string) string {
	b.t.Helper()
	resp, page := b.do("GET", path, nil)
	m := csrfField.FindStringSubmatch(page)
	if resp.StatusCode != 200 || m == nil {
		b.t.Fatalf("GET %s: %d, no form token: %s", path, resp.StatusCode, page)
	}
	return m[1]
}

func (b *browserless) signIn(token string) *http.Response {
	b.t.Helper()
	tok := b.csrf("/console/signin")
	resp, page := b.do("POST", "/console/signin", url.Values{"csrf": {tok}, "token": {token}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/users" {
		b.t.Fatalf("sign-in: %d to %q: %s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	return resp
}

func (st *consoleStory) status(t *testing.T, user string) string {
	t.Helper()
	return st.svc.expect(200, st.op, "GET", "/v1/accounts/acme/users/"+user, nil).body["status"].(string)
}

func TestConsoleSessionCookie(t *testing.T) {
	st := startConsoleStory(t)
	b := newBrowserless(t, st.svc.base)
	resp := b.signIn(st.admin)
	var session *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == console.CookieName {
			session = c
		}
	}
	if session == nil {
		t.Fatalf("no session cookie: %v", resp.Header["Set-Cookie"])
	}
	if !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/console/" || session.MaxAge <= 0 || session.Secure {
		t.Fatalf("session cookie over plain HTTP: %+v, want HttpOnly, SameSite=Strict, Path=/console/, expiring, not Secure", session)
	}
	if strings.Contains(session.Value, st.admin) || strings.Contains(session.Value, strings.TrimPrefix(st.admin, "ll_")) {
		t.Fatal("the session cookie carries the token")
	}
	resp, page := b.do("GET", "/console/users", nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "2 of 2 licenses in use") {
		t.Fatalf("users page: %d: %s", resp.StatusCode, page)
	}
}

func TestConsoleRefusesFormsWithoutTheirToken(t *testing.T) {
	st := startConsoleStory(t)
	b := newBrowserless(t, st.svc.base)
	// A sign-in form posted without the sign-in page's token is refused.
	if resp, _ := b.do("POST", "/console/signin", url.Values{"token": {st.admin}}); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-in without a form token: %d, want 403", resp.StatusCode)
	}
	b.signIn(st.admin)
	for name, form := range map[string]url.Values{
		"no token":    {"reason": {"x"}},
		"wrong token": {"reason": {"x"}, "csrf": {"forged"}},
	} {
		resp, _ := b.do("POST", "/console/users/"+st.bob+"/deactivate", form)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: deactivate answered %d, want 403", name, resp.StatusCode)
		}
	}
	// A cross-site request is refused even with the right token.
	tok := b.csrf("/console/users")
	req, _ := http.NewRequest("POST", st.svc.base+"/console/users/"+st.bob+"/deactivate", strings.NewReader(url.Values{"csrf": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site deactivate: %d, want 403", resp.StatusCode)
	}
	if got := st.status(t, st.bob); got != "active" {
		t.Fatalf("Bob is %s after refused forms, want active", got)
	}
	// With its token the same form works.
	if resp, page := b.do("POST", "/console/users/"+st.bob+"/deactivate", url.Values{"csrf": {tok}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("deactivate with the form token: %d: %s", resp.StatusCode, page)
	}
	if got := st.status(t, st.bob); got != "deactivated" {
		t.Fatalf("Bob is %s, want deactivated", got)
	}
}

func TestConsoleSessionEndsWithItsToken(t *testing.T) {
	st := startConsoleStory(t)
	b := newBrowserless(t, st.svc.base)
	b.signIn(st.admin)
	tok := b.csrf("/console/users")
	st.svc.expect(204, st.op, "DELETE", "/v1/tokens/"+st.adminID, nil)
	resp, _ := b.do("GET", "/console/users", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/signin" {
		t.Fatalf("users page after the token's revocation: %d to %q, want 303 to the sign-in", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := b.do("POST", "/console/users/"+st.bob+"/deactivate", url.Values{"csrf": {tok}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("deactivate after the token's revocation: %d, want 303 to the sign-in", resp.StatusCode)
	}
	if got := st.status(t, st.bob); got != "active" {
		t.Fatalf("Bob is %s, want active", got)
	}
}

func TestConsoleSignOutEndsTheSession(t *testing.T) {
	st := startConsoleStory(t)
	b := newBrowserless(t, st.svc.base)
	b.signIn(st.admin)
	u, _ := url.Parse(st.svc.base + "/console/")
	cookies := b.c.Jar.Cookies(u)
	tok := b.csrf("/console/users")
	if resp, _ := b.do("POST", "/console/signout", url.Values{"csrf": {tok}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", resp.StatusCode)
	}
	// The old cookie, replayed, opens nothing.
	replay := newBrowserless(t, st.svc.base)
	replay.c.Jar.SetCookies(u, cookies)
	if resp, _ := replay.do("GET", "/console/users", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("users page with a signed-out cookie: %d, want 303 to the sign-in", resp.StatusCode)
	}
}

func TestConsoleActionsFollowTheLedgersRules(t *testing.T) {
	st := startConsoleStory(t)
	b := newBrowserless(t, st.svc.base)
	b.signIn(st.admin)
	tok := b.csrf("/console/users")

	// Ada is the last active admin: the API's refusal is shown by her row.
	resp, page := b.do("POST", "/console/users/"+st.ada+"/deactivate", url.Values{"csrf": {tok}})
	if resp.StatusCode != 409 || !strings.Contains(page, `id="problem-`+st.ada+`"`) || !strings.Contains(page, "admin") {
		t.Fatalf("deactivating the last admin: %d: %s", resp.StatusCode, page)
	}
	// A search by email is a POST and finds Bob only.
	resp, page = b.do("POST", "/console/users", url.Values{"csrf": {tok}, "q": {"bob@"}})
	if resp.StatusCode != 200 || !strings.Contains(page, "Bob Babbage") || strings.Contains(page, "ada@acme.test</td>") {
		t.Fatalf("search: %d: %s", resp.StatusCode, page)
	}
	// Bob deactivated; with no free seat after a new user takes his, his
	// Activate is disabled with the reason, and the API refuses it too.
	b.do("POST", "/console/users/"+st.bob+"/deactivate", url.Values{"csrf": {tok}, "reason": {"moved to another team"}})
	st.svc.expect(201, st.admin, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Cy Quill", "email": "cy@acme.test", "role": "member"})
	_, page = b.do("GET", "/console/users", nil)
	if !strings.Contains(page, `value="activate" disabled`) || !strings.Contains(page, "No free seat: 2 of 2 licenses in use") {
		t.Fatalf("Activate not disabled without a seat: %s", page)
	}
	resp, page = b.do("POST", "/console/users/"+st.bob+"/activate", url.Values{"csrf": {tok}})
	if resp.StatusCode != 409 || !strings.Contains(page, "no seat available") {
		t.Fatalf("activate without a seat: %d: %s", resp.StatusCode, page)
	}
	// Deleting needs the user's email typed; a wrong one is the API's 428.
	resp, page = b.do("POST", "/console/users/"+st.bob+"/delete", url.Values{"csrf": {tok}, "confirm_email": {"ada@acme.test"}})
	if resp.StatusCode != 428 || st.status(t, st.bob) != "deactivated" {
		t.Fatalf("delete with the wrong email: %d: %s", resp.StatusCode, page)
	}
	resp, page = b.do("POST", "/console/users/"+st.bob+"/delete", url.Values{"csrf": {tok}, "confirm_email": {" BOB@acme.test "}, "reassign_to": {st.ada}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("delete: %d: %s", resp.StatusCode, page)
	}
	_, page = b.do("GET", "/console/users", nil)
	if strings.Contains(page, "Bob Babbage") || strings.Contains(page, "bob@acme.test") || !strings.Contains(page, "(deleted user)") {
		t.Fatalf("the deleted user's name is still shown: %s", page)
	}
	// A deleted user cannot come back: 410, shown by the row.
	resp, page = b.do("POST", "/console/users/"+st.bob+"/activate", url.Values{"csrf": {tok}})
	if resp.StatusCode != 410 || !strings.Contains(page, `id="problem-`+st.bob+`"`) {
		t.Fatalf("activating a deleted user: %d: %s", resp.StatusCode, page)
	}
	// Every page visited: no token, name or email in any URL.
	for _, p := range []string{"/console/activities", "/console/audit", "/console/billing"} {
		if resp, page := b.do("GET", p, nil); resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d: %s", p, resp.StatusCode, page)
		}
	}
	for _, u := range b.urls {
		for _, secret := range []string{st.admin, "acme.test", "Babbage", "Lovelace", "Quill", "moved"} {
			if strings.Contains(u, secret) || strings.Contains(u, url.QueryEscape(secret)) {
				t.Fatalf("URL %q carries %q", u, secret)
			}
		}
	}
}

func TestConsoleOperatorAndAuditor(t *testing.T) {
	st := startConsoleStory(t)
	op := newBrowserless(t, st.svc.base)
	tok := op.csrf("/console/signin")
	// An operator token covers every account: an account named at sign-in
	// must exist.
	resp, page := op.do("POST", "/console/signin", url.Values{"csrf": {tok}, "token": {st.op}, "account": {"nope"}})
	if resp.StatusCode != 404 {
		t.Fatalf("operator sign-in to an unknown account: %d: %s", resp.StatusCode, page)
	}
	tok = op.csrf("/console/signin")
	if resp, page := op.do("POST", "/console/signin", url.Values{"csrf": {tok}, "token": {st.op}, "account": {"acme"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("operator sign-in: %d: %s", resp.StatusCode, page)
	}
	tok = op.csrf("/console/users")
	// Below the active users a reduction is refused with the API's words.
	resp, page = op.do("POST", "/console/seat-reductions", url.Values{"csrf": {tok}, "count": {"1"}})
	if resp.StatusCode != 409 || !strings.Contains(page, "reduction") || !strings.Contains(page, `class="problem"`) {
		t.Fatalf("reduction below the active users: %d: %s", resp.StatusCode, page)
	}
	op.do("POST", "/console/seats", url.Values{"csrf": {tok}, "count": {"1"}})
	if resp, page := op.do("POST", "/console/seat-reductions", url.Values{"csrf": {tok}, "count": {"1"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("reduction: %d: %s", resp.StatusCode, page)
	}
	if _, page := op.do("GET", "/console/users", nil); !strings.Contains(page, "2 of 3 licenses in use") || !strings.Contains(page, "Pending reduction: 1 seat(s)") || !strings.Contains(page, "Free seats: 0") {
		t.Fatalf("users page after a reduction: %s", page)
	}

	// An auditor reads but is offered no action, and the API refuses one.
	minted := st.svc.expect(201, st.op, "POST", "/v1/tokens", map[string]any{"role": "auditor", "account": "acme"})
	aud := newBrowserless(t, st.svc.base)
	aud.signIn(minted.body["token"].(string))
	_, page = aud.do("GET", "/console/users", nil)
	if strings.Contains(page, ">Deactivate</button>") || strings.Contains(page, "Buy seats") || !strings.Contains(page, "Bob Babbage") {
		t.Fatalf("auditor's users page: %s", page)
	}
	tok = aud.csrf("/console/users")
	resp, page = aud.do("POST", "/console/users/"+st.bob+"/deactivate", url.Values{"csrf": {tok}})
	if resp.StatusCode != 403 || !strings.Contains(page, "may not do this") || st.status(t, st.bob) != "active" {
		t.Fatalf("auditor's deactivation: %d: %s", resp.StatusCode, page)
	}
	if _, page := aud.do("GET", "/console/audit", nil); !strings.Contains(page, "Verified: every link") || !strings.Contains(page, "UserAdded") {
		t.Fatalf("audit page: %s", page)
	}
}

func TestConsoleHostileInput(t *testing.T) {
	st := startConsoleStory(t)
	b := newBrowserless(t, st.svc.base)
	b.signIn(st.admin)
	tok := b.csrf("/console/users")
	for _, path := range []string{"/console/users/%2E%2E/deactivate", "/console/users/%2E/activate", "/console/users/x%2Fy/delete", "/console/users/%FF/update"} {
		resp, page := b.do("POST", path, url.Values{"csrf": {tok}, "confirm_email": {"x"}, "name": {"Z"}})
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Fatalf("POST %s: %d, want a refusal: %s", path, resp.StatusCode, page)
		}
	}
	for _, q := range []string{"?status=bogus", "?cursor=garbage", "?cursor=%FF"} {
		resp, page := b.do("GET", "/console/users"+q, nil)
		if resp.StatusCode != 200 || !strings.Contains(page, `class="problem"`) {
			t.Fatalf("GET users%s: %d: %s", q, resp.StatusCode, page)
		}
	}
	if resp, _ := b.do("POST", "/console/users", url.Values{"csrf": {tok}, "q": {strings.Repeat("x", 70_000)}}); resp.StatusCode != 400 {
		t.Fatalf("oversized form: %d, want 400", resp.StatusCode)
	}
	resp, page := b.do("POST", "/console/seats", url.Values{"csrf": {tok}, "count": {"-3"}})
	if resp.StatusCode != 422 && resp.StatusCode != 400 || !strings.Contains(page, `class="problem"`) {
		t.Fatalf("negative seat purchase: %d: %s", resp.StatusCode, page)
	}
	for _, u := range []string{st.ada, st.bob} {
		if got := st.status(t, u); got != "active" {
			t.Fatalf("user %s is %s after hostile requests", u, got)
		}
	}
}

func TestConsoleEditsAndPages(t *testing.T) {
	st := startConsoleStory(t)
	b := newBrowserless(t, st.svc.base)
	b.signIn(st.admin)
	tok := b.csrf("/console/users")

	// Bob's email cannot be Ada's; then he becomes an admin, so Ada may go.
	resp, page := b.do("POST", "/console/users/"+st.bob+"/update", url.Values{"csrf": {tok}, "email": {"ada@acme.test"}})
	if resp.StatusCode != 409 || !strings.Contains(page, `id="problem-`+st.bob+`"`) {
		t.Fatalf("duplicate email: %d: %s", resp.StatusCode, page)
	}
	if resp, page := b.do("POST", "/console/users/"+st.bob+"/update", url.Values{"csrf": {tok}, "name": {"Bob B. Babbage"}, "email": {"bob@acme.test"}, "role": {"admin"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("update: %d: %s", resp.StatusCode, page)
	}
	got := st.svc.expect(200, st.op, "GET", "/v1/accounts/acme/users/"+st.bob, nil).body
	if got["name"] != "Bob B. Babbage" || got["role"] != "admin" {
		t.Fatalf("Bob after the update: %v", got)
	}
	if resp, page := b.do("POST", "/console/users/"+st.ada+"/deactivate", url.Values{"csrf": {tok}, "reason": {"handed over"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("deactivating Ada once Bob is an admin: %d: %s", resp.StatusCode, page)
	}

	// 60 more users: the list pages by 50, by status and by search.
	st.svc.expect(200, st.op, "POST", "/v1/accounts/acme/seats", map[string]any{"count": 60})
	for i := range 60 {
		st.svc.expect(201, st.admin, "POST", "/v1/accounts/acme/users", map[string]any{
			"name": "Member " + strconv.Itoa(i), "email": "m" + strconv.Itoa(i) + "@acme.test", "role": "member"})
	}
	rows := regexp.MustCompile(`<tr id="user-`)
	next := regexp.MustCompile(`href="/console/users\?([^"]+)" id="next-page"`)
	_, page = b.do("GET", "/console/users?status=active", nil)
	m := next.FindStringSubmatch(page)
	if n := len(rows.FindAllString(page, -1)); n != 50 || m == nil {
		t.Fatalf("first page of active users: %d rows, next link %v", n, m != nil)
	}
	_, page = b.do("GET", "/console/users?"+strings.ReplaceAll(m[1], "&amp;", "&"), nil)
	if n := len(rows.FindAllString(page, -1)); n != 11 || next.MatchString(page) || strings.Contains(page, "Ada Lovelace") {
		t.Fatalf("second page of active users: %d rows, want 11 without Ada: %s", n, page)
	}
	// "m1" is in m1, m10..m19: 11 emails; a search of them is one page.
	_, page = b.do("POST", "/console/users", url.Values{"csrf": {tok}, "q": {"M1"}, "status": {"active"}})
	if n := len(rows.FindAllString(page, -1)); n != 11 {
		t.Fatalf("search: %d rows, want 11: %s", n, page)
	}
}

func TestConsoleFormSubmittedTwiceIsDecidedOnce(t *testing.T) {
	st := startConsoleStory(t)
	b := newBrowserless(t, st.svc.base)
	b.signIn(st.admin)
	_, page := b.do("GET", "/console/users", nil)
	m := regexp.MustCompile(`action="/console/seats"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)"><input type="hidden" name="form_key" value="([^"]+)">`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no seat form with a form key: %s", page)
	}
	form := url.Values{"csrf": {m[1]}, "form_key": {m[2]}, "count": {"1"}}
	for i := range 2 {
		if resp, page := b.do("POST", "/console/seats", form); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("purchase %d: %d: %s", i+1, resp.StatusCode, page)
		}
	}
	if got := num(t, st.svc.expect(200, st.op, "GET", "/v1/accounts/acme/seats", nil).body, "seats"); got != 3 {
		t.Fatalf("seats after one purchase of 1 submitted twice: %d, want 3", got)
	}
}

// An operator, or an auditor of every account, who signs in without
// naming an account gets the accounts page: every account by id with its
// name, seats, active users and opening date, a page at a time, each a
// link that opens its users page. A form of one account's page is stale
// once another account is opened. A token for one account is refused the
// list by the API.
func TestConsoleAccountsPage(t *testing.T) {
	st := startConsoleStory(t)
	for i := range 55 {
		st.svc.expect(201, st.op, "POST", "/v1/accounts", map[string]any{"id": fmt.Sprintf("co-%02d", i), "name": fmt.Sprintf("Company %d", i), "seats": i + 1})
	}
	auditor := st.svc.expect(201, st.op, "POST", "/v1/tokens", map[string]any{"role": "auditor"}).body["token"].(string)
	for _, token := range []string{st.op, auditor} {
		b := newBrowserless(t, st.svc.base)
		tok := b.csrf("/console/signin")
		resp, page := b.do("POST", "/console/signin", url.Values{"csrf": {tok}, "token": {token}})
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/accounts" {
			t.Fatalf("sign-in without an account: %d to %q: %s", resp.StatusCode, resp.Header.Get("Location"), page)
		}
		// No account chosen yet: the account's pages lead to the list.
		if resp, _ := b.do("GET", "/console/users", nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/accounts" {
			t.Fatalf("users page before an account is chosen: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, page = b.do("GET", "/console/accounts", nil)
		if resp.StatusCode != 200 || !strings.Contains(page, `<a href="/console/accounts/acme">acme</a></td><td>Acme Recruiting</td><td>2</td><td>2</td>`) ||
			!strings.Contains(page, "All accounts") {
			t.Fatalf("accounts page: %d: %s", resp.StatusCode, page)
		}
		// 56 accounts, 50 a page: co-00 to co-48 first, then co-49 to co-54.
		next := regexp.MustCompile(`href="(/console/accounts\?cursor=[^"]+)">Next page`).FindStringSubmatch(page)
		if next == nil || !strings.Contains(page, ">co-48<") || strings.Contains(page, ">co-49<") {
			t.Fatalf("first page of accounts: %s", page)
		}
		resp, page = b.do("GET", next[1], nil)
		if resp.StatusCode != 200 || !strings.Contains(page, `<a href="/console/accounts/co-54">co-54</a></td><td>Company 54</td><td>55</td><td>0</td>`) ||
			strings.Contains(page, ">co-48<") || strings.Contains(page, "Next page") {
			t.Fatalf("second page of accounts: %d: %s", resp.StatusCode, page)
		}
		if resp, page := b.do("GET", "/console/accounts?cursor=garbage", nil); resp.StatusCode != 400 || !strings.Contains(page, "cursor") {
			t.Fatalf("accounts page with a bad cursor: %d: %s", resp.StatusCode, page)
		}
		resp, _ = b.do("GET", "/console/accounts/acme", nil)
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/users" {
			t.Fatalf("opening acme: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		if _, page := b.do("GET", "/console/users", nil); !strings.Contains(page, "Account <strong>acme</strong>") || !strings.Contains(page, "Bob Babbage") ||
			!strings.Contains(page, `href="/console/accounts"`) {
			t.Fatalf("acme's users page: %s", page)
		}
		if resp, page := b.do("GET", "/console/accounts/nope", nil); resp.StatusCode != 404 {
			t.Fatalf("opening an unknown account: %d: %s", resp.StatusCode, page)
		}
		if token == st.op {
			// A purchase form drawn on acme's page is refused once co-01 is
			// open: it would otherwise buy seats for co-01.
			tok = b.csrf("/console/users")
			b.do("GET", "/console/accounts/co-01", nil)
			if resp, _ := b.do("POST", "/console/seats", url.Values{"csrf": {tok}, "count": {"1"}}); resp.StatusCode != http.StatusForbidden {
				t.Fatalf("acme's form on co-01: %d, want 403", resp.StatusCode)
			}
			if got := st.svc.expect(200, st.op, "GET", "/v1/accounts/co-01", nil).body["seats"]; got != float64(2) {
				t.Fatalf("co-01 has %v seats after a stale form, want 2", got)
			}
			if _, page := b.do("GET", "/console/users", nil); !strings.Contains(page, "Account <strong>co-01</strong>") {
				t.Fatalf("co-01's users page: %s", page)
			}
		}
	}
	// An admin of one account has no accounts page: the API refuses it.
	b := newBrowserless(t, st.svc.base)
	b.signIn(st.admin)
	if _, page := b.do("GET", "/console/users", nil); strings.Contains(page, `href="/console/accounts"`) {
		t.Fatalf("an admin is offered the accounts page: %s", page)
	}
	if resp, page := b.do("GET", "/console/accounts", nil); resp.StatusCode != 403 || strings.Contains(page, "co-01") {
		t.Fatalf("admin's accounts page: %d: %s", resp.StatusCode, page)
	}
	if resp, page := b.do("GET", "/console/accounts/co-01", nil); resp.StatusCode != 404 || strings.Contains(page, "Company 1") {
		t.Fatalf("admin opening another account: %d: %s", resp.StatusCode, page)
	}
}
