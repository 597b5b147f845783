package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

const (
	defaultURL       = "http://127.0.0.1:8080"
	defaultTokenFile = "data/operator.token"
	defaultTimeout   = 60 * time.Second
)

// setting is a string flag that remembers whether it was given.
type setting struct {
	value string
	set   bool
}

func (s *setting) String() string { return s.value }

func (s *setting) Set(v string) error {
	s.value, s.set = v, true
	return nil
}

// globals are the settings every verb accepts.
type globals struct {
	url, token, tokenFile, output, timeout setting
	idemKey, ifMatch                       setting
	help, verbose                          bool
}

func (g *globals) register(fs *flag.FlagSet) {
	fs.Var(&g.url, "url", "`URL` of the licensed HTTP API (LICENSECTL_URL; default "+defaultURL+")")
	fs.Var(&g.token, "token", "bearer `token` (LICENSECTL_TOKEN)")
	fs.Var(&g.tokenFile, "token-file", "`file` holding the bearer token (LICENSECTL_TOKEN_FILE; default ./"+defaultTokenFile+" if it exists)")
	fs.Var(&g.output, "output", "output `format`: text, json or yaml (LICENSECTL_OUTPUT; default text)")
	fs.Var(&g.output, "o", "short for --output")
	fs.Var(&g.timeout, "timeout", "`duration` a request may take (LICENSECTL_TIMEOUT; default 60s)")
	fs.Var(&g.idemKey, "idempotency-key", "`key` that makes a retried write return its first result")
	fs.Var(&g.ifMatch, "if-match", "`revision` (ETag) the account must still be at for a write")
	fs.BoolVar(&g.verbose, "verbose", false, "print the Idempotency-Key of each write on stderr")
	fs.BoolVar(&g.help, "h", false, "show help")
	fs.BoolVar(&g.help, "help", false, "show help")
}

// cli is one run of licensectl.
type cli struct {
	getenv         func(string) string
	stdout, stderr io.Writer
	g              globals
	f              verbFlags

	// stdin is where a confirmation is typed; interactive says whether a
	// person is there to type it (stdin and stderr are terminals).
	stdin       io.Reader
	interactive bool
	// progress says whether long exports report progress on stderr (it is
	// a terminal).
	progress bool
	// sleep, when set, replaces the waits between retries.
	sleep func(ctx context.Context, d time.Duration) error

	// Resolved settings.
	baseURL *url.URL
	token   string
	json    bool // --output json or yaml: the API's body
	yaml    bool
	verbose bool
	timeout time.Duration
	// autoKey is the Idempotency-Key drawn for this run's writes.
	autoKey string
	client  *http.Client
	// pageSize is how many items a listing asks for per request.
	pageSize int
}

// usageError is a mistake in the command line: nothing was sent.
type usageError struct {
	msg   string
	usage string // the verb's usage line, if known
}

func (e *usageError) Error() string { return e.msg }

func usagef(cmd *command, format string, args ...any) error {
	e := &usageError{msg: fmt.Sprintf(format, args...)}
	if cmd != nil {
		e.usage = cmd.usage
	}
	return e
}

// errExit ends a run with a status once its message has been printed.
type errExit struct{ code int }

func (e errExit) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func (c *cli) main(ctx context.Context, args []string) int {
	err := c.dispatch(ctx, args)
	var (
		ue   *usageError
		pe   *problemError
		exit errExit
	)
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &exit):
		return exit.code
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "licensectl: %s\n", ue.msg)
		if ue.usage != "" {
			fmt.Fprintf(c.stderr, "usage: licensectl %s\n", ue.usage)
		}
		fmt.Fprintln(c.stderr, "Run 'licensectl help' for every verb and setting.")
		return exitUsage
	case errors.As(err, &pe):
		fmt.Fprintf(c.stderr, "licensectl: %s\n", pe.line())
		return exitRefused
	default:
		fmt.Fprintf(c.stderr, "licensectl: %v\n", err)
		return exitRefused
	}
}

func (c *cli) dispatch(ctx context.Context, args []string) error {
	// Global flags before the verb.
	fs := c.flagSet("licensectl")
	pos, err := parseInterspersed(fs, args, true)
	if err != nil {
		return usagef(nil, "%v", err)
	}
	if len(pos) == 0 && !c.g.help {
		c.printHelp(c.stderr)
		return errExit{exitUsage}
	}
	if c.g.help || pos[0] == "help" {
		c.printHelp(c.stdout)
		return nil
	}
	switch pos[0] {
	case "version":
		return c.printVersion(pos[1:])
	case "completion":
		return c.printCompletion(pos[1:])
	}
	cmd, rest, err := lookup(pos)
	if err != nil {
		return err
	}
	sub := c.flagSet("licensectl " + cmd.name)
	if cmd.flags != nil {
		cmd.flags(sub, &c.f)
	}
	pos, err = parseInterspersed(sub, rest, false)
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	if c.g.help {
		c.printVerbHelp(cmd, sub)
		return nil
	}
	if len(pos) < cmd.min || (cmd.max >= 0 && len(pos) > cmd.max) {
		return usagef(cmd, "%s takes %s", cmd.name, cmd.argsText())
	}
	if err := c.resolve(cmd); err != nil {
		return err
	}
	// --timeout bounds each request (see send), not the whole run: an
	// export may stream for as long as it keeps moving.
	return cmd.run(ctx, c, pos)
}

func (c *cli) flagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.g.register(fs)
	return fs
}

// parseInterspersed parses flags wherever they are among the arguments and
// returns the others in order. Everything after "--" is an argument. With
// stopAtFirst, parsing ends at the first argument (the verb), leaving the
// rest to the verb's own flag set.
func parseInterspersed(fs *flag.FlagSet, args []string, stopAtFirst bool) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		consumed := args[:len(args)-len(rest)]
		if len(consumed) > 0 && consumed[len(consumed)-1] == "--" && !isFlagValue(fs, consumed) {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		if stopAtFirst {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// isFlagValue reports whether the last consumed argument was the value of
// a flag ("--reason --") rather than the end of flags.
func isFlagValue(fs *flag.FlagSet, consumed []string) bool {
	if len(consumed) < 2 {
		return false
	}
	prev := consumed[len(consumed)-2]
	if !strings.HasPrefix(prev, "-") || strings.Contains(prev, "=") || prev == "--" {
		return false
	}
	f := fs.Lookup(strings.TrimLeft(prev, "-"))
	if f == nil {
		return false
	}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return false
	}
	return true
}

// resolve settles the settings: flags first, then the environment, then
// the defaults.
func (c *cli) resolve(cmd *command) error {
	pick := func(s setting, env, def string) string {
		if s.set {
			return s.value
		}
		if v := c.getenv(env); v != "" {
			return v
		}
		return def
	}

	raw := pick(c.g.url, "LICENSECTL_URL", defaultURL)
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef(nil, "--url %q is not an http:// or https:// URL", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	c.baseURL = u

	switch out := pick(c.g.output, "LICENSECTL_OUTPUT", "text"); out {
	case "text":
	case "json":
		c.json = true
	case "yaml":
		c.json, c.yaml = true, true
	default:
		return usagef(nil, "--output must be text, json or yaml, not %q", out)
	}
	c.verbose = c.g.verbose

	c.timeout = defaultTimeout
	if t := pick(c.g.timeout, "LICENSECTL_TIMEOUT", ""); t != "" {
		if c.timeout, err = time.ParseDuration(t); err != nil || c.timeout <= 0 {
			return usagef(nil, "--timeout must be a positive duration such as 30s, not %q", t)
		}
	}

	c.pageSize = maxPage
	if v := c.getenv("LICENSECTL_PAGE_SIZE"); v != "" {
		if c.pageSize, err = strconv.Atoi(v); err != nil || c.pageSize < 1 || c.pageSize > maxPage {
			return usagef(nil, "LICENSECTL_PAGE_SIZE must be an integer from 1 to %d, not %q", maxPage, v)
		}
	}

	if !cmd.write {
		if c.g.idemKey.set {
			return usagef(cmd, "--idempotency-key applies to writes only, and %s only reads", cmd.name)
		}
		if c.g.ifMatch.set {
			return usagef(cmd, "--if-match applies to writes only, and %s only reads", cmd.name)
		}
	}
	if c.g.idemKey.set && c.g.idemKey.value == "" {
		return usagef(cmd, "--idempotency-key must not be empty")
	}
	if c.g.token.set && c.g.tokenFile.set {
		return usagef(nil, "give --token or --token-file, not both")
	}
	return nil
}

// resolveToken finds the token, once the arguments are known to be right:
// --token, --token-file, LICENSECTL_TOKEN, LICENSECTL_TOKEN_FILE, then
// ./data/operator.token.
func (c *cli) resolveToken() error {
	if c.token != "" {
		return nil
	}
	var (
		tok, from string
		file      string
	)
	switch {
	case c.g.token.set:
		tok, from = c.g.token.value, "--token"
	case c.g.tokenFile.set:
		file = c.g.tokenFile.value
	case c.getenv("LICENSECTL_TOKEN") != "":
		tok, from = c.getenv("LICENSECTL_TOKEN"), "LICENSECTL_TOKEN"
	case c.getenv("LICENSECTL_TOKEN_FILE") != "":
		file = c.getenv("LICENSECTL_TOKEN_FILE")
	default:
		if _, err := os.Stat(defaultTokenFile); err != nil {
			return usagef(nil, "no token: give --token, LICENSECTL_TOKEN or --token-file (./%s is used when it exists)", defaultTokenFile)
		}
		file = defaultTokenFile
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("read token file: %w", err)
		}
		tok, from = string(b), "token file "+file
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return usagef(nil, "the token from %s is empty", from)
	}
	// A token goes into a header: refuse anything that could break it,
	// without echoing the token.
	if strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return usagef(nil, "the token from %s holds spaces or control characters: it cannot be a token", from)
	}
	c.token = tok
	return nil
}
