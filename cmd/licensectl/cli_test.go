package main

import (
	"flag"
	"slices"
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
