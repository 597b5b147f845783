package runner_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/runner"
)

// A stored event in its stream's chain whose payload lacks members its
// registration requires (a UserAdded without a name or email) is
// quarantined as malformed, never folded as a user with a blank name.
func TestIncompletePayloadQuarantined(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.story(t, "acme", 2)

	// The chain's head, from the stream as stored.
	stream := eventstore.LedgerStream("acme")
	var head codec.Hash
	var rev uint64
	for r, err := range f.store.ReadStream(ctx, stream, 0) {
		if err != nil {
			t.Fatal(err)
		}
		head = codec.NextHash(head, eventstore.Proposed{ID: r.ID, Type: r.Type, Data: r.Data, Metadata: r.Metadata})
		rev = r.Revision
	}
	// A writer that left members out, chaining the event properly.
	at := time.Date(2026, 1, 6, 8, 0, 0, 0, time.UTC)
	if err := f.codec.Keys().Create(ctx, pii.KeyID("acme", "u9")); err != nil {
		t.Fatal(err)
	}
	p, err := f.codec.Encode(ctx, ledger.UserAdded{UserID: "u9", Name: "N", Email: "n@acme.test", Role: ledger.RoleMember, At: at},
		codec.Metadata{EventID: uuid.New(), Time: at, Account: "acme", Actor: codec.Actor{ID: "op", Role: "operator"}, PrevHash: head})
	if err != nil {
		t.Fatal(err)
	}
	p.Data = []byte(`{"user_id":"u9","role":"member","at":"2026-01-06T08:00:00Z"}`)
	res, err := f.store.Append(ctx, stream, eventstore.Exact(rev), p)
	if err != nil {
		t.Fatal(err)
	}

	ty := newTally()
	r, stop := start(t, runner.Config{Store: f.store, Codec: f.codec, Projections: []projections.Projection{ty}})
	defer stop()
	waitFor(t, r, res.Position)
	q := r.Quarantined("acme", 0, 0)
	if len(q) != 1 || q[0].Position != res.Position || !strings.Contains(q[0].Reason, "malformed") {
		t.Fatalf("quarantined %+v, want the incomplete UserAdded at %d as malformed", q, res.Position)
	}
	if types, _ := ty.snapshot(); types[ledger.TypeUserAdded] != 2 {
		t.Errorf("folded %d UserAdded, want the 2 complete ones", types[ledger.TypeUserAdded])
	}
}
