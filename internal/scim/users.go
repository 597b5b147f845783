package scim

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/seats"
)

// timeFormat renders meta times: UTC, milliseconds, so that they sort as
// text too.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// baseURL is the service provider's base URL as the client reached it.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	return scheme + "://" + r.Host + Prefix
}

// splitName reads a name as given name (first word) and family name (the
// rest): the ledger keeps one name.
func splitName(name string) (given, family string) {
	name = strings.TrimSpace(name)
	given, family, _ = strings.Cut(name, " ")
	return given, strings.TrimSpace(family)
}

func joinName(given, family string) string {
	return strings.TrimSpace(strings.TrimSpace(given) + " " + strings.TrimSpace(family))
}

// resource renders a user as a SCIM User resource.
func resource(r *http.Request, u seats.User, rev uint64) map[string]any {
	given, family := splitName(u.Name)
	name := map[string]any{"formatted": u.Name}
	if given != "" {
		name["givenName"] = given
	}
	if family != "" {
		name["familyName"] = family
	}
	loc := baseURL(r) + "/Users/" + u.ID
	res := map[string]any{
		"schemas":     []any{SchemaUser},
		"id":          u.ID,
		"userName":    u.Email,
		"name":        name,
		"displayName": u.Name,
		"emails":      []any{map[string]any{"value": u.Email, "type": "work", "primary": true}},
		"active":      u.Status == ledger.StatusActive,
		"roles":       []any{map[string]any{"value": string(u.Role), "primary": true}},
		"meta": map[string]any{
			"resourceType": "User",
			"created":      u.AddedAt.UTC().Format(timeFormat),
			"lastModified": u.ChangedAt.UTC().Format(timeFormat),
			"location":     loc,
			"version":      version(rev),
		},
	}
	if u.ExternalID != "" {
		res["externalId"] = u.ExternalID
	}
	return res
}

// sendUser answers one user with its ETag and Location.
func sendUser(w http.ResponseWriter, r *http.Request, status int, u seats.User, rev uint64, sel selection) {
	res := resource(r, u, rev)
	w.Header().Set("ETag", version(rev))
	w.Header().Set("Location", res["meta"].(map[string]any)["location"].(string))
	writeJSON(w, status, sel.apply(res))
}

// lookup returns a user of the account who is not deleted; any other id
// is 404, as RFC 7644 section 3.6 asks for deleted resources.
func (h *Handler) lookup(account, id string) (seats.User, uint64, error) {
	notFound := &Error{Status: http.StatusNotFound, Detail: "user " + strconv.Quote(id) + " not found"}
	if !ledger.ValidID(id) {
		return seats.User{}, 0, notFound
	}
	u, err := h.cfg.Directory.User(account, id)
	if errors.Is(err, projections.ErrNotFound) {
		return seats.User{}, 0, notFound
	}
	if err != nil {
		return seats.User{}, 0, err
	}
	if u.Status == ledger.StatusDeleted {
		return seats.User{}, 0, notFound
	}
	usage, err := h.cfg.Directory.Usage(account, h.cfg.Clock())
	if err != nil {
		return seats.User{}, 0, err
	}
	return u, usage.Revision, nil
}

func (h *Handler) getUser(w http.ResponseWriter, r *http.Request) {
	sel, err := parseSelection(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	u, rev, err := h.lookup(principal(r).Account, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	sendUser(w, r, http.StatusOK, u, rev, sel)
}

// listResponse is a SCIM ListResponse (RFC 7644 section 3.4.2).
type listResponse struct {
	Schemas      []string `json:"schemas"`
	TotalResults int      `json:"totalResults"`
	StartIndex   int      `json:"startIndex"`
	ItemsPerPage int      `json:"itemsPerPage"`
	Resources    []any    `json:"Resources"`
}

func (h *Handler) listUsers(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sel, err := parseSelection(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	start, count := 1, 100
	if v := q.Get("startIndex"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			h.fail(w, r, invalidValue("startIndex must be an integer"))
			return
		}
		start = max(n, 1) // RFC 7644 section 3.4.2.4: below 1 is 1
	}
	if v := q.Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			h.fail(w, r, invalidValue("count must be an integer"))
			return
		}
		count = min(max(n, 0), MaxResults)
	}
	var match func(map[string]any) bool
	if f := q.Get("filter"); f != "" {
		if match, err = compileFilter(f); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	if q.Get("sortBy") != "" {
		h.fail(w, r, &Error{Status: http.StatusBadRequest, ScimType: "invalidValue", Detail: "sorting is not supported (ServiceProviderConfig sort.supported is false)"})
		return
	}
	account := principal(r).Account
	usage, err := h.cfg.Directory.Usage(account, h.cfg.Clock())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	resp := listResponse{Schemas: []string{SchemaListResponse}, StartIndex: start, Resources: []any{}}
	after := 0
	for {
		users, next, more, err := h.cfg.Directory.UsersPage(account, "", after, MaxResults)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		for _, u := range users {
			if u.Status == ledger.StatusDeleted {
				continue
			}
			res := resource(r, u, usage.Revision)
			if match != nil && !match(res) {
				continue
			}
			resp.TotalResults++
			if resp.TotalResults >= start && len(resp.Resources) < count {
				resp.Resources = append(resp.Resources, sel.apply(res))
			}
		}
		if !more {
			break
		}
		after = next
	}
	resp.ItemsPerPage = len(resp.Resources)
	writeJSON(w, http.StatusOK, resp)
}

// profile is what the ledger keeps of a user that SCIM can set.
type profile struct {
	name, email string
	role        ledger.Role
	active      bool
	// externalID can be set and changed, not removed: the ledger's events
	// record a new value, not its absence.
	externalID string
}

func profileOf(u seats.User) profile {
	return profile{name: u.Name, email: u.Email, role: u.Role, active: u.Status == ledger.StatusActive, externalID: u.ExternalID}
}

// userInput reads a whole User resource (POST, PUT). Attributes the ledger
// does not keep are ignored. role and active are nil when not given,
// externalID empty.
func userInput(m map[string]any) (name, email string, role *ledger.Role, active *bool, externalID string, err error) {
	name, email, role, active, err = userFields(m)
	if err != nil {
		return "", "", nil, nil, "", err
	}
	if v, ok := get(m, "externalId"); ok && v != nil {
		s, isStr := v.(string)
		if !isStr {
			return "", "", nil, nil, "", invalidValue("externalId must be a string")
		}
		externalID = strings.TrimSpace(s)
	}
	return name, email, role, active, externalID, nil
}

func userFields(m map[string]any) (name, email string, role *ledger.Role, active *bool, err error) {
	if err := checkSchemas(m, SchemaUser); err != nil {
		return "", "", nil, nil, err
	}
	v, ok := get(m, "userName")
	userName, isStr := v.(string)
	if !ok || !isStr || strings.TrimSpace(userName) == "" {
		return "", "", nil, nil, invalidValue("userName is required: the user's email")
	}
	email = strings.TrimSpace(userName)
	if v, ok := get(m, "emails"); ok && v != nil {
		// Only a primary email stands for userName: Microsoft Entra ID sends
		// the user principal name as userName and mail as a work email that
		// is not marked primary, then looks the user up by userName.
		e, err := emailOf(v, true)
		if err != nil {
			return "", "", nil, nil, err
		}
		if e != "" {
			email = e
		}
	}
	if v, ok := get(m, "name"); ok && v != nil {
		obj, ok := v.(map[string]any)
		if !ok {
			return "", "", nil, nil, invalidValue("name must be an object")
		}
		if name, err = nameOf(obj, ""); err != nil {
			return "", "", nil, nil, err
		}
	}
	if name == "" {
		if v, ok := get(m, "displayName"); ok {
			s, _ := v.(string)
			name = strings.TrimSpace(s)
		}
	}
	if name == "" {
		return "", "", nil, nil, invalidValue("a user needs a name: name.formatted, name.givenName and name.familyName, or displayName")
	}
	if v, ok := get(m, "roles"); ok && v != nil {
		r, err := roleOf(v)
		if err != nil {
			return "", "", nil, nil, err
		}
		role = r
	}
	if v, ok := get(m, "active"); ok && v != nil {
		b, err := boolOf("active", v)
		if err != nil {
			return "", "", nil, nil, err
		}
		active = &b
	}
	return name, email, role, active, nil
}

// checkSchemas refuses a body whose schemas do not name want; a body
// without schemas is taken as meant.
func checkSchemas(m map[string]any, want string) error {
	v, ok := get(m, "schemas")
	if !ok {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		return invalidSyntax("schemas must be an array of schema URNs")
	}
	for _, s := range list {
		if str, ok := s.(string); ok && strings.EqualFold(str, want) {
			return nil
		}
	}
	return invalidSyntax("schemas must include %s", want)
}

// nameOf returns the name a SCIM name object gives: formatted, else given
// and family name joined. base is the current name, whose parts stand for
// those the object leaves out.
func nameOf(obj map[string]any, base string) (string, error) {
	str := func(k string) (string, bool, error) {
		v, ok := get(obj, k)
		if !ok || v == nil {
			return "", false, nil
		}
		s, isStr := v.(string)
		if !isStr {
			return "", false, invalidValue("name.%s must be a string", k)
		}
		return strings.TrimSpace(s), true, nil
	}
	formatted, _, err := str("formatted")
	if err != nil {
		return "", err
	}
	given, hasGiven, err := str("givenName")
	if err != nil {
		return "", err
	}
	family, hasFamily, err := str("familyName")
	if err != nil {
		return "", err
	}
	if hasGiven || hasFamily {
		bg, bf := splitName(base)
		if !hasGiven {
			given = bg
		}
		if !hasFamily {
			family = bf
		}
		return joinName(given, family), nil
	}
	return formatted, nil
}

// emailOf returns the primary email of a SCIM emails value, else (unless
// onlyPrimary) the only one, else "".
func emailOf(v any, onlyPrimary bool) (string, error) {
	list, ok := v.([]any)
	if !ok {
		return "", invalidValue("emails must be an array")
	}
	var first string
	for i, item := range list {
		obj, ok := item.(map[string]any)
		if !ok {
			return "", invalidValue("emails[%d] must be an object", i)
		}
		val, _ := get(obj, "value")
		s, _ := val.(string)
		s = strings.TrimSpace(s)
		if p, ok := get(obj, "primary"); ok {
			if b, err := boolOf("primary", p); err == nil && b && s != "" {
				return s, nil
			}
		}
		if i == 0 {
			first = s
		}
	}
	if len(list) == 1 && !onlyPrimary {
		return first, nil
	}
	return "", nil
}

// roleOf returns the role of a SCIM roles value: the primary one's value,
// else the only one's.
func roleOf(v any) (*ledger.Role, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, invalidValue("roles must be an array of {\"value\": \"admin\"|\"member\", \"primary\": true}")
	}
	if len(list) == 0 {
		r := ledger.RoleMember
		return &r, nil
	}
	pick := -1
	for i, item := range list {
		obj, ok := item.(map[string]any)
		if !ok {
			return nil, invalidValue("roles[%d] must be an object", i)
		}
		if p, ok := get(obj, "primary"); ok {
			if b, err := boolOf("primary", p); err == nil && b {
				pick = i
				break
			}
		}
	}
	if pick < 0 {
		if len(list) > 1 {
			return nil, invalidValue("roles holds several roles: mark one primary")
		}
		pick = 0
	}
	val, _ := get(list[pick].(map[string]any), "value")
	return roleValue(val)
}

func roleValue(v any) (*ledger.Role, error) {
	s, _ := v.(string)
	r := ledger.Role(strings.ToLower(strings.TrimSpace(s)))
	if !r.Valid() {
		return nil, invalidValue("a role is \"admin\" or \"member\"")
	}
	return &r, nil
}

// boolOf reads a SCIM boolean; Microsoft Entra ID sends "True" and
// "False" as strings.
func boolOf(attr string, v any) (bool, error) {
	switch b := v.(type) {
	case bool:
		return b, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(b)) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, invalidValue("%s must be true or false", attr)
}

func (h *Handler) request(r *http.Request, ifm *uint64) accounts.Request {
	p := principal(r)
	req := accounts.Request{Actor: codec.Actor{ID: p.TokenID, Role: string(p.Role)}, CorrelationID: h.cfg.NewID(), IfMatch: ifm}
	req.Traceparent, req.Tracestate = accounts.TraceContext(r.Context())
	return req
}

// run gives the commands in order, the first with the If-Match the
// request named, and waits for the read models to apply the last. It
// returns the last result, or the zero result when there is no command.
func (h *Handler) run(r *http.Request, account string, cmds []ledger.Command) (accounts.Result, error) {
	ifm, err := ifMatch(r)
	if err != nil {
		return accounts.Result{}, err
	}
	var res accounts.Result
	for i, cmd := range cmds {
		req := h.request(r, nil)
		if i == 0 {
			req.IfMatch = ifm
		}
		if res, err = h.cfg.Commands.Execute(r.Context(), account, cmd, req); err != nil {
			return res, err
		}
	}
	if h.cfg.Progress != nil && res.Position > 0 && h.cfg.Progress.Position() < res.Position {
		ctx, cancel := context.WithTimeout(r.Context(), h.cfg.WaitTimeout)
		defer cancel()
		if err := h.cfg.Progress.Wait(ctx, res.Position); err != nil {
			h.cfg.Logger.WarnContext(ctx, "read models behind after a SCIM write", "account", account, "position", uint64(res.Position))
		}
	}
	return res, nil
}

// userOf returns user id of a command's resulting state.
func userOf(st ledger.State, id string) (seats.User, bool) {
	u, ok := st.User(id)
	if !ok {
		return seats.User{}, false
	}
	return seats.User{ID: u.ID, Name: u.Name, Email: u.Email, Role: u.Role, Status: u.Status,
		AddedAt: u.AddedAt, ChangedAt: u.ChangedAt, ExternalID: u.ExternalID}, true
}

func (h *Handler) createUser(w http.ResponseWriter, r *http.Request) {
	m, err := h.readBody(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	name, email, role, active, ext, err := userInput(m)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if role == nil {
		member := ledger.RoleMember
		role = &member
	}
	account := principal(r).Account
	id := h.cfg.NewID().String()
	at := h.cfg.Clock()
	cmds := []ledger.Command{ledger.AddUser{UserID: id, Name: name, Email: email, Role: *role, ExternalID: ext, At: at}}
	if active != nil && !*active {
		cmds = append(cmds, ledger.DeactivateUser{UserID: id, Reason: "provisioned inactive", At: at})
	}
	res, err := h.run(r, account, cmds)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.answer(w, r, http.StatusCreated, res, id)
}

func (h *Handler) answer(w http.ResponseWriter, r *http.Request, status int, res accounts.Result, id string) {
	u, ok := userOf(res.State, id)
	if !ok || u.Status == ledger.StatusDeleted {
		h.fail(w, r, &Error{Status: http.StatusNotFound, Detail: "user " + strconv.Quote(id) + " not found"})
		return
	}
	sel, err := parseSelection(r)
	if err != nil {
		sel = selection{}
	}
	sendUser(w, r, status, u, res.Revision(), sel)
}

// change turns the profile wanted for user cur into commands: activation
// first (so that the user holds a seat before anything else), then the
// profile and role, then deactivation.
func change(cur seats.User, want profile, at time.Time) []ledger.Command {
	have := profileOf(cur)
	var cmds []ledger.Command
	if want.active && !have.active {
		cmds = append(cmds, ledger.ActivateUser{UserID: cur.ID, At: at})
	}
	upd := ledger.UpdateUser{UserID: cur.ID, At: at}
	if want.name != have.name {
		upd.Name = &want.name
	}
	if want.email != have.email {
		upd.Email = &want.email
	}
	if want.role != have.role {
		upd.Role = &want.role
	}
	if want.externalID != "" && want.externalID != have.externalID {
		upd.ExternalID = &want.externalID
	}
	if upd.Name != nil || upd.Email != nil || upd.Role != nil || upd.ExternalID != nil {
		cmds = append(cmds, upd)
	}
	if !want.active && have.active {
		cmds = append(cmds, ledger.DeactivateUser{UserID: cur.ID, Reason: "deactivated by the identity provider", At: at})
	}
	return cmds
}

// apply runs the commands that take user cur to want and answers the user.
func (h *Handler) apply(w http.ResponseWriter, r *http.Request, cur seats.User, rev uint64, want profile) {
	account := principal(r).Account
	cmds := change(cur, want, h.cfg.Clock())
	if len(cmds) == 0 {
		if ifm, err := ifMatch(r); err != nil || (ifm != nil && *ifm != rev) {
			if err == nil {
				err = &Error{Status: http.StatusPreconditionFailed, Detail: "the resource changed since the version given in If-Match"}
			}
			h.fail(w, r, err)
			return
		}
		sel, _ := parseSelection(r)
		sendUser(w, r, http.StatusOK, cur, rev, sel)
		return
	}
	res, err := h.run(r, account, cmds)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.answer(w, r, http.StatusOK, res, cur.ID)
}

func (h *Handler) replaceUser(w http.ResponseWriter, r *http.Request) {
	cur, rev, err := h.lookup(principal(r).Account, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	m, err := h.readBody(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if v, ok := get(m, "id"); ok {
		if s, _ := v.(string); s != cur.ID {
			h.fail(w, r, &Error{Status: http.StatusBadRequest, ScimType: "mutability", Detail: "id cannot be changed"})
			return
		}
	}
	name, email, role, active, ext, err := userInput(m)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	want := profileOf(cur)
	want.name, want.email = name, email
	if ext != "" {
		want.externalID = ext
	}
	if role != nil {
		want.role = *role
	}
	if active != nil {
		want.active = *active
	}
	h.apply(w, r, cur, rev, want)
}

func (h *Handler) patchUser(w http.ResponseWriter, r *http.Request) {
	cur, rev, err := h.lookup(principal(r).Account, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	m, err := h.readBody(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	want, err := patch(m, profileOf(cur))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.apply(w, r, cur, rev, want)
}

// deleteUser deletes the user for good: the provider's DELETE is the
// confirmation the /v1 API asks for.
func (h *Handler) deleteUser(w http.ResponseWriter, r *http.Request) {
	account := principal(r).Account
	cur, _, err := h.lookup(account, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if _, err := h.run(r, account, []ledger.Command{ledger.DeleteUser{UserID: cur.ID, Confirm: cur.ID, At: h.cfg.Clock()}}); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
