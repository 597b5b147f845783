package httpapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/asof"
	"github.com/licenseledger/ledger/projections/attribution"
	"github.com/licenseledger/ledger/projections/audit"
	"github.com/licenseledger/ledger/projections/chain"
	"github.com/licenseledger/ledger/projections/seats"
)

// Request bodies.

type openAccountBody struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Seats int    `json:"seats"`
}

type countBody struct {
	Count int `json:"count"`
}

type addUserBody struct {
	Name  string      `json:"name"`
	Email string      `json:"email"`
	Role  ledger.Role `json:"role"`
}

type deactivateBody struct {
	Reason string `json:"reason"`
}

type activityBody struct {
	UserID string `json:"user_id"`
	Kind   string `json:"kind"`
	Ref    string `json:"ref"`
}

// ActivityCreated is the answer to recording an activity.
type ActivityCreated struct {
	ID     string    `json:"id"`
	UserID string    `json:"user_id"`
	Kind   string    `json:"kind"`
	Ref    string    `json:"ref"`
	At     time.Time `json:"at"`
}

func accountPath(account string) string { return "/v1/accounts/" + url.PathEscape(account) }

func usageOf(s *server, res accounts.Result) seats.Usage {
	u := seats.UsageOf(res.State, s.cfg.Clock())
	u.Revision, u.Position = res.Revision(), res.Position
	return u
}

func renderUsage(s *server, _ *http.Request, _ string, _ ledger.Command, res accounts.Result) (any, string, error) {
	return usageOf(s, res), "", nil
}

func userView(st ledger.State, id string) (seats.User, error) {
	u, ok := st.User(id)
	if !ok {
		return seats.User{}, &ledger.RuleError{Rule: ledger.RuleUserNotFound, Detail: fmt.Sprintf("user %q not found", id)}
	}
	return seats.User{ID: u.ID, Name: u.Name, Email: u.Email, Role: u.Role, Status: u.Status,
		AddedAt: u.AddedAt, ChangedAt: u.ChangedAt, ReassignedTo: u.ReassignTo}, nil
}

func renderPathUser(_ *server, r *http.Request, _ string, _ ledger.Command, res accounts.Result) (any, string, error) {
	u, err := userView(res.State, r.PathValue("user"))
	return u, "", err
}

// pathUser returns the user id of the path. A malformed one cannot name a
// user: 404.
func pathUser(r *http.Request) (string, error) {
	id := r.PathValue("user")
	if !ledger.ValidID(id) {
		return "", &ledger.RuleError{Rule: ledger.RuleUserNotFound, Detail: fmt.Sprintf("user %q not found", id)}
	}
	return id, nil
}

var openAccount = writeOp{
	action: auth.OpenAccount, created: true,
	account: func(_ *http.Request, body []byte) (string, error) {
		var b openAccountBody
		if err := decodeBody(body, &b, false); err != nil {
			return "", err
		}
		if !ledger.ValidAccountID(b.ID) {
			return "", &ledger.RuleError{Rule: ledger.RuleInvalidAccountID, Detail: "account id must match [a-z0-9][a-z0-9_-]{0,62}"}
		}
		return b.ID, nil
	},
	build: func(s *server, _ *http.Request, body []byte) (ledger.Command, error) {
		var b openAccountBody
		if err := decodeBody(body, &b, false); err != nil {
			return nil, err
		}
		return ledger.OpenAccount{Account: b.ID, Name: b.Name, Seats: b.Seats, At: s.cfg.Clock()}, nil
	},
	render: func(s *server, _ *http.Request, account string, _ ledger.Command, res accounts.Result) (any, string, error) {
		return usageOf(s, res), accountPath(account), nil
	},
}

var purchaseSeats = writeOp{
	action: auth.PurchaseSeats,
	build: func(s *server, _ *http.Request, body []byte) (ledger.Command, error) {
		var b countBody
		if err := decodeBody(body, &b, false); err != nil {
			return nil, err
		}
		return ledger.PurchaseSeats{Count: b.Count, At: s.cfg.Clock()}, nil
	},
	render: renderUsage,
}

var reduceSeats = writeOp{
	action: auth.ReduceSeats,
	build: func(s *server, _ *http.Request, body []byte) (ledger.Command, error) {
		var b countBody
		if err := decodeBody(body, &b, false); err != nil {
			return nil, err
		}
		return ledger.ScheduleSeatReduction{Count: b.Count, At: s.cfg.Clock()}, nil
	},
	render: renderUsage,
}

var addUser = writeOp{
	action: auth.ManageUsers, created: true,
	build: func(s *server, _ *http.Request, body []byte) (ledger.Command, error) {
		var b addUserBody
		if err := decodeBody(body, &b, false); err != nil {
			return nil, err
		}
		return ledger.AddUser{UserID: s.cfg.NewID().String(), Name: b.Name, Email: b.Email, Role: b.Role, At: s.cfg.Clock()}, nil
	},
	render: func(_ *server, _ *http.Request, account string, _ ledger.Command, res accounts.Result) (any, string, error) {
		// The user id comes from the event: for a repeat it is the first one.
		added, ok := res.Events[0].Event.(ledger.UserAdded)
		if !ok {
			return nil, "", fmt.Errorf("add user answered with %s", res.Events[0].Event.EventType())
		}
		u, err := userView(res.State, added.UserID)
		return u, accountPath(account) + "/users/" + added.UserID, err
	},
}

var deactivateUser = writeOp{
	action: auth.ManageUsers,
	build: func(s *server, r *http.Request, body []byte) (ledger.Command, error) {
		var b deactivateBody
		if err := decodeBody(body, &b, true); err != nil {
			return nil, err
		}
		id, err := pathUser(r)
		if err != nil {
			return nil, err
		}
		return ledger.DeactivateUser{UserID: id, Reason: b.Reason, At: s.cfg.Clock()}, nil
	},
	render: renderPathUser,
}

var activateUser = writeOp{
	action: auth.ManageUsers,
	build: func(s *server, r *http.Request, body []byte) (ledger.Command, error) {
		var b struct{}
		if err := decodeBody(body, &b, true); err != nil {
			return nil, err
		}
		id, err := pathUser(r)
		if err != nil {
			return nil, err
		}
		return ledger.ActivateUser{UserID: id, At: s.cfg.Clock()}, nil
	},
	render: renderPathUser,
}

// updateUser takes a JSON merge patch (RFC 7396) of the user's name,
// email and role: a member given changes it, a member left out keeps it,
// and none of them can be removed (null).
var updateUser = writeOp{
	action: auth.ManageUsers,
	build: func(s *server, r *http.Request, body []byte) (ledger.Command, error) {
		var patch map[string]jsontext.Value
		if err := decodeBody(body, &patch, false); err != nil {
			return nil, err
		}
		id, err := pathUser(r)
		if err != nil {
			return nil, err
		}
		cmd := ledger.UpdateUser{UserID: id, At: s.cfg.Clock()}
		for _, name := range slices.Sorted(maps.Keys(patch)) {
			v := patch[name]
			if name != "name" && name != "email" && name != "role" {
				return nil, badRequest("the request body has an unknown field /%s: a user's patch takes name, email and role", name)
			}
			if v.Kind() != '"' {
				return nil, badRequest("%s must be a string: a user's %s can be changed, not removed", name, name)
			}
			var str string
			if err := json.Unmarshal(v, &str); err != nil {
				return nil, badRequest("%s must be a string", name)
			}
			switch name {
			case "name":
				cmd.Name = &str
			case "email":
				cmd.Email = &str
			case "role":
				cmd.Role = (*ledger.Role)(&str)
			}
		}
		return cmd, nil
	},
	render: renderPathUser,
}

var deleteUser = writeOp{
	action: auth.ManageUsers,
	build: func(s *server, r *http.Request, body []byte) (ledger.Command, error) {
		if len(body) > 0 {
			return nil, badRequest("DELETE takes no body: give confirm and reassign_to in the query")
		}
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, badRequest("the query string is malformed")
		}
		for k := range q {
			if k != "confirm" && k != "reassign_to" {
				return nil, badRequest("unknown query parameter %q", k)
			}
		}
		id, err := pathUser(r)
		if err != nil {
			return nil, err
		}
		return ledger.DeleteUser{UserID: id, Confirm: q.Get("confirm"), ReassignTo: q.Get("reassign_to"), At: s.cfg.Clock()}, nil
	},
	render: renderPathUser,
}

var recordActivity = writeOp{
	action: auth.RecordActivity, created: true,
	build: func(s *server, _ *http.Request, body []byte) (ledger.Command, error) {
		var b activityBody
		if err := decodeBody(body, &b, false); err != nil {
			return nil, err
		}
		if !ledger.ValidID(b.UserID) {
			return nil, &ledger.RuleError{Rule: ledger.RuleUserNotFound, Detail: fmt.Sprintf("user %q not found", b.UserID)}
		}
		return ledger.RecordActivity{ActivityID: s.cfg.NewID().String(), UserID: b.UserID, Kind: b.Kind, Ref: b.Ref, At: s.cfg.Clock()}, nil
	},
	render: func(_ *server, _ *http.Request, account string, _ ledger.Command, res accounts.Result) (any, string, error) {
		a, ok := res.Events[0].Event.(ledger.ActivityRecorded)
		if !ok {
			return nil, "", fmt.Errorf("record activity answered with %s", res.Events[0].Event.EventType())
		}
		return ActivityCreated{ID: a.ActivityID, UserID: a.UserID, Kind: a.Kind, Ref: a.Ref, At: a.At},
			accountPath(account) + "/activities/" + a.ActivityID, nil
	},
}

// notFound turns a read model's "nothing held" into the account's 404.
func notFound(account string, err error) error {
	if errors.Is(err, projections.ErrNotFound) {
		return &ledger.RuleError{Rule: ledger.RuleAccountNotFound, Detail: fmt.Sprintf("account %q not found", account)}
	}
	return err
}

// exists checks the account is open in the read models.
func (s *server) exists(account string) (seats.Usage, error) {
	u, err := s.cfg.Seats.Usage(account, s.cfg.Clock())
	return u, notFound(account, err)
}

func (s *server) getAccount(_ context.Context, r *http.Request, _ auth.Principal) (*response, error) {
	u, err := s.exists(r.PathValue("account"))
	if err != nil {
		return nil, err
	}
	resp := jsonResponse(http.StatusOK, u)
	resp.header.Set("ETag", etag(u.Revision))
	return resp, nil
}

// UserList is the answer to listing users: one page of them.
type UserList struct {
	Users []seats.User `json:"users"`
	// HasMore says that users after this page have the status asked for;
	// NextCursor continues after this page.
	HasMore    bool   `json:"has_more"`
	NextCursor string `json:"next_cursor"`
	// NextLink is the request for the next page, when HasMore.
	NextLink string `json:"next_link,omitzero"`
}

func (s *server) listUsers(_ context.Context, r *http.Request, _ auth.Principal) (*response, error) {
	account := r.PathValue("account")
	status := ledger.Status(r.URL.Query().Get("status"))
	switch status {
	case "", ledger.StatusActive, ledger.StatusDeactivated, ledger.StatusDeleted:
	default:
		return nil, badRequest("status must be active, deactivated or deleted")
	}
	limit, err := pageLimit(r.URL.Query(), DefaultLimit)
	if err != nil {
		return nil, err
	}
	scope := cursorScope(account, "status="+string(status))
	at, err := decodeCursor(r.URL.Query().Get("cursor"), cursorUsers, scope, 1)
	if err != nil {
		return nil, err
	}
	u, err := s.exists(account)
	if err != nil {
		return nil, err
	}
	users, next, more, err := s.cfg.Seats.UsersPage(account, status, int(min(at[0], 1<<40)), limit)
	if err != nil {
		return nil, notFound(account, err)
	}
	if users == nil {
		users = []seats.User{}
	}
	list := UserList{Users: users, HasMore: more, NextCursor: encodeCursor(cursorUsers, scope, uint64(next))}
	list.NextLink = nextLink(r, list.NextCursor, more)
	resp := jsonResponse(http.StatusOK, list)
	setNextLink(resp.header, list.NextLink)
	resp.header.Set("ETag", etag(u.Revision))
	return resp, nil
}

func (s *server) getUser(_ context.Context, r *http.Request, _ auth.Principal) (*response, error) {
	account := r.PathValue("account")
	u, err := s.exists(account)
	if err != nil {
		return nil, err
	}
	id := r.PathValue("user")
	user, err := s.cfg.Seats.User(account, id)
	if errors.Is(err, projections.ErrNotFound) {
		return nil, &ledger.RuleError{Rule: ledger.RuleUserNotFound, Detail: fmt.Sprintf("user %q not found", id)}
	}
	if err != nil {
		return nil, err
	}
	resp := jsonResponse(http.StatusOK, user)
	resp.header.Set("ETag", etag(u.Revision))
	return resp, nil
}

func queryInt(q url.Values, name string, def, max int) (int, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > max {
		return 0, badRequest("%s must be an integer from 0 to %d", name, max)
	}
	return n, nil
}

// ActivityList is the answer to listing activities: one page of them.
type ActivityList struct {
	Activities []attribution.Activity `json:"activities"`
	// Next is the sequence number to give as after for the next page, 0
	// when this page is the last; NextCursor is the same place as a
	// cursor, given on every page.
	Next       int    `json:"next,omitempty"`
	HasMore    bool   `json:"has_more"`
	NextCursor string `json:"next_cursor"`
	// NextLink is the request for the next page, when HasMore.
	NextLink string `json:"next_link,omitzero"`
}

func (s *server) listActivities(_ context.Context, r *http.Request, _ auth.Principal) (*response, error) {
	account := r.PathValue("account")
	q := r.URL.Query()
	after, err := queryInt(q, "after", 0, 1<<40)
	if err != nil {
		return nil, err
	}
	limit, err := pageLimit(q, DefaultLimit)
	if err != nil {
		return nil, err
	}
	scope := cursorScope(account)
	if c := q.Get("cursor"); c != "" {
		if q.Has("after") {
			return nil, badRequest("give cursor or after, not both")
		}
		at, err := decodeCursor(c, cursorActivities, scope, 1)
		if err != nil {
			return nil, err
		}
		after = int(min(at[0], 1<<40))
	}
	if _, err := s.exists(account); err != nil {
		return nil, err
	}
	page, err := s.cfg.Activities.Activities(account, after, limit)
	if errors.Is(err, projections.ErrNotFound) {
		page, err = attribution.Page{}, nil
	}
	if err != nil {
		return nil, err
	}
	list := ActivityList{Activities: page.Activities, Next: page.Next, HasMore: page.Next != 0}
	if list.Activities == nil {
		list.Activities = []attribution.Activity{}
	}
	next := after
	if n := len(list.Activities); n > 0 {
		next = list.Activities[n-1].Seq
	}
	list.NextCursor = encodeCursor(cursorActivities, scope, uint64(next))
	list.NextLink = nextLink(r, list.NextCursor, list.HasMore)
	resp := jsonResponse(http.StatusOK, list)
	setNextLink(resp.header, list.NextLink)
	return resp, nil
}

func (s *server) getActivity(_ context.Context, r *http.Request, _ auth.Principal) (*response, error) {
	account, id := r.PathValue("account"), r.PathValue("activity")
	if _, err := s.exists(account); err != nil {
		return nil, err
	}
	missing := newProblem(ProblemNotFound, http.StatusNotFound, fmt.Sprintf("activity %q not found", id))
	if !ledger.ValidID(id) {
		return nil, missing
	}
	// The attribution model pages in recording order; an activity is found
	// by walking it. Activities are looked up this way only after creation.
	for after := 0; ; {
		page, err := s.cfg.Activities.Activities(account, after, 1000)
		if errors.Is(err, projections.ErrNotFound) {
			return nil, missing
		}
		if err != nil {
			return nil, err
		}
		for _, a := range page.Activities {
			if a.ID == id {
				return jsonResponse(http.StatusOK, a), nil
			}
		}
		if page.Next == 0 {
			return nil, missing
		}
		after = page.Next
	}
}

func parseTime(q url.Values, name string) (time.Time, error) {
	v := q.Get(name)
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, badRequest("%s must be an RFC 3339 time such as 2026-03-10T09:00:00Z", name)
	}
	return t, nil
}

// AuditList is the answer to reading the audit trail as JSON: one page
// of it.
type AuditList struct {
	Entries []audit.Entry `json:"entries"`
	// HasMore says that entries the filters select follow this page;
	// NextCursor continues after this page.
	HasMore    bool   `json:"has_more"`
	NextCursor string `json:"next_cursor"`
	// NextLink is the request for the next page, when HasMore.
	NextLink string `json:"next_link,omitzero"`
}

// getAudit answers a page of the audit trail as JSON, or, with
// format=jsonl, exports it as JSON Lines: every entry the filters select
// from the cursor on (up to limit when one is given), streamed.
func (s *server) getAudit(w http.ResponseWriter, r *http.Request) error {
	account := r.PathValue("account")
	q := r.URL.Query()
	var (
		f   = audit.Filter{User: q.Get("user"), Actor: q.Get("actor")}
		err error
	)
	if f.Since, err = parseTime(q, "since"); err != nil {
		return err
	}
	if f.Until, err = parseTime(q, "until"); err != nil {
		return err
	}
	format := q.Get("format")
	if format != "" && format != "json" && format != "jsonl" {
		return badRequest("format must be json or jsonl")
	}
	export := format == "jsonl"
	def := DefaultLimit
	if export {
		def = 0 // the whole selection
	}
	limit, err := pageLimit(q, def)
	if err != nil {
		return err
	}
	scope := cursorScope(account, "user="+f.User, "actor="+f.Actor,
		"since="+timeKey(f.Since), "until="+timeKey(f.Until))
	at, err := decodeCursor(q.Get("cursor"), cursorAudit, scope, 1)
	if err != nil {
		return err
	}
	after := eventstore.Position(at[0])
	if _, err := s.exists(account); err != nil {
		return err
	}
	entries, err := s.cfg.Audit.Scan(account, f, after)
	if errors.Is(err, projections.ErrNotFound) {
		entries, err = func(func(audit.Entry) bool) {}, nil
	}
	if err != nil {
		return err
	}
	next, stop := iter.Pull(entries)
	defer stop()
	if export {
		return s.exportAudit(w, r, account, scope, after, limit, next)
	}
	list := AuditList{Entries: make([]audit.Entry, 0, min(limit, 64))}
	for len(list.Entries) < limit {
		e, ok := next()
		if !ok {
			break
		}
		list.Entries = append(list.Entries, e)
	}
	_, list.HasMore = next()
	if n := len(list.Entries); n > 0 {
		after = list.Entries[n-1].Position
	}
	list.NextCursor = encodeCursor(cursorAudit, scope, uint64(after))
	list.NextLink = nextLink(r, list.NextCursor, list.HasMore)
	resp := jsonResponse(http.StatusOK, list)
	setNextLink(resp.header, list.NextLink)
	s.setPosition(resp.header)
	s.send(w, r, resp)
	return nil
}

// timeKey is a time filter as a cursor's scope holds it: equal instants
// written differently are the same filter.
func timeKey(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixNano(), 10)
}

// setPosition sets Ledger-Position to the read models' position.
func (s *server) setPosition(h http.Header) {
	if s.cfg.Progress != nil {
		h.Set(HeaderPosition, strconv.FormatUint(uint64(s.cfg.Progress.Position()), 10))
	}
}

// exportAudit streams audit entries as JSON Lines, flushing as it goes;
// its trailers carry the cursor that continues after the last line.
func (s *server) exportAudit(w http.ResponseWriter, r *http.Request, account string, scope []byte, after eventstore.Position, limit int, next func() (audit.Entry, bool)) error {
	s.setPosition(w.Header())
	startExport(w, "audit-"+account+".jsonl")
	fw := &flushWriter{w: w}
	bw := bufio.NewWriterSize(fw, 32<<10)
	n := 0
	for limit == 0 || n < limit {
		e, ok := next()
		if !ok {
			break
		}
		if err := json.MarshalWrite(bw, &e, json.Deterministic(true)); err != nil {
			s.abortExport(r.Context(), account, err)
		}
		bw.WriteByte('\n')
		n++
		after = e.Position
		if n == 1 || n%flushEvery == 0 {
			if err := bw.Flush(); err != nil {
				s.abortExport(r.Context(), account, err)
			}
		}
		if err := fw.line(); err != nil {
			s.abortExport(r.Context(), account, err)
		}
	}
	more := false
	if limit > 0 {
		_, more = next()
	}
	if err := bw.Flush(); err != nil {
		s.abortExport(r.Context(), account, err)
	}
	endExport(w, encodeCursor(cursorAudit, scope, uint64(after)), more)
	return nil
}

// Verification is the answer to verifying an account's hash chains.
type Verification struct {
	// OK is true when both chains verify, no record of the account's
	// streams lies outside them, and the read models quarantined none.
	OK       bool          `json:"ok"`
	Ledger   chain.Report  `json:"ledger"`
	Activity *chain.Report `json:"activity,omitempty"`
	// Quarantined are the account's records the read models skipped
	// (unreadable, off the chain, or undecodable): what the account's
	// reads leave out.
	Quarantined []projections.Quarantined `json:"quarantined,omitempty"`
}

func (s *server) verify(ctx context.Context, r *http.Request, _ auth.Principal) (*response, error) {
	account := r.PathValue("account")
	if _, err := s.exists(account); err != nil {
		return nil, err
	}
	led, err := chain.Verify(ctx, s.cfg.History, eventstore.LedgerStream(account))
	if err != nil {
		return nil, notFound(account, err)
	}
	v := Verification{Ledger: led, OK: led.OK}
	act, err := chain.Verify(ctx, s.cfg.History, eventstore.ActivityStream(account))
	switch {
	case errors.Is(err, eventstore.ErrStreamNotFound):
	case err != nil:
		return nil, err
	default:
		v.Activity, v.OK = &act, v.OK && act.OK
	}
	if v.Quarantined = s.accountQuarantine(account); len(v.Quarantined) > 0 {
		v.OK = false
	}
	return jsonResponse(http.StatusOK, v), nil
}

func (s *server) stateAsOf(ctx context.Context, r *http.Request, _ auth.Principal) (*response, error) {
	account := r.PathValue("account")
	q := r.URL.Query()
	if q.Get("as_of") == "" {
		return nil, badRequest("as_of is required: an RFC 3339 time such as 2026-03-10T09:00:00Z")
	}
	t, err := parseTime(q, "as_of")
	if err != nil {
		return nil, err
	}
	if _, err := s.exists(account); err != nil {
		return nil, err
	}
	st, err := asof.At(ctx, s.cfg.History, s.cfg.Decoder, account, t)
	if err != nil {
		return nil, notFound(account, err)
	}
	if st.Users == nil {
		st.Users = []seats.User{}
	}
	return jsonResponse(http.StatusOK, st), nil
}

func (s *server) getBilling(_ context.Context, r *http.Request, _ auth.Principal) (*response, error) {
	account := r.PathValue("account")
	period := r.URL.Query().Get("period")
	if _, err := s.exists(account); err != nil {
		return nil, err
	}
	now := s.cfg.Clock()
	var (
		c   any
		err error
	)
	if period == "" {
		c, err = s.cfg.Billing.Current(account, now)
	} else {
		c, err = s.cfg.Billing.Cycle(account, period, now)
	}
	if err != nil {
		return nil, notFound(account, err)
	}
	return jsonResponse(http.StatusOK, c), nil
}

// StoredEvent is one line of the raw history export: an event exactly as
// stored, payload and metadata included. Sealed fields stay sealed.
type StoredEvent struct {
	Stream   string              `json:"stream"`
	Revision uint64              `json:"revision"`
	Position eventstore.Position `json:"position"`
	ID       string              `json:"id"`
	Type     string              `json:"type"`
	Stored   time.Time           `json:"stored,omitzero"`
	Data     jsontext.Value      `json:"data"`
	Metadata jsontext.Value      `json:"metadata"`
}

// events streams an account's ledger and activity streams merged in
// global order as JSON Lines, from the cursor on (up to limit when one is
// given): each event as stored ([StoredEvent], the auditors' raw history,
// whose bytes the hash chains cover), or with format=cloudevents as the
// published envelope of contract v2 (what NATS subscribers and webhooks
// receive, for integrators loading events over HTTP). Its cursor holds the global position of the last line and the
// revision each stream continues from, so that a next export reads only
// what follows.
func (s *server) events(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	account := r.PathValue("account")
	q := r.URL.Query()
	limit, err := pageLimit(q, 0)
	if err != nil {
		return err
	}
	scope := cursorScope(account)
	at, err := decodeCursor(q.Get("cursor"), cursorEvents, scope, 3)
	if err != nil {
		return err
	}
	after, revL, revA := eventstore.Position(at[0]), at[1], at[2]
	envelopes := false
	switch q.Get("format") {
	case "", "stored":
	case "cloudevents":
		envelopes = true
	default:
		return badRequest("format must be stored or cloudevents")
	}
	if _, err := s.exists(account); err != nil {
		return err
	}
	nextL, stopL := iter.Pull2(s.cfg.History.ReadStream(ctx, eventstore.LedgerStream(account), revL))
	defer stopL()
	nextA, stopA := iter.Pull2(s.cfg.History.ReadStream(ctx, eventstore.ActivityStream(account), revA))
	defer stopA()
	pull := func(next func() (eventstore.Record, error, bool)) (*eventstore.Record, error) {
		for {
			rec, err, ok := next()
			if errors.Is(err, eventstore.ErrUnreadable) {
				continue // no event to show: see GET /v1/quarantine
			}
			if !ok || errors.Is(err, eventstore.ErrStreamNotFound) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			if rec.Position > after {
				return &rec, nil
			}
		}
	}
	l, err := pull(nextL)
	if err != nil {
		return err
	}
	a, err := pull(nextA)
	if err != nil {
		return err
	}
	s.setPosition(w.Header())
	startExport(w, "")
	fw := &flushWriter{w: w}
	bw := bufio.NewWriterSize(fw, 32<<10)
	enc := jsontext.NewEncoder(bw)
	n := 0
	for (l != nil || a != nil) && (limit == 0 || n < limit) {
		var rec *eventstore.Record
		if a == nil || (l != nil && l.Position <= a.Position) {
			rec = l
		} else {
			rec = a
		}
		if envelopes {
			env, err := contract.Envelope(*rec, s.cfg.PublicURL)
			if err == nil {
				err = enc.WriteValue(env)
			}
			// A record that is not an event of the ledger is not
			// published either: skipped, as the publisher skips it.
			if err != nil && !errors.Is(err, contract.ErrNotPublishable) {
				s.abortExport(ctx, account, err)
			}
		} else {
			line := StoredEvent{Stream: rec.Stream.String(), Revision: rec.Revision, Position: rec.Position,
				ID: rec.ID.String(), Type: rec.Type, Stored: rec.Stored, Data: rec.Data, Metadata: rec.Metadata}
			if len(line.Metadata) == 0 {
				line.Metadata = jsontext.Value("{}")
			}
			if err := json.MarshalEncode(enc, &line); err != nil {
				s.abortExport(ctx, account, err)
			}
		}
		n++
		after = rec.Position
		if n == 1 || n%flushEvery == 0 {
			if err := bw.Flush(); err != nil {
				s.abortExport(ctx, account, err)
			}
		}
		if err := fw.line(); err != nil {
			s.abortExport(ctx, account, err)
		}
		var perr error
		if rec == l {
			revL = rec.Revision + 1
			l, perr = pull(nextL)
		} else {
			revA = rec.Revision + 1
			a, perr = pull(nextA)
		}
		if perr != nil {
			s.abortExport(ctx, account, perr)
		}
	}
	if err := bw.Flush(); err != nil {
		s.abortExport(ctx, account, err)
	}
	endExport(w, encodeCursor(cursorEvents, scope, uint64(after), revL, revA), l != nil || a != nil)
	return nil
}

// abortExport ends an export that failed after its headers were sent. The
// connection is cut without the end of the chunked body, so the client
// sees a broken transfer instead of a history that looks complete.
func (s *server) abortExport(ctx context.Context, account string, err error) {
	s.log.ErrorContext(ctx, "export aborted", "account", account, "err", err)
	panic(http.ErrAbortHandler)
}
