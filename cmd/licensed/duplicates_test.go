package main

import (
	"log/slog"
	"testing"

	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// TestStoreDuplicatesWindow checks that the service opens its JetStream
// store with the short de-duplication window, whatever the durability: a
// restart right after a burst of writes then rereads at most a second of
// them, and no retry of the service (each names its revision) depends on
// the window.
func TestStoreDuplicatesWindow(t *testing.T) {
	for _, d := range []jetstream.Durability{jetstream.DurabilityFsync, jetstream.DurabilityInterval} {
		cfg := jetStreamConfig(backendSettings{cfg: Config{Durability: string(d), Replicas: 1}, log: slog.New(slog.DiscardHandler)})
		if got := jetstream.StreamConfig(cfg).Duplicates; got != jetstream.ShortDuplicates {
			t.Errorf("durability %s: de-duplication window %s, want %s", d, got, jetstream.ShortDuplicates)
		}
	}
}
