package httpapi

import (
	"context"
	"errors"
	"net/http"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/projections/billing"
)

// BillingList is the answer of GET /v1/billing: one page of the cycles
// of a period, one per account that has a cycle starting in it, ordered
// by account id.
type BillingList struct {
	Period string          `json:"period"`
	Cycles []billing.Cycle `json:"cycles"`
	// HasMore says that cycles of the period follow this page; NextCursor
	// continues after it, NextLink is the request for the next page
	// (absent on the last).
	HasMore    bool   `json:"has_more"`
	NextCursor string `json:"next_cursor"`
	NextLink   string `json:"next_link,omitzero"`
}

// listBilling answers GET /v1/billing?period=YYYY-MM: the quantities of
// every account's cycle that starts in period (the clock's month, in UTC,
// when not given), from the billing read
// model, for operators and auditors of every account. An account opened
// after the period, or whose cycle of the period has not started, is not
// listed; a cycle in progress is counted up to now (in_progress true).
func (s *server) listBilling(_ context.Context, r *http.Request, p auth.Principal) (*response, error) {
	if p.Account != "" || (p.Role != auth.Operator && p.Role != auth.Auditor) {
		return nil, newProblem(ProblemForbidden, http.StatusForbidden,
			"the billing of a period names every account: it needs an operator token or an auditor token for all accounts")
	}
	q := r.URL.Query()
	now := s.cfg.Clock()
	period := q.Get("period")
	if period == "" {
		period = now.UTC().Format("2006-01")
	}
	if _, err := billing.ParsePeriod(period); err != nil {
		return nil, badRequest("period must be a month as YYYY-MM, such as 2026-03")
	}
	limit, err := pageLimit(q, DefaultLimit)
	if err != nil {
		return nil, err
	}
	scope := cursorScope("", "period="+period)
	after, err := decodeKeyCursor(q.Get("cursor"), cursorBilling, scope)
	if err != nil {
		return nil, err
	}
	page, next, more, err := s.cfg.Billing.CyclesPage(period, after, limit, now)
	if errors.Is(err, billing.ErrBadPeriod) {
		return nil, badRequest("period must be a month as YYYY-MM, such as 2026-03")
	}
	if err != nil {
		return nil, err
	}
	if page == nil {
		page = []billing.Cycle{}
	}
	list := BillingList{Period: period, Cycles: page, HasMore: more,
		NextCursor: encodeKeyCursor(cursorBilling, scope, next)}
	list.NextLink = nextLink(r, list.NextCursor, more)
	resp := jsonResponse(http.StatusOK, list)
	setNextLink(resp.header, list.NextLink)
	return resp, nil
}
