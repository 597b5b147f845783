package jetstream

import (
	"context"
	"os"
	"time"

	"github.com/nats-io/nats.go"
)

// BatchStats returns how many coalesced batches s committed and how many
// events they held.
func BatchStats(s *Store) (batches, events uint64) { return s.batches.Load(), s.batched.Load() }

// SetFileSync replaces the function the group sync of s fsyncs each file
// and directory with; call it before the first append. It reports false
// when s has no group sync.
func SetFileSync(s *Store, f func(*os.File) error) bool {
	if s.syncer == nil {
		return false
	}
	s.syncer.mu.Lock()
	defer s.syncer.mu.Unlock()
	s.syncer.fsync = f
	return true
}

// SyncRounds returns how many group sync rounds s ran.
func SyncRounds(s *Store) uint64 {
	if s.syncer == nil {
		return 0
	}
	return s.syncer.rounds.Load()
}

// SyncedByName returns how many times a group sync round of s synced a
// stream through its open block alone (the kernel told that only that
// file was written).
func SyncedByName(s *Store) uint64 {
	if s.syncer == nil {
		return 0
	}
	return s.syncer.named.Load()
}

// SetStreamBatch sets how many messages the ordered consumer of a
// ReadStream asks for at once, and returns the previous number. Call it
// when no read runs.
func SetStreamBatch(n int) int {
	old := streamBatch
	streamBatch = n
	return old
}

// StreamName returns the name of the JetStream stream s stores events in.
func StreamName(s *Store) string { return s.cfg.Stream }

// FileReads returns how many messages ReadAll read from the stream's
// block files rather than through the server.
func FileReads(s *Store) uint64 { return s.fileReads.Load() }

// SetMinFileRead sets the fewest messages ReadAll reads from the stream's
// files, and returns the previous number. Call it when no read runs.
func SetMinFileRead(n uint64) uint64 {
	old := minFileRead
	minFileRead = n
	return old
}

// ChainStats returns how many sequenced appends of s were sent behind
// another in flight, and how many times the chain resynced; ok is false
// when s does not sequence its appends.
func ChainStats(s *Store) (pipelined, resyncs uint64, ok bool) {
	if s.chain == nil {
		return 0, 0, false
	}
	s.chain.mu.Lock()
	defer s.chain.mu.Unlock()
	return s.chain.pipelined, s.chain.resyncs, true
}

// SetAnswerTimeout sets how long a sequenced append waits for its
// answer, and returns the previous bound. Call it when no append runs.
func SetAnswerTimeout(d time.Duration) time.Duration {
	old := answerTimeout
	answerTimeout = d
	return old
}

// OpenSequenced opens a store over nc that sequences its appends as a
// store with group sync does, without syncing any file: a second writer
// with sequenced appends on a stream another store writes.
func OpenSequenced(ctx context.Context, nc *nats.Conn, cfg Config) (*Store, error) {
	s, err := open(ctx, nc, cfg, nil)
	if err != nil {
		return nil, err
	}
	var last uint64
	if info := s.stream.CachedInfo(); info != nil {
		last = info.State.LastSeq
	}
	s.chain = newChain(last)
	return s, nil
}

// BlocksFrom returns the indexes of the block files in dir that a read
// from sequence first opens, in order.
func BlocksFrom(dir string, first uint64) ([]uint64, error) {
	bs, err := blocksFrom(dir, first)
	var idx []uint64
	for _, b := range bs {
		idx = append(idx, b.index)
	}
	return idx, err
}
