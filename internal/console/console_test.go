package console_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/console"
)

// TestCookiesAreSecureOverTLS signs in over TLS and checks that both the
// sign-in form's cookie and the session cookie are Secure, HttpOnly and
// SameSite=Strict. The account check is answered by a handler standing
// in for the API: only the console's cookies are under test.
func TestCookiesAreSecureOverTLS(t *testing.T) {
	tokens := auth.NewMemoryStore()
	_, secret, err := auth.Mint(context.Background(), tokens, rand.Reader, auth.Admin, "acme", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/accounts/acme" || r.Header.Get("Authorization") != "Bearer "+secret {
			http.Error(w, "{}", http.StatusNotFound)
			return
		}
		_, _ = w.Write([]byte(`{"account":"acme"}`))
	})
	c := console.New(console.Config{API: api, Tokens: tokens})

	get := httptest.NewRequest("GET", "https://ledger.test/console/signin", nil)
	get.TLS = &tls.ConnectionState{}
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, get)
	pre := rec.Result().Cookies()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(rec.Body.String())
	if len(pre) != 1 || m == nil {
		t.Fatalf("sign-in page: cookies %v, form token found %v", pre, m != nil)
	}
	checkFlags(t, pre[0])

	post := httptest.NewRequest("POST", "https://ledger.test/console/signin",
		strings.NewReader(url.Values{"csrf": {m[1]}, "token": {secret}}.Encode()))
	post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	post.TLS = &tls.ConnectionState{}
	post.AddCookie(pre[0])
	rec = httptest.NewRecorder()
	c.ServeHTTP(rec, post)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("sign-in: %d: %s", rec.Code, rec.Body)
	}
	var session *http.Cookie
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == console.CookieName {
			session = ck
		}
	}
	if session == nil {
		t.Fatal("no session cookie")
	}
	checkFlags(t, session)
	if session.MaxAge <= 0 || session.MaxAge > int(console.DefaultSessionTTL/time.Second) {
		t.Fatalf("session cookie Max-Age %d, want 1 to %v", session.MaxAge, console.DefaultSessionTTL)
	}
}

func checkFlags(t *testing.T, c *http.Cookie) {
	t.Helper()
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != console.Prefix {
		t.Fatalf("cookie %s over TLS: %+v, want Secure, HttpOnly, SameSite=Strict, Path=%s", c.Name, c, console.Prefix)
	}
}

// TestSessionExpires checks that a session is refused once its time is
// up, even though its token still authenticates.
func TestSessionExpires(t *testing.T) {
	tokens := auth.NewMemoryStore()
	_, secret, err := auth.Mint(context.Background(), tokens, rand.Reader, auth.Admin, "acme", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"account":"acme","users":[]}`))
	})
	now := time.Now()
	c := console.New(console.Config{API: api, Tokens: tokens, SessionTTL: time.Hour, Clock: func() time.Time { return now }})
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, httptest.NewRequest("GET", "/console/signin", nil))
	pre := rec.Result().Cookies()[0]
	tok := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(rec.Body.String())[1]
	post := httptest.NewRequest("POST", "/console/signin", strings.NewReader(url.Values{"csrf": {tok}, "token": {secret}}.Encode()))
	post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	post.AddCookie(pre)
	rec = httptest.NewRecorder()
	c.ServeHTTP(rec, post)
	var session *http.Cookie
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == console.CookieName {
			session = ck
		}
	}
	if session == nil {
		t.Fatalf("sign-in: %d, no session", rec.Code)
	}
	page := func() int {
		req := httptest.NewRequest("GET", "/console/activities", nil)
		req.AddCookie(session)
		rec := httptest.NewRecorder()
		c.ServeHTTP(rec, req)
		return rec.Code
	}
	if got := page(); got != http.StatusOK {
		t.Fatalf("page in a live session: %d", got)
	}
	now = now.Add(time.Hour)
	if got := page(); got != http.StatusSeeOther {
		t.Fatalf("page in an expired session: %d, want 303 to the sign-in", got)
	}
}
