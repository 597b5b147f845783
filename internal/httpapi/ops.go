package httpapi

import (
	"context"
	_ "embed"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/internal/auth"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the OpenAPI 3.1 document of the API.
func OpenAPI() []byte { return append([]byte(nil), openAPI...) }

func (s *server) ops() {
	s.handle("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		s.send(w, r, jsonResponse(http.StatusOK, map[string]string{"status": "ok"}))
	})
	s.handle("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		failed := map[string]string{}
		for _, name := range slices.Sorted(maps.Keys(s.cfg.Ready)) {
			if err := s.cfg.Ready[name](ctx); err != nil {
				failed[name] = err.Error()
			}
		}
		if len(failed) > 0 {
			resp := jsonResponse(http.StatusServiceUnavailable, map[string]any{"status": "not ready", "failed": failed})
			resp.header.Set("Retry-After", "1")
			s.send(w, r, resp)
			return
		}
		s.send(w, r, jsonResponse(http.StatusOK, map[string]string{"status": "ready"}))
	})
	s.handle("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		s.metrics.WriteTo(w)
	})
	s.handle("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(openAPI)))
		w.Write(openAPI)
	})
}

type mintBody struct {
	Role    auth.Role `json:"role"`
	Account string    `json:"account"`
}

// TokenCreated is the answer to minting a token: the only time its secret
// is shown.
type TokenCreated struct {
	ID        string    `json:"id"`
	Role      auth.Role `json:"role"`
	Account   string    `json:"account,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Token     string    `json:"token"`
}

// TokenInfo describes a minted token without its secret.
type TokenInfo struct {
	ID        string    `json:"id"`
	Role      auth.Role `json:"role"`
	Account   string    `json:"account,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

func (s *server) tokenRoutes() {
	s.handle("POST /v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		s.send(w, r, s.doMint(r))
	})
	s.read("GET /v1/tokens/{token}", auth.MintToken, func(ctx context.Context, r *http.Request, _ auth.Principal) (*response, error) {
		t, err := s.cfg.Tokens.ByID(ctx, r.PathValue("token"))
		if err != nil {
			return nil, err
		}
		return jsonResponse(http.StatusOK, TokenInfo{ID: t.ID, Role: t.Role, Account: t.Account, CreatedAt: t.CreatedAt}), nil
	})
	s.handle("DELETE /v1/tokens/{token}", func(w http.ResponseWriter, r *http.Request) {
		s.send(w, r, s.revoke(r))
	})
}

// revoke revokes a token: 204, 404 for an unknown or revoked id, 409 for
// the last operator token.
func (s *server) revoke(r *http.Request) *response {
	p, err := s.authorize(r, "", auth.MintToken)
	if err == nil {
		err = s.cfg.Tokens.Revoke(r.Context(), r.PathValue("token"))
	}
	if err != nil {
		return s.problemResponse(r, err)
	}
	s.log.LogAttrs(r.Context(), slog.LevelInfo, "token revoked",
		slog.String("token", r.PathValue("token")), slog.String("by", p.TokenID))
	return &response{status: http.StatusNoContent, header: http.Header{}}
}

// doMint mints a token. It takes an Idempotency-Key like any write; the
// secret is then kept, in memory only, for the cache's time.
func (s *server) doMint(r *http.Request) *response {
	body, err := s.readBody(r)
	var p auth.Principal
	if err == nil {
		p, err = s.authorize(r, "", auth.MintToken)
	} else if _, aerr := auth.Authenticate(r.Context(), s.cfg.Tokens, authorization(r)); aerr != nil {
		err = aerr
	}
	if err != nil {
		return s.problemResponse(r, err)
	}
	key := r.Header.Get(HeaderIdemKey)
	if key == "" {
		return s.mint(r, body)
	}
	if err := checkIdemKey(key); err != nil {
		return s.problemResponse(r, err)
	}
	// A minted secret is replayed only to the principal that minted it.
	cached, done, err := s.idem.begin(r.Context(), "", idemScope(p, "", key), s.idem.fingerprint(r, body))
	if err != nil {
		return s.problemResponse(r, err)
	}
	if cached != nil {
		return cached
	}
	var resp *response
	defer func() { done(resp) }() // releases the key after a panic too
	resp = s.mint(r, body)
	return resp
}

func (s *server) mint(r *http.Request, body []byte) *response {
	var b mintBody
	if err := decodeBody(body, &b, false); err != nil {
		return s.problemResponse(r, err)
	}
	if b.Account != "" {
		if err := s.checkReady(); err != nil {
			return s.problemResponse(r, err)
		}
		if err := s.existsInStore(r.Context(), b.Account); err != nil {
			return s.problemResponse(r, err)
		}
	}
	t, secret, err := auth.Mint(r.Context(), s.cfg.Tokens, s.cfg.Random, b.Role, b.Account, s.cfg.Clock())
	if err != nil {
		return s.problemResponse(r, err)
	}
	resp := jsonResponse(http.StatusCreated, TokenCreated{ID: t.ID, Role: t.Role, Account: t.Account, CreatedAt: t.CreatedAt, Token: secret})
	resp.header.Set("Location", "/v1/tokens/"+t.ID)
	resp.header.Set("Cache-Control", "no-store")
	return resp
}

// existsInStore checks the account is open as the store knows it: an
// account this process's read models do not hold yet may have been opened
// through another process sharing the store, so before answering 404 the
// read models are brought up to the store's last position (within the
// wait timeout) and asked again.
func (s *server) existsInStore(ctx context.Context, account string) error {
	_, err := s.exists(account)
	var rule *ledger.RuleError
	if err == nil || !errors.As(err, &rule) || rule.Rule != ledger.RuleAccountNotFound || s.cfg.Head == nil {
		return err
	}
	last, ok := s.storeLast(ctx)
	if !ok {
		return err
	}
	if werr := s.awaitPosition(ctx, last); werr != nil {
		return werr
	}
	_, err = s.exists(account)
	return err
}
