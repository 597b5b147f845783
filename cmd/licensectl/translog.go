package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/licenseledger/ledger/internal/translog"
)

// defaultWatchState is where log watch keeps the last checkpoint it
// verified.
const defaultWatchState = "log.checkpoint"

func init() {
	commands = append(commands,
		&command{name: "export", usage: "export ACCOUNT [--keys] [--out FILE]", short: "the account's audit bundle (JSON Lines): signed checkpoint, records with inclusion proofs (auditor, admin, operator)",
			min: 1, max: 1, run: bundleExport,
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.BoolVar(&f.keys, "keys", false, "include the data keys of the users not deleted, to open their sealed fields")
				fs.StringVar(&f.out, "out", "", "write the bundle to this `file` instead of stdout")
			}},
		&command{name: "verify", usage: "verify BUNDLE --key VKEY [--at TIME]", short: "verify an audit bundle offline and replay seats and billing from it; exit status 1 saying where when anything does not hold",
			min: 1, max: 1, run: bundleVerify,
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.StringVar(&f.key, "key", "", "`file` holding the log's verifier key (the service's log.vkey, or GET /v1/log/key)")
				fs.StringVar(&f.asOf, "at", "", "replay seats and billing as of this RFC 3339 `time` (now by default)")
			}},
		&command{name: "log watch", usage: "log watch --key VKEY [--state FILE]", short: "fetch the log's checkpoint and check it extends the one verified before, kept in --state; exit status 1 when the history was rewritten",
			min: 0, max: 0, run: logWatch,
			flags: func(fs *flag.FlagSet, f *verbFlags) {
				fs.StringVar(&f.key, "key", "", "`file` holding the log's verifier key")
				fs.StringVar(&f.state, "state", defaultWatchState, "`file` keeping the last checkpoint verified")
			}},
	)
}

func readVerifierKey(cmd *command, path string) (string, error) {
	if path == "" {
		return "", usagef(cmd, "--key is required: the log's verifier key file (log.vkey)")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("verifier key: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// bundleExport copies the audit bundle as it arrives.
func bundleExport(ctx context.Context, c *cli, args []string) error {
	cmd := cmdOf("export")
	if err := id(cmd, "account", args[0]); err != nil {
		return err
	}
	q := url.Values{}
	if c.f.keys {
		q.Set("keys", "true")
	}
	resp, err := c.send(ctx, request{method: http.MethodGet, path: accountPath(args[0], "export"), query: q})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	w := c.stdout
	if c.f.out != "" {
		f, err := os.OpenFile(c.f.out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	lc := &lineCounter{w: w}
	if c.progress {
		lc.prog = &progress{w: c.stderr, what: "lines", now: time.Now}
		lc.prog.start = lc.prog.now()
	}
	if _, err := io.Copy(lc, resp.Body); err != nil {
		if lc.prog != nil {
			lc.prog.done(err)
		}
		return fmt.Errorf("the bundle was cut after %d lines: %w", lc.n, err)
	}
	if lc.prog != nil {
		lc.prog.done(nil)
	}
	if c.f.out != "" {
		fmt.Fprintf(c.stderr, "licensectl: %d lines written to %s\n", lc.n, c.f.out)
	}
	return nil
}

// bundleVerify verifies a bundle offline: nothing is sent.
func bundleVerify(ctx context.Context, c *cli, args []string) error {
	cmd := cmdOf("verify")
	vkey, err := readVerifierKey(cmd, c.f.key)
	if err != nil {
		return err
	}
	at := time.Now()
	if c.f.asOf != "" {
		if at, err = time.Parse(time.RFC3339Nano, c.f.asOf); err != nil {
			return usagef(cmd, "--at must be an RFC 3339 time such as 2026-03-10T09:00:00Z, not %q", c.f.asOf)
		}
	}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	// Verifying a large bundle takes longer than a request may.
	v, err := translog.VerifyBundle(context.WithoutCancel(ctx), f, vkey, at)
	if err != nil {
		return fmt.Errorf("%s does not verify: %w", args[0], err)
	}
	if c.json {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(c.stdout, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "verified\t%s: %d records, %d data keys\n", v.Account, v.Records, v.Keys)
	fmt.Fprintf(tw, "checkpoint\t%s, %d records, root %s\n", v.Checkpoint.Origin, v.Checkpoint.Size, v.Checkpoint.Hash)
	for _, s := range v.Streams {
		fmt.Fprintf(tw, "stream\t%s: revisions 0 to %d, head %s\n", s.Stream, s.Events-1, s.Head)
	}
	u := v.Seats
	fmt.Fprintf(tw, "seats\t%d (purchased %d)\n", u.Seats, u.Purchased)
	fmt.Fprintf(tw, "active\t%d\n", u.Active)
	fmt.Fprintf(tw, "deactivated\t%d\n", u.Deactivated)
	fmt.Fprintf(tw, "deleted\t%d\n", u.Deleted)
	fmt.Fprintf(tw, "available\t%d\n", u.Available)
	for _, cy := range v.Cycles {
		state := "ended"
		if cy.InProgress {
			state = "in progress"
		}
		fmt.Fprintf(tw, "cycle %s\t%s to %s (%s): billed %d, purchased %d, reduced %d, seat-cycles %s, peak active %d, active user-days %s\n",
			cy.Period, cy.Start.Format(time.DateOnly), cy.End.Format(time.DateOnly), state,
			cy.SeatsBilled, cy.Totals.PurchasedSeats, cy.Totals.ReducedSeats,
			strconv.FormatFloat(cy.Totals.SeatCycles, 'f', 2, 64), cy.PeakActive, strconv.FormatFloat(cy.ActiveUserDays, 'f', 2, 64))
	}
	return tw.Flush()
}

// httpSource is the log as the API serves it.
type httpSource struct{ c *cli }

func (s httpSource) Checkpoint(ctx context.Context) ([]byte, error) {
	r, err := s.c.call(ctx, request{method: http.MethodGet, path: []string{"v1", "log", "checkpoint"}})
	if err != nil {
		return nil, err
	}
	return r.body, nil
}

func (s httpSource) Consistency(ctx context.Context, old, size int64) (tlog.TreeProof, error) {
	r, err := s.c.call(ctx, request{method: http.MethodGet, path: []string{"v1", "log", "consistency"},
		query: url.Values{"old": {strconv.FormatInt(old, 10)}, "new": {strconv.FormatInt(size, 10)}}})
	if err != nil {
		return nil, err
	}
	var p struct {
		Proof []tlog.Hash `json:"proof"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		return nil, fmt.Errorf("consistency proof: %w", err)
	}
	return p.Proof, nil
}

func logWatch(ctx context.Context, c *cli, _ []string) error {
	cmd := cmdOf("log watch")
	vkey, err := readVerifierKey(cmd, c.f.key)
	if err != nil {
		return err
	}
	if c.f.state == "" {
		return usagef(cmd, "--state must name a file")
	}
	res, err := translog.Watch(ctx, httpSource{c}, vkey, c.f.state)
	if errors.Is(err, translog.ErrInconsistent) {
		return fmt.Errorf("%w (the checkpoint verified before stays in %s)", err, c.f.state)
	}
	if err != nil {
		return err
	}
	switch {
	case res.Old == nil:
		fmt.Fprintf(c.stdout, "first checkpoint kept in %s: %s, %d records, root %s\n", c.f.state, res.New.Origin, res.New.Size, res.New.Hash)
	case res.Old.Size == res.New.Size:
		fmt.Fprintf(c.stdout, "unchanged: %d records, root %s\n", res.New.Size, res.New.Hash)
	default:
		fmt.Fprintf(c.stdout, "consistent: %d records extend the %d verified before; root %s kept in %s\n", res.New.Size, res.Old.Size, res.New.Hash, c.f.state)
	}
	return nil
}
