package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"testing"
)

// TestProblemRenderingCannotPanic: a problem about a request whose path,
// and an error whose text, are not UTF-8 still renders as valid JSON, with
// the instance percent-encoded as sent.
func TestProblemRenderingCannotPanic(t *testing.T) {
	s := &server{log: slog.New(slog.DiscardHandler), metrics: NewMetrics()}
	for _, c := range []struct {
		name     string
		path     string
		err      error
		instance string
	}{
		{"path", "/v1/accounts/\xff", badRequest("no"), "/v1/accounts/%FF"},
		{"detail", "/v1/accounts/a", newProblem(ProblemMalformedRequest, http.StatusBadRequest, "bad \xc0\xaf value"), "/v1/accounts/a"},
		{"unknown error", "/v1/\xed\xa0\x80", errors.New("disk \xff on fire"), "/v1/%ED%A0%80"},
	} {
		r := &http.Request{Method: "GET", URL: &url.URL{Path: c.path}}
		resp := s.problemResponse(r, c.err)
		var p Problem
		if !json.Valid(resp.body) || json.Unmarshal(resp.body, &p) != nil {
			t.Fatalf("%s: invalid problem %q", c.name, resp.body)
		}
		if p.Instance != c.instance || p.Status != resp.status || p.Type != ProblemBase+p.Rule {
			t.Fatalf("%s: problem %+v", c.name, p)
		}
	}
}
