package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/auth"
)

// A request with two Authorization headers is ambiguous (a proxy and the
// server may each take another one): it is refused as unauthenticated,
// whichever token comes first, on reads, writes and mints alike.
func TestTwoAuthorizationHeadersAreRefused(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 2)
	e.open("beta", 2)
	beta := e.mint(auth.Admin, "beta")
	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/accounts/acme", ""},
		{"POST", "/v1/accounts/acme/seats", `{"count":1}`},
		{"POST", "/v1/tokens", `{"role":"admin","account":"acme"}`},
		{"DELETE", "/v1/tokens/tok_0000000000000000", ""},
	} {
		for _, order := range [][2]string{{beta, e.operator}, {e.operator, beta}} {
			var body *strings.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			} else {
				body = strings.NewReader("")
			}
			req, err := http.NewRequest(c.method, e.srv.URL+c.path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Add("Authorization", "Bearer "+order[0])
			req.Header.Add("Authorization", "Bearer "+order[1])
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s with two Authorization headers: %d, want 401", c.method, c.path, resp.StatusCode)
			}
		}
	}
	if n := e.storeLen(); n != 2 {
		t.Fatalf("the refused requests appended: %d events, want the 2 openings", n)
	}
}
