package httpapi_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestSeedStory walks the help article: add users, deactivate one (seat
// freed, name kept), reactivate, delete (permanent, name removed from
// activities), and the refusals with their statuses and problem types.
func TestSeedStory(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 2)
	op := e.operator
	admin := e.addUser("acme", "Ada Admin", "ada@acme.test", "admin")
	bob := e.addUser("acme", "Bob Member", "bob@acme.test", "member")

	r := e.must(409, op, "POST", "/v1/accounts/acme/users", map[string]string{"name": "Cy", "email": "cy@acme.test", "role": "member"})
	p := r.json(t)
	if p["type"] != "https://licenseledger.dev/problems/no-seat-available" || r.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("no seat problem: %s %s", r.Header.Get("Content-Type"), r.Body)
	}
	if !strings.Contains(p["detail"].(string), "2 of 2 in use") || p["status"] != float64(409) || p["instance"] != "/v1/accounts/acme/users" || p["title"] != "Conflict" {
		t.Fatalf("problem fields: %s", r.Body)
	}

	act := e.must(201, op, "POST", "/v1/accounts/acme/activities", map[string]string{"user_id": bob, "kind": "note", "ref": "job-1"})
	if loc := act.Header.Get("Location"); !strings.HasPrefix(loc, "/v1/accounts/acme/activities/") {
		t.Fatalf("activity location %q", loc)
	}
	e.must(200, op, "GET", act.Header.Get("Location"), nil)

	// Deactivating frees the seat at once for a reader of the seats.
	d := e.must(200, op, "POST", "/v1/accounts/acme/users/"+bob+"/deactivate", map[string]string{"reason": "left"})
	if d.json(t)["status"] != "deactivated" || d.Header.Get("Ledger-Position") == "" || d.Header.Get("ETag") == "" {
		t.Fatalf("deactivate: %v %s", d.Header, d.Body)
	}
	s := e.must(200, op, "GET", "/v1/accounts/acme/seats", nil).json(t)
	if s["available"] != float64(1) || s["active"] != float64(1) || s["deactivated"] != float64(1) {
		t.Fatalf("seats after deactivation: %v", s)
	}
	e.must(200, op, "POST", "/v1/accounts/acme/users/"+bob+"/deactivate", nil) // again: success, no event
	e.must(409, op, "POST", "/v1/accounts/acme/activities", map[string]string{"user_id": bob, "kind": "note", "ref": "x"})
	e.must(409, op, "POST", "/v1/accounts/acme/users/"+admin+"/deactivate", nil) // last admin

	acts := e.must(200, op, "GET", "/v1/accounts/acme/activities", nil).json(t)["activities"].([]any)
	if len(acts) != 1 || acts[0].(map[string]any)["user_name"] != "Bob Member" {
		t.Fatalf("deactivated user's name must stay: %v", acts)
	}
	e.must(200, op, "POST", "/v1/accounts/acme/users/"+bob+"/activate", nil)

	// Deleting needs confirmation: 428 that explains.
	r = e.must(428, op, "DELETE", "/v1/accounts/acme/users/"+bob, nil)
	p = r.json(t)
	if p["type"] != "https://licenseledger.dev/problems/confirmation-required" ||
		!strings.Contains(p["detail"].(string), "permanent") || !strings.Contains(p["detail"].(string), "deactivate") {
		t.Fatalf("428 problem: %s", r.Body)
	}
	e.must(422, op, "DELETE", "/v1/accounts/acme/users/"+bob+"?confirm="+bob+"&reassign_to="+bob, nil)
	del := e.must(200, op, "DELETE", "/v1/accounts/acme/users/"+bob+"?confirm="+bob+"&reassign_to="+admin, nil).json(t)
	if del["status"] != "deleted" || del["name"] != "" || del["email"] != "" || del["reassigned_to"] != admin {
		t.Fatalf("deleted user: %v", del)
	}
	r = e.must(410, op, "POST", "/v1/accounts/acme/users/"+bob+"/activate", nil)
	if !strings.Contains(r.json(t)["detail"].(string), "deleted users cannot be recovered") {
		t.Fatalf("410 detail: %s", r.Body)
	}
	e.must(410, op, "DELETE", "/v1/accounts/acme/users/"+bob+"?confirm="+bob, nil)

	acts = e.must(200, op, "GET", "/v1/accounts/acme/activities", nil).json(t)["activities"].([]any)
	a0 := acts[0].(map[string]any)
	if a0["user_name"] != "" || a0["user_id"] != bob || a0["owner_id"] != admin {
		t.Fatalf("deleted user's activity: %v", a0)
	}

	users := e.must(200, op, "GET", "/v1/accounts/acme/users", nil).json(t)["users"].([]any)
	if len(users) != 2 || users[1].(map[string]any)["name"] != "" {
		t.Fatalf("users: %v", users)
	}
	deleted := e.must(200, op, "GET", "/v1/accounts/acme/users?status=deleted", nil).json(t)["users"].([]any)
	if len(deleted) != 1 || deleted[0].(map[string]any)["id"] != bob {
		t.Fatalf("deleted filter: %v", deleted)
	}
	e.must(400, op, "GET", "/v1/accounts/acme/users?status=gone", nil)
	e.must(404, op, "GET", "/v1/accounts/acme/users/nobody", nil)
	e.must(404, op, "GET", "/v1/accounts/nope/users", nil)

	// Seat reductions: below active refused, then scheduled.
	e.must(409, op, "POST", "/v1/accounts/acme/seat-reductions", map[string]int{"count": 2})
	red := e.must(200, op, "POST", "/v1/accounts/acme/seat-reductions", map[string]int{"count": 1}).json(t)
	if red["pending_reduction"] != float64(1) {
		t.Fatalf("reduction: %v", red)
	}
	e.must(409, op, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Again", "seats": 1})

	// Audit, export, verify, events, state, billing.
	au := e.must(200, op, "GET", "/v1/accounts/acme/audit?user="+bob, nil).json(t)["entries"].([]any)
	if len(au) < 5 {
		t.Fatalf("audit of bob: %d entries", len(au))
	}
	jl := e.must(200, op, "GET", "/v1/accounts/acme/audit?format=jsonl", nil)
	if n := bytes.Count(jl.Body, []byte("\n")); n != e.storeLen() || jl.Header.Get("Content-Type") != "application/jsonl" {
		t.Fatalf("jsonl export: %d lines for %d events", n, e.storeLen())
	}
	v := e.must(200, op, "GET", "/v1/accounts/acme/audit/verify", nil).json(t)
	if v["ok"] != true {
		t.Fatalf("verify: %v", v)
	}
	ev := e.must(200, op, "GET", "/v1/accounts/acme/events", nil)
	sc := bufio.NewScanner(bytes.NewReader(ev.Body))
	lines, last := 0, -1.0
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("events line %q: %v", sc.Text(), err)
		}
		if pos := line["position"].(float64); pos <= last {
			t.Fatalf("events out of order at %v", line)
		}
		last = line["position"].(float64)
		if _, ok := line["metadata"].(map[string]any)["actorid"]; !ok {
			t.Fatalf("event line without metadata: %s", sc.Text())
		}
		lines++
	}
	if lines != e.storeLen() || bytes.Contains(ev.Body, []byte("Ada Admin")) {
		t.Fatalf("events: %d lines for %d events, or a plaintext name", lines, e.storeLen())
	}
	st := e.must(200, op, "GET", "/v1/accounts/acme/state?as_of=2026-03-10T09:00:05Z", nil).json(t)
	if st["usage"].(map[string]any)["seats"] != float64(2) {
		t.Fatalf("state as of: %v", st)
	}
	e.must(400, op, "GET", "/v1/accounts/acme/state?as_of=yesterday", nil)
	e.must(400, op, "GET", "/v1/accounts/acme/state", nil)
	e.must(404, op, "GET", "/v1/accounts/acme/state?as_of=2020-01-01T00:00:00Z", nil)
	bill := e.must(200, op, "GET", "/v1/accounts/acme/billing?period=2026-03", nil).json(t)
	if bill["seats_billed"] != float64(2) || bill["peak_active"] != float64(2) {
		t.Fatalf("billing: %v", bill)
	}
	e.must(400, op, "GET", "/v1/accounts/acme/billing?period=March", nil)
	e.must(404, op, "GET", "/v1/accounts/acme/billing?period=2030-01", nil)
}
