// Command licensectl is the command-line client of the license ledger's
// HTTP API (licensed).
//
//	licensectl [global flags] VERB [SUBVERB] ARGS... [flags]
//
// Flags may come before or after the verb and its arguments. Run
// "licensectl help" for the verbs.
//
// # Settings
//
// Each global setting is a flag and an environment variable; the flag wins.
//
//	--url              LICENSECTL_URL         http://127.0.0.1:8080
//	--token            LICENSECTL_TOKEN       the bearer token
//	--token-file       LICENSECTL_TOKEN_FILE  a file holding it; ./data/operator.token
//	                                          is used when no token is given and it exists
//	--output, -o       LICENSECTL_OUTPUT      text (a readable summary), json (the API's body as is)
//	                                          or yaml (the same body as YAML)
//	--timeout          LICENSECTL_TIMEOUT     60s to connect and be answered, for each request;
//	                                          a streamed export may last longer while it moves
//	--verbose                                 print the Idempotency-Key of each write
//	--idempotency-key                         sent with a write as Idempotency-Key; without it
//	                                          each write carries a key drawn at random
//	--if-match                                sent with a write as If-Match (an ETag such as 7 or "7")
//
// # Exit status
//
// 0 on success; 1 when the API refuses (its problem is printed as one line
// on stderr: detail, rule and status) or cannot be reached; 2 for a usage
// error, detected before anything is sent.
//
// # Retries
//
// A request answered 503 with Retry-After, or whose connection is reset
// before the answer, is sent again, up to 5 times in all, waiting as the
// API asks or backing off from 250ms. Writes always carry an
// Idempotency-Key, so a retried write is never done twice.
//
// # Confirmation
//
// The destructive verbs (users delete, tokens revoke, seats reduce) ask on
// a terminal for the user's email or id, the token id or the account id
// to be typed; --confirm ID or --yes stand for it in scripts. Without a
// terminal and without them, they refuse with exit status 2.
//
// Tokens are never printed, except the secret of a token just minted.
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

func main() {
	os.Exit(Main())
}

// Main runs licensectl with the process's arguments, environment and
// standard streams, and returns the exit status.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stderrTTY := term.IsTerminal(int(os.Stderr.Fd()))
	c := &cli{getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin,
		interactive: stderrTTY && term.IsTerminal(int(os.Stdin.Fd())), progress: stderrTTY}
	return c.main(ctx, os.Args[1:])
}

// Exit statuses.
const (
	exitOK      = 0
	exitRefused = 1
	exitUsage   = 2
)

// run is licensectl with its inputs and outputs given, so that it can be
// called in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := &cli{getenv: getenv, stdout: stdout, stderr: stderr}
	return c.main(ctx, args)
}
