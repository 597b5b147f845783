package main

import (
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantPos   []string
		wantName  string
		wantForce bool
	}{
		{name: "flags after arguments", args: []string{"acme", "--name", "Ada", "-force"},
			wantPos: []string{"acme"}, wantName: "Ada", wantForce: true},
		{name: "flags between arguments", args: []string{"acme", "--name=Ada", "u1"},
			wantPos: []string{"acme", "u1"}, wantName: "Ada"},
		{name: "double dash ends flags", args: []string{"--", "--name", "x"},
			wantPos: []string{"--name", "x"}},
		{name: "double dash as a flag's value", args: []string{"acme", "--name", "--", "u1"},
			wantPos: []string{"acme", "u1"}, wantName: "--"},
		{name: "double dash after a bool flag", args: []string{"-force", "--", "-x"},
			wantPos: []string{"-x"}, wantForce: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			name := fs.String("name", "", "")
			force := fs.Bool("force", false, "")
			pos, err := parseInterspersed(fs, tt.args, false)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(pos, tt.wantPos) || *name != tt.wantName || *force != tt.wantForce {
				t.Errorf("got %q name %q force %v, want %q name %q force %v", pos, *name, *force, tt.wantPos, tt.wantName, tt.wantForce)
			}
		})
	}
}

func TestProblemLine(t *testing.T) {
	tests := []struct {
		name string
		p    problemError
		want string
	}{
		{name: "rule field", p: problemError{problem: problem{Detail: "no seat available: 2 of 2 in use", Rule: "no-seat-available", Status: 409}},
			want: "no seat available: 2 of 2 in use (no-seat-available, 409)"},
		{name: "rule from type", p: problemError{problem: problem{Detail: "gone", Type: "https://licenseledger.dev/problems/user-deleted", Status: 410}},
			want: "gone (user-deleted, 410)"},
		{name: "title only", p: problemError{problem: problem{Title: "Bad Gateway", Status: 502}},
			want: "bad gateway (502)"},
		{name: "hint", p: problemError{problem: problem{Detail: "who are you", Rule: "unauthenticated", Status: 401}, hint: "check --token"},
			want: "who are you (unauthenticated, 401): check --token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.line(); got != tt.want {
				t.Errorf("line() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestETag(t *testing.T) {
	for in, want := range map[string]string{"7": `"7"`, ` 12 `: `"12"`, `"7"`: `"7"`, `W/"7"`: `W/"7"`} {
		if got := etag(in); got != want {
			t.Errorf("etag(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAnswersOtherThanTheAPIs(t *testing.T) {
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{
			name: "broken chain fails the run",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, `{"ok":false,"ledger":{"stream":"ledger-acme","ok":false,"checked":3,"head":"ab",`+
					`"broken":{"stream":"ledger-acme","revision":2,"event_id":"e2","expected":"aa","found":"bb"}}}`)
			},
			args:     []string{"audit", "verify", "acme"},
			wantCode: exitRefused,
			wantOut:  "ledger-acme  BROKEN  3 events checked  at revision 2 (event e2): expected link aa, found bb\n",
			wantErr:  "licensectl: hash chain broken: ledger-acme at revision 2\n",
		},
		{
			name: "a proxy's error page",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusBadGateway)
				io.WriteString(w, "<html>upstream down</html>\n<p>more</p>")
			},
			args:     []string{"seats", "show", "acme"},
			wantCode: exitRefused,
			wantErr:  "licensectl: bad gateway: <html>upstream down</html> (502)\n",
		},
		{
			name: "the request as sent",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodDelete || r.URL.EscapedPath() != "/base/v1/accounts/acme/users/u%201" ||
					r.URL.Query().Get("confirm") != "u 1" || r.URL.Query().Get("reassign_to") != "u2" ||
					r.Header.Get("Authorization") != "Bearer ll_secret" || r.Header.Get("If-Match") != `"7"` ||
					r.Header.Get("Idempotency-Key") != "k1" {
					w.WriteHeader(http.StatusTeapot)
					return
				}
				io.WriteString(w, `{"id":"u 1","status":"deleted"}`)
			},
			args: []string{"--url", "PLACEHOLDER", "users", "delete", "acme", "u 1", "--confirm", "u 1",
				"--reassign-to", "u2", "--if-match", "7", "--idempotency-key", "k1", "--output", "json"},
			wantCode: exitOK,
			wantOut:  `{"id":"u 1","status":"deleted"}` + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			args := slices.Clone(tt.args)
			if i := slices.Index(args, "PLACEHOLDER"); i >= 0 {
				args[i] = srv.URL + "/base/"
			}
			env := map[string]string{"LICENSECTL_URL": srv.URL, "LICENSECTL_TOKEN": "ll_secret"}
			var out, errb strings.Builder
			code := run(context.Background(), args, func(k string) string { return env[k] }, &out, &errb)
			if code != tt.wantCode || out.String() != tt.wantOut || errb.String() != tt.wantErr {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr %q",
					code, out.String(), errb.String(), tt.wantCode, tt.wantOut, tt.wantErr)
			}
			if strings.Contains(out.String()+errb.String(), "ll_secret") {
				t.Error("the token was printed")
			}
		})
	}
}
