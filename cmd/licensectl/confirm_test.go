package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// ledger is the service wired as in the scripts, for tests that run
// licensectl in process with a terminal's answers.
type ledger struct {
	t   *testing.T
	srv *server
}

func newLedger(t *testing.T) *ledger {
	srv, err := startServer(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.close(); err != nil {
			t.Error(err)
		}
	})
	return &ledger{t: t, srv: srv}
}

// run runs licensectl; typed, when not nil, is what the person at the
// terminal types.
func (l *ledger) run(typed *string, args ...string) (int, string, string) {
	l.t.Helper()
	env := map[string]string{"LICENSECTL_URL": l.srv.http.URL, "LICENSECTL_TOKEN": l.srv.operator}
	var out, errb strings.Builder
	c := &cli{getenv: func(k string) string { return env[k] }, stdout: &out, stderr: &errb}
	if typed != nil {
		c.interactive, c.stdin = true, strings.NewReader(*typed)
	}
	return c.main(context.Background(), args), out.String(), errb.String()
}

func (l *ledger) must(args ...string) string {
	l.t.Helper()
	code, out, errOut := l.run(nil, args...)
	if code != exitOK {
		l.t.Fatalf("licensectl %q: exit %d, stderr %q", args, code, errOut)
	}
	return out
}

func (l *ledger) field(out, name string) string {
	l.t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		l.t.Fatalf("not JSON: %q", out)
	}
	s, _ := m[name].(string)
	return s
}

func typed(s string) *string { return &s }

func TestTerminalConfirmsADeletionWithTheEmailOrTheID(t *testing.T) {
	l := newLedger(t)
	l.must("accounts", "open", "acme", "--name", "Acme", "--seats", "3")
	ada := l.field(l.must("users", "add", "acme", "--name", "Ada", "--email", "ada@acme.test", "--role", "admin", "-o", "json"), "id")
	bob := l.field(l.must("users", "add", "acme", "--name", "Bob", "--email", "bob@acme.test", "-o", "json"), "id")

	// A wrong answer, or none, changes nothing and exits 2.
	for _, answer := range []string{"ada@acme.test\n", "bob@acme\n", "", "\n"} {
		code, out, errOut := l.run(typed(answer), "users", "delete", "acme", bob)
		if code != exitUsage || out != "" {
			t.Errorf("answer %q: exit %d, stdout %q; want exit 2 and nothing", answer, code, out)
		}
		if !strings.Contains(errOut, "You are deleting Bob <bob@acme.test> from acme. Deletion is permanent") ||
			!strings.Contains(errOut, "Type bob@acme.test (or the user id "+bob+") to delete the user:") ||
			!strings.Contains(errOut, "nothing was changed") {
			t.Errorf("answer %q: stderr %q", answer, errOut)
		}
	}
	if status := l.field(l.must("users", "show", "acme", bob, "-o", "json"), "status"); status != "active" {
		t.Fatalf("Bob is %s after refused confirmations", status)
	}

	// The email, typed with spaces around it, confirms.
	code, out, errOut := l.run(typed("  bob@acme.test \n"), "users", "delete", "acme", bob, "--reassign-to", ada, "-o", "json")
	if code != exitOK || l.field(out, "status") != "deleted" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// So does the id; --yes needs no prompt at all.
	cy := l.field(l.must("users", "add", "acme", "--name", "Cy", "--email", "cy@acme.test", "-o", "json"), "id")
	if code, out, _ := l.run(typed(cy+"\n"), "users", "delete", "acme", cy, "-o", "json"); code != exitOK || l.field(out, "status") != "deleted" {
		t.Fatalf("confirmed by id: exit %d, stdout %q", code, out)
	}
	dee := l.field(l.must("users", "add", "acme", "--name", "Dee", "--email", "dee@acme.test", "-o", "json"), "id")
	if code, out, errOut := l.run(typed(""), "users", "delete", "acme", dee, "--yes", "-o", "json"); code != exitOK || l.field(out, "status") != "deleted" || strings.Contains(errOut, "Type") {
		t.Fatalf("--yes: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// A user that is not there is the API's refusal, before any prompt.
	code, _, errOut = l.run(typed("x\n"), "users", "delete", "acme", "nobody")
	if code != exitRefused || strings.Contains(errOut, "Type") {
		t.Errorf("unknown user: exit %d, stderr %q", code, errOut)
	}
}

func TestTerminalConfirmsARevocationAndAReduction(t *testing.T) {
	l := newLedger(t)
	l.must("accounts", "open", "acme", "--name", "Acme", "--seats", "5")
	minted := l.must("tokens", "mint", "--role", "auditor", "-o", "json")
	tok, secret := l.field(minted, "id"), l.field(minted, "token")

	if code, _, errOut := l.run(typed("acme\n"), "tokens", "revoke", tok); code != exitUsage || !strings.Contains(errOut, "Type the token id "+tok+" to revoke it:") {
		t.Fatalf("wrong id: exit %d, stderr %q", code, errOut)
	}
	env := map[string]string{"LICENSECTL_URL": l.srv.http.URL, "LICENSECTL_TOKEN": secret}
	var sink strings.Builder
	auditor := &cli{getenv: func(k string) string { return env[k] }, stdout: &sink, stderr: &sink}
	if code := auditor.main(context.Background(), []string{"seats", "show", "acme"}); code != exitOK {
		t.Fatalf("the token was revoked without confirmation: %s", sink.String())
	}
	if code, _, errOut := l.run(typed(tok+"\n"), "tokens", "revoke", tok); code != exitOK || !strings.Contains(errOut, "revoked token "+tok) {
		t.Fatalf("right id: exit %d, stderr %q", code, errOut)
	}

	if code, _, errOut := l.run(typed("globex\n"), "seats", "reduce", "acme", "2"); code != exitUsage || !strings.Contains(errOut, "Reducing removes 2 seats of acme") {
		t.Fatalf("wrong account: exit %d, stderr %q", code, errOut)
	}
	var usage struct {
		Pending int `json:"pending_reduction"`
	}
	json.Unmarshal([]byte(l.must("seats", "show", "acme", "-o", "json")), &usage)
	if usage.Pending != 0 {
		t.Fatalf("seats reduced without confirmation: pending %d", usage.Pending)
	}
	if code, out, errOut := l.run(typed("acme\n"), "seats", "reduce", "acme", "2", "-o", "json"); code != exitOK || !strings.Contains(out, `"pending_reduction":2`) {
		t.Fatalf("right account: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}
