package jetstream_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// syncRecord is one fsync of a block file: when (a tick of the test's
// clock) and what the file held then.
type syncRecord struct {
	tick uint64
	data []byte
}

// TestGroupSyncCoversEveryAck checks that each acknowledged append was
// fsynced before Append returned: some fsync of the block file that holds
// the event, made while the file already held the event's bytes, happened
// before Append returned. Skipping the sync, or syncing before the server
// wrote the event, fails it.
func TestGroupSyncCoversEveryAck(t *testing.T) {
	dir := t.TempDir()
	s, err := jetstream.Embedded(t.Context(), jetstream.ServerConfig{DataDir: dir, Port: -1}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rec := recordBlockSyncs(t, s)

	// Concurrent writers, single events and batches, so that rounds serve
	// several appends and appends wait during rounds.
	type acked struct {
		id       uuid.UUID
		returned uint64 // clock when Append returned
	}
	var acks []acked
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			stream := eventstore.LedgerStream(fmt.Sprintf("sync%d", w))
			rev := eventstore.NoStream()
			for n := range 25 {
				evs := events(1 + n%3)
				res, err := s.Append(t.Context(), stream, rev, evs...)
				ret := rec.now()
				if err != nil {
					t.Error(err)
					return
				}
				rev = eventstore.Exact(res.NextRevision)
				mu.Lock()
				for _, e := range evs {
					acks = append(acks, acked{id: e.ID, returned: ret})
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	for _, a := range acks {
		if !rec.covered("LEDGER", []byte(a.id.String()), 1, a.returned) {
			t.Errorf("event %s acknowledged at tick %d: its block file was not synced with it before", a.id, a.returned)
		}
	}
	rounds, named := jetstream.SyncRounds(s), jetstream.SyncedByName(s)
	t.Logf("%d events acknowledged, %d sync rounds, %d streams synced through their open block alone", len(acks), rounds, named)
	if rounds == 0 {
		t.Error("no sync round ran")
	}
	// On Linux the kernel tells which files the server wrote: most rounds
	// sync the ledger's last block without a stat, and the check above
	// covers them.
	if runtime.GOOS == "linux" && named == 0 {
		t.Error("no round synced the stream through its open block alone")
	}
}

// TestGroupSyncCoversConditionalAppends checks that AppendIf, like
// Append, returns only once a sync round has fsynced the events it stored.
func TestGroupSyncCoversConditionalAppends(t *testing.T) {
	s := newStore(t, jetstream.Config{})
	rec := recordBlockSyncs(t, s)
	ctx := t.Context()
	ledger, activity := eventstore.LedgerStream("condsync"), eventstore.ActivityStream("condsync")
	if _, err := s.Append(ctx, ledger, eventstore.NoStream(), events(1)...); err != nil {
		t.Fatal(err)
	}
	rev := eventstore.NoStream()
	for n := range 5 {
		evs := events(1 + n%2)
		res, err := s.AppendIf(ctx, activity, rev, eventstore.Condition{Stream: ledger, Expected: eventstore.Exact(0)}, evs...)
		returned := rec.now()
		if err != nil {
			t.Fatal(err)
		}
		rev = eventstore.Exact(res.NextRevision)
		for _, e := range evs {
			if !rec.covered("LEDGER", []byte(e.ID.String()), 1, returned) {
				t.Errorf("conditional append %d: event %s not synced before AppendIf returned", n, e.ID)
			}
		}
	}
}

// TestGroupSyncFailure checks that an append whose fsync fails returns the
// error instead of an acknowledgement, and that every later append fails
// too: after a failed fsync the kernel may have dropped the pages it could
// not write.
func TestGroupSyncFailure(t *testing.T) {
	s := newStore(t, jetstream.Config{})
	ctx := t.Context()
	stream := eventstore.LedgerStream("fails")
	if _, err := s.Append(ctx, stream, eventstore.NoStream(), events(1)...); err != nil {
		t.Fatal(err)
	}
	broken := errors.New("disk on fire")
	var fail atomic.Bool
	jetstream.SetFileSync(s, func(f *os.File) error {
		if fail.Load() {
			return broken
		}
		return f.Sync()
	})
	fail.Store(true)
	res, err := s.Append(ctx, stream, eventstore.Exact(0), events(1)...)
	if !errors.Is(err, broken) {
		t.Fatalf("append with a failing fsync: %+v, %v; want %v", res, err, broken)
	}
	fail.Store(false)
	if _, err := s.Append(ctx, eventstore.LedgerStream("other"), eventstore.NoStream(), events(1)...); !errors.Is(err, broken) {
		t.Fatalf("append after a failed fsync: %v; want %v", err, broken)
	}
}

// TestGroupSyncOnlyEmbedded checks which stores sync the files
// themselves: an embedded server with fsync durability, not one with
// interval durability.
func TestGroupSyncOnlyEmbedded(t *testing.T) {
	s, err := jetstream.Embedded(t.Context(), jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1, Durability: jetstream.DurabilityInterval}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if jetstream.SetFileSync(s, func(*os.File) error { return nil }) {
		t.Error("interval durability has a group sync")
	}
	if s.Server().JetStreamConfig().SyncAlways {
		t.Error("interval durability runs the server with SyncAlways")
	}
	f := newStore(t, jetstream.Config{})
	if f.Server().JetStreamConfig().SyncAlways {
		t.Error("group sync runs the server with SyncAlways")
	}
	srv, err := jetstream.StartServer(jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer jetstream.StopServer(srv)
	if !srv.JetStreamConfig().SyncAlways {
		t.Error("a server started on its own with fsync durability does not sync every write")
	}
}

// TestGroupSyncLeavesOutUnsynced checks that the group sync of a store
// opened with ServerConfig.Unsynced fsyncs the store's own stream for each
// append and never a file of the stream left out, although that stream
// was written before every append.
func TestGroupSyncLeavesOutUnsynced(t *testing.T) {
	ctx := t.Context()
	s, err := jetstream.Embedded(ctx, jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1, Unsynced: []string{"PUBLISHED"}}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mu sync.Mutex
	var synced []string
	if !jetstream.SetFileSync(s, func(f *os.File) error {
		mu.Lock()
		synced = append(synced, f.Name())
		mu.Unlock()
		return f.Sync()
	}) {
		t.Fatal("no group sync")
	}
	js, err := natsjs.New(s.Conn())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, natsjs.StreamConfig{Name: "PUBLISHED", Subjects: []string{"published.>"}, Storage: natsjs.FileStorage}); err != nil {
		t.Fatal(err)
	}
	stream := eventstore.LedgerStream("unsynced")
	for i := range 3 {
		if _, err := js.Publish(ctx, "published.x", []byte("copy")); err != nil {
			t.Fatal(err)
		}
		expected := eventstore.NoStream()
		if i > 0 {
			expected = eventstore.Exact(uint64(i - 1))
		}
		if _, err := s.Append(ctx, stream, expected, events(1)...); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	own := string(filepath.Separator) + jetstream.StreamName(s) + string(filepath.Separator) + "msgs" + string(filepath.Separator)
	var blocks int
	for _, name := range synced {
		if strings.Contains(name, string(filepath.Separator)+"PUBLISHED") {
			t.Errorf("group sync fsynced %s, of a stream left out", name)
		}
		if strings.Contains(name, own) && strings.HasSuffix(name, ".blk") {
			blocks++
		}
	}
	if blocks < 3 {
		t.Errorf("group sync fsynced the store's blocks %d times for 3 appends: %q", blocks, synced)
	}
}
