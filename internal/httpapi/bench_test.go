package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// benchCommand runs one command (buying a seat) per iteration through the
// API's handler, in process, on the memory store: the request's whole
// path, waiting for the read models included, without the network.
func benchCommand(b *testing.B, e *env, header http.Header) {
	e.open("acme", 1)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/v1/accounts/acme/seats", strings.NewReader(`{"count":1}`))
		req.Header.Set("Authorization", "Bearer "+e.operator)
		req.Header.Set("Content-Type", "application/json")
		for k, v := range header {
			req.Header[k] = v
		}
		w := httptest.NewRecorder()
		e.api.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkCommand is a command with the service's defaults (no tracing).
func BenchmarkCommand(b *testing.B) {
	benchCommand(b, newEnv(b), nil)
}
