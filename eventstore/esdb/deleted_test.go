package esdb_test

import (
	"errors"
	"testing"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/licenseledger/ledger/eventstore"
)

// A ledger stream tombstoned in the middle of $all, and one tombstoned
// last, leave ReadAll reading every other event and ending.
func TestReadAllPastDeletedStreams(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	s := open(t, srv.ConnectionString())
	raw := rawClient(t, srv.ConnectionString())
	var want []eventstore.Position
	for _, account := range []string{"gone", "kept", "last"} {
		res, err := s.Append(ctx, eventstore.LedgerStream(account), eventstore.NoStream(), proposed(2)...)
		if err != nil {
			t.Fatal(err)
		}
		if account == "kept" {
			want = append(want, res.Position)
		}
	}
	for _, name := range []string{"ledger-gone", "ledger-last"} {
		if _, err := raw.TombstoneStream(ctx, name, client.TombstoneStreamOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var got []eventstore.Position
	for rec, err := range s.ReadAll(ctx, 0) {
		if err != nil && !errors.Is(err, eventstore.ErrUnreadable) {
			t.Fatal(err)
		}
		if rec.Stream == eventstore.LedgerStream("kept") {
			got = append(got, rec.Position)
		}
	}
	if len(got) != 2 || got[1] != want[0] {
		t.Fatalf("ReadAll read the kept stream's events at %v, want both, the last at %d", got, want[0])
	}
}
