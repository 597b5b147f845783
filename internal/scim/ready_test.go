package scim_test

import (
	"context"
	crand "crypto/rand"
	"net/http/httptest"
	"testing"

	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/scim"
	"github.com/licenseledger/ledger/projections/seats"
)

// Until the read models have caught up with the store, every SCIM request
// of a provisioning token is 503 with Retry-After: never a 404 or an empty
// list for users that exist.
func TestNotReadyIs503(t *testing.T) {
	tokens := auth.NewMemoryStore()
	_, secret, err := auth.Mint(context.Background(), tokens, crand.Reader, auth.Provisioning, "acme", t0)
	if err != nil {
		t.Fatal(err)
	}
	h := scim.New(scim.Config{Directory: seats.New(), Tokens: tokens, ReadModelsReady: func() bool { return false }})
	for _, path := range []string{"/scim/v2/Users", "/scim/v2/Users/01KKBFK6E0RX90WDGAMG244Z4G", "/scim/v2/ServiceProviderConfig"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		h.ServeHTTP(rec, req)
		r := reply{Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
		scimError(t, r, 503, "")
		if r.Header.Get("Retry-After") == "" {
			t.Fatalf("%s: no Retry-After", path)
		}
	}
}
