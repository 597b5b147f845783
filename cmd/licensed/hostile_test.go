package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestHostileRequests sends, through the real wiring on each store, the
// requests that used to panic or wait: a path that is not UTF-8 (400
// without a token), a wrong method (405 with Allow) and a min position no
// write reached (400 at once, asked of the store itself).
func TestHostileRequests(t *testing.T) {
	for name, backend := range backends(t) {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			svc := startService(t, dir, &syncBuffer{}, backend(t)...)
			defer svc.stop()
			b, err := os.ReadFile(filepath.Join(dir, "operator.token"))
			if err != nil {
				t.Fatal(err)
			}
			op := strings.TrimSpace(string(b))

			for _, token := range []string{"", op} {
				r := svc.expect(400, token, "GET", "/v1/accounts/%ff", nil)
				if r.header.Get("Content-Type") != "application/problem+json" || r.body["rule"] != "invalid-request-path" {
					t.Fatalf("path not UTF-8: %v %s", r.header, r.raw)
				}
			}
			w := svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 2})
			if r := svc.expect(405, op, "PUT", "/v1/accounts/acme", nil); r.header.Get("Allow") != "GET, HEAD" || r.body["rule"] != "method-not-allowed" {
				t.Fatalf("wrong method: %v %s", r.header, r.raw)
			}
			if r := svc.expect(400, op, "GET", "/v1/accounts/acme?min_position=18446744073709551615", nil); r.body["rule"] != "position-unreachable" {
				t.Fatalf("unreachable position: %s", r.raw)
			}
			pos, err := strconv.ParseUint(w.header.Get("Ledger-Position"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			svc.expect(200, op, "GET", "/v1/accounts/acme?min_position="+strconv.FormatUint(pos, 10), nil)
			svc.expect(200, "", "GET", "/healthz", nil)
		})
	}
}
