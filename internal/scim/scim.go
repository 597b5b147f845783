// Package scim is the SCIM 2.0 service provider of the license ledger
// (RFC 7643, RFC 7644): the endpoints under /scim/v2 through which a
// customer's identity provider (Okta, Microsoft Entra ID, ...) provisions
// and deprovisions the users of its account.
//
// # Authentication
//
// Every request carries a bearer token of role provisioning, which is
// scoped to one account: that account is the only one the requests see.
// Any other token is 403; none or an unknown one is 401.
//
// # Mapping onto the ledger
//
// Every write is a ledger command given to the application service, so
// idempotency, the audit trail, events and read models follow as for the
// /v1 API:
//
//   - POST /Users is AddUser (and DeactivateUser when it asks for an
//     inactive user);
//   - PUT and PATCH change the profile and role with UpdateUser, and
//     active false/true with DeactivateUser/ActivateUser;
//   - DELETE /Users/{id} is DeleteUser, confirmed by the request itself:
//     permanent, the seat freed, names and emails erased. Afterwards
//     every operation on the id answers 404.
//
// Reads come from the user directory the read models hold in memory,
// decrypted: filters on emails and names run over it, and nothing is
// written for the sake of a lookup.
//
// # The user resource
//
// The ledger keeps one email, one name, a role and a status per user.
// userName and the primary email are both the user's email; name.formatted
// and displayName are the name (givenName and familyName are read as its
// first word and the rest); active is the status; roles holds one primary
// role, "admin" or "member". meta.version is the account's ledger revision
// (the same ETag as the /v1 API): any change to the account changes it.
// externalId is kept as personal data: sealed under the user's data key in
// UserAdded and UserProfileUpdated, like the email, and erased with it when
// the user is deleted. It can be set and changed, not removed.
package scim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/seats"
)

// Prefix is the path under which the service provider answers.
const Prefix = "/scim/v2"

// MediaType is the media type of SCIM requests and answers.
const MediaType = "application/scim+json"

// Schema URNs.
const (
	SchemaUser           = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaEnterpriseUser = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	// ExtensionPrefix starts the URN of every schema extension: the
	// enterprise one and the custom ones identity providers let admins
	// define. None of their attributes is kept.
	ExtensionPrefix    = "urn:ietf:params:scim:schemas:extension:"
	SchemaListResponse = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	SchemaPatchOp      = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	SchemaError        = "urn:ietf:params:scim:api:messages:2.0:Error"
	SchemaSPConfig     = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	SchemaResourceType = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	SchemaSchema       = "urn:ietf:params:scim:schemas:core:2.0:Schema"
)

// Commands runs commands on accounts; *accounts.Service is one.
type Commands interface {
	Execute(ctx context.Context, account string, cmd ledger.Command, req accounts.Request) (accounts.Result, error)
}

// Directory is the user directory read model; *seats.Projection is one.
// Unknown accounts and users are projections.ErrNotFound.
type Directory interface {
	Usage(account string, now time.Time) (seats.Usage, error)
	UsersPage(account string, status ledger.Status, after, limit int) (users []seats.User, next int, more bool, err error)
	User(account, user string) (seats.User, error)
}

// Progress tells how far the read models have applied the store's global
// order; the projection runner is one.
type Progress interface {
	Position() eventstore.Position
	Wait(ctx context.Context, p eventstore.Position) error
}

// Defaults of Config.
const (
	DefaultMaxBody     = 64 << 10
	DefaultWaitTimeout = 5 * time.Second
	// MaxResults is the most resources one list answer holds.
	MaxResults = 1000
)

// Config is what the service provider needs. Commands, Directory, Tokens,
// Clock and NewID are required.
type Config struct {
	Commands  Commands
	Directory Directory
	Tokens    auth.Store
	// Progress, when set, is waited for after every write so that the
	// next read sees it.
	Progress Progress
	// ReadModelsReady reports whether the read models have caught up with
	// the store's position at start; until then every request is 503.
	// Nil: ready.
	ReadModelsReady func() bool
	Clock           func() time.Time
	// NewID draws user and correlation ids.
	NewID       func() ulid.ULID
	Logger      *slog.Logger
	MaxBody     int64
	WaitTimeout time.Duration
}

// Handler serves /scim/v2.
type Handler struct {
	cfg Config
	mux *http.ServeMux
}

// New returns the service provider's handler. It expects full request
// paths (starting with Prefix).
func New(cfg Config) *Handler {
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.WaitTimeout == 0 {
		cfg.WaitTimeout = DefaultWaitTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET "+Prefix+"/Users", h.listUsers)
	h.mux.HandleFunc("POST "+Prefix+"/Users", h.createUser)
	h.mux.HandleFunc("GET "+Prefix+"/Users/{id}", h.getUser)
	h.mux.HandleFunc("PUT "+Prefix+"/Users/{id}", h.replaceUser)
	h.mux.HandleFunc("PATCH "+Prefix+"/Users/{id}", h.patchUser)
	h.mux.HandleFunc("DELETE "+Prefix+"/Users/{id}", h.deleteUser)
	h.mux.HandleFunc("GET "+Prefix+"/ServiceProviderConfig", h.serviceProviderConfig)
	h.mux.HandleFunc("GET "+Prefix+"/ResourceTypes", h.resourceTypes)
	h.mux.HandleFunc("GET "+Prefix+"/ResourceTypes/{id}", h.resourceType)
	h.mux.HandleFunc("GET "+Prefix+"/Schemas", h.schemas)
	h.mux.HandleFunc("GET "+Prefix+"/Schemas/{id}", h.schema)
	return h
}

// ServeHTTP authenticates the request, checks readiness and routes it.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Two Authorization headers authenticate nobody: which one is meant
	// is ambiguous, and a proxy in front may have checked the other.
	var header string
	if v := r.Header.Values("Authorization"); len(v) == 1 {
		header = v[0]
	}
	p, err := auth.Authenticate(r.Context(), h.cfg.Tokens, header)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="licenseledger-scim"`)
		h.fail(w, r, &Error{Status: http.StatusUnauthorized, Detail: "a bearer token of role provisioning is required", err: err})
		return
	}
	if p.Role != auth.Provisioning || !p.Role.Allows(auth.Provision) || p.Account == "" {
		h.fail(w, r, &Error{Status: http.StatusForbidden, Detail: "only a provisioning token may use the SCIM endpoints; this token has role " + string(p.Role)})
		return
	}
	if h.cfg.ReadModelsReady != nil && !h.cfg.ReadModelsReady() {
		w.Header().Set("Retry-After", "1")
		h.fail(w, r, &Error{Status: http.StatusServiceUnavailable, Detail: "the service is starting and its read models are catching up with the stored events: retry shortly"})
		return
	}
	hd, pattern := h.mux.Handler(r)
	if pattern == "" {
		c := &capture{header: http.Header{}}
		hd.ServeHTTP(c, r)
		if c.status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", c.header.Get("Allow"))
			h.fail(w, r, &Error{Status: http.StatusMethodNotAllowed, Detail: "this resource answers only " + c.header.Get("Allow")})
			return
		}
		h.fail(w, r, &Error{Status: http.StatusNotFound, Detail: "no such SCIM resource or endpoint"})
		return
	}
	h.mux.ServeHTTP(w, r.WithContext(withAccount(r.Context(), p)))
}

type principalKey struct{}

func withAccount(ctx context.Context, p auth.Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

func principal(r *http.Request) auth.Principal {
	p, _ := r.Context().Value(principalKey{}).(auth.Principal)
	return p
}

type capture struct {
	header http.Header
	status int
}

func (c *capture) Header() http.Header { return c.header }
func (c *capture) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
}
func (c *capture) Write(b []byte) (int, error) { return len(b), nil }

// Error is a SCIM error (RFC 7644 section 3.12).
type Error struct {
	Status int
	// ScimType is the detail error keyword of RFC 7644 table 9, or empty.
	ScimType string
	Detail   string
	err      error
}

func (e *Error) Error() string {
	if e.err != nil {
		return e.Detail + ": " + e.err.Error()
	}
	return e.Detail
}

func (e *Error) Unwrap() error { return e.err }

func invalidValue(format string, args ...any) error {
	return &Error{Status: http.StatusBadRequest, ScimType: "invalidValue", Detail: fmt.Sprintf(format, args...)}
}

func invalidSyntax(format string, args ...any) error {
	return &Error{Status: http.StatusBadRequest, ScimType: "invalidSyntax", Detail: fmt.Sprintf(format, args...)}
}

// toError maps an error of the ledger or of this package to a SCIM error.
func toError(err error) (e *Error, internal bool) {
	var (
		se *Error
		re *ledger.RuleError
	)
	switch {
	case errors.As(err, &se):
		return se, false
	case errors.As(err, &re):
		switch re.Rule {
		case ledger.RuleUserNotFound, ledger.RuleUserDeleted, ledger.RuleAccountNotFound:
			return &Error{Status: http.StatusNotFound, Detail: re.Detail, err: err}, false
		case ledger.RuleDuplicateEmail, ledger.RuleUserExists:
			return &Error{Status: http.StatusConflict, ScimType: "uniqueness", Detail: re.Detail, err: err}, false
		case ledger.RuleNoSeatAvailable:
			return &Error{Status: http.StatusConflict, Detail: "no free seat in the account, buy seats or deactivate a user first: " + re.Detail, err: err}, false
		case ledger.RuleLastActiveAdmin, ledger.RuleUserDeactivated:
			return &Error{Status: http.StatusConflict, Detail: re.Detail, err: err}, false
		}
		return &Error{Status: http.StatusBadRequest, ScimType: "invalidValue", Detail: re.Detail, err: err}, false
	case errors.Is(err, accounts.ErrPreconditionFailed):
		return &Error{Status: http.StatusPreconditionFailed, Detail: "the resource changed since the version given in If-Match", err: err}, false
	case errors.Is(err, accounts.ErrIdempotencyKeyReused):
		return &Error{Status: http.StatusUnprocessableEntity, Detail: "the Idempotency-Key was used for another request", err: err}, false
	case errors.Is(err, accounts.ErrContention):
		return &Error{Status: http.StatusServiceUnavailable, Detail: "too many concurrent changes to the account: retry", err: err}, false
	case errors.Is(err, projections.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Detail: "resource not found", err: err}, false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &Error{Status: http.StatusServiceUnavailable, Detail: "the request timed out and may or may not have been recorded: read the resource before retrying", err: err}, false
	}
	return &Error{Status: http.StatusInternalServerError, Detail: "an internal error occurred; it has been logged", err: err}, true
}

type errorBody struct {
	Schemas  []string `json:"schemas"`
	Status   string   `json:"status"`
	ScimType string   `json:"scimType,omitempty"`
	Detail   string   `json:"detail,omitempty"`
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	e, internal := toError(err)
	if internal {
		// The error text never holds personal data: the ledger's errors
		// name ids and rules, not names or emails.
		h.cfg.Logger.ErrorContext(r.Context(), "scim request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if e.Status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.Status, errorBody{Schemas: []string{SchemaError}, Status: strconv.Itoa(e.Status), ScimType: e.ScimType, Detail: e.Detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"schemas":["` + SchemaError + `"],"status":"500","detail":"an internal error occurred"}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", MediaType)
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// readBody reads a JSON object of at most MaxBody bytes.
func (h *Handler) readBody(r *http.Request) (map[string]any, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && mt != MediaType) {
			return nil, &Error{Status: http.StatusUnsupportedMediaType, Detail: "the request body must be application/scim+json or application/json"}
		}
	}
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, h.cfg.MaxBody))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return nil, &Error{Status: http.StatusRequestEntityTooLarge, Detail: "the request body is larger than " + strconv.FormatInt(h.cfg.MaxBody, 10) + " bytes"}
	}
	if err != nil {
		return nil, invalidSyntax("the request body could not be read")
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m == nil {
		return nil, invalidSyntax("the request body is not a JSON object")
	}
	return m, nil
}

// get returns the member of m named name, compared case-insensitively as
// RFC 7643 section 2.1 requires of attribute names.
func get(m map[string]any, name string) (any, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

// ifMatch returns the account revision an If-Match header names: "7" or
// W/"7".
func ifMatch(r *http.Request) (*uint64, error) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" || v == "*" {
		return nil, nil
	}
	v = strings.TrimPrefix(v, "W/")
	if len(v) < 3 || v[0] != '"' || v[len(v)-1] != '"' {
		return nil, invalidValue("If-Match must be a version this service returned, such as W/\"7\"")
	}
	rev, err := strconv.ParseUint(v[1:len(v)-1], 10, 64)
	if err != nil {
		return nil, invalidValue("If-Match must be a version this service returned, such as W/\"7\"")
	}
	return &rev, nil
}

func version(rev uint64) string { return `W/"` + strconv.FormatUint(rev, 10) + `"` }
