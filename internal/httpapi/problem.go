package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/telemetry"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/asof"
	"github.com/licenseledger/ledger/projections/billing"
)

// ProblemBase is the prefix of every problem type URI. A problem's type is
// ProblemBase followed by a stable slug: the domain rule's name for rule
// violations (e.g. ProblemBase+"no-seat-available"), or one of the Problem*
// slugs below for protocol problems.
const ProblemBase = "https://licenseledger.dev/problems/"

// Problem slugs of the HTTP layer. Domain rules use their ledger.Rule name.
const (
	ProblemMalformedRequest   = "malformed-request"      // 400: body or query cannot be read
	ProblemInvalidPath        = "invalid-request-path"   // 400: path not UTF-8 once percent-decoded
	ProblemInvalidQuery       = "invalid-request-query"  // 400: query not parsable or not UTF-8
	ProblemUnreachable        = "position-unreachable"   // 400: min position above the store's last
	ProblemMethodNotAllowed   = "method-not-allowed"     // 405, with Allow
	ProblemBodyTooLarge       = "body-too-large"         // 413
	ProblemUnsupportedMedia   = "unsupported-media-type" // 415
	ProblemUnauthenticated    = "unauthenticated"        // 401
	ProblemForbidden          = "forbidden"              // 403
	ProblemNotFound           = "not-found"              // 404: no such route or resource
	ProblemPreconditionFailed = "precondition-failed"    // 412: If-Match no longer matches
	ProblemIdempotencyReused  = "idempotency-key-reused" // 422
	ProblemNotCaughtUp        = "read-model-behind"      // 503: min position not reached in time
	ProblemNotReady           = "not-ready"              // 503: read models still catching up after a start
	ProblemContention         = "contention"             // 503: too many concurrent writers
	ProblemOutcomeUnknown     = "outcome-unknown"        // 503: a write timed out; it may have been recorded
	ProblemCycleNotFound      = "billing-cycle-not-found"
	ProblemNotOpenedAt        = "account-not-opened-at-instant"
	ProblemInternal           = "internal"            // 500
	ProblemInvalidToken       = "invalid-token"       // 400 on minting: bad role or scope
	ProblemLastOperator       = "last-operator-token" // 409: revoking the only operator token
	ProblemHistoryUnreadable  = "history-unreadable"  // 503: the account's chain holds an event this service cannot decode
)

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Rule is the slug of Type, for clients that match on it.
	Rule string `json:"rule,omitempty"`
	// RequestID is the request's X-Request-Id, to quote when reporting
	// the problem.
	RequestID string `json:"request_id,omitempty"`
}

// problemError is an error the HTTP layer raises itself, with its slug and
// status.
type problemError struct {
	slug   string
	status int
	detail string
	err    error
}

func (e *problemError) Error() string {
	if e.err != nil {
		return e.detail + ": " + e.err.Error()
	}
	return e.detail
}

func (e *problemError) Unwrap() error { return e.err }

func newProblem(slug string, status int, detail string) error {
	return &problemError{slug: slug, status: status, detail: detail}
}

func badRequest(format string, args ...any) error {
	return newProblem(ProblemMalformedRequest, http.StatusBadRequest, fmt.Sprintf(format, args...))
}

// ruleStatus maps each domain rule to the status of DESIGN.md section 3.
var ruleStatus = map[ledger.Rule]int{
	ledger.RuleAccountExists:        http.StatusConflict,
	ledger.RuleAccountNotFound:      http.StatusNotFound,
	ledger.RuleInvalidAccountID:     http.StatusBadRequest,
	ledger.RuleInvalidAccountName:   http.StatusBadRequest,
	ledger.RuleInvalidCount:         http.StatusBadRequest,
	ledger.RuleReductionBelowActive: http.StatusConflict,
	ledger.RuleNoSeatAvailable:      http.StatusConflict,
	ledger.RuleDuplicateEmail:       http.StatusConflict,
	ledger.RuleInvalidUser:          http.StatusBadRequest,
	ledger.RuleUserExists:           http.StatusConflict,
	ledger.RuleUserNotFound:         http.StatusNotFound,
	ledger.RuleLastActiveAdmin:      http.StatusConflict,
	ledger.RuleUserDeleted:          http.StatusGone,
	ledger.RuleConfirmationRequired: http.StatusPreconditionRequired,
	ledger.RuleInvalidReassignment:  http.StatusUnprocessableEntity,
	ledger.RuleUserDeactivated:      http.StatusConflict,
	ledger.RuleInvalidActivity:      http.StatusBadRequest,
	ledger.RuleInvalidCommand:       http.StatusBadRequest,
}

// confirmDetail replaces the domain's detail for a deletion without
// confirmation: the person about to delete should know what it means.
const confirmDetail = "deleting a user is permanent: the seat is freed for good, their records stay but their name is removed from every activity they logged, and a deleted user cannot be recovered or reactivated. " +
	"To delete, repeat the request with ?confirm=<the user's id>. To keep the user and their name on their records, deactivate them instead: deactivation frees the seat and can be undone."

// toProblem maps any error to a problem. It is the only place errors
// become HTTP statuses. Unknown errors become 500 and internal reports so.
func toProblem(err error) (p Problem, internal bool) {
	var (
		pe *problemError
		re *ledger.RuleError
	)
	switch {
	case errors.As(err, &pe):
		p = Problem{Rule: pe.slug, Status: pe.status, Detail: pe.detail}
	case errors.As(err, &re):
		status, ok := ruleStatus[re.Rule]
		if !ok {
			status = http.StatusUnprocessableEntity
		}
		p = Problem{Rule: string(re.Rule), Status: status, Detail: re.Error()}
		if re.Rule == ledger.RuleConfirmationRequired {
			p.Detail = confirmDetail
		}
	case errors.Is(err, accounts.ErrPreconditionFailed):
		p = Problem{Rule: ProblemPreconditionFailed, Status: http.StatusPreconditionFailed,
			Detail: "the account changed since the revision given in If-Match: read it again and retry"}
	case errors.Is(err, accounts.ErrIdempotencyKeyReused):
		p = Problem{Rule: ProblemIdempotencyReused, Status: http.StatusUnprocessableEntity,
			Detail: "this Idempotency-Key was used for another command: use a new key for a new request"}
	case errors.Is(err, accounts.ErrContention), errors.Is(err, eventstore.ErrConflict):
		p = Problem{Rule: ProblemContention, Status: http.StatusServiceUnavailable,
			Detail: "too many concurrent changes to this account: retry shortly"}
	case errors.Is(err, accounts.ErrUnreadableHistory):
		p = Problem{Rule: ProblemHistoryUnreadable, Status: http.StatusServiceUnavailable,
			Detail: "the account's history holds an event this service cannot decode (a newer version's?): it takes no command until the event can be read"}
	case errors.Is(err, auth.ErrUnauthenticated):
		p = Problem{Rule: ProblemUnauthenticated, Status: http.StatusUnauthorized,
			Detail: "a valid bearer token is required: Authorization: Bearer ll_..."}
	case errors.Is(err, auth.ErrLastOperator):
		p = Problem{Rule: ProblemLastOperator, Status: http.StatusConflict,
			Detail: "the last operator token cannot be revoked: mint another first"}
	case errors.Is(err, auth.ErrInvalidRole):
		p = Problem{Rule: ProblemInvalidToken, Status: http.StatusBadRequest, Detail: detailOf(err)}
	case errors.Is(err, billing.ErrBadPeriod):
		p = Problem{Rule: ProblemMalformedRequest, Status: http.StatusBadRequest, Detail: "period must be YYYY-MM"}
	case errors.Is(err, billing.ErrNotStarted):
		p = Problem{Rule: ProblemCycleNotFound, Status: http.StatusNotFound,
			Detail: "the account has no billing cycle starting in that month yet"}
	case errors.Is(err, asof.ErrNotOpened):
		p = Problem{Rule: ProblemNotOpenedAt, Status: http.StatusNotFound,
			Detail: "the account was not open yet at that instant"}
	case errors.Is(err, projections.ErrNotFound), errors.Is(err, eventstore.ErrStreamNotFound), errors.Is(err, auth.ErrNotFound):
		p = Problem{Rule: ProblemNotFound, Status: http.StatusNotFound, Detail: "not found"}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		p = Problem{Rule: ProblemNotCaughtUp, Status: http.StatusServiceUnavailable, Detail: "the request timed out: retry shortly"}
	default:
		return Problem{Rule: ProblemInternal, Status: http.StatusInternalServerError,
			Detail: "an internal error occurred; it has been logged"}, true
	}
	return p, false
}

func detailOf(err error) string {
	var pe *problemError
	if errors.As(err, &pe) {
		return pe.detail
	}
	return err.Error()
}

// problemResponse turns err into the response to send, logging unknown
// errors once.
func (s *server) problemResponse(r *http.Request, err error) *response {
	p, internal := toProblem(err)
	if internal {
		// Errors carry ids, never names or emails: those only exist sealed or
		// in memory.
		s.log.LogAttrs(r.Context(), slog.LevelError, "internal error",
			slog.String("method", r.Method), slog.String("route", r.Pattern), slog.String("err", err.Error()))
	}
	p.Type = ProblemBase + p.Rule
	p.Title = http.StatusText(p.Status)
	// The path as sent, percent-encoded: ASCII whatever the client sent.
	p.Instance = r.URL.EscapedPath()
	p.RequestID = telemetry.RequestID(r.Context())
	resp := &response{status: p.Status, header: http.Header{}, problem: true}
	resp.header.Set("Content-Type", "application/problem+json")
	switch p.Status {
	case http.StatusUnauthorized:
		resp.header.Set("WWW-Authenticate", `Bearer realm="licenseledger", error="invalid_token"`)
	case http.StatusServiceUnavailable:
		resp.header.Set("Retry-After", "1")
	}
	resp.body = renderProblem(p)
	return resp
}

// renderProblem writes p as JSON. It cannot fail: text that is not UTF-8
// is mended first, and should marshalling still fail the answer is a
// fixed problem of the same status.
func renderProblem(p Problem) []byte {
	p.Detail = strings.ToValidUTF8(p.Detail, "\uFFFD")
	p.Instance = strings.ToValidUTF8(p.Instance, "\uFFFD")
	b, err := json.Marshal(p, json.Deterministic(true))
	if err != nil {
		return []byte(`{"rule":"` + ProblemInternal + `","status":` + strconv.Itoa(p.Status) +
			`,"title":"` + http.StatusText(p.Status) + `","type":"` + ProblemBase + ProblemInternal + `"}` + "\n")
	}
	return append(b, '\n')
}
