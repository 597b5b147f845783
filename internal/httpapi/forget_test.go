package httpapi_test

import (
	"crypto/sha256"
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/httpapi"
)

// plainFingerprint is a SHA-256 of a request's method, path, query and
// body, as a cache without a key would hold it.
func plainFingerprint(method, path, query string, body []byte) []byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(method), []byte(path), []byte(query), body} {
		h.Write([]byte(strconv.Itoa(len(part)) + ":"))
		h.Write(part)
	}
	return h.Sum(nil)
}

// A user added with an Idempotency-Key, then deleted (here by another
// process: the deletion reaches this one through its read models only),
// leaves nothing of their name or email in the API's idempotency cache,
// which never held a plain hash of them either; the add repeated under the
// same key is answered without the name.
func TestDeletionForgetsKeptAnswers(t *testing.T) {
	e := newEnv(t)
	op := e.operator
	e.open("acme", 5)
	const name, email = "Ada Lovelace", "ada.lovelace@acme.test"
	add := map[string]string{"name": name, "email": email, "role": "member"}
	body, err := json.Marshal(add)
	if err != nil {
		t.Fatal(err)
	}
	path := "/v1/accounts/acme/users"
	first := e.must(201, op, "POST", path, add, "Idempotency-Key", "add-ada")
	id := first.json(t)["id"].(string)
	if again := e.must(201, op, "POST", path, add, "Idempotency-Key", "add-ada"); again.Header.Get(httpapi.HeaderReplayed) != "true" {
		t.Fatalf("the repeat before deletion was not replayed: %v", again.Header)
	}
	if !httpapi.IdempotencyCacheHolds(e.api, []byte(name)) {
		t.Fatal("the cache does not hold the answer naming the user: the inspection sees nothing")
	}
	for what, h := range map[string][]byte{
		"request fingerprint": plainFingerprint("POST", path, "", body),
		"body":                sha256Of(body),
		"name":                sha256Of([]byte(name)),
		"email":               sha256Of([]byte(email)),
	} {
		if httpapi.IdempotencyCacheHolds(e.api, h) {
			t.Errorf("the cache holds a plain SHA-256 of the %s", what)
		}
	}

	// Another process deletes the user: the same store, another service.
	other := accounts.New(accounts.Config{
		Store: e.store, Codec: e.codec, Clock: e.clock.Now, NewEventID: uuid.New, NewULID: ulid.Make,
	})
	res, err := other.Execute(t.Context(), "acme", ledger.DeleteUser{UserID: id, Confirm: id, At: e.clock.Now()},
		accounts.Request{Actor: codec.Actor{ID: "elsewhere", Role: "operator"}, CorrelationID: ulid.Make()})
	if err != nil {
		t.Fatal(err)
	}
	e.must(200, op, "GET", path+"?min_position="+strconv.FormatUint(uint64(res.Position), 10), nil)

	for _, s := range []string{name, email, "Ada", "ada.lovelace"} {
		if httpapi.IdempotencyCacheHolds(e.api, []byte(s)) {
			t.Errorf("after the deletion the idempotency cache still holds %q", s)
		}
	}
	repeat := e.do(op, "POST", path, add, "Idempotency-Key", "add-ada")
	if repeat.Status >= 500 {
		t.Fatalf("repeat after deletion: %d %s", repeat.Status, repeat.Body)
	}
	for _, s := range []string{"Ada", "Lovelace", "ada.lovelace"} {
		if strings.Contains(string(repeat.Body), s) {
			t.Errorf("the add repeated after the deletion reveals %q: %d %s", s, repeat.Status, repeat.Body)
		}
		if httpapi.IdempotencyCacheHolds(e.api, []byte(s)) {
			t.Errorf("after the repeat the idempotency cache holds %q", s)
		}
	}
	t.Logf("repeat after deletion: %d %s", repeat.Status, repeat.Body)
	// The key still belongs to the add: another command under it is refused.
	e.must(422, op, "POST", "/v1/accounts/acme/seats", map[string]int{"count": 1}, "Idempotency-Key", "add-ada")
}

func sha256Of(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}
