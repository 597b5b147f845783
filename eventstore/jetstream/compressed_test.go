package jetstream_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// TestCompressedReads checks every read of the store over a stream whose
// full blocks are compressed (the service's default), on a server
// restarted after they were written, so that each read loads and
// decompresses the blocks it needs: an account's streams read whole and
// from a later revision (an ordered consumer, and message gets for a
// short stream), a stream's last event and the check of an append after
// it, a subscription from a position inside a compressed block (the read
// models' follow after a restart from a snapshot), and ReadAll from the
// block files and through the server from a position inside one. Each
// yields what was appended, in order.
func TestCompressedReads(t *testing.T) {
	defer jetstream.SetMinFileRead(jetstream.SetMinFileRead(16))
	ctx := t.Context()
	scfg := jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1, Durability: jetstream.DurabilityInterval}
	cfg := jetstream.Config{Compress: true}
	s, err := jetstream.Embedded(ctx, scfg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 3000)
	ledger, activity, short := eventstore.LedgerStream("acme"), eventstore.ActivityStream("acme"), eventstore.LedgerStream("tiny")
	ids := map[eventstore.StreamID][]uuid.UUID{}
	add := func(stream eventstore.StreamID, evs []eventstore.Proposed) {
		t.Helper()
		if _, err := s.Append(ctx, stream, eventstore.ExpectRevisionAfter(uint64(len(ids[stream]))), evs...); err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			ids[stream] = append(ids[stream], e.ID)
		}
	}
	// About 12 MB: three full blocks of 4 MB, the short stream's events
	// in the first two.
	for i := range 40 {
		evs := events(100)
		for j := range evs {
			evs[j].Data = []byte(`{"seats":1,"note":"` + big + `"}`)
		}
		add([]eventstore.StreamID{ledger, activity}[i%2], evs)
		if i%8 == 0 {
			add(short, events(2))
		}
	}
	blks, err := filepath.Glob(filepath.Join(s.Server().JetStreamConfig().StoreDir, "*", "streams", jetstream.StreamName(s), "msgs", "*.blk"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for n := countCompressed(t, blks); n < 2; n = countCompressed(t, blks) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d blocks compressed, want at least 2", n, len(blks))
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Close()

	s, err = jetstream.Embedded(ctx, scfg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The same store over a connection of its own reads through the
	// server only.
	nc, err := nats.Connect(s.Server().ClientURL(), nats.InProcessServer(s.Server()))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	viaServer, err := jetstream.Open(ctx, nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer viaServer.Close()

	idsOf := func(what string, seq func(func(eventstore.Record, error) bool)) ([]uuid.UUID, []eventstore.Record) {
		t.Helper()
		var got []uuid.UUID
		var recs []eventstore.Record
		for rec, err := range seq {
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			got = append(got, rec.ID)
			recs = append(recs, rec)
		}
		return got, recs
	}
	for _, st := range []eventstore.StreamID{ledger, activity, short} {
		for _, from := range []uint64{0, 3, uint64(len(ids[st])) - 1} {
			got, _ := idsOf(fmt.Sprint("read ", st, " from ", from), s.ReadStream(ctx, st, from))
			if want := ids[st][from:]; !slices.Equal(got, want) {
				t.Fatalf("%s from revision %d: %d events read, want the %d appended, in order", st, from, len(got), len(want))
			}
		}
	}
	last, err := s.LastEvent(ctx, short)
	if err != nil || last.ID != ids[short][len(ids[short])-1] {
		t.Fatalf("last event of %s: %v %v, want %v", short, last.ID, err, ids[short][len(ids[short])-1])
	}
	if _, err := s.Append(ctx, short, eventstore.ExpectRevisionAfter(uint64(len(ids[short])-1)), events(1)...); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("append to %s expecting a revision before its last: %v, want a conflict", short, err)
	}
	add(short, events(1))

	// ReadAll through the server is what the other reads are held to.
	all, recs := idsOf("read all through the server", viaServer.ReadAll(ctx, 0))
	if n := len(ids[ledger]) + len(ids[activity]) + len(ids[short]); len(all) != n {
		t.Fatalf("read all through the server: %d events, want %d", len(all), n)
	}
	for _, after := range []eventstore.Position{0, 1500, recs[len(recs)-20].Position} {
		before := jetstream.FileReads(s)
		got, _ := idsOf(fmt.Sprint("read all after ", after), s.ReadAll(ctx, after))
		if !slices.Equal(got, all[after:]) {
			t.Fatalf("read all after %d from the files: %d events, want %d in order", after, len(got), len(all)-int(after))
		}
		if n := jetstream.FileReads(s) - before; n != uint64(len(got)) {
			t.Fatalf("read all after %d: %d of %d events from the files", after, n, len(got))
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	const after = 2500
	var followed []uuid.UUID
	for rec, err := range s.Subscribe(sctx, after) {
		if err != nil {
			t.Fatalf("subscription after %d: %v (%d events read)", after, err, len(followed))
		}
		followed = append(followed, rec.ID)
		if len(followed) == len(all)-after {
			break
		}
	}
	if !slices.Equal(followed, all[after:]) {
		t.Fatalf("subscription after %d: %d events, want %d in order", after, len(followed), len(all)-after)
	}
}

// countCompressed returns how many of the block files are compressed.
func countCompressed(t *testing.T, blks []string) int {
	t.Helper()
	n := 0
	for _, f := range blks {
		if compressed(t, []string{f}) {
			n++
		}
	}
	return n
}
