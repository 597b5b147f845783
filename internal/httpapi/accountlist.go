package httpapi

import (
	"context"
	"net/http"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/projections/seats"
)

// AccountList is the answer of GET /v1/accounts: one page of the opened
// accounts, ordered by id.
type AccountList struct {
	Accounts []seats.Summary `json:"accounts"`
	// HasMore says that accounts follow this page; NextCursor continues
	// after it (after the last account of the list when it is the last
	// page, so that a client can come back for accounts opened since with
	// a greater id).
	HasMore    bool   `json:"has_more"`
	NextCursor string `json:"next_cursor"`
	// NextLink is the request for the next page, when HasMore.
	NextLink string `json:"next_link,omitzero"`
}

// listAccounts answers GET /v1/accounts: every opened account, for
// operators and auditors of every account. A token scoped to one account
// is refused (403) even though it may read its own: the list would tell
// it which other accounts exist.
func (s *server) listAccounts(_ context.Context, r *http.Request, p auth.Principal) (*response, error) {
	if p.Account != "" || (p.Role != auth.Operator && p.Role != auth.Auditor) {
		return nil, newProblem(ProblemForbidden, http.StatusForbidden,
			"the list of accounts names every account: it needs an operator token or an auditor token for all accounts")
	}
	q := r.URL.Query()
	limit, err := pageLimit(q, DefaultLimit)
	if err != nil {
		return nil, err
	}
	scope := cursorScope("")
	after, err := decodeKeyCursor(q.Get("cursor"), cursorAccounts, scope)
	if err != nil {
		return nil, err
	}
	page, more := s.cfg.Seats.AccountsPage(after, limit, s.cfg.Clock())
	if page == nil {
		page = []seats.Summary{}
	}
	if len(page) > 0 {
		after = page[len(page)-1].ID
	}
	list := AccountList{Accounts: page, HasMore: more, NextCursor: encodeKeyCursor(cursorAccounts, scope, after)}
	list.NextLink = nextLink(r, list.NextCursor, more)
	resp := jsonResponse(http.StatusOK, list)
	setNextLink(resp.header, list.NextLink)
	return resp, nil
}
