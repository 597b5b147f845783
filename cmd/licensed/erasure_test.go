package main

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// After a user is deleted and the service has checkpointed, no file under
// the data directory holds their name or email, nor any name or email the
// user had before a profile update.
func TestDeletedUserLeavesNoTraceOnDisk(t *testing.T) {
	dir := t.TempDir()
	svc := startService(t, dir, io.Discard)
	b, _ := os.ReadFile(filepath.Join(dir, "operator.token"))
	op := strings.TrimSpace(string(b))
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 3})
	svc.expect(201, op, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Keeper Admin", "email": "keeper@acme.test", "role": "admin"})
	id := svc.expect(201, op, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Zelda Forgotten", "email": "zelda.f@acme.test", "role": "member"}).body["id"].(string)
	svc.expect(201, op, "POST", "/v1/accounts/acme/activities", map[string]any{"user_id": id, "kind": "note", "ref": "r1"})
	svc.expect(200, op, "PATCH", "/v1/accounts/acme/users/"+id, map[string]any{"name": "Yolanda Renamed", "email": "yolanda.r@acme.test", "role": "admin"})
	svc.expect(201, op, "POST", "/v1/accounts/acme/activities", map[string]any{"user_id": id, "kind": "note", "ref": "r2"})
	svc.stop() // checkpoints the read models
	for _, live := range []string{"Keeper Admin", "Yolanda Renamed"} {
		if !dirContains(t, dir, live) {
			t.Fatalf("control: a live user's name (%q) should be in the read models' snapshot", live)
		}
	}

	svc = startService(t, dir, io.Discard)
	svc.expect(200, op, "DELETE", fmt.Sprintf("/v1/accounts/acme/users/%s?confirm=%s", id, id), nil)
	svc.stop()
	for _, secret := range []string{"Zelda Forgotten", "zelda.f@acme.test", "Zelda", "zelda", "Yolanda Renamed", "yolanda.r@acme.test", "Yolanda", "yolanda"} {
		if dirContains(t, dir, secret) {
			t.Fatalf("a file under the data directory still holds %q", secret)
		}
	}
}

// The same over SCIM, through the real wiring: a user provisioned,
// renamed and deactivated by an identity provider, then deleted by it,
// leaves no name, email or externalId on disk once the service has
// checkpointed, and the id stays gone after a restart.
func TestSCIMDeletedUserLeavesNoTraceOnDisk(t *testing.T) {
	dir := t.TempDir()
	svc := startService(t, dir, io.Discard)
	b, _ := os.ReadFile(filepath.Join(dir, "operator.token"))
	op := strings.TrimSpace(string(b))
	svc.expect(201, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 3})
	svc.expect(201, op, "POST", "/v1/accounts/acme/users", map[string]any{"name": "Keeper Admin", "email": "keeper@acme.test", "role": "admin"})
	idp := svc.expect(201, op, "POST", "/v1/tokens", map[string]any{"role": "provisioning", "account": "acme"}).body["token"].(string)
	const patchOp = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	id := svc.expect(201, idp, "POST", "/scim/v2/Users", map[string]any{
		"schemas":  []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
		"userName": "zelda.f@acme.test", "externalId": "zelda.f.external",
		"name":   map[string]any{"givenName": "Zelda", "familyName": "Forgotten"},
		"emails": []any{map[string]any{"value": "zelda.f@acme.test", "primary": true, "type": "work"}},
		"active": true,
	}).body["id"].(string)
	svc.expect(201, op, "POST", "/v1/accounts/acme/activities", map[string]any{"user_id": id, "kind": "note", "ref": "r1"})
	svc.expect(200, idp, "PATCH", "/scim/v2/Users/"+id, map[string]any{"schemas": []string{patchOp}, "Operations": []any{
		map[string]any{"op": "Replace", "path": "userName", "value": "yolanda.r@acme.test"},
		map[string]any{"op": "Replace", "path": "name.formatted", "value": "Yolanda Renamed"},
		map[string]any{"op": "Replace", "path": "active", "value": "False"},
	}})
	svc.stop()
	if !dirContains(t, dir, "Yolanda Renamed") {
		t.Fatal("control: a live user's name should be in the read models' snapshot")
	}

	svc = startService(t, dir, io.Discard)
	// The read models restored from their snapshot know the external id.
	if got := svc.expect(200, idp, "GET", "/scim/v2/Users?filter="+url.QueryEscape(`externalId eq "zelda.f.external"`), nil).body; got["totalResults"] != 1.0 {
		t.Fatalf("lookup by externalId after a restart: %v", got)
	}
	svc.expect(204, idp, "DELETE", "/scim/v2/Users/"+id, nil)
	svc.stop()
	for _, secret := range []string{"Zelda", "zelda", "Forgotten", "Yolanda Renamed", "yolanda.r@acme.test", "Yolanda", "yolanda"} {
		if dirContains(t, dir, secret) {
			t.Fatalf("a file under the data directory still holds %q", secret)
		}
	}
	svc = startService(t, dir, io.Discard)
	svc.expect(404, idp, "GET", "/scim/v2/Users/"+id, nil)
	svc.expect(404, idp, "PATCH", "/scim/v2/Users/"+id, map[string]any{"schemas": []string{patchOp}, "Operations": []any{
		map[string]any{"op": "replace", "path": "active", "value": true}}})
	svc.stop()
}
