package eventstoretest

import (
	"context"

	"github.com/licenseledger/ledger/eventstore"
)

// lastPositioner is the optional capability of a store to tell the
// position of its last event, which the HTTP API uses to refuse a wait
// for a position no write has reached.
type lastPositioner interface {
	LastPosition(ctx context.Context) (eventstore.Position, error)
}

func testLastPosition(h *harness) {
	lp, ok := h.store.(lastPositioner)
	if !ok {
		h.t.Skip("the store does not tell its last position")
	}
	last := func() eventstore.Position {
		h.t.Helper()
		var p eventstore.Position
		if err := h.within("LastPosition", func() (err error) { p, err = lp.LastPosition(h.ctx); return err }); err != nil {
			h.t.Fatalf("LastPosition: %v", err)
		}
		return p
	}
	if p := last(); h.cfg.dense && !h.cfg.shared && p != 0 {
		h.t.Errorf("LastPosition of a new store = %d, want 0", p)
	}
	s := h.ledger()
	for range 3 {
		res := h.append(s, eventstore.Any(), h.events(2)...)
		// No append's position is ever above the last position: a reader
		// told a position by a write must find it reachable.
		p := last()
		if p < res.Position {
			h.t.Fatalf("LastPosition = %d after an append at %d", p, res.Position)
		}
		if h.cfg.dense && !h.cfg.shared && p != res.Position {
			h.t.Errorf("LastPosition = %d after an append at %d, the last event", p, res.Position)
		}
	}
}
