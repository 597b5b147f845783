package relay_test

import (
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/relay"
)

// TestRemovedLastMessage: an operator removes the last message the relay
// published (nats stream rmm). The stream's last sequence stays, with no
// message at it; a restarted relay takes its checkpoint from the last
// message the stream still holds and relays on, the removed event again
// once the de-duplication window has passed, rather than stop for good
// with ErrNoCheckpoint.
func TestRemovedLastMessage(t *testing.T) {
	ctx := testCtx(t)
	srv := startNATS(t)
	store, h := filledStore(t, 3, 2)
	_, rjs := connect(t, srv, "relay")
	r := newRelay(t, relay.Config{Source: store, JS: rjs, Duplicates: time.Second})
	stop := runRelay(ctx, r)
	recs := records(t, store)
	waitFor(t, ctx, "every event relayed", func() bool { return r.Status().Relayed >= recs[len(recs)-1].Position })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	st, err := rjs.Stream(ctx, contract.Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, info.State.LastSeq); err != nil {
		t.Fatal(err)
	}

	if err := h.account(ctx, "after", 1); err != nil {
		t.Fatal(err)
	}
	r = newRelay(t, relay.Config{Source: store, JS: rjs, Duplicates: time.Second})
	stop = runRelay(ctx, r)
	recs = records(t, store)
	waitFor(t, ctx, "the events after the removal relayed", func() bool { return r.Status().Relayed >= recs[len(recs)-1].Position })
	if err := stop(); err != nil {
		t.Fatalf("Run after the last message was removed: %v", err)
	}
	last, err := st.GetLastMsgForSubject(ctx, "events.>")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := last.Header.Get("Nats-Msg-Id"), recs[len(recs)-1].ID.String(); got != want {
		t.Fatalf("the stream ends with event %s, want the store's last %s", got, want)
	}
}
