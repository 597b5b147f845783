package scim_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/auth"
)

const (
	userSchema = "urn:ietf:params:scim:schemas:core:2.0:User"
	patchOp    = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
)

func filterPath(f string) string { return "/scim/v2/Users?filter=" + url.QueryEscape(f) }

func total(t *testing.T, r reply) int {
	t.Helper()
	m := r.json(t)
	if s, _ := m["schemas"].([]any); len(s) != 1 || s[0] != "urn:ietf:params:scim:api:messages:2.0:ListResponse" {
		t.Fatalf("not a ListResponse: %s", r.Body)
	}
	return int(m["totalResults"].(float64))
}

// TestOktaSequence replays the requests Okta's SCIM 2.0 provisioning
// sends (Okta's "SCIM 2.0 protocol reference" and its test suite): look up
// by userName before creating, create with name parts, a primary email and
// extra attributes, read, PUT the whole user to change the profile, PATCH
// active to deactivate and reactivate, a role through a custom mapping to
// roles, then a DELETE, after which the id is gone for every operation.
func TestOktaSequence(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 2)
	tok := e.mint(auth.Provisioning, "acme")

	// Okta looks the user up first.
	r := e.must(200, tok, "GET", filterPath(`userName eq "ada@acme.test"`)+"&startIndex=1&count=100", nil)
	if n := total(t, r); n != 0 {
		t.Fatalf("found %d before creation", n)
	}
	r = e.must(201, tok, "POST", "/scim/v2/Users", `{
	  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
	  "userName": "ada@acme.test",
	  "name": {"givenName": "Ada", "familyName": "Lovelace"},
	  "emails": [{"primary": true, "value": "ada@acme.test", "type": "work"}],
	  "displayName": "Ada Lovelace",
	  "locale": "en-US",
	  "externalId": "00ujl29u0le5T6Aj10h7",
	  "groups": [],
	  "password": "1mz050nq",
	  "active": true
	}`)
	u := r.json(t)
	id := u["id"].(string)
	if u["userName"] != "ada@acme.test" || u["active"] != true || u["name"].(map[string]any)["formatted"] != "Ada Lovelace" {
		t.Fatalf("created %s", r.Body)
	}
	meta := u["meta"].(map[string]any)
	if meta["resourceType"] != "User" || r.Header.Get("Location") != meta["location"] || !strings.HasSuffix(meta["location"].(string), "/scim/v2/Users/"+id) ||
		r.Header.Get("ETag") != meta["version"] || meta["created"] == nil || meta["lastModified"] == nil {
		t.Fatalf("meta %v, headers %v", meta, r.Header)
	}
	if v := e.v1User("acme", id); v["name"] != "Ada Lovelace" || v["email"] != "ada@acme.test" || v["role"] != "member" || v["status"] != "active" {
		t.Fatalf("ledger user %v", v)
	}
	r = e.must(200, tok, "GET", filterPath(`userName eq "ADA@acme.test"`)+"&startIndex=1&count=100", nil)
	if n := total(t, r); n != 1 || r.json(t)["Resources"].([]any)[0].(map[string]any)["id"] != id {
		t.Fatalf("lookup after creation: %s", r.Body)
	}
	if u["externalId"] != "00ujl29u0le5T6Aj10h7" {
		t.Fatalf("externalId not kept: %v", u["externalId"])
	}
	r = e.must(200, tok, "GET", filterPath(`externalId eq "00ujl29u0le5T6Aj10h7"`), nil)
	if total(t, r) != 1 {
		t.Fatalf("lookup by externalId: %s", r.Body)
	}
	e.must(200, tok, "GET", "/scim/v2/Users/"+id, nil)

	// Okta PUTs the whole user on a profile change.
	e.must(200, tok, "PUT", "/scim/v2/Users/"+id, `{
	  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
	  "id": "`+id+`",
	  "userName": "ada.king@acme.test",
	  "name": {"givenName": "Ada", "familyName": "King"},
	  "emails": [{"primary": true, "value": "ada.king@acme.test", "type": "work"}],
	  "displayName": "Ada King",
	  "active": true,
	  "groups": [],
	  "meta": {"resourceType": "User"}
	}`)
	if v := e.v1User("acme", id); v["name"] != "Ada King" || v["email"] != "ada.king@acme.test" {
		t.Fatalf("after PUT: %v", v)
	}

	// Deactivation frees the seat; reactivation takes one.
	before := e.seatsAvailable("acme")
	r = e.must(200, tok, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["`+patchOp+`"],"Operations":[{"op":"replace","value":{"active":false}}]}`)
	if r.json(t)["active"] != false || e.v1User("acme", id)["status"] != "deactivated" || e.seatsAvailable("acme") != before+1 {
		t.Fatalf("deactivation: %s, seats %v", r.Body, e.seatsAvailable("acme"))
	}
	e.must(200, tok, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["`+patchOp+`"],"Operations":[{"op":"replace","value":{"active":true}}]}`)
	if e.v1User("acme", id)["status"] != "active" || e.seatsAvailable("acme") != before {
		t.Fatal("reactivation did not take the seat back")
	}

	// A role mapped to roles (a custom Okta attribute mapping).
	r = e.must(200, tok, "PUT", "/scim/v2/Users/"+id, `{
	  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
	  "userName": "ada.king@acme.test",
	  "name": {"givenName": "Ada", "familyName": "King"},
	  "emails": [{"primary": true, "value": "ada.king@acme.test", "type": "work"}],
	  "roles": [{"value": "admin", "primary": true}],
	  "active": true
	}`)
	if e.v1User("acme", id)["role"] != "admin" {
		t.Fatalf("role after PUT: %s", r.Body)
	}

	// The last active admin stays protected over SCIM too.
	scimError(t, e.do(tok, "DELETE", "/scim/v2/Users/"+id, nil), 409, "")
	e.must(201, e.operator, "POST", "/v1/accounts/acme/users", map[string]string{"name": "Bob", "email": "bob@acme.test", "role": "admin"})

	// DELETE is permanent: every operation on the id is then 404.
	e.must(204, tok, "DELETE", "/scim/v2/Users/"+id, nil)
	if v := e.v1User("acme", id); v["status"] != "deleted" || v["name"] != "" || v["email"] != "" {
		t.Fatalf("after DELETE: %v", v)
	}
	goneEverywhere(t, e, tok, id)
	if n := total(t, e.must(200, tok, "GET", filterPath(`userName eq "ada.king@acme.test"`), nil)); n != 0 {
		t.Fatalf("deleted user still listed")
	}
}

func goneEverywhere(t *testing.T, e *env, tok, id string) {
	t.Helper()
	for _, c := range []struct{ method, body string }{
		{"GET", ""}, {"DELETE", ""},
		{"PUT", `{"schemas":["` + userSchema + `"],"userName":"x@acme.test","name":{"formatted":"X"},"active":true}`},
		{"PATCH", `{"schemas":["` + patchOp + `"],"Operations":[{"op":"replace","path":"active","value":true}]}`},
	} {
		var body any
		if c.body != "" {
			body = c.body
		}
		scimError(t, e.do(tok, c.method, "/scim/v2/Users/"+id, body), 404, "")
	}
}

// TestEntraSequence replays Microsoft Entra ID's provisioning requests
// (Microsoft's "Develop and plan provisioning for a SCIM endpoint" and its
// known compatibility notes): a lookup by userName before creating, a
// creation with the enterprise schema and an empty roles list, PATCH with
// capitalised ops, multi-valued paths, "False" as a string, a PATCH
// without path carrying an object, a role through
// roles[primary eq "True"].value, then DELETE.
func TestEntraSequence(t *testing.T) {
	e := newEnv(t)
	e.open("contoso", 1)
	tok := e.mint(auth.Provisioning, "contoso")

	r := e.must(200, tok, "GET", filterPath(`userName eq "Test_User_dfeef4c5@contoso.com"`), nil)
	if total(t, r) != 0 {
		t.Fatal("found before creation")
	}
	r = e.must(201, tok, "POST", "/scim/v2/Users", `{
	  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
	  "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
	  "userName": "Test_User_dfeef4c5@contoso.com",
	  "active": true,
	  "emails": [{"primary": true, "type": "work", "value": "Test_User_dfeef4c5@contoso.com"}],
	  "meta": {"resourceType": "User"},
	  "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
	  "roles": [],
	  "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales"}
	}`)
	id := r.json(t)["id"].(string)
	r = e.must(200, tok, "GET", filterPath(`userName eq "Test_User_dfeef4c5@contoso.com"`), nil)
	if total(t, r) != 1 {
		t.Fatalf("lookup: %s", r.Body)
	}
	// As in Microsoft's SCIM validator: userName and a work email that is
	// not primary differ; the user is found by userName afterwards.
	e.open("validator", 1)
	vtok := e.mint(auth.Provisioning, "validator")
	other := e.must(201, vtok, "POST", "/scim/v2/Users", `{
	  "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
	  "active": true, "displayName": "XKWLCONOGMVT",
	  "emails": [{"type": "work", "value": "sandy.nia@prohaska.test"}],
	  "externalId": "9950b140-90a0-4201-9d65-b5f209fb4cd0",
	  "name": {"formatted": "Aric", "familyName": "Nia", "givenName": "Sandy"},
	  "userName": "dale.mohr@romaguera.test"
	}`).json(t)["id"].(string)
	r = e.must(200, vtok, "GET", filterPath(`userName eq "dale.mohr@romaguera.test"`), nil)
	if total(t, r) != 1 || r.json(t)["Resources"].([]any)[0].(map[string]any)["id"] != other {
		t.Fatalf("lookup by a userName that is not the work email: %s", r.Body)
	}
	if v := e.v1User("validator", other); v["email"] != "dale.mohr@romaguera.test" {
		t.Fatalf("the ledger's email is %v, want userName", v["email"])
	}
	// Entra's connection test: a user that does not exist.
	if total(t, e.must(200, tok, "GET", filterPath(`userName eq "non-existent user"`), nil)) != 0 {
		t.Fatal("a user that does not exist was found")
	}

	// Multi-valued and sub-attribute paths, capitalised ops.
	e.must(200, tok, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["`+patchOp+`"],"Operations":[
	  {"op":"Replace","path":"emails[type eq \"work\"].value","value":"updatedEmail@contoso.com"},
	  {"op":"Replace","path":"name.familyName","value":"updatedFamilyName"}]}`)
	if v := e.v1User("contoso", id); v["email"] != "updatedEmail@contoso.com" || v["name"] != "givenName updatedFamilyName" {
		t.Fatalf("after PATCH: %v", v)
	}
	e.must(200, tok, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["`+patchOp+`"],"Operations":[{"op":"Replace","path":"userName","value":"5b50642d@contoso.com"}]}`)
	if v := e.v1User("contoso", id); v["email"] != "5b50642d@contoso.com" {
		t.Fatalf("after userName PATCH: %v", v)
	}
	r = e.must(200, tok, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["`+patchOp+`"],"Operations":[{"op":"Replace","path":"externalId","value":"5b50642d"}]}`)
	if r.json(t)["externalId"] != "5b50642d" || total(t, e.must(200, tok, "GET", filterPath(`externalId eq "5b50642d"`), nil)) != 1 {
		t.Fatalf("externalId after PATCH: %s", r.Body)
	}

	// A custom extension (Entra lets admins map attributes to one) and
	// attributes the ledger does not keep: accepted, nothing changes.
	e.must(200, tok, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["`+patchOp+`"],"Operations":[
	  {"op":"Replace","path":"title","value":"tester"},
	  {"op":"Add","path":"urn:ietf:params:scim:schemas:extension:custom:2.0:User:employeeNumber","value":"99887766"},
	  {"op":"Replace","value":{"urn:ietf:params:scim:schemas:extension:custom:2.0:User":{"worksiteId":"180"}}},
	  {"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Sales"}]}`)
	if v := e.v1User("contoso", id); v["email"] != "5b50642d@contoso.com" || v["name"] != "givenName updatedFamilyName" {
		t.Fatalf("after ignored attributes: %v", v)
	}

	// Disable with "False" as a string.
	e.must(200, tok, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["`+patchOp+`"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`)
	if e.v1User("contoso", id)["status"] != "deactivated" || e.seatsAvailable("contoso") != 1 {
		t.Fatal("\"False\" did not deactivate")
	}
	// The seat went to someone else meanwhile: reactivating is 409.
	e.must(201, e.operator, "POST", "/v1/accounts/contoso/users", map[string]string{"name": "Other", "email": "other@contoso.com", "role": "admin"})
	m := scimError(t, e.do(tok, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["`+patchOp+`"],"Operations":[{"op":"Replace","value":{"active":"True"}}]}`), 409, "")
	if !strings.Contains(m["detail"].(string), "seat") {
		t.Fatalf("no-seat detail %q", m["detail"])
	}
	e.must(200, e.operator, "POST", "/v1/accounts/contoso/seats", map[string]int{"count": 1})
	// Path-less PATCH carrying an object, with "True" as a string.
	e.must(200, tok, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["`+patchOp+`"],"Operations":[{"op":"Replace","value":{"active":"True","displayName":"Grace Hopper"}}]}`)
	if v := e.v1User("contoso", id); v["status"] != "active" || v["name"] != "Grace Hopper" {
		t.Fatalf("after path-less PATCH: %v", v)
	}
	// The app role, as Entra maps it.
	e.must(200, tok, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["`+patchOp+`"],"Operations":[{"op":"Add","path":"roles[primary eq \"True\"].value","value":"Admin"}]}`)
	if e.v1User("contoso", id)["role"] != "admin" {
		t.Fatal("role not changed")
	}
	e.must(200, tok, "PATCH", "/scim/v2/Users/"+id, `{"schemas":["`+patchOp+`"],"Operations":[{"op":"Replace","path":"roles","value":[{"value":"member","primary":true}]}]}`)
	if e.v1User("contoso", id)["role"] != "member" {
		t.Fatal("role not changed back")
	}

	e.must(204, tok, "DELETE", "/scim/v2/Users/"+id, nil)
	goneEverywhere(t, e, tok, id)
}
