package httpapi

import (
	"context"
	"net/http"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/projections"
)

// QuarantineReader lists the stored records the read models skipped
// because they could not be read, verified or decoded; the projection
// runner is one.
type QuarantineReader interface {
	// Quarantined returns the records of account (every account when
	// empty) at positions after after, at most limit of them.
	Quarantined(account string, after eventstore.Position, limit int) []projections.Quarantined
	// QuarantinedCount returns how many records were quarantined.
	QuarantinedCount() uint64
}

// QuarantineList is the answer of GET /v1/quarantine.
type QuarantineList struct {
	Records []projections.Quarantined `json:"records"`
	// Total is how many records the read models quarantined in all.
	Total   uint64 `json:"total"`
	HasMore bool   `json:"has_more"`
	// NextCursor continues after this page; NextLink is the request for
	// the next page, when HasMore.
	NextCursor string `json:"next_cursor"`
	NextLink   string `json:"next_link,omitzero"`
}

// quarantineMaxLimit is the most records a verification lists.
const quarantineMaxLimit = MaxLimit

// quarantineRoutes registers GET /v1/quarantine: the records quarantined,
// for operators and auditors of every account (a token scoped to one
// account sees its account's in its audit verification).
func (s *server) quarantineRoutes() {
	s.read("GET /v1/quarantine", auth.ReadHistory, s.listQuarantine)
}

func (s *server) listQuarantine(_ context.Context, r *http.Request, p auth.Principal) (*response, error) {
	if p.Account != "" {
		return nil, newProblem(ProblemForbidden, http.StatusForbidden,
			"the quarantine lists records of every account: it needs an operator token or an auditor token for all accounts")
	}
	q := r.URL.Query()
	limit, err := pageLimit(q, DefaultLimit)
	if err != nil {
		return nil, err
	}
	scope := cursorScope("")
	at, err := decodeCursor(q.Get("cursor"), cursorQuarantine, scope, 1)
	if err != nil {
		return nil, err
	}
	after := eventstore.Position(at[0])
	list := QuarantineList{Records: []projections.Quarantined{}}
	if s.cfg.Quarantine != nil {
		recs := s.cfg.Quarantine.Quarantined("", after, limit+1)
		if len(recs) > limit {
			recs, list.HasMore = recs[:limit], true
		}
		if len(recs) > 0 {
			after = recs[len(recs)-1].Position
		}
		list.Records = append(list.Records, recs...)
		list.Total = s.cfg.Quarantine.QuarantinedCount()
	}
	list.NextCursor = encodeCursor(cursorQuarantine, scope, uint64(after))
	list.NextLink = nextLink(r, list.NextCursor, list.HasMore)
	resp := jsonResponse(http.StatusOK, list)
	setNextLink(resp.header, list.NextLink)
	return resp, nil
}

// accountQuarantine returns the records of account the read models
// quarantined, at most quarantineMaxLimit of them.
func (s *server) accountQuarantine(account string) []projections.Quarantined {
	if s.cfg.Quarantine == nil {
		return nil
	}
	return s.cfg.Quarantine.Quarantined(account, 0, quarantineMaxLimit)
}
