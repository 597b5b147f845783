package systemtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// keyed sends a JSON request with an Idempotency-Key.
func (p *proc) keyed(method, path, token, key string, body any) (int, http.Header, []byte) {
	p.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		p.t.Fatal(err)
	}
	req, err := http.NewRequest(method, p.base+path, bytes.NewReader(b))
	if err != nil {
		p.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, raw
}

// A user added through one process with an Idempotency-Key and deleted
// through another: once the first process's read models have the
// deletion, the add repeated there under the same key is answered without
// the user's name or email, though that process had kept its first answer.
func TestRepeatAfterDeletionInOtherProcess(t *testing.T) {
	a := newProc(t, "A", "")
	a.ready()
	b := newProc(t, "B", "", "--nats-url", a.natsURL, "--nats-creds", filepath.Join(a.dir, "licensed.nk"))
	b.ready()
	op := a.file("operator.token")
	a.expect(http.StatusCreated, "POST", "/v1/accounts", op, map[string]any{"id": "forget", "name": "Forget", "seats": 3}, nil)

	const name, email = "Grace Hopper", "grace.hopper@forget.test"
	add := map[string]string{"name": name, "email": email, "role": "member"}
	st, _, raw := a.keyed("POST", "/v1/accounts/forget/users", op, "add-grace", add)
	if st != http.StatusCreated || !strings.Contains(string(raw), name) {
		t.Fatalf("add: %d %s", st, raw)
	}
	var u user
	if err := json.Unmarshal(raw, &u); err != nil {
		t.Fatal(err)
	}
	if st, h, raw := a.keyed("POST", "/v1/accounts/forget/users", op, "add-grace", add); st != http.StatusCreated || h.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("control: the repeat before deletion is not the kept answer: %d %v %s", st, h, raw)
	}

	st, h, raw, err := b.do("DELETE", "/v1/accounts/forget/users/"+u.ID+"?confirm="+u.ID, op, nil)
	if err != nil || st != http.StatusOK {
		t.Fatalf("delete through B: %d %v %s", st, err, raw)
	}
	a.expect(http.StatusOK, "GET", "/v1/accounts/forget/users?min_position="+h.Get("Ledger-Position"), op, nil, nil)

	st, _, raw = a.keyed("POST", "/v1/accounts/forget/users", op, "add-grace", add)
	if st != http.StatusCreated {
		t.Fatalf("repeat after deletion: %d %s", st, raw)
	}
	for _, s := range []string{"Grace", "Hopper", "grace.hopper"} {
		if strings.Contains(string(raw), s) {
			t.Errorf("the repeat through A after the deletion through B reveals %q: %s", s, raw)
		}
	}
}
