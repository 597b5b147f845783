package scim_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/auth"
)

func newUser(name, email string) string {
	return fmt.Sprintf(`{"schemas":["%s"],"userName":%q,"name":{"formatted":%q},"active":true}`, userSchema, email, name)
}

func patchBody(ops string) string {
	return `{"schemas":["` + patchOp + `"],"Operations":[` + ops + `]}`
}

// TestRFC7644Musts checks the requirements of RFC 7644 (and RFC 7643
// where it defines what is returned) against the endpoints, one row a
// requirement, through the real router.
func TestRFC7644Musts(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 10)
	tok := e.mint(auth.Provisioning, "acme")
	created := e.must(201, tok, "POST", "/scim/v2/Users", newUser("Ada Lovelace", "ada@acme.test"))
	id := created.json(t)["id"].(string)
	e.must(201, tok, "POST", "/scim/v2/Users", strings.Replace(newUser("Bob Babbage", "bob@acme.test"), "{", `{"externalId":"ext-bob",`, 1))
	e.must(201, tok, "POST", "/scim/v2/Users", strings.Replace(newUser("Cy Quill", "cy@example.org"), "{", `{"externalId":"ext-cy",`, 1))

	type check func(t *testing.T, r reply)
	okList := func(n int) check {
		return func(t *testing.T, r reply) {
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			if got := total(t, r); got != n {
				t.Fatalf("totalResults %d, want %d: %s", got, n, r.Body)
			}
		}
	}
	fails := func(status int, scimType string) check {
		return func(t *testing.T, r reply) { scimError(t, r, status, scimType) }
	}
	for _, c := range []struct {
		rule         string
		method, path string
		body         any
		headers      []string
		check        check
	}{
		{"3.1 creation answers 201 with Location and the resource", "POST", "/scim/v2/Users", newUser("Dee Dee", "dee@acme.test"), nil,
			func(t *testing.T, r reply) {
				m := r.json(t)
				if r.Status != 201 || r.Header.Get("Location") == "" || m["id"] == nil || m["meta"] == nil {
					t.Fatalf("%d %v %s", r.Status, r.Header, r.Body)
				}
			}},
		{"3.3 uniqueness conflict is 409 uniqueness", "POST", "/scim/v2/Users", newUser("Ada Again", "ADA@acme.test"), nil, fails(409, "uniqueness")},
		{"3.3 a required attribute missing is 400 invalidValue", "POST", "/scim/v2/Users", `{"schemas":["` + userSchema + `"],"name":{"formatted":"No Name"}}`, nil, fails(400, "invalidValue")},
		{"3.12 malformed JSON is 400 invalidSyntax", "POST", "/scim/v2/Users", `{"userName":`, nil, fails(400, "invalidSyntax")},
		{"3.4.1 a resource is read by id", "GET", "/scim/v2/Users/" + id, nil, nil,
			func(t *testing.T, r reply) {
				m := r.json(t)
				if r.Status != 200 || m["id"] != id || r.Header.Get("ETag") == "" || r.Header.Get("ETag") != m["meta"].(map[string]any)["version"] {
					t.Fatalf("%d %v %s", r.Status, r.Header, r.Body)
				}
			}},
		{"3.4.1 an unknown id is 404", "GET", "/scim/v2/Users/01KKBFK6E0RX90WDGAMG244Z4G", nil, nil, fails(404, "")},
		{"3.4.2 a list is a ListResponse of every user", "GET", "/scim/v2/Users", nil, nil,
			func(t *testing.T, r reply) {
				okList(4)(t, r)
				m := r.json(t)
				if m["startIndex"] != 1.0 || m["itemsPerPage"] != 4.0 || len(m["Resources"].([]any)) != 4 {
					t.Fatalf("%s", r.Body)
				}
			}},
		{"3.4.2.2 eq on userName is case-insensitive", "GET", filterPath(`userName eq "BOB@ACME.TEST"`), nil, nil, okList(1)},
		{"3.4.2.2 co", "GET", filterPath(`userName co "acme"`), nil, nil, okList(3)},
		{"3.4.2.2 sw", "GET", filterPath(`userName sw "cy@"`), nil, nil, okList(1)},
		{"3.4.2.2 ew", "GET", filterPath(`emails.value ew "example.org"`), nil, nil, okList(1)},
		{"3.4.2.2 ne", "GET", filterPath(`userName ne "ada@acme.test"`), nil, nil, okList(3)},
		{"3.4.2.2 pr", "GET", filterPath(`externalId pr`), nil, nil, okList(2)},
		{"3.4.2.2 pr on a kept attribute", "GET", filterPath(`name.givenName pr`), nil, nil, okList(4)},
		{"3.4.2.2 and", "GET", filterPath(`name.familyName eq "Lovelace" and active eq true`), nil, nil, okList(1)},
		{"3.4.2.2 or", "GET", filterPath(`userName eq "ada@acme.test" or emails.value eq "bob@acme.test"`), nil, nil, okList(2)},
		{"3.4.2.2 not and grouping", "GET", filterPath(`not (userName co "acme") and active eq true`), nil, nil, okList(1)},
		{"3.4.2.2 value path", "GET", filterPath(`emails[type eq "work" and value sw "ada"]`), nil, nil, okList(1)},
		{"3.4.2.2 externalId eq is case-exact", "GET", filterPath(`externalId eq "EXT-BOB" or externalId eq "ext-cy"`), nil, nil, okList(1)},
		{"3.4.2.2 name.formatted", "GET", filterPath(`name.formatted eq "cy quill"`), nil, nil, okList(1)},
		{"3.4.2.2 meta.created gt", "GET", filterPath(`meta.created gt "2000-01-01T00:00:00Z"`), nil, nil, okList(4)},
		{"3.4.2.2 an invalid filter is 400 invalidFilter", "GET", filterPath(`userName eq`), nil, nil, fails(400, "invalidFilter")},
		{"3.4.2.2 a filter beyond 4096 bytes is 400 invalidFilter", "GET", filterPath(strings.Repeat(`userName eq "a" or `, 300) + `userName eq "a"`), nil, nil, fails(400, "invalidFilter")},
		{"3.4.2.2 an unknown attribute is 400 invalidFilter", "GET", filterPath(`shoeSize eq "9"`), nil, nil, fails(400, "invalidFilter")},
		{"3.4.2.4 startIndex and count page", "GET", "/scim/v2/Users?startIndex=2&count=2", nil, nil,
			func(t *testing.T, r reply) {
				okList(4)(t, r)
				m := r.json(t)
				res := m["Resources"].([]any)
				if m["startIndex"] != 2.0 || len(res) != 2 || res[0].(map[string]any)["userName"] != "bob@acme.test" {
					t.Fatalf("%s", r.Body)
				}
			}},
		{"3.4.2.4 startIndex below 1 is 1", "GET", "/scim/v2/Users?startIndex=0&count=1", nil, nil,
			func(t *testing.T, r reply) {
				if m := r.json(t); m["startIndex"] != 1.0 || len(m["Resources"].([]any)) != 1 {
					t.Fatalf("%s", r.Body)
				}
			}},
		{"3.4.2.4 a negative count is 0", "GET", "/scim/v2/Users?count=-3", nil, nil,
			func(t *testing.T, r reply) {
				if m := r.json(t); m["totalResults"] != 4.0 || len(m["Resources"].([]any)) != 0 {
					t.Fatalf("%s", r.Body)
				}
			}},
		{"3.4.2.5 attributes keeps those named and id", "GET", "/scim/v2/Users/" + id + "?attributes=userName,name.givenName", nil, nil,
			func(t *testing.T, r reply) {
				m := r.json(t)
				name, _ := m["name"].(map[string]any)
				if m["id"] != id || m["userName"] != "ada@acme.test" || m["emails"] != nil || m["meta"] != nil || len(name) != 1 || name["givenName"] != "Ada" {
					t.Fatalf("%s", r.Body)
				}
			}},
		{"3.4.2.5 excludedAttributes drops those named, never id", "GET", "/scim/v2/Users?excludedAttributes=emails,id,name.familyName", nil, nil,
			func(t *testing.T, r reply) {
				u := r.json(t)["Resources"].([]any)[0].(map[string]any)
				name := u["name"].(map[string]any)
				if u["emails"] != nil || u["id"] == nil || name["familyName"] != nil || name["givenName"] == nil {
					t.Fatalf("%s", r.Body)
				}
			}},
		{"3.5.1 PUT of another id is 400 mutability", "PUT", "/scim/v2/Users/" + id, `{"schemas":["` + userSchema + `"],"id":"other","userName":"ada@acme.test","name":{"formatted":"A"}}`, nil, fails(400, "mutability")},
		{"3.5.2 an unknown op is 400 invalidSyntax", "PATCH", "/scim/v2/Users/" + id, patchBody(`{"op":"move","path":"active","value":false}`), nil, fails(400, "invalidSyntax")},
		{"3.5.2 a PATCH without the PatchOp schema is 400 invalidSyntax", "PATCH", "/scim/v2/Users/" + id, `{"Operations":[{"op":"replace","path":"active","value":false}]}`, nil, fails(400, "invalidSyntax")},
		{"3.5.2 a path the schema does not have is 400 invalidPath", "PATCH", "/scim/v2/Users/" + id, patchBody(`{"op":"replace","path":"shoeSize","value":"9"}`), nil, fails(400, "invalidPath")},
		{"3.5.2 a malformed path is 400 invalidPath", "PATCH", "/scim/v2/Users/" + id, patchBody(`{"op":"replace","path":"emails[type eq","value":"x"}`), nil, fails(400, "invalidPath")},
		{"3.5.2 a wrong value type is 400 invalidValue", "PATCH", "/scim/v2/Users/" + id, patchBody(`{"op":"replace","path":"active","value":"maybe"}`), nil, fails(400, "invalidValue")},
		{"3.5.2.2 remove without a path is 400 noTarget", "PATCH", "/scim/v2/Users/" + id, patchBody(`{"op":"remove"}`), nil, fails(400, "noTarget")},
		{"3.5.2 a read-only attribute is 400 mutability", "PATCH", "/scim/v2/Users/" + id, patchBody(`{"op":"replace","path":"id","value":"x"}`), nil, fails(400, "mutability")},
		{"3.5.2 removing a required attribute is 400 mutability", "PATCH", "/scim/v2/Users/" + id, patchBody(`{"op":"remove","path":"userName"}`), nil, fails(400, "mutability")},
		{"3.5.2 PATCH answers 200 with the resource", "PATCH", "/scim/v2/Users/" + id, patchBody(`{"op":"add","path":"name.givenName","value":"Augusta Ada"}`), nil,
			func(t *testing.T, r reply) {
				if m := r.json(t); r.Status != 200 || m["displayName"] != "Augusta Ada Lovelace" {
					t.Fatalf("%d %s", r.Status, r.Body)
				}
			}},
		{"3.14 a stale If-Match is 412", "PATCH", "/scim/v2/Users/" + id, patchBody(`{"op":"replace","path":"displayName","value":"X"}`), []string{"If-Match", `W/"1"`}, fails(412, "")},
		{"3.14 a stale If-Match is 412 even when nothing would change", "PATCH", "/scim/v2/Users/" + id, patchBody(`{"op":"replace","path":"active","value":true}`), []string{"If-Match", `W/"1"`}, fails(412, "")},
		{"3.12 an unknown endpoint is a SCIM 404", "GET", "/scim/v2/Groups", nil, nil, fails(404, "")},
		{"3.12 a method the endpoint does not take is 405", "DELETE", "/scim/v2/Users", nil, nil, fails(405, "")},
		{"3.4.2.3 sortBy is refused (sort.supported is false)", "GET", "/scim/v2/Users?sortBy=userName", nil, nil, fails(400, "invalidValue")},
		{"3.1 a body that is not JSON is 415", "POST", "/scim/v2/Users", nil, []string{"Content-Type", "text/plain"}, fails(415, "")},
		{"4 ServiceProviderConfig", "GET", "/scim/v2/ServiceProviderConfig", nil, nil,
			func(t *testing.T, r reply) {
				m := r.json(t)
				if r.Status != 200 || m["patch"].(map[string]any)["supported"] != true || m["filter"].(map[string]any)["supported"] != true || m["bulk"].(map[string]any)["supported"] != false {
					t.Fatalf("%s", r.Body)
				}
			}},
		{"4 ResourceTypes", "GET", "/scim/v2/ResourceTypes", nil, nil,
			func(t *testing.T, r reply) {
				okList(1)(t, r)
				if u := r.json(t)["Resources"].([]any)[0].(map[string]any); u["endpoint"] != "/Users" || u["schema"] != userSchema {
					t.Fatalf("%s", r.Body)
				}
			}},
		{"4 ResourceTypes/User", "GET", "/scim/v2/ResourceTypes/User", nil, nil,
			func(t *testing.T, r reply) {
				if r.Status != 200 || r.json(t)["id"] != "User" {
					t.Fatalf("%s", r.Body)
				}
			}},
		{"4 Schemas", "GET", "/scim/v2/Schemas", nil, nil, okList(1)},
		{"4 Schemas/User", "GET", "/scim/v2/Schemas/" + userSchema, nil, nil,
			func(t *testing.T, r reply) {
				if m := r.json(t); r.Status != 200 || m["id"] != userSchema || len(m["attributes"].([]any)) == 0 {
					t.Fatalf("%s", r.Body)
				}
			}},
	} {
		t.Run(c.rule, func(t *testing.T) {
			body := c.body
			if c.rule == "3.1 a body that is not JSON is 415" {
				body = "userName=x"
			}
			r := e.do(tok, c.method, c.path, body, c.headers...)
			if ct := r.Header.Get("Content-Type"); len(r.Body) > 0 && ct != "application/scim+json" {
				t.Fatalf("Content-Type %q", ct)
			}
			c.check(t, r)
		})
	}

	// 3.6: after DELETE the resource is 404 for every operation, and the
	// list no longer holds it.
	e.must(204, tok, "DELETE", "/scim/v2/Users/"+id, nil)
	goneEverywhere(t, e, tok, id)
	if n := total(t, e.must(200, tok, "GET", "/scim/v2/Users", nil)); n != 3 {
		t.Fatalf("after DELETE the list holds %d", n)
	}
	// A deleted user's email is free again.
	e.must(201, tok, "POST", "/scim/v2/Users", newUser("Ada Lovelace", "ada@acme.test"))
}

// TestNoSeat: creating a user without a free seat is 409 with a detail
// that says so and no scimType; nothing is appended.
func TestNoSeat(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 1)
	tok := e.mint(auth.Provisioning, "acme")
	e.must(201, tok, "POST", "/scim/v2/Users", newUser("Ada Lovelace", "ada@acme.test"))
	m := scimError(t, e.do(tok, "POST", "/scim/v2/Users", newUser("Bob Babbage", "bob@acme.test")), 409, "")
	if d := m["detail"].(string); !strings.Contains(d, "no free seat") {
		t.Fatalf("detail %q", d)
	}
	if n := total(t, e.must(200, tok, "GET", "/scim/v2/Users", nil)); n != 1 {
		t.Fatalf("%d users", n)
	}
}

// TestTokenScope: only a provisioning token is served, on its own
// account only; a provisioning token of another account cannot reach the
// users of this one.
func TestTokenScope(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 5)
	e.open("beta", 5)
	acme := e.mint(auth.Provisioning, "acme")
	beta := e.mint(auth.Provisioning, "beta")
	id := e.must(201, acme, "POST", "/scim/v2/Users", newUser("Ada Lovelace", "ada@acme.test")).json(t)["id"].(string)
	e.must(201, beta, "POST", "/scim/v2/Users", newUser("Bea Beta", "bea@beta.test"))

	r := e.do("", "GET", "/scim/v2/Users", nil)
	scimError(t, r, 401, "")
	if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("no Bearer challenge: %v", r.Header)
	}
	scimError(t, e.do("ll_unknown", "GET", "/scim/v2/ServiceProviderConfig", nil), 401, "")
	// Two Authorization headers, even both valid, authenticate nobody.
	req, _ := http.NewRequest("GET", e.srv.URL+"/scim/v2/Users", nil)
	req.Header.Add("Authorization", "Bearer "+acme)
	req.Header.Add("Authorization", "Bearer "+acme)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("two Authorization headers: %d", resp.StatusCode)
	}
	for _, other := range []string{e.operator, e.mint(auth.Admin, "acme"), e.mint(auth.Service, "acme"), e.mint(auth.Auditor, "")} {
		scimError(t, e.do(other, "GET", "/scim/v2/Users", nil), 403, "")
		scimError(t, e.do(other, "DELETE", "/scim/v2/Users/"+id, nil), 403, "")
	}
	// beta sees its own user only, and acme's user is 404 for every operation.
	r = e.must(200, beta, "GET", "/scim/v2/Users", nil)
	if total(t, r) != 1 || strings.Contains(string(r.Body), "ada@acme.test") {
		t.Fatalf("beta's list: %s", r.Body)
	}
	goneEverywhere(t, e, beta, id)
	if e.v1User("acme", id)["status"] != "active" {
		t.Fatal("beta's token changed acme's user")
	}
	// And a provisioning token can do nothing of the /v1 API.
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/accounts/acme"}, {"GET", "/v1/accounts/acme/users"}, {"POST", "/v1/accounts/acme/users"},
		{"DELETE", "/v1/accounts/acme/users/" + id + "?confirm=" + id}, {"POST", "/v1/tokens"},
	} {
		if r := e.do(acme, c.method, c.path, "{}"); r.Status != 403 {
			t.Fatalf("%s %s with a provisioning token: %d %s", c.method, c.path, r.Status, r.Body)
		}
	}
}
