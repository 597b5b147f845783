package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestExportShowsProgressOnATerminal(t *testing.T) {
	const body = `{"n":1}` + "\n" + `{"n":2}` + "\n" + `{"n":3}` + "\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jsonl")
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"LICENSECTL_URL": srv.URL, "LICENSECTL_TOKEN": "ll_secret"}
	for _, tt := range []struct {
		name     string
		terminal bool
		args     []string
		want     *regexp.Regexp
	}{
		{"events on a terminal", true, []string{"events", "acme"},
			regexp.MustCompile(`\r\x1b\[Klicensectl: 3 events, 24 B, \d+ events/s \(done\)\n$`)},
		{"audit export on a terminal", true, []string{"audit", "acme", "--jsonl"},
			regexp.MustCompile(`\r\x1b\[Klicensectl: 3 entries, 24 B, \d+ entries/s \(done\)\n$`)},
		{"audit bundle on a terminal", true, []string{"export", "acme"},
			regexp.MustCompile(`\r\x1b\[Klicensectl: 3 lines, 24 B, \d+ lines/s \(done\)\n$`)},
		{"not a terminal", false, []string{"events", "acme"}, regexp.MustCompile(`^$`)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb strings.Builder
			c := &cli{getenv: func(k string) string { return env[k] }, stdout: &out, stderr: &errb, progress: tt.terminal}
			if code := c.main(context.Background(), tt.args); code != exitOK || out.String() != body {
				t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
			}
			if !tt.want.MatchString(errb.String()) {
				t.Errorf("stderr %q does not match %s", errb.String(), tt.want)
			}
		})
	}
}

func TestExportProgressSaysWhenCut(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, `{"n":1}`+"\n")
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"LICENSECTL_URL": srv.URL, "LICENSECTL_TOKEN": "ll_secret"}
	var out, errb strings.Builder
	c := &cli{getenv: func(k string) string { return env[k] }, stdout: &out, stderr: &errb, progress: true}
	if code := c.main(context.Background(), []string{"events", "acme"}); code != exitRefused {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if !strings.Contains(errb.String(), "licensectl: 1 events, 8 B,") || !strings.Contains(errb.String(), "(cut)\n") ||
		!strings.Contains(errb.String(), "the export was cut after 1 lines") {
		t.Errorf("stderr %q", errb.String())
	}
}

func TestByteSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := byteSize(n); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", n, got, want)
		}
	}
}
