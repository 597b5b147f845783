package console

import (
	"net/http"
	"time"
)

// accountSummary is an account as the API lists them.
type accountSummary struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Seats    int       `json:"seats"`
	Active   int       `json:"active"`
	OpenedAt time.Time `json:"opened_at"`
}

type accountList struct {
	Accounts   []accountSummary `json:"accounts"`
	HasMore    bool             `json:"has_more"`
	NextCursor string           `json:"next_cursor"`
}

// accountsView is the accounts page.
type accountsView struct {
	Chrome
	Accounts []accountSummary
	// Cursor is where this page started; Next where the next starts.
	Cursor  string
	Next    string
	HasMore bool
}

// accountsPage lists every account, a page at a time, for a token that
// covers every account (the API refuses any other); each links to the
// users page of its account.
func (c *Console) accountsPage(w http.ResponseWriter, r *http.Request, s *session) {
	cursor := r.URL.Query().Get("cursor")
	q := pageQuery(pageSize, cursor)
	var l accountList
	if err := c.get(r.Context(), s, "/v1/accounts", q, &l); err != nil {
		c.apiError(w, err)
		return
	}
	c.render(w, http.StatusOK, "accounts", accountsView{Chrome: c.chrome(s, "accounts"), Accounts: l.Accounts,
		Cursor: cursor, Next: l.NextCursor, HasMore: l.HasMore})
}

// openAccount makes the account of the path the session's and shows its
// users. The API must show the token that account. The session gets a
// new form token, so that a form still open on another account's page is
// refused as stale rather than applied to this one.
func (c *Console) openAccount(w http.ResponseWriter, r *http.Request, s *session) {
	account := r.PathValue("account")
	if res := c.call(r.Context(), s, http.MethodGet, accountPath(account), nil, nil, ""); res.problem != nil {
		c.apiError(w, res.problem)
		return
	}
	if account == s.account {
		http.Redirect(w, r, "/console/users", http.StatusSeeOther)
		return
	}
	csrf, err := c.randomToken()
	if err != nil {
		c.errorPage(w, http.StatusInternalServerError, "The console cannot draw a form token.")
		return
	}
	c.mu.Lock()
	if cur, ok := c.sessions[s.id]; ok {
		next := *cur
		next.account, next.csrf = account, csrf
		c.sessions[s.id] = &next
	}
	c.mu.Unlock()
	http.Redirect(w, r, "/console/users", http.StatusSeeOther)
}
