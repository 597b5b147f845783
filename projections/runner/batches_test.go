package runner_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/projections"
	lfixture "github.com/licenseledger/ledger/projections/internal/fixture"
	"github.com/licenseledger/ledger/projections/runner"
)

// A catch-up over many of the runner's batches, read from the store's
// block files (more than the 4,096 records from which ReadAll reads
// them), with foreign records among the events, leaves every read model
// of the service byte for byte as a fold of the same records one at a
// time, each verified against its stream's chain (codec.DecodeNext) and
// the foreign ones skipped: the batches the fold verifies and folds in
// place, the slices the stages hand back to each other and the read's
// in-place parsing change nothing of what is folded.
func TestCatchUpEqualsFoldOneByOne(t *testing.T) {
	ctx := context.Background()
	l, err := lfixture.History(ctx, 8, 700)
	if err != nil {
		t.Fatal(err)
	}
	st, err := jetstream.Embedded(ctx, jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1, Durability: jetstream.DurabilityInterval}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	js, err := natsjs.New(st.Conn())
	if err != nil {
		t.Fatal(err)
	}
	foreign := 0
	for i, r := range l.Records() {
		p := eventstore.Proposed{ID: r.ID, Type: r.Type, Data: r.Data, Metadata: r.Metadata}
		if _, err := st.Append(ctx, r.Stream, eventstore.ExpectRevisionAfter(r.Revision), p); err != nil {
			t.Fatal(err)
		}
		if i%997 == 500 {
			// Not an event the store wrote: quarantined, in the middle
			// of a batch.
			m := &nats.Msg{Subject: "ledger." + r.Stream.Account + ".SeatsPurchased", Data: []byte(fmt.Sprintf("{not json %d", i))}
			if _, err := js.PublishMsg(ctx, m); err != nil {
				t.Fatal(err)
			}
			foreign++
		}
	}
	clock := func() time.Time { return time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC) }
	models := func() []projections.Projection {
		return append(freshModels(), accounts.NewReadModel(clock, 0))
	}
	newCodec := func() *codec.Codec { return codec.New(pii.NewKeyring(l.KeyStore, rand.Reader)) }

	// The reference: one record at a time.
	want := models()
	c := newCodec()
	links := map[eventstore.StreamID]*codec.Link{}
	n, skipped := 0, 0
	var last eventstore.Position
	for rec, err := range st.ReadAll(ctx, 0) {
		last = rec.Position
		if errors.Is(err, eventstore.ErrUnreadable) {
			skipped++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		lk := links[rec.Stream]
		if lk == nil {
			lk = new(codec.Link)
			links[rec.Stream] = lk
		}
		d, err := c.DecodeNext(ctx, lk, rec)
		if err != nil {
			if !codec.Unfoldable(err) {
				t.Fatal(err)
			}
			skipped++
			continue
		}
		if err := projections.Set(want).Apply(d); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != len(l.Records()) || skipped != foreign || n < 4096 {
		t.Fatalf("the reference folded %d records and skipped %d, want %d (at least 4,096) and %d", n, skipped, len(l.Records()), foreign)
	}

	got := models()
	r, stop := start(t, runner.Config{Store: st, Codec: newCodec(), Projections: got, Fresh: models})
	defer stop()
	waitFor(t, r, last)
	if q := r.QuarantinedCount(); q != uint64(foreign) {
		t.Fatalf("%d records quarantined, want %d", q, foreign)
	}
	for i, p := range want {
		if held, ok := p.(*accounts.ReadModel); ok {
			// Its snapshot is a gob of a map, in no set order: the
			// accounts' states loaded from each read model are compared.
			for _, acct := range accountsOf(l.Records()) {
				var states [2]ledger.State
				for j, m := range []*accounts.ReadModel{held, got[i].(*accounts.ReadModel)} {
					svc := accounts.New(accounts.Config{Store: st, Codec: newCodec(), Clock: clock, NewEventID: uuid.New, NewULID: ulid.Make, States: m})
					if states[j], err = svc.State(ctx, acct); err != nil {
						t.Fatal(err)
					}
				}
				if !reflect.DeepEqual(states[0], states[1]) {
					t.Errorf("%s loaded from the accounts' read model after catching up differs from the fold one by one", acct)
				}
			}
			continue
		}
		w, err := p.(projections.Snapshotter).Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		g, err := got[i].(projections.Snapshotter).Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(g, w) {
			t.Errorf("%s after catching up differs from the fold one by one (%d bytes, want %d)", p.Name(), len(g), len(w))
		}
	}
}

// accountsOf returns the accounts of recs, in the order they first appear.
func accountsOf(recs []eventstore.Record) []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range recs {
		if !seen[r.Stream.Account] {
			seen[r.Stream.Account] = true
			out = append(out, r.Stream.Account)
		}
	}
	return out
}
