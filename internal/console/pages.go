package console

import (
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/licenseledger/ledger/internal/auth"
)

// pageSize is how many users the users page shows at once.
const pageSize = 50

// maxSearchRequests bounds the pages a search reads from the API for one
// page of matches; past it the page offers to continue.
const maxSearchRequests = 100

func parsePages() map[string]*template.Template {
	funcs := template.FuncMap{
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04 UTC")
		},
	}
	funcs["roles"] = func() []string { return []string{"admin", "member"} }
	// pageQuery is the query of the users page's next page: encoded here,
	// so the template must not escape its = and & again.
	funcs["pageQuery"] = func(status, cursor string) template.URL {
		q := url.Values{"cursor": {cursor}}
		if status != "" {
			q.Set("status", status)
		}
		return template.URL(q.Encode())
	}
	pages := map[string]*template.Template{}
	for _, name := range []string{"signin", "accounts", "users", "activities", "audit", "billing", "error"} {
		pages[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return pages
}

func (c *Console) render(w http.ResponseWriter, status int, page string, data any) {
	var buf strings.Builder
	if err := c.pages[page].ExecuteTemplate(&buf, "page", data); err != nil {
		c.log.Error("console: render", "page", page, "err", err)
		http.Error(w, "the page cannot be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(buf.String()))
}

func (c *Console) errorPage(w http.ResponseWriter, status int, msg string) {
	c.render(w, status, "error", map[string]any{"Title": http.StatusText(status), "Message": msg})
}

// Chrome is what every signed-in page shows.
type Chrome struct {
	Account string
	Role    string
	CSRF    string
	// FormKey is drawn for each page: its forms' changes are sent under
	// idempotency keys made of it.
	FormKey string
	Flash   string
	Page    string
	// CanManage says whether the token may change users and buy seats.
	CanManage bool
	// CanReduce says whether the token may schedule seat reductions.
	CanReduce bool
	// AllAccounts says the token covers every account: the console offers
	// the list of accounts.
	AllAccounts bool
}

func (c *Console) chrome(s *session, page string) Chrome {
	fk, err := c.randomToken()
	if err != nil {
		fk = "" // the forms then send their changes without a key
	}
	return Chrome{FormKey: fk, Account: s.account, Role: string(s.role), CSRF: s.csrf, Flash: c.takeFlash(s), Page: page,
		CanManage: s.role.Allows(auth.ManageUsers), CanReduce: s.role.Allows(auth.ReduceSeats), AllAccounts: s.allAccounts}
}

// usage is the API's seat usage of an account.
type usage struct {
	Name               string    `json:"name"`
	Seats              int       `json:"seats"`
	Active             int       `json:"active"`
	Deactivated        int       `json:"deactivated"`
	Deleted            int       `json:"deleted"`
	Available          int       `json:"available"`
	PendingReduction   int       `json:"pending_reduction"`
	PendingReductionAt time.Time `json:"pending_reduction_at"`
}

// user is a user as the API lists them.
type user struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Email        string `json:"email"`
	Role         string `json:"role"`
	Status       string `json:"status"`
	ReassignedTo string `json:"reassigned_to"`
}

type userList struct {
	Users      []user `json:"users"`
	HasMore    bool   `json:"has_more"`
	NextCursor string `json:"next_cursor"`
}

// usersView is the users page.
type usersView struct {
	Chrome
	Usage  usage
	Users  []user
	Active []user
	Status string
	Query  string
	// Cursor is where this page started; Next where the next starts.
	Cursor  string
	Next    string
	HasMore bool
	// Problems are the API's refusals, by user id ("" for the page,
	// "seats" for the seat purchase).
	Problems map[string]*Problem
}

// userFilter is what the users page lists.
type userFilter struct {
	status, query, cursor string
}

func filterOf(r *http.Request) userFilter {
	if r.Method == http.MethodPost {
		return userFilter{status: r.PostForm.Get("status"), query: strings.TrimSpace(r.PostForm.Get("q")), cursor: r.PostForm.Get("cursor")}
	}
	q := r.URL.Query()
	return userFilter{status: q.Get("status"), cursor: q.Get("cursor")}
}

// usersPage lists the account's users. A GET takes the status and cursor
// in its query; a search, whose text may be personal data, is a POST.
func (c *Console) usersPage(w http.ResponseWriter, r *http.Request, s *session) {
	c.renderUsers(w, r, s, http.StatusOK, filterOf(r), nil)
}

func (c *Console) renderUsers(w http.ResponseWriter, r *http.Request, s *session, status int, f userFilter, problems map[string]*Problem) {
	v := usersView{Chrome: c.chrome(s, "users"), Status: f.status, Query: f.query, Cursor: f.cursor, Problems: problems}
	if v.Problems == nil {
		v.Problems = map[string]*Problem{}
	}
	ctx := r.Context()
	if err := c.get(ctx, s, accountPath(s.account)+"/seats", nil, &v.Usage); err != nil {
		c.apiError(w, err)
		return
	}
	var err error
	v.Users, v.Next, v.HasMore, err = c.listUsers(r, s, f)
	if err != nil {
		var p *Problem
		if errors.As(err, &p) && p.Status == http.StatusBadRequest {
			v.Problems[""] = p
		} else {
			c.apiError(w, err)
			return
		}
	}
	if v.CanManage {
		var active userList
		if err := c.get(ctx, s, accountPath(s.account)+"/users", url.Values{"status": {"active"}, "limit": {"1000"}}, &active); err != nil {
			c.apiError(w, err)
			return
		}
		v.Active = active.Users
	}
	c.render(w, status, "users", v)
}

// listUsers reads one page of users from the API; with a search text it
// reads on until a page of matches is found.
func (c *Console) listUsers(r *http.Request, s *session, f userFilter) ([]user, string, bool, error) {
	q := url.Values{"limit": {strconv.Itoa(pageSize)}}
	if f.status != "" {
		q.Set("status", f.status)
	}
	if f.cursor != "" {
		q.Set("cursor", f.cursor)
	}
	path := accountPath(s.account) + "/users"
	if f.query == "" {
		var l userList
		err := c.get(r.Context(), s, path, q, &l)
		return l.Users, l.NextCursor, l.HasMore, err
	}
	needle := strings.ToLower(f.query)
	var found []user
	next, more := f.cursor, true
	for i := 0; i < maxSearchRequests && more && len(found) < pageSize; i++ {
		// Ask for no more users than matches are missing, so that the page
		// ends where the API's page ends and its cursor continues after it.
		q.Set("limit", strconv.Itoa(pageSize-len(found)))
		var l userList
		if err := c.get(r.Context(), s, path, q, &l); err != nil {
			return nil, "", false, err
		}
		for _, u := range l.Users {
			if strings.Contains(strings.ToLower(u.Name), needle) || strings.Contains(strings.ToLower(u.Email), needle) {
				found = append(found, u)
			}
		}
		next, more = l.NextCursor, l.HasMore
		q.Set("cursor", next)
	}
	return found, next, more, nil
}

// apiError renders a read the API refused.
func (c *Console) apiError(w http.ResponseWriter, err error) {
	var p *Problem
	if errors.As(err, &p) {
		c.errorPage(w, p.Status, p.String())
		return
	}
	c.log.Error("console: read failed", "err", err)
	c.errorPage(w, http.StatusInternalServerError, "The console could not read the account.")
}

// done finishes an action: a refusal re-renders the users page with the
// API's problem next to the action; success redirects to the users page
// with a message.
func (c *Console) done(w http.ResponseWriter, r *http.Request, s *session, key string, res result, flash string) {
	if res.problem != nil {
		if !s.role.Allows(auth.ManageUsers) {
			key = "" // no action column: the refusal goes above the list
		}
		c.renderUsers(w, r, s, res.problem.Status, filterOf(r), map[string]*Problem{key: res.problem})
		return
	}
	c.setFlash(s, flash)
	target := "/console/users"
	if st := r.PostForm.Get("status"); st != "" && r.PostForm.Get("q") == "" {
		target += "?" + url.Values{"status": {st}}.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

func (c *Console) deactivate(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("user")
	res := c.write(r, s, http.MethodPost, userPath(s.account, id)+"/deactivate", nil,
		map[string]string{"reason": strings.TrimSpace(r.PostForm.Get("reason"))}, "", "deactivate")
	c.done(w, r, s, id, res, "User deactivated: their license is free, and they can be activated again.")
}

func (c *Console) activate(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("user")
	res := c.write(r, s, http.MethodPost, userPath(s.account, id)+"/activate", nil, nil, "", "activate")
	c.done(w, r, s, id, res, "User activated: they hold a license again.")
}

// deleteUser deletes a user once the email typed in the dialog matches
// theirs; the API is then given its own confirmation, the user's id. A
// mismatch is sent without confirmation, so the API refuses it with its
// own problem.
func (c *Console) deleteUser(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("user")
	var u user
	if err := c.get(r.Context(), s, userPath(s.account, id), nil, &u); err != nil {
		var p *Problem
		if errors.As(err, &p) {
			c.done(w, r, s, id, result{status: p.Status, problem: p}, "")
			return
		}
		c.apiError(w, err)
		return
	}
	q := url.Values{}
	typed := strings.TrimSpace(r.PostForm.Get("confirm_email"))
	if u.Email != "" && strings.EqualFold(typed, u.Email) {
		q.Set("confirm", id)
	}
	if to := r.PostForm.Get("reassign_to"); to != "" {
		q.Set("reassign_to", to)
	}
	res := c.write(r, s, http.MethodDelete, userPath(s.account, id), q, nil, "", "delete")
	if res.problem != nil && res.problem.Rule == "confirmation-required" {
		res.problem.Detail = "Type the user's email exactly to confirm the deletion. " + res.problem.Detail
	}
	c.done(w, r, s, id, res, "User deleted: their license is free, their records stay, and their name is gone from the activities they logged.")
}

// updateUser sends the changed name, email and role as a merge patch.
func (c *Console) updateUser(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("user")
	patch := map[string]string{}
	for _, k := range []string{"name", "email", "role"} {
		if v, ok := r.PostForm[k]; ok && strings.TrimSpace(v[0]) != "" {
			patch[k] = strings.TrimSpace(v[0])
		}
	}
	res := c.write(r, s, http.MethodPatch, userPath(s.account, id), nil, patch, "application/merge-patch+json", "update")
	c.done(w, r, s, id, res, "User updated.")
}

// buySeats purchases seats for the account.
func (c *Console) buySeats(w http.ResponseWriter, r *http.Request, s *session) {
	c.seats(w, r, s, "seats", "/seats", "Seats bought.")
}

// reduceSeats schedules a seat reduction from the next billing cycle.
func (c *Console) reduceSeats(w http.ResponseWriter, r *http.Request, s *session) {
	c.seats(w, r, s, "reduction", "/seat-reductions", "Seat reduction scheduled from the next billing cycle.")
}

func (c *Console) seats(w http.ResponseWriter, r *http.Request, s *session, key, path, flash string) {
	n, err := strconv.Atoi(strings.TrimSpace(r.PostForm.Get("count")))
	if err != nil {
		c.done(w, r, s, key, result{status: http.StatusBadRequest, problem: &Problem{Status: http.StatusBadRequest,
			Title: "Bad Request", Detail: "the number of seats must be a whole number"}}, "")
		return
	}
	res := c.write(r, s, http.MethodPost, accountPath(s.account)+path, nil, map[string]int{"count": n}, "", key)
	c.done(w, r, s, key, res, flash)
}

// activity is an activity as the API lists it.
type activity struct {
	Kind      string    `json:"kind"`
	Ref       string    `json:"ref"`
	At        time.Time `json:"at"`
	UserID    string    `json:"user_id"`
	UserName  string    `json:"user_name"`
	OwnerID   string    `json:"owner_id"`
	OwnerName string    `json:"owner_name"`
}

func (c *Console) activitiesPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := pageQuery(100, r.URL.Query().Get("cursor"))
	var l struct {
		Activities []activity `json:"activities"`
		HasMore    bool       `json:"has_more"`
		NextCursor string     `json:"next_cursor"`
	}
	if err := c.get(r.Context(), s, accountPath(s.account)+"/activities", q, &l); err != nil {
		c.apiError(w, err)
		return
	}
	c.render(w, http.StatusOK, "activities", map[string]any{"Chrome": c.chrome(s, "activities"),
		"Activities": l.Activities, "HasMore": l.HasMore, "Next": l.NextCursor})
}

type auditEntry struct {
	Time      time.Time `json:"time"`
	ActorID   string    `json:"actor_id"`
	ActorRole string    `json:"actor_role"`
	Action    string    `json:"action"`
	UserID    string    `json:"user_id"`
	Revision  uint64    `json:"revision"`
	Hash      string    `json:"hash"`
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := pageQuery(100, r.URL.Query().Get("cursor"))
	var l struct {
		Entries    []auditEntry `json:"entries"`
		HasMore    bool         `json:"has_more"`
		NextCursor string       `json:"next_cursor"`
	}
	if err := c.get(r.Context(), s, accountPath(s.account)+"/audit", q, &l); err != nil {
		c.apiError(w, err)
		return
	}
	var v struct {
		OK     bool `json:"ok"`
		Ledger struct {
			Checked int `json:"checked"`
			Broken  any `json:"broken"`
		} `json:"ledger"`
		Quarantined []any `json:"quarantined"`
	}
	res := c.call(r.Context(), s, http.MethodGet, accountPath(s.account)+"/audit/verify", nil, nil, "")
	verifyProblem := res.problem
	if verifyProblem == nil {
		if err := json.Unmarshal(res.body, &v); err != nil {
			verifyProblem = &Problem{Title: "Verification unreadable", Detail: err.Error()}
		}
	}
	c.render(w, http.StatusOK, "audit", map[string]any{"Chrome": c.chrome(s, "audit"),
		"Entries": l.Entries, "HasMore": l.HasMore, "Next": l.NextCursor,
		"Verified": v.OK, "VerifyProblem": verifyProblem, "Quarantined": len(v.Quarantined), "Checked": v.Ledger.Checked, "Broken": v.Ledger.Broken != nil})
}

func (c *Console) billingPage(w http.ResponseWriter, r *http.Request, s *session) {
	q := url.Values{}
	period := r.URL.Query().Get("period")
	if period != "" {
		q.Set("period", period)
	}
	var cycle map[string]any
	var problem *Problem
	if err := c.get(r.Context(), s, accountPath(s.account)+"/billing", q, &cycle); err != nil {
		if !errors.As(err, &problem) {
			c.apiError(w, err)
			return
		}
	}
	c.render(w, http.StatusOK, "billing", map[string]any{"Chrome": c.chrome(s, "billing"),
		"Period": period, "Cycle": cycle, "Problem": problem})
}

// pageQuery is the query of one page of an API list: limit items from
// the cursor on (the first page when cursor is empty).
func pageQuery(limit int, cursor string) url.Values {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	return q
}
