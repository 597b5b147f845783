package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/webhooks"
	"github.com/licenseledger/ledger/projections"
)

// WebhookService keeps the webhook endpoints of the accounts and their
// delivery logs; *webhooks.Service is one.
type WebhookService interface {
	Register(ctx context.Context, account string, reg webhooks.Registration) (webhooks.Endpoint, string, error)
	List(ctx context.Context, account, after string, limit int) ([]webhooks.Endpoint, bool, error)
	Get(ctx context.Context, account, id string) (webhooks.Endpoint, error)
	Delete(ctx context.Context, account, id string) error
	Enable(ctx context.Context, account, id string) (webhooks.Endpoint, error)
	Replay(ctx context.Context, account, id string, from webhooks.From) (webhooks.Endpoint, error)
	Deliveries(ctx context.Context, account, id string, after uint64, limit int) ([]webhooks.Delivery, bool, error)
}

// ProblemWebhooksUnavailable is the slug of a webhook request to a
// service that runs without webhooks (503).
const ProblemWebhooksUnavailable = "webhooks-unavailable"

// Cursor kinds of the webhook lists.
const (
	cursorWebhooks   byte = 'w'
	cursorDeliveries byte = 'd'
)

// RegisteredWebhook is the answer of registering an endpoint: the endpoint
// and its signing secret, shown this once.
type RegisteredWebhook struct {
	webhooks.Endpoint
	Secret string `json:"secret"`
}

// WebhookList is a page of an account's endpoints, by id.
type WebhookList struct {
	Webhooks   []webhooks.Endpoint `json:"webhooks"`
	HasMore    bool                `json:"has_more"`
	NextCursor string              `json:"next_cursor"`
	// NextLink is the request for the next page, when HasMore.
	NextLink string `json:"next_link,omitzero"`
}

// DeliveryList is a page of an endpoint's delivery log, oldest first.
type DeliveryList struct {
	Deliveries []webhooks.Delivery `json:"deliveries"`
	HasMore    bool                `json:"has_more"`
	NextCursor string              `json:"next_cursor"`
	// NextLink is the request for the next page, when HasMore.
	NextLink string `json:"next_link,omitzero"`
}

// webhookRoutes registers the webhook routes: account admins and operators
// only, on accounts their token sees.
func (s *server) webhookRoutes() {
	const hooks = "/v1/accounts/{account}/webhooks"
	s.hook("POST "+hooks, s.registerWebhook)
	s.hook("GET "+hooks, s.listWebhooks)
	s.hook("GET "+hooks+"/{webhook}", s.getWebhook)
	s.hook("DELETE "+hooks+"/{webhook}", s.deleteWebhook)
	s.hook("POST "+hooks+"/{webhook}/enable", s.enableWebhook)
	s.hook("POST "+hooks+"/{webhook}/replay", s.replayWebhook)
	s.hook("GET "+hooks+"/{webhook}/deliveries", s.listDeliveries)
}

type hookFunc func(r *http.Request, account string, body []byte) (*response, error)

func (s *server) hook(pattern string, f hookFunc) {
	s.handle(pattern, func(w http.ResponseWriter, r *http.Request) {
		s.send(w, r, s.doHook(r, f))
	})
}

// doHook authorises a webhook request, checks that the account exists,
// and runs it; a write given an Idempotency-Key is answered once per key,
// as every write of the API (a registration's secret is then kept in
// memory for the cache's time, as a minted token's).
func (s *server) doHook(r *http.Request, f hookFunc) *response {
	account := r.PathValue("account")
	p, err := s.authorize(r, account, auth.ManageWebhooks)
	if err == nil {
		err = s.hookReady(account)
	}
	var body []byte
	if err == nil && r.Method != http.MethodGet {
		body, err = s.readBody(r)
	}
	if err != nil {
		return s.problemResponse(r, err)
	}
	run := func() *response {
		resp, err := f(r, account, body)
		if err != nil {
			return s.problemResponse(r, webhookProblem(err))
		}
		return resp
	}
	key := r.Header.Get(HeaderIdemKey)
	if key == "" || r.Method == http.MethodGet {
		return run()
	}
	if err := checkIdemKey(key); err != nil {
		return s.problemResponse(r, err)
	}
	cached, done, err := s.idem.begin(r.Context(), account, idemScope(p, account, key), s.idem.fingerprint(r, body))
	if err != nil {
		return s.problemResponse(r, err)
	}
	if cached != nil {
		return cached
	}
	var resp *response
	defer func() { done(resp) }() // releases the key after a panic too
	resp = run()
	return resp
}

// hookReady refuses a webhook request when the service runs without
// webhooks, while the read models catch up, and for an account that does
// not exist.
func (s *server) hookReady(account string) error {
	if s.cfg.Webhooks == nil {
		return newProblem(ProblemWebhooksUnavailable, http.StatusServiceUnavailable, "this service runs without webhooks")
	}
	if err := s.checkReady(); err != nil {
		return err
	}
	if _, err := s.cfg.Seats.Usage(account, s.cfg.Clock()); errors.Is(err, projections.ErrNotFound) {
		return &ledger.RuleError{Rule: ledger.RuleAccountNotFound, Detail: "account " + strconv.Quote(account) + " not found"}
	} else if err != nil {
		return err
	}
	return nil
}

// webhookProblem maps the webhook service's errors to problems.
func webhookProblem(err error) error {
	var re *webhooks.RuleError
	switch {
	case errors.As(err, &re):
		return &problemError{slug: re.Rule, status: http.StatusBadRequest, detail: re.Detail, err: err}
	case errors.Is(err, webhooks.ErrNotFound):
		return &problemError{slug: ProblemNotFound, status: http.StatusNotFound, detail: "no such webhook endpoint in this account", err: err}
	}
	return err
}

func (s *server) registerWebhook(r *http.Request, account string, body []byte) (*response, error) {
	var reg webhooks.Registration
	if err := decodeBody(body, &reg, false); err != nil {
		return nil, err
	}
	ep, secret, err := s.cfg.Webhooks.Register(r.Context(), account, reg)
	if err != nil {
		return nil, err
	}
	resp := jsonResponse(http.StatusCreated, RegisteredWebhook{Endpoint: ep, Secret: secret})
	resp.header.Set("Location", "/v1/accounts/"+account+"/webhooks/"+ep.ID)
	resp.header.Set("Cache-Control", "no-store")
	return resp, nil
}

func (s *server) listWebhooks(r *http.Request, account string, _ []byte) (*response, error) {
	q := r.URL.Query()
	limit, err := pageLimit(q, DefaultLimit)
	if err != nil {
		return nil, err
	}
	scope := cursorScope(account)
	after, err := decodeKeyCursor(q.Get("cursor"), cursorWebhooks, scope)
	if err != nil {
		return nil, err
	}
	page, more, err := s.cfg.Webhooks.List(r.Context(), account, after, limit)
	if err != nil {
		return nil, err
	}
	if len(page) > 0 {
		after = page[len(page)-1].ID
	}
	list := WebhookList{Webhooks: page, HasMore: more, NextCursor: encodeKeyCursor(cursorWebhooks, scope, after)}
	list.NextLink = nextLink(r, list.NextCursor, more)
	resp := jsonResponse(http.StatusOK, list)
	setNextLink(resp.header, list.NextLink)
	return resp, nil
}

func (s *server) getWebhook(r *http.Request, account string, _ []byte) (*response, error) {
	ep, err := s.cfg.Webhooks.Get(r.Context(), account, r.PathValue("webhook"))
	if err != nil {
		return nil, err
	}
	return jsonResponse(http.StatusOK, ep), nil
}

func (s *server) deleteWebhook(r *http.Request, account string, _ []byte) (*response, error) {
	if err := s.cfg.Webhooks.Delete(r.Context(), account, r.PathValue("webhook")); err != nil {
		return nil, err
	}
	return &response{status: http.StatusNoContent, header: http.Header{}}, nil
}

func (s *server) enableWebhook(r *http.Request, account string, _ []byte) (*response, error) {
	ep, err := s.cfg.Webhooks.Enable(r.Context(), account, r.PathValue("webhook"))
	if err != nil {
		return nil, err
	}
	return jsonResponse(http.StatusOK, ep), nil
}

// replayRequest is the body of a replay: from_sequence (a sequence of the
// published stream, as the delivery log shows) or from_time.
type replayRequest struct {
	FromSequence uint64     `json:"from_sequence"`
	FromTime     *time.Time `json:"from_time"`
}

func (s *server) replayWebhook(r *http.Request, account string, body []byte) (*response, error) {
	var req replayRequest
	if err := decodeBody(body, &req, false); err != nil {
		return nil, err
	}
	ep, err := s.cfg.Webhooks.Replay(r.Context(), account, r.PathValue("webhook"), webhooks.From{Sequence: req.FromSequence, Time: req.FromTime})
	if err != nil {
		return nil, err
	}
	return jsonResponse(http.StatusAccepted, ep), nil
}

func (s *server) listDeliveries(r *http.Request, account string, _ []byte) (*response, error) {
	q := r.URL.Query()
	limit, err := pageLimit(q, DefaultLimit)
	if err != nil {
		return nil, err
	}
	id := r.PathValue("webhook")
	scope := cursorScope(account, "webhook="+id)
	vals, err := decodeCursor(q.Get("cursor"), cursorDeliveries, scope, 1)
	if err != nil {
		return nil, err
	}
	after := vals[0]
	page, more, err := s.cfg.Webhooks.Deliveries(r.Context(), account, id, after, limit)
	if err != nil {
		return nil, err
	}
	if len(page) > 0 {
		after = page[len(page)-1].LogSequence
	}
	list := DeliveryList{Deliveries: page, HasMore: more, NextCursor: encodeCursor(cursorDeliveries, scope, after)}
	list.NextLink = nextLink(r, list.NextCursor, more)
	resp := jsonResponse(http.StatusOK, list)
	setNextLink(resp.header, list.NextLink)
	return resp, nil
}
