package accounts_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
)

func keyed(key string) accounts.Request {
	r := admin
	r.IdempotencyKey = key
	return r
}

// TestServiceJudgesRepeats: another process, which knows the key only from
// the events' metadata, answers a repeat of the same command with the first
// result and refuses another command under the key, whatever its type.
func TestServiceJudgesRepeats(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	first := e.service(t)
	must(t)(first.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 2, At: t0}, admin))
	must(t)(first.Execute(ctx, "acme", ledger.AddUser{UserID: "ada", Name: "Ada Admin", Email: "ada@acme.test", Role: ledger.RoleAdmin, At: t0}, admin))
	must(t)(first.Execute(ctx, "acme", ledger.PurchaseSeats{Count: 2, At: t0}, keyed("buy")))
	added := must(t)(first.Execute(ctx, "acme", ledger.AddUser{UserID: "bob", Name: "Bob Member", Email: "bob@acme.test", Role: ledger.RoleMember, At: t0}, keyed("add")))
	name := "Bob B. Member"
	must(t)(first.Execute(ctx, "acme", ledger.UpdateUser{UserID: "bob", Name: &name, At: t0}, keyed("rename")))
	must(t)(first.Execute(ctx, "acme", ledger.DeactivateUser{UserID: "bob", Reason: "on leave", At: t0}, keyed("leave")))
	n := countEvents(t, e.store)

	other := e.service(t)
	other2 := "Bobby"
	admin := ledger.RoleAdmin
	cases := []struct {
		name string
		key  string
		cmd  ledger.Command
		same bool
	}{
		{"same purchase", "buy", ledger.PurchaseSeats{Count: 2, At: t0}, true},
		{"another count", "buy", ledger.PurchaseSeats{Count: 3, At: t0}, false},
		{"another command", "buy", ledger.ScheduleSeatReduction{Count: 2, At: t0}, false},
		{"same user added, new id drawn", "add", ledger.AddUser{UserID: "bob2", Name: " Bob Member ", Email: "BOB@acme.test", Role: ledger.RoleMember, At: t0}, true},
		{"another email", "add", ledger.AddUser{UserID: "bob3", Name: "Bob Member", Email: "bob2@acme.test", Role: ledger.RoleMember, At: t0}, false},
		{"another name", "add", ledger.AddUser{UserID: "bob4", Name: "Rob Member", Email: "bob@acme.test", Role: ledger.RoleMember, At: t0}, false},
		{"another role", "add", ledger.AddUser{UserID: "bob5", Name: "Bob Member", Email: "bob@acme.test", Role: ledger.RoleAdmin, At: t0}, false},
		{"same rename", "rename", ledger.UpdateUser{UserID: "bob", Name: &name, At: t0}, true},
		{"another name given", "rename", ledger.UpdateUser{UserID: "bob", Name: &other2, At: t0}, false},
		{"a role given too", "rename", ledger.UpdateUser{UserID: "bob", Name: &name, Role: &admin, At: t0}, false},
		{"same reason", "leave", ledger.DeactivateUser{UserID: "bob", Reason: "on leave", At: t0}, true},
		{"another reason", "leave", ledger.DeactivateUser{UserID: "bob", Reason: "left", At: t0}, false},
		{"another user", "leave", ledger.DeactivateUser{UserID: "ada", Reason: "on leave", At: t0}, false},
		{"an unknown command", "buy", unknownCommand{ledger.PurchaseSeats{Count: 2, At: t0}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := other.Execute(ctx, "acme", c.cmd, keyed(c.key))
			switch {
			case c.same && (err != nil || !r.Repeated):
				t.Fatalf("a repeat: %v, repeated %v", err, r.Repeated)
			case !c.same && !errors.Is(err, accounts.ErrIdempotencyKeyReused):
				t.Fatalf("another command under the key: %v, repeated %v", err, r.Repeated)
			}
		})
	}
	if got := countEvents(t, e.store); got != n {
		t.Fatalf("repeats and refusals appended %d events", got-n)
	}
	if again := must(t)(other.Execute(ctx, "acme", cases[3].cmd, keyed("add"))); again.Events[0].Meta.EventID != added.Events[0].Meta.EventID {
		t.Fatal("the repeat did not answer the first result")
	}
}

// unknownCommand is a command the service does not know how to judge.
type unknownCommand struct{ ledger.PurchaseSeats }

// TestFingerprintHoldsNoPersonalData: the fingerprints recorded hold
// neither the personal data of the command nor a plain hash of it, and
// once the user is deleted nothing can recompute them; a repeat is then
// judged on what is not personal.
func TestFingerprintHoldsNoPersonalData(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc := e.service(t)
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 3, At: t0}, admin))
	must(t)(svc.Execute(ctx, "acme", ledger.AddUser{UserID: "ada", Name: "Ada Admin", Email: "ada@acme.test", Role: ledger.RoleAdmin, At: t0}, admin))
	add := ledger.AddUser{UserID: "zed", Name: "Zed Zebulon", Email: "zed@acme.test", Role: ledger.RoleMember, At: t0}
	must(t)(svc.Execute(ctx, "acme", add, keyed("add")))
	name, email := "Zora Zebulon", "zora@acme.test"
	must(t)(svc.Execute(ctx, "acme", ledger.UpdateUser{UserID: "zed", Name: &name, Email: &email, At: t0}, keyed("rename")))
	must(t)(svc.Execute(ctx, "acme", ledger.DeactivateUser{UserID: "zed", Reason: "Zed asked for leave", At: t0}, keyed("leave")))

	var forms []string
	for _, s := range []string{"Zed Zebulon", "zed@acme.test", "Zora Zebulon", "zora@acme.test", "Zed asked for leave"} {
		sum := sha256.Sum256([]byte(s))
		forms = append(forms, s, hex.EncodeToString(sum[:])[:16], base64.StdEncoding.EncodeToString(sum[:])[:12])
	}
	var prints int
	for r, err := range e.store.ReadStream(ctx, eventstore.LedgerStream("acme"), 0) {
		if err != nil {
			t.Fatal(err)
		}
		m, err := codec.DecodeMetadata(r)
		if err != nil {
			t.Fatal(err)
		}
		if m.CommandFingerprint != "" {
			prints++
		}
		for _, f := range forms {
			if strings.Contains(string(r.Metadata), f) {
				t.Errorf("%s metadata holds %q: %s", r.Type, f, r.Metadata)
			}
		}
	}
	if prints != 3 {
		t.Fatalf("%d events carry a fingerprint, want 3", prints)
	}

	must(t)(svc.Execute(ctx, "acme", ledger.DeleteUser{UserID: "zed", Confirm: "zed", At: t0}, admin))
	keys := pii.NewKeyring(e.keys, nil)
	if _, err := keys.Fingerprint(ctx, pii.KeyID("acme", "zed"), []byte("Zed Zebulon")); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("a fingerprint under a deleted user's key: %v, want ErrErased", err)
	}
	fresh := e.service(t)
	add.UserID = "zed-again"
	if r, err := fresh.Execute(ctx, "acme", add, keyed("add")); err != nil || !r.Repeated {
		t.Fatalf("a repeat after deletion: %v, repeated %v", err, r.Repeated)
	}
	add.Role = ledger.RoleAdmin
	if _, err := fresh.Execute(ctx, "acme", add, keyed("add")); !errors.Is(err, accounts.ErrIdempotencyKeyReused) {
		t.Fatalf("another role after deletion: %v, want ErrIdempotencyKeyReused", err)
	}
}

// TestEventWithoutFingerprintIsNotTheSame: a key recorded without a
// fingerprint (by a version that recorded none) cannot be judged: a
// command given under it is refused rather than taken for a repeat.
func TestEventWithoutFingerprintIsNotTheSame(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	svc := e.service(t)
	must(t)(svc.Execute(ctx, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 3, At: t0}, admin))
	c := codec.New(pii.NewKeyring(e.keys, nil))
	var head codec.Hash
	for r, err := range e.store.ReadStream(ctx, eventstore.LedgerStream("acme"), 0) {
		if err != nil {
			t.Fatal(err)
		}
		head = codec.RecordHash(head, r)
	}
	p, err := c.Encode(ctx, ledger.SeatsPurchased{Count: 1, At: t0}, codec.Metadata{EventID: [16]byte{1, 2, 3}, Time: t0, Account: "acme",
		Actor: admin.Actor, IdempotencyKey: "old", PrevHash: head})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Append(ctx, eventstore.LedgerStream("acme"), eventstore.ExpectRevisionAfter(1), p); err != nil {
		t.Fatal(err)
	}
	if _, err := e.service(t).Execute(ctx, "acme", ledger.PurchaseSeats{Count: 1, At: t0}, keyed("old")); !errors.Is(err, accounts.ErrIdempotencyKeyReused) {
		t.Fatalf("a command under a key recorded without fingerprint: %v, want ErrIdempotencyKeyReused", err)
	}
}
