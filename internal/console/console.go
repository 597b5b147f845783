// Package console is the ledger's web console, served by licensed at
// /console/: the admin's Settings › Users screen of the help article and
// the pages that read an account's activities, audit history and billing.
//
// Pages are rendered on the server with html/template; the stylesheet and
// the little JavaScript that opens the delete dialog are embedded. Signing
// in exchanges an API token (admin, operator or auditor) for a session
// cookie; the token stays on the server, and every request re-checks it
// against the token store, so a session ends when its token is revoked.
//
// The console decides nothing itself: every read and every change is a
// request to the HTTP API, made in process with the session's token, so
// the API's authorisation, rules and problem details apply unchanged.
package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/licenseledger/ledger/internal/auth"
)

// Prefix is the path the console is served under.
const Prefix = "/console/"

// CookieName is the name of the session cookie.
const CookieName = "ledger_console"

// preCookieName is the cookie that carries the sign-in form's token
// before a session exists.
const preCookieName = "ledger_console_signin"

// DefaultSessionTTL is how long a session lasts after sign-in.
const DefaultSessionTTL = 8 * time.Hour

// maxForm caps the size of a form the console reads.
const maxForm = 64 << 10

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config is what the console needs.
type Config struct {
	// API is the ledger's HTTP API handler; the console sends it every
	// read and write in process.
	API http.Handler
	// Tokens is the token store the API authenticates against; the
	// console checks a session's token in it on every request.
	Tokens auth.Store
	// Clock returns the current time.
	Clock func() time.Time
	// Random is the source of session ids and form tokens (crypto/rand's
	// Reader when nil).
	Random io.Reader
	// SessionTTL is how long a session lasts (DefaultSessionTTL when 0).
	SessionTTL time.Duration
	Logger     *slog.Logger
}

// Console is the console's HTTP handler, to be mounted at [Prefix].
type Console struct {
	cfg     Config
	log     *slog.Logger
	pages   map[string]*template.Template
	handler http.Handler

	mu       sync.Mutex
	sessions map[string]*session
}

// session is a signed-in browser. The token secret never leaves the
// server. Its fields other than flash do not change once it is stored:
// choosing another account stores a new session under the same id.
type session struct {
	id      string
	secret  string
	tokenID string
	role    auth.Role
	account string
	// allAccounts says the token covers every account: the session may
	// list the accounts and switch between them.
	allAccounts bool
	csrf        string
	expires     time.Time
	flash       string
}

// New returns the console.
func New(cfg Config) *Console {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Random == nil {
		cfg.Random = rand.Reader
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Console{cfg: cfg, log: cfg.Logger, sessions: map[string]*session{}}
	c.pages = parsePages()
	mux := http.NewServeMux()
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /console/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/users", http.StatusSeeOther)
	})
	mux.HandleFunc("GET /console/signin", c.signInPage)
	mux.HandleFunc("POST /console/signin", c.signIn)
	mux.HandleFunc("POST /console/signout", c.signedIn(c.signOut))
	mux.HandleFunc("GET /console/users", c.signedIn(c.usersPage))
	mux.HandleFunc("POST /console/users", c.signedIn(c.usersPage))
	mux.HandleFunc("POST /console/users/{user}/deactivate", c.signedIn(c.deactivate))
	mux.HandleFunc("POST /console/users/{user}/activate", c.signedIn(c.activate))
	mux.HandleFunc("POST /console/users/{user}/delete", c.signedIn(c.deleteUser))
	mux.HandleFunc("POST /console/users/{user}/update", c.signedIn(c.updateUser))
	mux.HandleFunc("POST /console/seats", c.signedIn(c.buySeats))
	mux.HandleFunc("POST /console/seat-reductions", c.signedIn(c.reduceSeats))
	mux.HandleFunc("GET /console/activities", c.signedIn(c.activitiesPage))
	mux.HandleFunc("GET /console/audit", c.signedIn(c.auditPage))
	mux.HandleFunc("GET /console/billing", c.signedIn(c.billingPage))
	mux.HandleFunc("GET /console/accounts", c.signedIn(c.accountsPage))
	mux.HandleFunc("GET /console/accounts/{account}", c.signedIn(c.openAccount))
	c.handler = http.NewCrossOriginProtection().Handler(mux)
	return c
}

// ServeHTTP serves a console request.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	c.handler.ServeHTTP(w, r)
}

// randomToken returns 32 random bytes, base64url-encoded.
func (c *Console) randomToken() (string, error) {
	var b [32]byte
	if _, err := io.ReadFull(c.cfg.Random, b[:]); err != nil {
		return "", fmt.Errorf("console: random: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

func equalTokens(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// handlerFunc is a page or action of a signed-in session.
type handlerFunc func(w http.ResponseWriter, r *http.Request, s *session)

// signedIn wraps h: the request must carry a live session whose token the
// store still holds, and a POST must carry the session's form token.
func (c *Console) signedIn(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, err := c.session(r)
		if err != nil {
			if !errors.Is(err, errNoSession) {
				c.log.Error("console: session check failed", "err", err)
				c.errorPage(w, http.StatusServiceUnavailable, "The token store cannot be reached; try again.")
				return
			}
			clearCookie(w, r, CookieName)
			http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				c.errorPage(w, http.StatusBadRequest, "The form could not be read.")
				return
			}
			if !equalTokens(r.PostForm.Get("csrf"), s.csrf) {
				c.errorPage(w, http.StatusForbidden, "This form is stale or was not sent from the console: reload the page and try again.")
				return
			}
		}
		if s.account == "" && !accountFree(r) {
			// A session for every account that has not chosen one yet.
			http.Redirect(w, r, "/console/accounts", http.StatusSeeOther)
			return
		}
		h(w, r, s)
	}
}

// accountFree reports whether r is a page or action that needs no chosen
// account: the list of accounts, opening one, signing out.
func accountFree(r *http.Request) bool {
	return r.URL.Path == "/console/accounts" || strings.HasPrefix(r.URL.Path, "/console/accounts/") || r.URL.Path == "/console/signout"
}

var errNoSession = errors.New("console: no live session")

// session returns the request's session after checking that it has not
// expired and that its token still authenticates; a dead session is
// forgotten.
func (c *Console) session(r *http.Request) (*session, error) {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return nil, errNoSession
	}
	c.mu.Lock()
	s, ok := c.sessions[ck.Value]
	if ok && !c.cfg.Clock().Before(s.expires) {
		delete(c.sessions, ck.Value)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return nil, errNoSession
	}
	p, err := auth.Authenticate(r.Context(), c.cfg.Tokens, "Bearer "+s.secret)
	if errors.Is(err, auth.ErrUnauthenticated) {
		c.forget(s.id)
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	if p.TokenID != s.tokenID {
		c.forget(s.id)
		return nil, errNoSession
	}
	return s, nil
}

func (c *Console) forget(id string) {
	c.mu.Lock()
	delete(c.sessions, id)
	c.mu.Unlock()
}

// takeFlash returns and clears the session's one-time message.
func (c *Console) takeFlash(s *session) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := s.flash
	s.flash = ""
	return f
}

func (c *Console) setFlash(s *session, msg string) {
	c.mu.Lock()
	s.flash = msg
	c.mu.Unlock()
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, ttl time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: Prefix, MaxAge: int(ttl / time.Second),
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

func clearCookie(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: "", Path: Prefix, MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

// signInPage shows the sign-in form with a fresh form token, also set as
// a cookie (a double submit: a form posted from elsewhere lacks one of
// them).
func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	c.renderSignIn(w, r, http.StatusOK, "")
}

func (c *Console) renderSignIn(w http.ResponseWriter, r *http.Request, status int, problem string) {
	tok, err := c.randomToken()
	if err != nil {
		c.errorPage(w, http.StatusInternalServerError, "The console cannot draw a form token.")
		return
	}
	setCookie(w, r, preCookieName, tok, 15*time.Minute)
	c.render(w, status, "signin", map[string]any{"CSRF": tok, "Problem": problem, "Account": r.PostFormValue("account")})
}

// signIn exchanges an API token for a session.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		c.errorPage(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	pre, err := r.Cookie(preCookieName)
	if err != nil || !equalTokens(r.PostForm.Get("csrf"), pre.Value) {
		c.errorPage(w, http.StatusForbidden, "This form is stale or was not sent from the console: reload the sign-in page and try again.")
		return
	}
	secret := strings.TrimSpace(r.PostForm.Get("token"))
	p, err := auth.Authenticate(r.Context(), c.cfg.Tokens, "Bearer "+secret)
	if errors.Is(err, auth.ErrUnauthenticated) {
		c.renderSignIn(w, r, http.StatusUnauthorized, "This token is not valid: it is unknown, malformed or revoked.")
		return
	}
	if err != nil {
		c.log.Error("console: sign-in check failed", "err", err)
		c.errorPage(w, http.StatusServiceUnavailable, "The token store cannot be reached; try again.")
		return
	}
	switch p.Role {
	case auth.Admin, auth.Operator, auth.Auditor:
	default:
		c.renderSignIn(w, r, http.StatusForbidden, "A token with role "+string(p.Role)+" cannot sign in to the console: use an admin, operator or auditor token.")
		return
	}
	account := p.Account
	if account == "" {
		account = strings.TrimSpace(r.PostForm.Get("account"))
	}
	s := &session{secret: secret, tokenID: p.TokenID, role: p.Role, account: account, allAccounts: p.Account == "",
		expires: c.cfg.Clock().Add(c.cfg.SessionTTL)}
	// The account must exist and be visible to the token: ask the API. A
	// token for every account that names none chooses on the accounts
	// page.
	next := "/console/users"
	if account == "" {
		next = "/console/accounts"
	} else if res := c.call(r.Context(), s, http.MethodGet, accountPath(account), nil, nil, ""); res.problem != nil {
		c.renderSignIn(w, r, res.status, res.problem.String())
		return
	}
	if s.id, err = c.randomToken(); err == nil {
		s.csrf, err = c.randomToken()
	}
	if err != nil {
		c.errorPage(w, http.StatusInternalServerError, "The console cannot draw a session id.")
		return
	}
	c.mu.Lock()
	now := c.cfg.Clock()
	for id, old := range c.sessions {
		if !now.Before(old.expires) {
			delete(c.sessions, id)
		}
	}
	c.sessions[s.id] = s
	c.mu.Unlock()
	clearCookie(w, r, preCookieName)
	setCookie(w, r, CookieName, s.id, c.cfg.SessionTTL)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// signOut ends the session on the server and clears its cookie.
func (c *Console) signOut(w http.ResponseWriter, r *http.Request, s *session) {
	c.forget(s.id)
	clearCookie(w, r, CookieName)
	http.Redirect(w, r, "/console/signin", http.StatusSeeOther)
}

// Problem is an RFC 9457 problem detail as the API answers it.
type Problem struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Rule   string `json:"rule"`
}

func (p *Problem) String() string {
	if p.Detail == "" {
		return p.Title
	}
	return p.Detail
}

// result is the API's answer to an in-process request.
type result struct {
	status  int
	body    []byte
	problem *Problem
}

// recorder collects the API's answer.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

// call sends one request to the API with the session's token: path is
// the API path, query its parameters, body a value sent as JSON (with
// contentType, application/json when empty).
func (c *Console) call(ctx context.Context, s *session, method, path string, query url.Values, body any, contentType string) result {
	return c.callKeyed(ctx, s, method, path, query, body, contentType, "")
}

// write sends a change from a form to the API. Every page draws a form
// key; a change is sent under an idempotency key made of it, the action
// and the user, so that a form submitted twice (a double click) is
// decided once and the repeat gets the first answer.
func (c *Console) write(r *http.Request, s *session, method, path string, query url.Values, body any, contentType, action string) result {
	key := ""
	if fk := r.PostForm.Get("form_key"); fk != "" && len(fk) <= 64 && !strings.ContainsFunc(fk, func(c rune) bool { return c < 0x21 || c > 0x7e }) {
		key = "console-" + fk + "-" + action + "-" + r.PathValue("user")
	}
	return c.callKeyed(r.Context(), s, method, path, query, body, contentType, key)
}

func (c *Console) callKeyed(ctx context.Context, s *session, method, path string, query url.Values, body any, contentType, key string) result {
	var rd io.Reader = http.NoBody // as a server's request: never nil
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return result{status: 500, problem: &Problem{Title: "Internal error", Status: 500, Detail: err.Error()}}
		}
		rd = bytes.NewReader(b)
	}
	target := path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return result{status: 500, problem: &Problem{Title: "Internal error", Status: 500, Detail: err.Error()}}
	}
	req.RemoteAddr = "console"
	req.Header.Set("Authorization", "Bearer "+s.secret)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if body != nil {
		if contentType == "" {
			contentType = "application/json"
		}
		req.Header.Set("Content-Type", contentType)
	}
	rec := &recorder{header: http.Header{}}
	c.cfg.API.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	res := result{status: rec.status, body: rec.body.Bytes()}
	if rec.status >= 300 { // the API redirects no request the console makes
		if rec.status < 400 {
			rec.status = http.StatusBadRequest
		}
		p := &Problem{Status: rec.status, Title: http.StatusText(rec.status)}
		if err := json.Unmarshal(res.body, p); err != nil || p.Title == "" {
			p.Title = http.StatusText(rec.status)
		}
		res.problem = p
	}
	return res
}

// get reads path into v; a refusal is returned as a *Problem error.
func (c *Console) get(ctx context.Context, s *session, path string, query url.Values, v any) error {
	res := c.call(ctx, s, http.MethodGet, path, query, nil, "")
	if res.problem != nil {
		return res.problem
	}
	if err := json.Unmarshal(res.body, v); err != nil {
		return fmt.Errorf("console: decode %s: %w", path, err)
	}
	return nil
}

// Error makes a problem an error.
func (p *Problem) Error() string { return p.String() }

func accountPath(account string) string { return "/v1/accounts/" + url.PathEscape(account) }

func userPath(account, user string) string {
	return accountPath(account) + "/users/" + url.PathEscape(user)
}
