package main

import (
	"fmt"
	"io"
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
