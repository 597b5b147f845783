package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// command is one verb.
type command struct {
	name  string // "users add"
	usage string // "users add ACCOUNT --name N --email E --role admin|member"
	short string
	// min and max bound the positional arguments; max -1 for no bound.
	min, max int
	write    bool
	flags    func(fs *flag.FlagSet, f *verbFlags)
	run      func(ctx context.Context, c *cli, args []string) error
}

func (cmd *command) argsText() string {
	switch {
	case cmd.min == cmd.max && cmd.min == 1:
		return "1 argument"
	case cmd.min == cmd.max:
		return strconv.Itoa(cmd.min) + " arguments"
	case cmd.max < 0:
		return "at least " + strconv.Itoa(cmd.min) + " arguments"
	}
	return fmt.Sprintf("%d to %d arguments", cmd.min, cmd.max)
}

// verbFlags are the flags of the verbs; each verb binds the ones it reads.
type verbFlags struct {
	name, email, role, status, reason, confirm, reassign string
	account, user, actor, since, until, asOf, period     string
	cursor                                               string
	seats, after, limit                                  int
	jsonl, yes                                           bool
	// The transparency log's verbs.
	key, state, out string
	keys            bool
}

var commands []*command

func init() {
	commands = []*command{
		{name: "accounts open", usage: "accounts open ACCOUNT --name NAME --seats N", short: "open an account (operator)",
			min: 1, max: 1, write: true, run: accountsOpen,
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.StringVar(&f.name, "name", "", "the account's `name`")
				fs.IntVar(&f.seats, "seats", 0, "seats bought at opening")
			}},
		{name: "accounts list", usage: "accounts list [--limit N] [--cursor C]", short: "every account by id, with its seats and active users (operator, auditor of every account)",
			max: 0, run: accountsList,
			flags: func(fs *flag.FlagSet, f *verbFlags) { pagingFlags(fs, f, "accounts") }},
		{name: "accounts show", usage: "accounts show ACCOUNT", short: "the account with its seat usage",
			min: 1, max: 1, run: seatsShow},
		{name: "seats show", usage: "seats show ACCOUNT", short: "seat usage: seats, active, deactivated, deleted, available, pending reduction",
			min: 1, max: 1, run: seatsShow},
		{name: "seats buy", usage: "seats buy ACCOUNT N", short: "buy N seats, at once",
			min: 2, max: 2, write: true, run: seatsCount("seats")},
		{name: "seats reduce", usage: "seats reduce ACCOUNT N [--confirm ACCOUNT | --yes]", short: "remove N seats from the next billing cycle (operator); asks for the account id",
			min: 2, max: 2, write: true, run: seatsCount("seat-reductions"),
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.StringVar(&f.confirm, "confirm", "", "the `ACCOUNT` id again, to confirm without a prompt")
				yesFlag(fs, f)
			}},
		{name: "users add", usage: "users add ACCOUNT --name NAME --email EMAIL --role admin|member", short: "add a user: takes a seat",
			min: 1, max: 1, write: true, run: usersAdd,
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.StringVar(&f.name, "name", "", "the user's `name`")
				fs.StringVar(&f.email, "email", "", "the user's `email`, unique in the account")
				fs.StringVar(&f.role, "role", "member", "`role`: admin or member")
			}},
		{name: "users list", usage: "users list ACCOUNT [--status active|deactivated|deleted] [--limit N] [--cursor C]", short: "the account's users",
			min: 1, max: 1, run: usersList,
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.StringVar(&f.status, "status", "", "only users with this `status`")
				pagingFlags(fs, f, "users")
			}},
		{name: "users show", usage: "users show ACCOUNT USER", short: "one user",
			min: 2, max: 2, run: usersShow},
		{name: "users update", usage: "users update ACCOUNT USER [--name NAME] [--email EMAIL] [--role admin|member]", short: "change a user's name, email or role; what is not given stays",
			min: 2, max: 2, write: true, run: usersUpdate,
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.StringVar(&f.name, "name", "", "the user's new `name`")
				fs.StringVar(&f.email, "email", "", "the user's new `email`, unique in the account")
				fs.StringVar(&f.role, "role", "", "the user's new `role`: admin or member")
			}},
		{name: "users deactivate", usage: "users deactivate ACCOUNT USER [--reason TEXT]", short: "free the user's seat and block them; reversible",
			min: 2, max: 2, write: true, run: usersDeactivate,
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.StringVar(&f.reason, "reason", "", "why, kept sealed with the user's data")
			}},
		{name: "users activate", usage: "users activate ACCOUNT USER", short: "activate a deactivated user: takes a seat",
			min: 2, max: 2, write: true, run: usersActivate},
		{name: "users delete", usage: "users delete ACCOUNT USER [--confirm USER | --yes] [--reassign-to OTHER]", short: "delete a user for good: their name leaves every activity; asks for their email or id",
			min: 2, max: 2, write: true, run: usersDelete,
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.StringVar(&f.confirm, "confirm", "", "the `USER` id again, to confirm the deletion without a prompt")
				yesFlag(fs, f)
				fs.StringVar(&f.reassign, "reassign-to", "", "the `OTHER` user who owns the deleted user's records from now on")
			}},
		{name: "activities record", usage: "activities record ACCOUNT USER KIND REF", short: "record an activity logged by an active user",
			min: 4, max: 4, write: true, run: activitiesRecord},
		{name: "activities list", usage: "activities list ACCOUNT [--after N] [--limit N] [--cursor C]", short: "activities with who logged and who owns them",
			min: 1, max: 1, run: activitiesList,
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.IntVar(&f.after, "after", 0, "start after this sequence `number`")
				pagingFlags(fs, f, "activities")
			}},
		{name: "activities show", usage: "activities show ACCOUNT ACTIVITY", short: "one activity",
			min: 2, max: 2, run: activitiesShow},
		{name: "audit", usage: "audit ACCOUNT [--user USER] [--actor TOKEN-ID] [--since T] [--until T] [--limit N] [--cursor C] [--jsonl]", short: "the audit history (auditor, operator, admin)",
			min: 1, max: 1, run: auditList,
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.StringVar(&f.user, "user", "", "only entries about this `user`")
				fs.StringVar(&f.actor, "actor", "", "only entries of this `principal` (token id)")
				fs.StringVar(&f.since, "since", "", "only entries at or after this RFC 3339 `time`")
				fs.StringVar(&f.until, "until", "", "only entries before this RFC 3339 `time`")
				pagingFlags(fs, f, "entries")
				fs.BoolVar(&f.jsonl, "jsonl", false, "export as JSON Lines, one entry a line")
			}},
		{name: "audit verify", usage: "audit verify ACCOUNT", short: "verify the account's hash chains; exit status 1 when broken",
			min: 1, max: 1, run: auditVerify},
		{name: "state", usage: "state ACCOUNT --as-of TIME", short: "seats and users as they were at an instant (RFC 3339)",
			min: 1, max: 1, run: stateAsOf,
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.StringVar(&f.asOf, "as-of", "", "the RFC 3339 `time`, e.g. 2026-03-10T09:00:00Z")
			}},
		{name: "billing", usage: "billing ACCOUNT [--period YYYY-MM]", short: "the billing cycle starting in a month (the current one by default)",
			min: 1, max: 1, run: billingShow,
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.StringVar(&f.period, "period", "", "the `month`, YYYY-MM, the cycle starts in")
			}},
		{name: "events", usage: "events ACCOUNT [--limit N] [--cursor C]", short: "the raw history as stored, JSON Lines on stdout",
			min: 1, max: 1, run: eventsExport,
			flags: func(fs *flag.FlagSet, f *verbFlags) { pagingFlags(fs, f, "events") }},
		{name: "tokens mint", usage: "tokens mint --role operator|admin|auditor|service|provisioning [--account ACCOUNT]", short: "mint a token and print its secret, once (operator)",
			min: 0, max: 0, write: true, run: tokensMint,
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.StringVar(&f.role, "role", "", "the token's `role`")
				fs.StringVar(&f.account, "account", "", "the one `account` it may act on (every account when empty)")
			}},
		{name: "tokens show", usage: "tokens show TOKEN-ID", short: "a token's role and scope, never its secret (operator)",
			min: 1, max: 1, run: tokensShow},
		{name: "tokens revoke", usage: "tokens revoke TOKEN-ID [--confirm TOKEN-ID | --yes]", short: "revoke a token: it authenticates nowhere afterwards (operator); asks for the token id",
			min: 1, max: 1, run: tokensRevoke,
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.StringVar(&f.confirm, "confirm", "", "the `TOKEN-ID` again, to confirm without a prompt")
				yesFlag(fs, f)
			}},
	}
}

// yesFlag binds --yes, the scripts' confirmation of a destructive verb.
func yesFlag(fs *flag.FlagSet, f *verbFlags) {
	fs.BoolVar(&f.yes, "yes", false, "confirm without a prompt (for scripts)")
}

// pagingFlags binds the flags of the verbs that list: they read every
// page unless --limit says how many items to show.
func pagingFlags(fs *flag.FlagSet, f *verbFlags, what string) {
	fs.IntVar(&f.limit, "limit", 0, "show at most this many "+what+" (all when 0)")
	fs.StringVar(&f.cursor, "cursor", "", "start at this `cursor`, given by an earlier listing that stopped at its --limit")
}

// lookup finds the verb named by the first one or two arguments.
func lookup(pos []string) (*command, []string, error) {
	groups := map[string]bool{}
	for _, cmd := range commands {
		first, _, _ := strings.Cut(cmd.name, " ")
		groups[first] = true
	}
	if !groups[pos[0]] {
		return nil, nil, usagef(nil, "unknown verb %q", pos[0])
	}
	if len(pos) > 1 {
		for _, cmd := range commands {
			if cmd.name == pos[0]+" "+pos[1] {
				return cmd, pos[2:], nil
			}
		}
	}
	for _, cmd := range commands {
		if cmd.name == pos[0] {
			return cmd, pos[1:], nil
		}
	}
	var subs []string
	for _, cmd := range commands {
		if first, sub, ok := strings.Cut(cmd.name, " "); ok && first == pos[0] {
			subs = append(subs, sub)
		}
	}
	if len(pos) > 1 {
		return nil, nil, usagef(nil, "unknown verb %q: %s takes %s", pos[0]+" "+pos[1], pos[0], strings.Join(subs, ", "))
	}
	return nil, nil, usagef(nil, "%s needs one of: %s", pos[0], strings.Join(subs, ", "))
}

func (c *cli) printHelp(w io.Writer) {
	fmt.Fprint(w, `licensectl is the command-line client of the license ledger's HTTP API.

Usage: licensectl [flags] VERB ARGS... [flags]

Verbs:
`)
	for _, cmd := range commands {
		fmt.Fprintf(w, "  %s\n      %s\n", cmd.usage, cmd.short)
	}
	fmt.Fprint(w, `
Flags of every verb (the flag wins over the variable):
  --url URL              LICENSECTL_URL (default `+defaultURL+`)
  --token TOKEN          LICENSECTL_TOKEN
  --token-file FILE      LICENSECTL_TOKEN_FILE (default ./`+defaultTokenFile+` if it exists)
  -o, --output text|json|yaml
                         LICENSECTL_OUTPUT (default text); json prints the API's body as is,
                         yaml the same body as YAML
  --timeout DURATION     LICENSECTL_TIMEOUT (default 60s): to connect and be answered, for each
                         request; a streamed export lasts as long as it keeps moving
  --verbose              print the Idempotency-Key each write carries
  LICENSECTL_PAGE_SIZE   items a listing asks for per request (1 to 1000, default 1000)
  --idempotency-key KEY  a retried write with the same key returns the first result
                         (without it, each write carries a key drawn at random)
  --if-match REVISION    refuse the write if the account moved past this revision (ETag)

Also: licensectl version; licensectl completion bash|zsh|fish.

A request answered 503 with Retry-After, or whose connection was reset, is
sent again (5 attempts in all); a write keeps its Idempotency-Key, so it is
never done twice.

Exit status: 0 done, 1 refused by the API or unreachable, 2 usage error.
An account named "verify" is audited with: licensectl audit -- verify
`)
}

func (c *cli) printVerbHelp(cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(c.stdout, "usage: licensectl %s\n\n%s.\n", cmd.usage, cmd.short)
	global := map[string]bool{}
	probe := flag.NewFlagSet("", flag.ContinueOnError)
	(&globals{}).register(probe)
	probe.VisitAll(func(f *flag.Flag) { global[f.Name] = true })
	first := true
	fs.VisitAll(func(f *flag.Flag) {
		if global[f.Name] {
			return
		}
		if first {
			fmt.Fprintln(c.stdout, "\nFlags:")
			first = false
		}
		name, u := flag.UnquoteUsage(f)
		fmt.Fprintf(c.stdout, "  --%s %s\n      %s", f.Name, name, u)
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
			fmt.Fprintf(c.stdout, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(c.stdout)
	})
	fmt.Fprintln(c.stdout, "\nRun 'licensectl help' for the flags of every verb.")
}

// accountIDPattern is the account id rule of the API, checked here so that
// a typo is a usage error rather than a round trip.
var accountIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// id checks an id argument is something a path can carry.
func id(cmd *command, what, v string) error {
	if v == "" || v == "." || v == ".." || strings.ContainsAny(v, "/?#") {
		return usagef(cmd, "%q is not a valid %s id", v, what)
	}
	return nil
}

func accountPath(account string, more ...string) []string {
	return append([]string{"v1", "accounts", account}, more...)
}

func cmdOf(name string) *command {
	for _, cmd := range commands {
		if cmd.name == name {
			return cmd
		}
	}
	panic("no command " + name)
}

// count parses a positive number of seats.
func count(cmd *command, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, usagef(cmd, "the number of seats must be a whole number from 1, not %q", v)
	}
	return n, nil
}

func rfc3339(cmd *command, flagName, v string) error {
	if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
		return usagef(cmd, "--%s must be an RFC 3339 time such as 2026-03-10T09:00:00Z, not %q", flagName, v)
	}
	return nil
}

func accountsOpen(ctx context.Context, c *cli, args []string) error {
	cmd := cmdOf("accounts open")
	if !accountIDPattern.MatchString(args[0]) {
		return usagef(cmd, "account id %q must match [a-z0-9][a-z0-9_-]{0,62}", args[0])
	}
	if strings.TrimSpace(c.f.name) == "" {
		return usagef(cmd, "--name is required")
	}
	if c.f.seats < 1 {
		return usagef(cmd, "--seats is required: the number of seats bought at opening, from 1")
	}
	r, err := c.call(ctx, request{method: http.MethodPost, path: []string{"v1", "accounts"}, write: true,
		body: map[string]any{"id": args[0], "name": c.f.name, "seats": c.f.seats}})
	if err != nil {
		return err
	}
	return c.render(r, renderUsage)
}

func seatsShow(ctx context.Context, c *cli, args []string) error {
	if err := id(nil, "account", args[0]); err != nil {
		return err
	}
	r, err := c.call(ctx, request{method: http.MethodGet, path: accountPath(args[0], "seats")})
	if err != nil {
		return err
	}
	return c.render(r, renderUsage)
}

func seatsCount(route string) func(context.Context, *cli, []string) error {
	return func(ctx context.Context, c *cli, args []string) error {
		cmd := cmdOf("seats buy")
		if route != "seats" {
			cmd = cmdOf("seats reduce")
		}
		if err := id(cmd, "account", args[0]); err != nil {
			return err
		}
		n, err := count(cmd, args[1])
		if err != nil {
			return err
		}
		if route != "seats" {
			plural := "s"
			if n == 1 {
				plural = ""
			}
			if err := c.confirm(ctx, confirmation{cmd: cmd, id: args[0], what: "account id",
				warning: fmt.Sprintf("Reducing removes %d seat%s of %s from the next billing cycle on; users active then must fit in what remains.", n, plural, args[0]),
				prompt:  fmt.Sprintf("Type the account id %s to reduce its seats:", args[0]), accept: []string{args[0]}}); err != nil {
				return err
			}
		}
		r, err := c.call(ctx, request{method: http.MethodPost, path: accountPath(args[0], route), write: true,
			body: map[string]int{"count": n}})
		if err != nil {
			return err
		}
		return c.render(r, renderUsage)
	}
}

func usersAdd(ctx context.Context, c *cli, args []string) error {
	cmd := cmdOf("users add")
	if err := id(cmd, "account", args[0]); err != nil {
		return err
	}
	switch {
	case strings.TrimSpace(c.f.name) == "":
		return usagef(cmd, "--name is required")
	case strings.TrimSpace(c.f.email) == "":
		return usagef(cmd, "--email is required")
	case c.f.role != "admin" && c.f.role != "member":
		return usagef(cmd, "--role must be admin or member, not %q", c.f.role)
	}
	r, err := c.call(ctx, request{method: http.MethodPost, path: accountPath(args[0], "users"), write: true,
		body: map[string]string{"name": c.f.name, "email": c.f.email, "role": c.f.role}})
	if err != nil {
		return err
	}
	return c.render(r, renderUser)
}

func accountsList(ctx context.Context, c *cli, _ []string) error {
	if c.f.limit < 0 {
		return usagef(cmdOf("accounts list"), "--limit must not be negative")
	}
	return c.list(ctx, listing{req: request{method: http.MethodGet, path: []string{"v1", "accounts"}},
		key: "accounts", head: accountsHead, row: accountRow}, c.f.limit, c.f.cursor)
}

func usersList(ctx context.Context, c *cli, args []string) error {
	cmd := cmdOf("users list")
	if err := id(cmd, "account", args[0]); err != nil {
		return err
	}
	q := url.Values{}
	switch c.f.status {
	case "":
	case "active", "deactivated", "deleted":
		q.Set("status", c.f.status)
	default:
		return usagef(cmd, "--status must be active, deactivated or deleted, not %q", c.f.status)
	}
	if c.f.limit < 0 {
		return usagef(cmd, "--limit must not be negative")
	}
	return c.list(ctx, listing{req: request{method: http.MethodGet, path: accountPath(args[0], "users"), query: q},
		key: "users", head: usersHead, row: userRow}, c.f.limit, c.f.cursor)
}

func userArgs(name string, args []string) error {
	cmd := cmdOf(name)
	if err := id(cmd, "account", args[0]); err != nil {
		return err
	}
	return id(cmd, "user", args[1])
}

func usersShow(ctx context.Context, c *cli, args []string) error {
	if err := userArgs("users show", args); err != nil {
		return err
	}
	r, err := c.call(ctx, request{method: http.MethodGet, path: accountPath(args[0], "users", args[1])})
	if err != nil {
		return err
	}
	return c.render(r, renderUser)
}

// usersUpdate sends a merge patch of the flags given: the API leaves what
// is not in it as it is, and records nothing for a value already held.
func usersUpdate(ctx context.Context, c *cli, args []string) error {
	cmd := cmdOf("users update")
	if err := userArgs(cmd.name, args); err != nil {
		return err
	}
	patch := map[string]string{}
	for name, v := range map[string]string{"name": c.f.name, "email": c.f.email, "role": c.f.role} {
		if strings.TrimSpace(v) != "" {
			patch[name] = v
		}
	}
	switch {
	case len(patch) == 0:
		return usagef(cmd, "give at least one of --name, --email and --role")
	case c.f.role != "" && c.f.role != "admin" && c.f.role != "member":
		return usagef(cmd, "--role must be admin or member, not %q", c.f.role)
	}
	r, err := c.call(ctx, request{method: http.MethodPatch, path: accountPath(args[0], "users", args[1]), write: true, body: patch})
	if err != nil {
		return err
	}
	return c.render(r, renderUser)
}

func usersDeactivate(ctx context.Context, c *cli, args []string) error {
	if err := userArgs("users deactivate", args); err != nil {
		return err
	}
	var body any
	if c.f.reason != "" {
		body = map[string]string{"reason": c.f.reason}
	}
	r, err := c.call(ctx, request{method: http.MethodPost, path: accountPath(args[0], "users", args[1], "deactivate"), write: true, body: body})
	if err != nil {
		return err
	}
	return c.render(r, renderUser)
}

func usersActivate(ctx context.Context, c *cli, args []string) error {
	if err := userArgs("users activate", args); err != nil {
		return err
	}
	r, err := c.call(ctx, request{method: http.MethodPost, path: accountPath(args[0], "users", args[1], "activate"), write: true})
	if err != nil {
		return err
	}
	return c.render(r, renderUser)
}

// usersDelete refuses, before sending anything, a deletion whose
// confirmation does not repeat the user id: deletion cannot be undone, and
// the person typing it should read what it does and what to do instead.
func usersDelete(ctx context.Context, c *cli, args []string) error {
	cmd := cmdOf("users delete")
	if err := userArgs(cmd.name, args); err != nil {
		return err
	}
	account, user := args[0], args[1]
	if c.f.reassign != "" {
		if err := id(cmd, "user", c.f.reassign); err != nil {
			return err
		}
	}
	if err := c.confirmDelete(ctx, cmd, account, user); err != nil {
		return err
	}
	// The API demands its own confirmation: the user id again.
	q := url.Values{"confirm": {user}}
	if c.f.reassign != "" {
		q.Set("reassign_to", c.f.reassign)
	}
	r, err := c.call(ctx, request{method: http.MethodDelete, path: accountPath(account, "users", user), query: q, write: true})
	if err != nil {
		return err
	}
	return c.render(r, renderUser)
}

func activitiesRecord(ctx context.Context, c *cli, args []string) error {
	cmd := cmdOf("activities record")
	if err := userArgs(cmd.name, args); err != nil {
		return err
	}
	r, err := c.call(ctx, request{method: http.MethodPost, path: accountPath(args[0], "activities"), write: true,
		body: map[string]string{"user_id": args[1], "kind": args[2], "ref": args[3]}})
	if err != nil {
		return err
	}
	return c.render(r, renderActivityCreated)
}

func activitiesList(ctx context.Context, c *cli, args []string) error {
	cmd := cmdOf("activities list")
	if err := id(cmd, "account", args[0]); err != nil {
		return err
	}
	q := url.Values{}
	if c.f.after < 0 || c.f.limit < 0 {
		return usagef(cmd, "--after and --limit must not be negative")
	}
	if c.f.after > 0 {
		q.Set("after", strconv.Itoa(c.f.after))
	}
	if c.f.after > 0 && c.f.cursor != "" {
		return usagef(cmd, "give --after or --cursor, not both")
	}
	return c.list(ctx, listing{req: request{method: http.MethodGet, path: accountPath(args[0], "activities"), query: q},
		key: "activities", head: activitiesHead, row: activityRow}, c.f.limit, c.f.cursor)
}

func activitiesShow(ctx context.Context, c *cli, args []string) error {
	cmd := cmdOf("activities show")
	if err := id(cmd, "account", args[0]); err != nil {
		return err
	}
	if err := id(cmd, "activity", args[1]); err != nil {
		return err
	}
	r, err := c.call(ctx, request{method: http.MethodGet, path: accountPath(args[0], "activities", args[1])})
	if err != nil {
		return err
	}
	return c.render(r, renderActivity)
}

func auditList(ctx context.Context, c *cli, args []string) error {
	cmd := cmdOf("audit")
	if err := id(cmd, "account", args[0]); err != nil {
		return err
	}
	q := url.Values{}
	for name, v := range map[string]string{"user": c.f.user, "actor": c.f.actor} {
		if v != "" {
			q.Set(name, v)
		}
	}
	for name, v := range map[string]string{"since": c.f.since, "until": c.f.until} {
		if v == "" {
			continue
		}
		if err := rfc3339(cmd, name, v); err != nil {
			return err
		}
		q.Set(name, v)
	}
	if c.f.limit < 0 {
		return usagef(cmd, "--limit must not be negative")
	}
	req := request{method: http.MethodGet, path: accountPath(args[0], "audit"), query: q}
	if c.f.jsonl {
		q.Set("format", "jsonl")
		return c.export(ctx, req, c.f.limit, c.f.cursor, "entries")
	}
	return c.list(ctx, listing{req: req, key: "entries", head: auditHead, row: auditRow}, c.f.limit, c.f.cursor)
}

func auditVerify(ctx context.Context, c *cli, args []string) error {
	if err := id(cmdOf("audit verify"), "account", args[0]); err != nil {
		return err
	}
	r, err := c.call(ctx, request{method: http.MethodGet, path: accountPath(args[0], "audit", "verify")})
	if err != nil {
		return err
	}
	if err := c.render(r, renderVerification); err != nil {
		return err
	}
	return verificationOutcome(r.body)
}

func stateAsOf(ctx context.Context, c *cli, args []string) error {
	cmd := cmdOf("state")
	if err := id(cmd, "account", args[0]); err != nil {
		return err
	}
	if c.f.asOf == "" {
		return usagef(cmd, "--as-of is required")
	}
	if err := rfc3339(cmd, "as-of", c.f.asOf); err != nil {
		return err
	}
	r, err := c.call(ctx, request{method: http.MethodGet, path: accountPath(args[0], "state"), query: url.Values{"as_of": {c.f.asOf}}})
	if err != nil {
		return err
	}
	return c.render(r, renderState)
}

var periodPattern = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])$`)

func billingShow(ctx context.Context, c *cli, args []string) error {
	cmd := cmdOf("billing")
	if err := id(cmd, "account", args[0]); err != nil {
		return err
	}
	q := url.Values{}
	if c.f.period != "" {
		if !periodPattern.MatchString(c.f.period) {
			return usagef(cmd, "--period must be a month, YYYY-MM, not %q", c.f.period)
		}
		q.Set("period", c.f.period)
	}
	r, err := c.call(ctx, request{method: http.MethodGet, path: accountPath(args[0], "billing"), query: q})
	if err != nil {
		return err
	}
	return c.render(r, renderBilling)
}

// eventsExport copies the raw history to stdout as it arrives, whatever
// --output says: it is JSON already, one record a line.
func eventsExport(ctx context.Context, c *cli, args []string) error {
	cmd := cmdOf("events")
	if err := id(cmd, "account", args[0]); err != nil {
		return err
	}
	if c.f.limit < 0 {
		return usagef(cmd, "--limit must not be negative")
	}
	return c.export(ctx, request{method: http.MethodGet, path: accountPath(args[0], "events")}, c.f.limit, c.f.cursor, "events")
}

func tokensMint(ctx context.Context, c *cli, _ []string) error {
	cmd := cmdOf("tokens mint")
	switch c.f.role {
	case "operator", "admin", "auditor", "service", "provisioning":
	case "":
		return usagef(cmd, "--role is required")
	default:
		return usagef(cmd, "--role must be operator, admin, auditor, service or provisioning, not %q", c.f.role)
	}
	body := map[string]string{"role": c.f.role}
	if c.f.account != "" {
		if err := id(cmd, "account", c.f.account); err != nil {
			return err
		}
		body["account"] = c.f.account
	}
	r, err := c.call(ctx, request{method: http.MethodPost, path: []string{"v1", "tokens"}, write: true, body: body})
	if err != nil {
		return err
	}
	return c.render(r, c.renderMinted)
}

func tokensShow(ctx context.Context, c *cli, args []string) error {
	if err := id(cmdOf("tokens show"), "token", args[0]); err != nil {
		return err
	}
	r, err := c.call(ctx, request{method: http.MethodGet, path: []string{"v1", "tokens", args[0]}})
	if err != nil {
		return err
	}
	return c.render(r, renderTokenInfo)
}

// tokensRevoke revokes a token. The API answers 204 without a body: the
// confirmation goes to stderr and stdout stays empty.
func tokensRevoke(ctx context.Context, c *cli, args []string) error {
	cmd := cmdOf("tokens revoke")
	if err := id(cmd, "token", args[0]); err != nil {
		return err
	}
	if err := c.confirm(ctx, confirmation{cmd: cmd, id: args[0], what: "token id",
		warning: fmt.Sprintf("Revoking token %s is final: it authenticates nowhere afterwards, and whoever uses it needs a new one.", args[0]),
		prompt:  fmt.Sprintf("Type the token id %s to revoke it:", args[0]), accept: []string{args[0]}}); err != nil {
		return err
	}
	if _, err := c.call(ctx, request{method: http.MethodDelete, path: []string{"v1", "tokens", args[0]}}); err != nil {
		return err
	}
	fmt.Fprintf(c.stderr, "licensectl: revoked token %s\n", args[0])
	return nil
}
