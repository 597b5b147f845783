package translog_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/internal/translog"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/runner"
	"github.com/licenseledger/ledger/projections/seats"
)

// A log fed by the read models' runner holds every stored record in
// global order, foreign ones included, also when the feed has no room
// for most records (they are read from the store again), and signs a
// checkpoint of them unasked.
func TestTreeFedByRunner(t *testing.T) {
	// Each store, and a function writing records that are no events of
	// the service into it: on EventStoreDB, in an account's stream and in
	// "ledger-", which the store reads as unreadable.
	for name, open := range map[string]func(t *testing.T) (eventstore.Store, func(context.Context, *testing.T)){
		"jetstream": func(t *testing.T) (eventstore.Store, func(context.Context, *testing.T)) {
			store := jetstreamStore(t)
			return store, func(ctx context.Context, t *testing.T) {
				j, err := natsjs.New(store.Conn())
				if err != nil {
					t.Fatal(err)
				}
				if _, err := j.Publish(ctx, "ledger.globex.SeatsPurchased", []byte("{not an event")); err != nil {
					t.Fatal(err)
				}
			}
		},
		"esdb": func(t *testing.T) (eventstore.Store, func(context.Context, *testing.T)) {
			srv, store := esdbServerStore(t)
			return store, func(ctx context.Context, t *testing.T) {
				raw := esdbRawClient(t, srv)
				for _, stream := range []string{"ledger-globex", "ledger-"} {
					if _, err := raw.AppendToStream(ctx, stream, esdbclient.AppendToStreamOptions{ExpectedRevision: esdbclient.Any{}},
						esdbclient.EventData{EventID: uuid.New(), EventType: "SeatsPurchased", ContentType: esdbclient.ContentTypeBinary,
							Data: []byte("{not an event")}); err != nil {
						t.Fatal(err)
					}
				}
			}
		},
	} {
		for _, size := range []int{1, 0} {
			t.Run(fmt.Sprintf("%s/feed-%d", name, size), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				store, writeForeign := open(t)
				e := newLedger(t, store)
				// Records stored before both start, then while they run.
				e.do(t, "initech", ledger.OpenAccount{Account: "initech", Name: "Initech", Seats: 3, At: e.at()})
				feed := eventstore.NewFeed(size)
				r := runner.New(runner.Config{Store: store, Codec: codec.New(pii.NewKeyring(e.keys, rand.Reader)),
					Projections: []projections.Projection{seats.New()}, OnRecord: feed.Offer})
				dir := t.TempDir()
				l, err := translog.Open(translog.Config{Dir: dir, Key: newKey(t, dir), SignEvery: 50 * time.Millisecond, Feed: feed})
				if err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 2)
				go func() { done <- r.Run(ctx) }()
				go func() { done <- l.Run(ctx, store) }()
				t.Cleanup(func() {
					cancel()
					for range 2 {
						if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
							t.Errorf("run: %v", err)
						}
					}
					l.Close()
				})
				e.history(t)
				writeForeign(ctx, t)
				e.do(t, "globex", ledger.PurchaseSeats{Count: 1, At: e.at()})
				wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
				defer wcancel()
				if err := l.Wait(wctx, e.last); err != nil {
					t.Fatal(err)
				}
				var leaves [][]byte
				for rec, err := range store.ReadAll(ctx, 0) {
					if err != nil && !errors.Is(err, eventstore.ErrUnreadable) {
						t.Fatal(err)
					}
					leaves = append(leaves, translog.LeafData(rec, err))
				}
				if got := l.Size(); got != int64(len(leaves)) {
					t.Fatalf("tree of %d leaves, store holds %d records", got, len(leaves))
				}
				root, err := l.TreeHash(l.Size())
				if err != nil {
					t.Fatal(err)
				}
				if want := naiveRoot(leaves); root != want {
					t.Fatalf("root %s, want %s from the records in global order", root, want)
				}
				waitSigned(t, l, int64(len(leaves)), root)
			})
		}
	}
}

// waitSigned waits, without asking for a checkpoint, until the log signed
// one of size leaves with root: checkpoints are signed at least every
// SignEvery while the tree grows.
func waitSigned(t *testing.T, l *translog.Log, size int64, root tlog.Hash) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		if s := l.Latest(); s != nil && s.Size >= size {
			if s.Size != size || s.Hash != root {
				t.Fatalf("signed a checkpoint of %d leaves, root %s; want %d, %s", s.Size, s.Hash, size, root)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of %d leaves signed; the last is %+v", size, l.Latest())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// While the ledger moves, a log following the store on its own signs
// checkpoints unasked, on each store.
func TestCheckpointsSignedWhileTheLedgerMoves(t *testing.T) {
	for name, open := range stores() {
		t.Run(name, func(t *testing.T) {
			store := open(t)
			e := newLedger(t, store)
			e.do(t, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 3, At: e.at()})
			dir := t.TempDir()
			l := runLog(t, store, dir, newKey(t, dir), e.last)
			for i := range 3 {
				e.do(t, "acme", ledger.PurchaseSeats{Count: i + 1, At: e.at()})
				if err := l.Wait(context.Background(), e.last); err != nil {
					t.Fatal(err)
				}
				root, err := l.TreeHash(l.Size())
				if err != nil {
					t.Fatal(err)
				}
				waitSigned(t, l, int64(i+2), root)
			}
		})
	}
}
