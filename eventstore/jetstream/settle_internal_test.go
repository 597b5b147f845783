package jetstream

import (
	"testing"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
)

// A head read for the same sequence without the last event's id (as
// ConfirmEnds gives it) does not replace a cached head that has the id:
// an append checked against the cached one would otherwise find its view
// moved, and a retry after a lost answer would not find its own event.
func TestSettleKeepsAnEqualHeadWithItsID(t *testing.T) {
	ctx := t.Context()
	s, err := Embedded(ctx, ServerConfig{DataDir: t.TempDir(), Port: -1}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.chain == nil {
		t.Fatal("the store does not sequence its appends")
	}
	x := eventstore.LedgerStream("acme")
	e := eventstore.Proposed{ID: uuid.New(), Type: "SeatsPurchased", Data: []byte(`{}`)}
	if _, err := s.Append(ctx, x, eventstore.NoStream(), e); err != nil {
		t.Fatal(err)
	}
	h, ok := s.cachedHead(x)
	if !ok || h.lastID != e.ID.String() {
		t.Fatalf("cached head %+v, %v; want its last id %s", h, ok, e.ID)
	}
	s.settle(s.chainGen(), x, head{n: h.n, seq: h.seq})
	if got, _ := s.cachedHead(x); got != h {
		t.Errorf("cached head %+v after an equal one without its id, want %+v", got, h)
	}
}
