package systemtest

import (
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
)

// historyBuilder makes a stored history by hand, encoded with the
// service's codec and chained as the service chains it.
type historyBuilder struct {
	t     *testing.T
	codec *codec.Codec
	recs  []eventstore.Record
	heads map[eventstore.StreamID]codec.Hash
	revs  map[eventstore.StreamID]uint64
	at    time.Time
}

func newHistory(t *testing.T) *historyBuilder {
	return &historyBuilder{
		t: t, codec: codec.New(pii.NewKeyring(pii.NewMemoryKeys(), rand.Reader)),
		heads: map[eventstore.StreamID]codec.Hash{}, revs: map[eventstore.StreamID]uint64{},
		at: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC),
	}
}

func (b *historyBuilder) add(account string, e ledger.Event) *historyBuilder {
	b.t.Helper()
	ctx := context.Background()
	if u, ok := e.(ledger.UserAdded); ok {
		if err := b.codec.Keys().Create(ctx, pii.KeyID(account, u.UserID)); err != nil {
			b.t.Fatal(err)
		}
	}
	stream := eventstore.LedgerStream(account)
	if ledger.IsActivity(e) {
		stream = eventstore.ActivityStream(account)
	}
	p, err := b.codec.Encode(ctx, e, codec.Metadata{
		EventID: uuid.New(), Time: b.at, Account: account, Actor: codec.Actor{ID: "op", Role: "operator"},
		PrevHash: b.heads[stream],
	})
	if err != nil {
		b.t.Fatal(err)
	}
	rec := eventstore.Record{ID: p.ID, Stream: stream, Type: p.Type, Data: p.Data, Metadata: p.Metadata,
		Revision: b.revs[stream], Position: eventstore.Position(len(b.recs) + 1), Stored: b.at}
	b.heads[stream] = codec.RecordHash(b.heads[stream], rec)
	b.revs[stream]++
	b.recs = append(b.recs, rec)
	return b
}

// history decodes the records as readHistory does.
func (b *historyBuilder) history() []stored {
	dec := codec.New(pii.NewKeyring(erasedKeys{}, rand.Reader))
	out := make([]stored, len(b.recs))
	for i, r := range b.recs {
		out[i] = decodeRecord(context.Background(), dec, r)
	}
	return out
}

// A story that keeps every invariant, on two accounts.
func goodHistory(t *testing.T) *historyBuilder {
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	return newHistory(t).
		add("acme", ledger.AccountOpened{Account: "acme", Name: "Acme", Seats: 1, At: at}).
		add("acme", ledger.UserAdded{UserID: "ada", Name: "Ada", Email: "ada@acme.test", Role: ledger.RoleAdmin, At: at}).
		add("beta", ledger.AccountOpened{Account: "beta", Name: "Beta", Seats: 2, At: at}).
		add("acme", ledger.ActivityRecorded{ActivityID: "a1", UserID: "ada", Kind: "note", At: at}).
		add("acme", ledger.UserDeactivated{UserID: "ada", At: at}).
		add("acme", ledger.UserAdded{UserID: "bob", Name: "Bob", Email: "bob@acme.test", Role: ledger.RoleAdmin, At: at}).
		add("acme", ledger.ActivityRecorded{ActivityID: "a2", UserID: "bob", Kind: "note", At: at}).
		add("acme", ledger.SeatsPurchased{Count: 1, At: at}).
		add("acme", ledger.UserActivated{UserID: "ada", At: at}).
		add("acme", ledger.ActivityRecorded{ActivityID: "a3", UserID: "ada", Kind: "note", At: at})
}

func TestCheckHistoryFindsBrokenInvariants(t *testing.T) {
	at := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	if bad := checkHistory(goodHistory(t).history(), nil); len(bad) != 0 {
		t.Fatalf("a good history breaks invariants: %q", bad)
	}

	cases := map[string]struct {
		history func(t *testing.T) []stored
		want    string
	}{
		"activity after deactivation": {func(t *testing.T) []stored {
			return goodHistory(t).
				add("acme", ledger.UserDeactivated{UserID: "bob", At: at}).
				add("acme", ledger.ActivityRecorded{ActivityID: "late", UserID: "bob", Kind: "note", At: at}).history()
		}, "activity late of acme by user bob, who is deactivated"},
		"activity after deletion": {func(t *testing.T) []stored {
			return goodHistory(t).
				add("acme", ledger.UserDeleted{UserID: "bob", At: at}).
				add("acme", ledger.ActivityRecorded{ActivityID: "late", UserID: "bob", Kind: "note", At: at}).history()
		}, "who is deleted"},
		"activity by an unknown user": {func(t *testing.T) []stored {
			return goodHistory(t).add("beta", ledger.ActivityRecorded{ActivityID: "x", UserID: "ada", Kind: "note", At: at}).history()
		}, "unknown user ada"},
		"more users than seats": {func(t *testing.T) []stored {
			return goodHistory(t).
				add("acme", ledger.UserAdded{UserID: "cy", Name: "Cy", Email: "cy@acme.test", Role: ledger.RoleMember, At: at}).history()
		}, "acme has 3 active users on 2 seats"},
		"forged copy": {func(t *testing.T) []stored {
			b := goodHistory(t)
			c := b.recs[7] // SeatsPurchased, count 1
			c.Data = []byte(strings.Replace(string(c.Data), `"count":1`, `"count":500`, 1))
			c.Position = eventstore.Position(len(b.recs) + 1)
			b.recs = append(b.recs, c)
			return b.history()
		}, "ledger-acme revision 4, want 6"},
		"tampered payload": {func(t *testing.T) []stored {
			b := goodHistory(t)
			b.recs[7].Data = []byte(strings.Replace(string(b.recs[7].Data), `"count":1`, `"count":2`, 1))
			return b.history()
		}, "ledger-acme revision 5 breaks the hash chain"},
		"garbage": {func(t *testing.T) []stored {
			h := goodHistory(t).history()
			return append(h, decodeMessage(context.Background(), nil, "ledger.acme.SeatsPurchased", nil, []byte("{not json"), uint64(len(h)+1), at))
		}, "not an event the service wrote"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			h := c.history(t)
			bad := checkHistory(h, nil)
			if !strings.Contains(strings.Join(bad, "\n"), c.want) {
				t.Fatalf("violations %q, want one with %q", bad, c.want)
			}
			// A position the test planted itself is not held against the
			// history.
			last := map[eventstore.Position]bool{h[len(h)-1].rec.Position: true}
			if bad := checkHistory(h, last); len(bad) != 0 && name != "tampered payload" {
				t.Fatalf("with the last position planted: %q", bad)
			}
		})
	}
}
