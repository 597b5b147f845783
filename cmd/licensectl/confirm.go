package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// confirmation is what a destructive verb needs before it sends anything:
// on a terminal, one of accept typed at the prompt; in a script, --yes or
// --confirm repeating the id.
type confirmation struct {
	cmd *command
	// id is what --confirm must repeat, and what may be typed.
	id string
	// what names the id for the messages, e.g. "user id".
	what string
	// warning says what the verb does, before the prompt or in the refusal.
	warning string
	// prompt is the question on the terminal; accept what may be typed.
	prompt string
	accept []string
	// prepare, when set, is called on a terminal before the prompt: it
	// may read what the prompt shows, e.g. the user's email.
	prepare func(ctx context.Context, cf *confirmation) error
}

// errNotConfirmed is a prompt answered with something else than asked.
var errNotConfirmed = errors.New("not confirmed")

// confirm decides whether the destructive verb may go on. It returns a
// usage error (exit status 2) when nobody confirmed, before anything is
// changed.
func (c *cli) confirm(ctx context.Context, cf confirmation) error {
	if c.f.confirm != "" {
		if c.f.confirm != cf.id {
			return usagef(cf.cmd, "--confirm %q does not repeat the %s %s. %s", c.f.confirm, cf.what, cf.id, cf.warning)
		}
		return nil
	}
	if c.f.yes {
		return nil
	}
	if !c.interactive || c.stdin == nil {
		return usagef(cf.cmd, "%s needs --confirm %s or --yes. %s", cf.cmd.name, cf.id, cf.warning)
	}
	if cf.prepare != nil {
		if err := cf.prepare(ctx, &cf); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.stderr, "%s\n%s ", cf.warning, cf.prompt)
	line, err := bufio.NewReader(c.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read the confirmation: %w", err)
	}
	typed := strings.TrimSpace(line)
	for _, a := range cf.accept {
		if a != "" && typed == a {
			return nil
		}
	}
	if err != nil { // end of input: the prompt's line was left open
		fmt.Fprintln(c.stderr)
	}
	fmt.Fprintf(c.stderr, "licensectl: %q is not the %s: nothing was changed\n", typed, strings.Join(cf.acceptNames(), " or "))
	return errExit{exitUsage}
}

func (cf *confirmation) acceptNames() []string {
	names := make([]string, 0, len(cf.accept))
	for _, a := range cf.accept {
		if a != "" {
			names = append(names, a)
		}
	}
	return names
}

// deleteWarning says what deleting a user does and what to do instead.
func deleteWarning(account, user string) string {
	return "Deletion is permanent: the seat is freed for good, the user's records stay " +
		"but their name is removed from every activity they logged, and a deleted user cannot be recovered " +
		"or reactivated. To keep the user and their name on their records, deactivate them instead " +
		"(reversible): licensectl users deactivate " + account + " " + user
}

// confirmDelete asks for the user's email or id, as the console's delete
// dialog does; the email is read from the API first.
func (c *cli) confirmDelete(ctx context.Context, cmd *command, account, user string) error {
	return c.confirm(ctx, confirmation{
		cmd: cmd, id: user, what: "user id", warning: deleteWarning(account, user),
		prompt: fmt.Sprintf("Type the user id %s to delete the user:", user), accept: []string{user},
		prepare: func(ctx context.Context, cf *confirmation) error {
			r, err := c.call(ctx, request{method: http.MethodGet, path: accountPath(account, "users", user)})
			if err != nil {
				return err
			}
			var u struct{ Name, Email string }
			if err := decode(r, &u); err != nil {
				return err
			}
			if u.Email != "" {
				cf.warning = fmt.Sprintf("You are deleting %s <%s> from %s. %s", u.Name, u.Email, account, cf.warning)
				cf.prompt = fmt.Sprintf("Type %s (or the user id %s) to delete the user:", u.Email, user)
				cf.accept = []string{u.Email, user}
			}
			return nil
		},
	})
}
