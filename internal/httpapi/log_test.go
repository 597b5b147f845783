package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/httpapi"
)

// TestLogsHoldNoPersonalData runs users through their life and checks the
// log has one line per request with method, route, status, duration and
// account, and never a name, email, reason or token.
func TestLogsHoldNoPersonalData(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 3)
	op := e.operator
	ann := e.addUser("acme", "Annabelle Quist", "annabelle.quist@example.org", "admin")
	bo := e.addUser("acme", "Bartholomew Zed", "bart.zed@example.org", "member")
	e.must(409, op, "POST", "/v1/accounts/acme/users", map[string]string{"name": "Cyprian Vole", "email": "bart.zed@example.org", "role": "member"})
	e.must(200, op, "POST", "/v1/accounts/acme/users/"+bo+"/deactivate", map[string]string{"reason": "Sabbatical in Lisbon"})
	e.must(200, op, "GET", "/v1/accounts/acme/users", nil)
	e.must(200, op, "DELETE", "/v1/accounts/acme/users/"+bo+"?confirm="+bo+"&reassign_to="+ann, nil)
	e.must(400, op, "POST", "/v1/accounts/acme/users", `{"name":"Dora Wisp","email":"dora@example.org","role":"member","x":1}`)
	svc := e.mint("service", "acme")

	logs := e.logs.String()
	for _, secret := range []string{"Annabelle", "Quist", "annabelle.quist", "Bartholomew", "bart.zed", "Cyprian", "Dora", "dora@", "Sabbatical", "example.org", op, svc, "ll_"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log holds %q", secret)
		}
	}
	n := 0
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		if line["msg"] != "request" {
			continue
		}
		n++
		for _, k := range []string{"method", "route", "status", "duration"} {
			if _, ok := line[k]; !ok {
				t.Errorf("log line without %s: %s", k, sc.Text())
			}
		}
		if strings.Contains(line["route"].(string), "{account}") && line["account"] != "acme" {
			t.Errorf("log line without the account: %s", sc.Text())
		}
	}
	if n < 9 {
		t.Fatalf("%d request lines for at least 9 requests:\n%s", n, logs)
	}
}

type failing struct{}

func (failing) Execute(context.Context, string, ledger.Command, accounts.Request) (accounts.Result, error) {
	return accounts.Result{}, errors.New("disk on fire")
}

// TestUnknownErrorIs500AndLogged: only an error the mapping does not know
// becomes a 500, and it is logged once.
func TestUnknownErrorIs500AndLogged(t *testing.T) {
	e := newEnv(t, options{adjust: func(c *httpapi.Config) { c.Commands = failing{} }})
	r := e.must(500, e.operator, "POST", "/v1/accounts", map[string]any{"id": "acme", "name": "Acme", "seats": 1})
	if r.json(t)["type"] != httpapi.ProblemBase+"internal" || strings.Contains(string(r.Body), "disk on fire") {
		t.Fatalf("500 body: %s", r.Body)
	}
	if got := strings.Count(e.logs.String(), "disk on fire"); got != 1 {
		t.Fatalf("internal error logged %d times, want 1", got)
	}
}
