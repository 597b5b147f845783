package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	openapi_types "github.com/oapi-codegen/runtime/types"

	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/cycleclose"
	"github.com/licenseledger/ledger/internal/httpapi/apiclient"
)

// testClock is a settable clock that moves a millisecond at each reading,
// as time does.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond)
	return c.now
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// startServiceWithClock starts the service by its real wiring, as
// startService does, with clock as the service's clock.
func startServiceWithClock(t *testing.T, dir string, logs io.Writer, clock func() time.Time) *running {
	t.Helper()
	cfg, err := ParseConfig([]string{"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0"},
		func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMain(cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	m.clock = clock
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		m.Close()
		t.Fatal(err)
	}
	r := &running{t: t, m: m, base: "http://" + m.HTTPAddr()}
	r.waitReady()
	t.Cleanup(func() { m.Close() })
	return r
}

// bearer authenticates the generated client's requests.
func bearer(token string) apiclient.ClientOption {
	return apiclient.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+token)
		return nil
	})
}

func ptr[T any](v T) *T { return &v }

// status fails unless a generated client's call answered want.
func status(t *testing.T, what string, err error, got int, body []byte, want int) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if got != want {
		t.Fatalf("%s: status %d, want %d: %s", what, got, want, body)
	}
}

// TestGeneratedClientSeedStory drives the help article's story through
// the Go client oapi-codegen generates from openapi.json, against the
// real wiring on the embedded NATS: buy seats, add users, record
// activities, deactivate, reactivate, delete; then seats, attribution,
// audit and billing as the client reads them, every page of a list by
// its next link, and the cycle's CycleClosed notification once the
// clock passes its end.
func TestGeneratedClientSeedStory(t *testing.T) {
	dir := t.TempDir()
	clock := &testClock{now: time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)}
	svc := startServiceWithClock(t, dir, io.Discard, clock.Now)
	ctx := t.Context()
	raw, err := os.ReadFile(filepath.Join(dir, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	op, err := apiclient.NewClientWithResponses(svc.base, bearer(strings.TrimSpace(string(raw))))
	if err != nil {
		t.Fatal(err)
	}

	// Support opens the account with 2 seats and mints its admin a token.
	opened, err := op.OpenAccountWithResponse(ctx, nil, apiclient.OpenAccount{Id: "acme", Name: "Acme Recruiting", Seats: 2})
	status(t, "open", err, opened.StatusCode(), opened.Body, 201)
	minted, err := op.MintTokenWithResponse(ctx, nil, apiclient.MintToken{Role: apiclient.MintTokenRoleAdmin, Account: ptr("acme")})
	status(t, "mint", err, minted.StatusCode(), minted.Body, 201)
	admin, err := apiclient.NewClientWithResponses(svc.base, bearer(minted.JSON201.Token))
	if err != nil {
		t.Fatal(err)
	}
	add := func(name, email string, role apiclient.AddUserRole, want int) *apiclient.AddUserResponse {
		t.Helper()
		r, err := admin.AddUserWithResponse(ctx, "acme", nil, apiclient.AddUser{Name: name, Email: openapi_types.Email(email), Role: role})
		status(t, "add "+name, err, r.StatusCode(), r.Body, want)
		return r
	}
	ada := add("Ada Lovelace", "ada@acme.test", apiclient.AddUserRoleAdmin, 201).JSON201.Id
	bob := add("Bob Babbage", "bob@acme.test", apiclient.AddUserRoleMember, 201).JSON201.Id
	if p := add("Cy Quill", "cy@acme.test", apiclient.AddUserRoleMember, 409).ApplicationproblemJSON409; p == nil || p.Rule == nil || *p.Rule != "no-seat-available" {
		t.Fatalf("third user: problem %+v", p)
	}
	rec := func(user, ref string) string {
		t.Helper()
		r, err := admin.RecordActivityWithResponse(ctx, "acme", nil, apiclient.RecordActivity{UserId: user, Kind: "note", Ref: ref})
		status(t, "record", err, r.StatusCode(), r.Body, 201)
		return r.JSON201.Id
	}
	bobsNote := rec(bob, "candidate-3")

	// Deactivating Bob frees his seat and keeps his name on his work.
	deact, err := admin.DeactivateUserWithResponse(ctx, "acme", bob, nil, apiclient.Deactivate{Reason: ptr("moved to another team")})
	status(t, "deactivate", err, deact.StatusCode(), deact.Body, 200)
	seats, err := admin.GetSeatsWithResponse(ctx, "acme", nil)
	status(t, "seats", err, seats.StatusCode(), seats.Body, 200)
	if s := seats.JSON200; s.Available != 1 || s.Deactivated != 1 || s.Active != 1 {
		t.Fatalf("seats after deactivation: %+v", s)
	}
	cy := add("Cy Quill", "cy@acme.test", apiclient.AddUserRoleMember, 201).JSON201.Id

	// Reactivating Bob needs a free seat: buy one, then activate.
	act, err := admin.ActivateUserWithResponse(ctx, "acme", bob, nil)
	status(t, "activate without a seat", err, act.StatusCode(), act.Body, 409)
	bought, err := admin.PurchaseSeatsWithResponse(ctx, "acme", nil, apiclient.Count{Count: 1})
	status(t, "buy", err, bought.StatusCode(), bought.Body, 200)
	act, err = admin.ActivateUserWithResponse(ctx, "acme", bob, nil)
	status(t, "activate", err, act.StatusCode(), act.Body, 200)
	cysNote := rec(cy, "candidate-17")

	// Deleting needs confirmation, reassigns ownership, is permanent.
	del, err := admin.DeleteUserWithResponse(ctx, "acme", cy, &apiclient.DeleteUserParams{})
	status(t, "delete unconfirmed", err, del.StatusCode(), del.Body, 428)
	del, err = admin.DeleteUserWithResponse(ctx, "acme", cy, &apiclient.DeleteUserParams{Confirm: cy, ReassignTo: ptr(ada)})
	status(t, "delete", err, del.StatusCode(), del.Body, 200)
	act, err = admin.ActivateUserWithResponse(ctx, "acme", cy, nil)
	status(t, "activate deleted", err, act.StatusCode(), act.Body, 410)

	seats, err = admin.GetSeatsWithResponse(ctx, "acme", nil)
	status(t, "seats", err, seats.StatusCode(), seats.Body, 200)
	if s := seats.JSON200; s.Seats != 3 || s.Active != 2 || s.Deleted != 1 || s.Available != 1 || s.PeakActive != 3 {
		t.Fatalf("seats at the end: %+v", s)
	}

	// Attribution: Bob's note keeps his name; Cy's has none, owned by Ada.
	acts, err := admin.ListActivitiesWithResponse(ctx, "acme", nil)
	status(t, "activities", err, acts.StatusCode(), acts.Body, 200)
	byID := map[string]apiclient.Activity{}
	for _, a := range acts.JSON200.Activities {
		byID[a.Id] = a
	}
	if a := byID[bobsNote]; a.UserName != "Bob Babbage" || a.OwnerId != bob {
		t.Fatalf("Bob's note: %+v", a)
	}
	if a := byID[cysNote]; a.UserName != "" || a.UserId != cy || a.OwnerId != ada || a.OwnerName != "Ada Lovelace" {
		t.Fatalf("Cy's note: %+v", a)
	}

	// Users, one per page, by the next links the answers give.
	var names []string
	params := &apiclient.ListUsersParams{Limit: ptr(1)}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("users: no end")
		}
		r, err := admin.ListUsersWithResponse(ctx, "acme", params)
		status(t, "users", err, r.StatusCode(), r.Body, 200)
		for _, u := range r.JSON200.Users {
			names = append(names, u.Name)
		}
		if !r.JSON200.HasMore {
			if r.JSON200.NextLink != nil || r.HTTPResponse.Header.Get("Link") != "" {
				t.Fatalf("last page with a next link: %s", r.Body)
			}
			break
		}
		if r.HTTPResponse.Header.Get("Link") != "<"+*r.JSON200.NextLink+`>; rel="next"` {
			t.Fatalf("Link %q, next_link %q", r.HTTPResponse.Header.Get("Link"), *r.JSON200.NextLink)
		}
		params.Cursor = &r.JSON200.NextCursor
	}
	if strings.Join(names, ",") != "Ada Lovelace,Bob Babbage," {
		t.Fatalf("users: %q", names)
	}

	// Audit: Cy's history, and the chains verify.
	audit, err := admin.ListAuditWithResponse(ctx, "acme", &apiclient.ListAuditParams{User: ptr(cy)})
	status(t, "audit", err, audit.StatusCode(), audit.Body, 200)
	var actions []string
	for _, e := range audit.JSON200.Entries {
		actions = append(actions, string(e.Action))
	}
	if strings.Join(actions, ",") != "UserAdded,ActivityRecorded,UserDeleted" {
		t.Fatalf("Cy's audit: %v", actions)
	}
	ver, err := admin.VerifyAccountWithResponse(ctx, "acme", nil)
	status(t, "verify", err, ver.StatusCode(), ver.Body, 200)
	if !ver.JSON200.Ok {
		t.Fatalf("verification: %s", ver.Body)
	}

	// Billing of the cycle in progress, for the account and for every
	// account.
	bill, err := admin.GetAccountBillingWithResponse(ctx, "acme", nil)
	status(t, "billing", err, bill.StatusCode(), bill.Body, 200)
	if b := bill.JSON200; b.SeatsBilled != 2 || len(b.Purchases) != 1 || b.Purchases[0].Count != 1 || !b.InProgress || b.PeakActive != 3 {
		t.Fatalf("billing: %s", bill.Body)
	}
	all, err := op.ListBillingWithResponse(ctx, &apiclient.ListBillingParams{Period: ptr("2026-03")})
	status(t, "billing of March", err, all.StatusCode(), all.Body, 200)
	if len(all.JSON200.Cycles) != 1 || all.JSON200.Cycles[0].Account != "acme" || all.JSON200.HasMore {
		t.Fatalf("billing of March: %s", all.Body)
	}
	forbidden, err := admin.ListBillingWithResponse(ctx, nil)
	status(t, "billing of every account for an admin", err, forbidden.StatusCode(), forbidden.Body, 403)
	accts, err := op.ListAccountsWithResponse(ctx, nil)
	status(t, "accounts", err, accts.StatusCode(), accts.Body, 200)
	if len(accts.JSON200.Accounts) != 1 || accts.JSON200.Accounts[0].Id != "acme" || accts.JSON200.Accounts[0].Seats != 3 {
		t.Fatalf("accounts: %s", accts.Body)
	}

	// The cycle ends on 10 April; past the grace, the service publishes
	// its final quantities once.
	clock.Set(time.Date(2026, 4, 10, 0, 0, 0, 0, time.UTC).Add(cycleclose.DefaultGrace + time.Second))
	if _, err := svc.m.cycles.CloseDue(ctx); err != nil {
		t.Fatal(err)
	}
	if k, err := svc.m.cycles.CloseDue(ctx); err != nil || k != 0 {
		t.Fatalf("a second pass published %d: %v", k, err)
	}
	final, err := op.ListBillingWithResponse(ctx, &apiclient.ListBillingParams{Period: ptr("2026-03")})
	status(t, "final billing", err, final.StatusCode(), final.Body, 200)
	want := final.JSON200.Cycles[0]
	if want.InProgress {
		t.Fatalf("cycle still in progress: %s", final.Body)
	}
	creds, err := nats.NkeyOptionFromSeed(filepath.Join(dir, "licensed.nk"))
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(svc.m.NATSURL(), creds)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, contract.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(contract.BillingSubject("acme")))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[contract.BillingSubject("acme")]; n != 1 {
		t.Fatalf("%d CycleClosed notifications of acme, want 1", n)
	}
	msg, err := stream.GetLastMsgForSubject(ctx, contract.BillingSubject("acme"))
	if err != nil {
		t.Fatal(err)
	}
	var env cycleclose.Envelope
	if err := json.Unmarshal(msg.Data, &env); err != nil {
		t.Fatal(err)
	}
	d := env.Data
	if env.Type != cycleclose.Type || env.ID != msg.Header.Get("Nats-Msg-Id") || d.Period != "2026-03" ||
		d.SeatsBilled != want.SeatsBilled || d.PeakActive != want.PeakActive || d.ActiveUserDays != want.ActiveUserDays ||
		d.Totals.SeatCycles != want.Totals.SeatCycles || d.Totals.PurchasedSeats != 1 || len(d.Purchases) != 1 {
		t.Fatalf("notification %s\nbilling %s", msg.Data, final.Body)
	}
	m := svc.expect(200, "", "GET", "/metrics", nil).raw
	if !strings.Contains(m, "licensed_billing_cycles_closed_total 1\n") {
		t.Fatalf("metrics lack the notification:\n%s", m)
	}

	// A restarted service finds the cycle closed and publishes nothing.
	nc.Close()
	svc.stop()
	svc = startServiceWithClock(t, dir, io.Discard, clock.Now)
	if k, err := svc.m.cycles.CloseDue(ctx); err != nil || k != 0 {
		t.Fatalf("after a restart, a pass published %d: %v", k, err)
	}
	if m := svc.expect(200, "", "GET", "/metrics", nil).raw; !strings.Contains(m, "licensed_billing_cycles_closed_total 0\n") {
		t.Fatalf("metrics after a restart:\n%s", m)
	}
}
