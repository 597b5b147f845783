package httpapi

import (
	"context"
	"net/http"
	"strconv"

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
	// NextCursor, given back as cursor, reads the next page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// Quarantine list pages: default and largest limit.
const (
	quarantineLimit    = 100
	quarantineMaxLimit = 1000
)

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
	limit, err := queryInt(q, "limit", quarantineLimit, quarantineMaxLimit)
	if err != nil {
		return nil, err
	}
	if limit == 0 {
		limit = quarantineLimit
	}
	var after uint64
	if c := q.Get("cursor"); c != "" {
		if after, err = strconv.ParseUint(c, 10, 64); err != nil {
			return nil, badRequest("cursor must be a next_cursor of an earlier answer")
		}
	}
	list := QuarantineList{Records: []projections.Quarantined{}}
	if s.cfg.Quarantine != nil {
		recs := s.cfg.Quarantine.Quarantined("", eventstore.Position(after), limit+1)
		if len(recs) > limit {
			recs, list.HasMore = recs[:limit], true
			list.NextCursor = strconv.FormatUint(uint64(recs[limit-1].Position), 10)
		}
		list.Records = append(list.Records, recs...)
		list.Total = s.cfg.Quarantine.QuarantinedCount()
	}
	return jsonResponse(http.StatusOK, list), nil
}

// accountQuarantine returns the records of account the read models
// quarantined, at most quarantineMaxLimit of them.
func (s *server) accountQuarantine(account string) []projections.Quarantined {
	if s.cfg.Quarantine == nil {
		return nil
	}
	return s.cfg.Quarantine.Quarantined(account, 0, quarantineMaxLimit)
}
