package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// The shapes of the API's answers that the text output reads. Unknown
// fields are ignored, so that a newer server does not break this client.

type usage struct {
	Account            string    `json:"account"`
	Name               string    `json:"name"`
	OpenedAt           time.Time `json:"opened_at"`
	At                 time.Time `json:"at"`
	Purchased          int       `json:"purchased"`
	Seats              int       `json:"seats"`
	Active             int       `json:"active"`
	Deactivated        int       `json:"deactivated"`
	Deleted            int       `json:"deleted"`
	Available          int       `json:"available"`
	PendingReduction   int       `json:"pending_reduction"`
	PendingReductionAt time.Time `json:"pending_reduction_at"`
	PeakActive         int       `json:"peak_active"`
	Revision           uint64    `json:"revision"`
}

type user struct {
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Email        string    `json:"email"`
	Role         string    `json:"role"`
	Status       string    `json:"status"`
	AddedAt      time.Time `json:"added_at"`
	ChangedAt    time.Time `json:"changed_at"`
	ReassignedTo string    `json:"reassigned_to"`
}

type activity struct {
	Seq       int       `json:"seq"`
	ID        string    `json:"id"`
	Kind      string    `json:"kind"`
	Ref       string    `json:"ref"`
	At        time.Time `json:"at"`
	UserID    string    `json:"user_id"`
	UserName  string    `json:"user_name"`
	OwnerID   string    `json:"owner_id"`
	OwnerName string    `json:"owner_name"`
}

type auditEntry struct {
	Time      time.Time `json:"time"`
	ActorID   string    `json:"actor_id"`
	ActorRole string    `json:"actor_role"`
	Action    string    `json:"action"`
	UserID    string    `json:"user_id"`
	Stream    string    `json:"stream"`
	Revision  uint64    `json:"revision"`
}

type chainReport struct {
	Stream  string `json:"stream"`
	OK      bool   `json:"ok"`
	Checked int    `json:"checked"`
	Head    string `json:"head"`
	Broken  *struct {
		Revision uint64 `json:"revision"`
		EventID  string `json:"event_id"`
		Expected string `json:"expected"`
		Found    string `json:"found"`
		Reason   string `json:"reason"`
	} `json:"broken"`
}

type verification struct {
	OK          bool         `json:"ok"`
	Ledger      chainReport  `json:"ledger"`
	Activity    *chainReport `json:"activity"`
	Quarantined []struct {
		Position uint64 `json:"position"`
		Stream   string `json:"stream"`
		Reason   string `json:"reason"`
	} `json:"quarantined"`
}

type reduction struct {
	Count       int       `json:"count"`
	ScheduledAt time.Time `json:"scheduled_at"`
	EffectiveAt time.Time `json:"effective_at"`
}

type cycle struct {
	Account    string    `json:"account"`
	Period     string    `json:"period"`
	Index      int       `json:"index"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	InProgress bool      `json:"in_progress"`
	Until      time.Time `json:"until"`

	SeatsBilled int `json:"seats_billed"`
	Purchases   []struct {
		Count         int       `json:"count"`
		At            time.Time `json:"at"`
		ProratedSeats float64   `json:"prorated_seats"`
	} `json:"purchases"`
	Reductions          []reduction `json:"reductions"`
	ScheduledReductions []reduction `json:"scheduled_reductions"`
	PeakActive          int         `json:"peak_active"`
	ActiveUserDays      float64     `json:"active_user_days"`
	Totals              struct {
		SeatsAtEnd int     `json:"seats_at_end"`
		SeatCycles float64 `json:"seat_cycles"`
		SeatDays   float64 `json:"seat_days"`
	} `json:"totals"`
}

type token struct {
	ID        string    `json:"id"`
	Role      string    `json:"role"`
	Account   string    `json:"account"`
	CreatedAt time.Time `json:"created_at"`
	Token     string    `json:"token"`
}

// render prints an answer: its body as is with --output json, else what
// text makes of it.
func (c *cli) render(r reply, text func(w io.Writer, r reply) error) error {
	if c.json {
		return c.writeBody(r.body)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	if err := text(tw, r); err != nil {
		return err
	}
	return tw.Flush()
}

func decode(r reply, v any) error {
	if err := json.Unmarshal(r.body, v); err != nil {
		return fmt.Errorf("the API answered something unexpected (%w); --output json shows it as is", err)
	}
	return nil
}

func ts(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// orDash shows a blank value as "-", so that table columns stay readable.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// personName shows a user's name; a blank one is a deleted user's, whose
// name was erased.
func personName(name, id string) string {
	switch {
	case name != "":
		return name
	case id == "":
		return "-"
	}
	return "(erased)"
}

func renderUsage(w io.Writer, r reply) error {
	var u usage
	if err := decode(r, &u); err != nil {
		return err
	}
	writeUsage(w, u)
	return nil
}

func writeUsage(w io.Writer, u usage) {
	fmt.Fprintf(w, "account\t%s\n", u.Account)
	fmt.Fprintf(w, "name\t%s\n", u.Name)
	fmt.Fprintf(w, "opened\t%s\n", ts(u.OpenedAt))
	fmt.Fprintf(w, "seats\t%d (purchased %d)\n", u.Seats, u.Purchased)
	fmt.Fprintf(w, "active\t%d\n", u.Active)
	fmt.Fprintf(w, "deactivated\t%d\n", u.Deactivated)
	fmt.Fprintf(w, "deleted\t%d\n", u.Deleted)
	fmt.Fprintf(w, "available\t%d\n", u.Available)
	if u.PendingReduction > 0 {
		fmt.Fprintf(w, "pending reduction\t%d from %s\n", u.PendingReduction, ts(u.PendingReductionAt))
	}
	fmt.Fprintf(w, "peak active\t%d\n", u.PeakActive)
	fmt.Fprintf(w, "revision\t%d\n", u.Revision)
}

func renderUser(w io.Writer, r reply) error {
	var u user
	if err := decode(r, &u); err != nil {
		return err
	}
	fmt.Fprintf(w, "id\t%s\n", u.ID)
	fmt.Fprintf(w, "name\t%s\n", personName(u.Name, u.ID))
	fmt.Fprintf(w, "email\t%s\n", personName(u.Email, u.ID))
	fmt.Fprintf(w, "role\t%s\n", u.Role)
	fmt.Fprintf(w, "status\t%s\n", u.Status)
	fmt.Fprintf(w, "added\t%s\n", ts(u.AddedAt))
	fmt.Fprintf(w, "changed\t%s\n", ts(u.ChangedAt))
	if u.ReassignedTo != "" {
		fmt.Fprintf(w, "records owned by\t%s\n", u.ReassignedTo)
	}
	if rev := strings.Trim(r.header.Get("ETag"), `"`); rev != "" {
		fmt.Fprintf(w, "revision\t%s\n", rev)
	}
	return nil
}

// accountSummary is one account of the list of accounts.
type accountSummary struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	OpenedAt time.Time `json:"opened_at"`
	Seats    int       `json:"seats"`
	Active   int       `json:"active"`
}

const accountsHead = "ID\tNAME\tSEATS\tACTIVE\tOPENED"

// accountRow writes one account of a listing.
func accountRow(w io.Writer, item json.RawMessage) error {
	var a accountSummary
	if err := decodeItem(item, &a); err != nil {
		return err
	}
	fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\n", a.ID, a.Name, a.Seats, a.Active, ts(a.OpenedAt))
	return nil
}

const usersHead = "ID\tNAME\tEMAIL\tROLE\tSTATUS\tCHANGED"

func writeUser(w io.Writer, u user) {
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", u.ID, personName(u.Name, u.ID), personName(u.Email, u.ID), u.Role, u.Status, ts(u.ChangedAt))
}

func writeUsers(w io.Writer, users []user) {
	fmt.Fprintln(w, usersHead)
	for _, u := range users {
		writeUser(w, u)
	}
}

// userRow writes one user of a listing.
func userRow(w io.Writer, item json.RawMessage) error {
	var u user
	if err := decodeItem(item, &u); err != nil {
		return err
	}
	writeUser(w, u)
	return nil
}

// decodeItem decodes one item of a listing.
func decodeItem(item json.RawMessage, v any) error {
	if err := json.Unmarshal(item, v); err != nil {
		return fmt.Errorf("the API answered something unexpected (%w); --output json shows it as is", err)
	}
	return nil
}

// writeActivityHead writes what every answer about one activity holds.
func writeActivityHead(w io.Writer, a activity) {
	fmt.Fprintf(w, "id\t%s\n", a.ID)
	fmt.Fprintf(w, "kind\t%s\n", a.Kind)
	fmt.Fprintf(w, "ref\t%s\n", a.Ref)
	fmt.Fprintf(w, "at\t%s\n", ts(a.At))
}

func renderActivityCreated(w io.Writer, r reply) error {
	var a activity
	if err := decode(r, &a); err != nil {
		return err
	}
	writeActivityHead(w, a)
	fmt.Fprintf(w, "logged by\t%s\n", a.UserID)
	return nil
}

func renderActivity(w io.Writer, r reply) error {
	var a activity
	if err := decode(r, &a); err != nil {
		return err
	}
	writeActivityHead(w, a)
	fmt.Fprintf(w, "logged by\t%s %s\n", a.UserID, personName(a.UserName, a.UserID))
	fmt.Fprintf(w, "owned by\t%s %s\n", a.OwnerID, personName(a.OwnerName, a.OwnerID))
	return nil
}

const activitiesHead = "SEQ\tAT\tKIND\tREF\tLOGGED BY\tNAME\tOWNER\tOWNER NAME"

// activityRow writes one activity of a listing.
func activityRow(w io.Writer, item json.RawMessage) error {
	var a activity
	if err := decodeItem(item, &a); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Seq, ts(a.At), orDash(a.Kind), orDash(a.Ref),
		orDash(a.UserID), personName(a.UserName, a.UserID), orDash(a.OwnerID), personName(a.OwnerName, a.OwnerID))
	return nil
}

const auditHead = "TIME\tACTION\tUSER\tACTOR\tROLE\tSTREAM\tREVISION"

// auditRow writes one audit entry of a listing.
func auditRow(w io.Writer, item json.RawMessage) error {
	var e auditEntry
	if err := decodeItem(item, &e); err != nil {
		return err
	}
	fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", ts(e.Time), e.Action, orDash(e.UserID), orDash(e.ActorID), orDash(e.ActorRole), e.Stream, e.Revision)
	return nil
}

func writeChain(w io.Writer, c chainReport) {
	if c.OK {
		fmt.Fprintf(w, "%s\tok\t%d events\thead %s\n", c.Stream, c.Checked, c.Head)
		return
	}
	fmt.Fprintf(w, "%s\tBROKEN\t%d events checked", c.Stream, c.Checked)
	if b := c.Broken; b != nil {
		fmt.Fprintf(w, "\tat revision %d (event %s)", b.Revision, b.EventID)
		if b.Reason != "" {
			fmt.Fprintf(w, ": %s", b.Reason)
		} else {
			fmt.Fprintf(w, ": expected link %s, found %s", b.Expected, b.Found)
		}
	}
	fmt.Fprintln(w)
}

func renderVerification(w io.Writer, r reply) error {
	var v verification
	if err := decode(r, &v); err != nil {
		return err
	}
	writeChain(w, v.Ledger)
	if v.Activity != nil {
		writeChain(w, *v.Activity)
	}
	for _, q := range v.Quarantined {
		fmt.Fprintf(w, "%s	QUARANTINED	position %d: %s\n", q.Stream, q.Position, q.Reason)
	}
	return nil
}

// errQuarantined is returned by audit verify when the read models skipped
// records of the account.
var errQuarantined = errors.New("records quarantined")

// errChainBroken is returned by audit verify when a chain is broken.
var errChainBroken = errors.New("hash chain broken")

// verificationOutcome makes a broken chain the run's failure, so that a
// script can rely on the exit status.
func verificationOutcome(body []byte) error {
	var v verification
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("the API answered something unexpected: %w", err)
	}
	if v.OK {
		return nil
	}
	for _, c := range []*chainReport{&v.Ledger, v.Activity} {
		if c != nil && !c.OK && c.Broken != nil {
			return fmt.Errorf("%w: %s at revision %d", errChainBroken, c.Stream, c.Broken.Revision)
		}
	}
	if len(v.Quarantined) > 0 {
		return fmt.Errorf("%w: %d records the read models skip", errQuarantined, len(v.Quarantined))
	}
	return errChainBroken
}

func renderState(w io.Writer, r reply) error {
	var s struct {
		Usage  usage  `json:"usage"`
		Users  []user `json:"users"`
		Events int    `json:"events"`
	}
	if err := decode(r, &s); err != nil {
		return err
	}
	fmt.Fprintf(w, "as of\t%s\n", ts(s.Usage.At))
	fmt.Fprintf(w, "events\t%d\n", s.Events)
	writeUsage(w, s.Usage)
	fmt.Fprintln(w)
	writeUsers(w, s.Users)
	return nil
}

// num shows a figure with at most four decimals; --output json has them all.
func num(f float64) string { return strconv.FormatFloat(math.Round(f*1e4)/1e4, 'f', -1, 64) }

func renderBilling(w io.Writer, r reply) error {
	var c cycle
	if err := decode(r, &c); err != nil {
		return err
	}
	state := "closed"
	if c.InProgress {
		state = "in progress, counted until " + ts(c.Until)
	}
	fmt.Fprintf(w, "account\t%s\n", c.Account)
	fmt.Fprintf(w, "period\t%s (cycle %d, %s to %s, %s)\n", c.Period, c.Index, ts(c.Start), ts(c.End), state)
	fmt.Fprintf(w, "seats billed\t%d\n", c.SeatsBilled)
	for _, p := range c.Purchases {
		fmt.Fprintf(w, "purchase\t%d at %s, prorated %s\n", p.Count, ts(p.At), num(p.ProratedSeats))
	}
	for _, d := range c.Reductions {
		fmt.Fprintf(w, "reduction\t%d from %s\n", d.Count, ts(d.EffectiveAt))
	}
	for _, d := range c.ScheduledReductions {
		fmt.Fprintf(w, "scheduled reduction\t%d from %s\n", d.Count, ts(d.EffectiveAt))
	}
	fmt.Fprintf(w, "peak active\t%d\n", c.PeakActive)
	fmt.Fprintf(w, "active user-days\t%s\n", num(c.ActiveUserDays))
	fmt.Fprintf(w, "seats at end\t%d\n", c.Totals.SeatsAtEnd)
	fmt.Fprintf(w, "seat-cycles\t%s\n", num(c.Totals.SeatCycles))
	fmt.Fprintf(w, "seat-days\t%s\n", num(c.Totals.SeatDays))
	return nil
}

// renderMinted prints the secret alone on stdout, so that
// TOKEN=$(licensectl tokens mint ...) works, and what it is on stderr.
func (c *cli) renderMinted(w io.Writer, r reply) error {
	var t token
	if err := decode(r, &t); err != nil {
		return err
	}
	scope := "every account"
	if t.Account != "" {
		scope = "account " + t.Account
	}
	fmt.Fprintf(c.stderr, "licensectl: minted token %s (role %s, %s); its secret is shown this once\n", t.ID, t.Role, scope)
	fmt.Fprintln(w, t.Token)
	return nil
}

func renderTokenInfo(w io.Writer, r reply) error {
	var t token
	if err := decode(r, &t); err != nil {
		return err
	}
	fmt.Fprintf(w, "id\t%s\n", t.ID)
	fmt.Fprintf(w, "role\t%s\n", t.Role)
	fmt.Fprintf(w, "account\t%s\n", orDash(t.Account))
	fmt.Fprintf(w, "created\t%s\n", ts(t.CreatedAt))
	return nil
}
