package translog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/licenseledger/ledger/eventstore"
)

// Files of a log's directory.
const (
	hashesFile = "hashes"    // the stored hashes, 32 bytes each, in tlog's storage order
	leavesFile = "positions" // the global position of each leaf, 8 bytes each
	treeFile   = "tree"      // the last signed tree: a checkpoint body
)

// DefaultSignEvery is how often a checkpoint is signed while the log grows.
const DefaultSignEvery = 10 * time.Second

// Config holds what a Log needs.
type Config struct {
	// Dir holds the log's files (created when missing).
	Dir string
	// Key signs checkpoints; its name is the log's origin.
	Key Key
	// SignEvery is the longest time between two checkpoints while the log
	// grows (DefaultSignEvery when 0).
	SignEvery time.Duration
	// Feed, if set, gives Run the records the read models' runner reads,
	// once Run caught up: Run then follows the store through it (reading
	// the store only for records the feed lacks) instead of subscribing.
	Feed   *eventstore.Feed
	Logger *slog.Logger
	Clock  func() time.Time
}

// Log is the Merkle tree over the store's records with its signed
// checkpoints. One goroutine appends (Run, or Append in tests); proofs,
// checkpoints and lookups are safe for concurrent use with it.
type Log struct {
	cfg    Config
	origin string
	log    *slog.Logger

	hashes, leaves *os.File

	mu        sync.RWMutex
	n         int64                 // leaves in the tree (readers see only these)
	positions []eventstore.Position // the global position of each leaf

	// The writer's: the newest stored hash of each level (the tree's
	// right frontier, all StoredHashes ever reads back) and hashes
	// computed but not yet written.
	frontier []frontierHash
	pending  []tlog.Hash
	written  int64 // stored hashes in the file
	// leafBuf, flushBuf and posBuf are kept from one append to the next.
	leafBuf, flushBuf, posBuf []byte
	posScratch                []eventstore.Position

	signMu sync.Mutex
	signed atomic.Pointer[Signed]

	ready   atomic.Bool
	stopped atomic.Pointer[error] // why Run stopped, other than its ctx ending
	wakeMu  sync.Mutex
	wake    chan struct{}
}

type frontierHash struct {
	index int64
	hash  tlog.Hash
}

// Signed is a signed checkpoint: its body and the signed note.
type Signed struct {
	Checkpoint
	Note []byte
	At   time.Time
}

// Open opens the log in cfg.Dir: it resumes from the tree recorded at the
// last checkpoint, checked against its root hash, and drops what was
// appended after it (Run appends it again from the store). A tree whose
// files do not hold what the record says is rebuilt from the first record.
func Open(cfg Config) (*Log, error) {
	if cfg.SignEvery <= 0 {
		cfg.SignEvery = DefaultSignEvery
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Key.Signer == nil {
		return nil, errors.New("translog: no signing key")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	l := &Log{cfg: cfg, origin: cfg.Key.Signer.Name(), log: cfg.Logger, wake: make(chan struct{})}
	var err error
	if l.hashes, err = os.OpenFile(filepath.Join(cfg.Dir, hashesFile), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("log hashes: %w", err)
	}
	if l.leaves, err = os.OpenFile(filepath.Join(cfg.Dir, leavesFile), os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		l.hashes.Close()
		return nil, fmt.Errorf("log positions: %w", err)
	}
	if err := l.resume(); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// Origin returns the log's origin: the first line of its checkpoints and
// the name of its key.
func (l *Log) Origin() string { return l.origin }

// VerifierKey returns the verifier key of the log's checkpoints.
func (l *Log) VerifierKey() string { return l.cfg.Key.Verifier }

// resume restores the tree recorded at the last checkpoint.
func (l *Log) resume() error {
	b, err := os.ReadFile(filepath.Join(l.cfg.Dir, treeFile))
	if errors.Is(err, os.ErrNotExist) {
		return l.truncate(0)
	}
	if err != nil {
		return fmt.Errorf("log tree: %w", err)
	}
	c, err := ParseCheckpoint(string(b))
	if err != nil || c.Origin != l.origin {
		l.log.Warn("log tree record unreadable or of another origin, rebuilding from the first record", "err", err)
		return l.truncate(0)
	}
	if err := l.load(c); err != nil {
		l.log.Warn("log files do not hold the recorded tree, rebuilding from the first record", "size", c.Size, "err", err)
		return l.truncate(0)
	}
	return nil
}

// load reads the positions of c's leaves and checks the stored hashes
// against c's root.
func (l *Log) load(c Checkpoint) error {
	if err := l.truncate(c.Size); err != nil {
		return err
	}
	buf := make([]byte, 8*c.Size)
	if _, err := l.leaves.ReadAt(buf, 0); err != nil {
		return fmt.Errorf("positions: %w", err)
	}
	pos := make([]eventstore.Position, c.Size)
	for i := range pos {
		pos[i] = eventstore.Position(binary.BigEndian.Uint64(buf[8*i:]))
	}
	h, err := tlog.TreeHash(c.Size, l.fileReader())
	if err != nil {
		return err
	}
	if h != c.Hash {
		return fmt.Errorf("root %s, recorded %s", h, c.Hash)
	}
	l.positions = pos
	return nil
}

// truncate cuts the files to a tree of n leaves.
func (l *Log) truncate(n int64) error {
	hi, li := tlog.StoredHashCount(n)*tlog.HashSize, 8*n
	for _, f := range []struct {
		f    *os.File
		size int64
	}{{l.hashes, hi}, {l.leaves, li}} {
		st, err := f.f.Stat()
		if err != nil {
			return err
		}
		if st.Size() < f.size {
			return fmt.Errorf("%s holds %d bytes, want %d", f.f.Name(), st.Size(), f.size)
		}
		if err := f.f.Truncate(f.size); err != nil {
			return err
		}
	}
	l.n, l.written = n, tlog.StoredHashCount(n)
	l.positions, l.frontier, l.pending = l.positions[:0], nil, nil
	return nil
}

// Close closes the log's files; call it after Run returned.
func (l *Log) Close() error {
	return errors.Join(l.hashes.Close(), l.leaves.Close())
}

// Size returns the number of leaves in the tree.
func (l *Log) Size() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.n
}

// Position returns the global position of the last leaf, 0 for an empty
// tree.
func (l *Log) Position() eventstore.Position {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if len(l.positions) == 0 {
		return 0
	}
	return l.positions[len(l.positions)-1]
}

// LeafIndex returns the index of the leaf of the record at a global
// position, and false when the tree holds none.
func (l *Log) LeafIndex(p eventstore.Position) (int64, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	i, ok := slices.BinarySearch(l.positions, p)
	return int64(i), ok
}

// Leaf is a record to append: the record and the error it was read with
// (nil, or one wrapping eventstore.ErrUnreadable).
type Leaf struct {
	Record eventstore.Record
	Err    error
}

// Append adds records to the tree, in the store's global order. Records at
// or before the last leaf's position are ignored (a resubscription may
// repeat them). One goroutine appends at a time.
func (l *Log) Append(leaves ...Leaf) error {
	last := l.Position()
	start := l.n
	n := l.n
	pos := l.posScratch[:0]
	defer func() { l.posScratch = pos[:0] }()
	buf := l.leafBuf[:0]
	defer func() { l.leafBuf = buf[:0] }()
	for _, lf := range leaves {
		if n > 0 && lf.Record.Position <= last {
			continue
		}
		buf = appendLeafData(buf[:0], lf.Record, lf.Err)
		if err := l.storeLeaf(n, tlog.RecordHash(buf)); err != nil {
			l.pending = nil
			return fmt.Errorf("log leaf %d: %w", n, err)
		}
		pos = append(pos, lf.Record.Position)
		last = lf.Record.Position
		n++
	}
	if n == start {
		return nil
	}
	if err := l.flush(start, pos); err != nil {
		return err
	}
	// The root is computed when a checkpoint is signed, not per append.
	l.mu.Lock()
	l.n = n
	l.positions = append(l.positions, pos...)
	l.mu.Unlock()
	l.wakeMu.Lock()
	close(l.wake)
	l.wake = make(chan struct{})
	l.wakeMu.Unlock()
	return nil
}

// storeLeaf appends to the pending hashes those stored for leaf n of
// hash h, as tlog.StoredHashesForRecordHash computes them (the leaf's,
// then one per subtree it completes), without allocating, and sets the
// frontier to them.
func (l *Log) storeLeaf(n int64, h tlog.Hash) error {
	start := len(l.pending)
	l.pending = append(l.pending, h)
	for i := range bits.TrailingZeros64(uint64(n + 1)) {
		// The left sibling, stored before: n>>i is odd.
		var left tlog.Hash
		if err := l.writerHash(tlog.StoredHashIndex(i, n>>uint(i)-1), &left); err != nil {
			return err
		}
		h = tlog.NodeHash(left, h)
		l.pending = append(l.pending, h)
	}
	base := tlog.StoredHashIndex(0, n)
	for k, h := range l.pending[start:] {
		l.setFrontier(k, base+int64(k), h)
	}
	return nil
}

// writerHash reads the stored hash at index x for the appending
// goroutine, as writerRead does.
func (l *Log) writerHash(x int64, h *tlog.Hash) error {
	if x >= l.written && x-l.written < int64(len(l.pending)) {
		*h = l.pending[x-l.written]
		return nil
	}
	for _, f := range l.frontier {
		if f.index == x {
			*h = f.hash
			return nil
		}
	}
	return l.readHash(x, h)
}

func (l *Log) setFrontier(level int, index int64, h tlog.Hash) {
	for len(l.frontier) <= level {
		l.frontier = append(l.frontier, frontierHash{index: -1})
	}
	l.frontier[level] = frontierHash{index, h}
}

// flush writes the pending hashes and the positions of the leaves from
// start.
func (l *Log) flush(start int64, pos []eventstore.Position) error {
	b := l.flushBuf[:0]
	for _, h := range l.pending {
		b = append(b, h[:]...)
	}
	l.flushBuf = b[:0]
	if _, err := l.hashes.WriteAt(b, l.written*tlog.HashSize); err != nil {
		return fmt.Errorf("log hashes: %w", err)
	}
	p := l.posBuf[:0]
	for _, x := range pos {
		p = binary.BigEndian.AppendUint64(p, uint64(x))
	}
	l.posBuf = p[:0]
	if _, err := l.leaves.WriteAt(p, 8*start); err != nil {
		return fmt.Errorf("log positions: %w", err)
	}
	l.written += int64(len(l.pending))
	l.pending = l.pending[:0]
	return nil
}

func (l *Log) readHash(index int64, h *tlog.Hash) error {
	if _, err := l.hashes.ReadAt(h[:], index*tlog.HashSize); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("stored hash %d beyond the file: %w", index, ErrProof)
		}
		return fmt.Errorf("stored hash %d: %w", index, err)
	}
	return nil
}

// fileReader reads stored hashes from the file: every hash of a tree of
// the size readers see is written.
func (l *Log) fileReader() tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			if err := l.readHash(x, &out[i]); err != nil {
				return nil, err
			}
		}
		return out, nil
	})
}

// CachedReader returns a reader of stored hashes that keeps those it read,
// for many proofs against one tree (an audit bundle's); at most max are
// kept.
func (l *Log) CachedReader(max int) tlog.HashReader {
	cache := make(map[int64]tlog.Hash)
	file := l.fileReader()
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			h, ok := cache[x]
			if !ok {
				hs, err := file.ReadHashes([]int64{x})
				if err != nil {
					return nil, err
				}
				h = hs[0]
				if len(cache) >= max {
					clear(cache)
				}
				cache[x] = h
			}
			out[i] = h
		}
		return out, nil
	})
}

// InclusionProof returns the proof that leaf index is in the tree of size
// leaves, which must not exceed the tree.
func (l *Log) InclusionProof(index, size int64, r tlog.HashReader) (tlog.RecordProof, error) {
	if cur := l.Size(); size < 1 || size > cur || index < 0 || index >= size {
		return nil, proofError("inclusion of leaf %d in a tree of %d leaves (the tree holds %d)", index, size, cur)
	}
	if r == nil {
		r = l.fileReader()
	}
	return tlog.ProveRecord(size, index, r)
}

// ConsistencyProof returns the proof that the tree of old leaves is a
// prefix of the tree of size leaves.
func (l *Log) ConsistencyProof(old, size int64) (tlog.TreeProof, error) {
	if cur := l.Size(); old < 1 || old > size || size > cur {
		return nil, proofError("consistency of %d and %d leaves (the tree holds %d): want 1 <= old <= new <= %d", old, size, cur, cur)
	}
	return tlog.ProveTree(size, old, l.fileReader())
}

// TreeHash returns the root hash of the tree of size leaves.
func (l *Log) TreeHash(size int64) (tlog.Hash, error) {
	if cur := l.Size(); size < 0 || size > cur {
		return tlog.Hash{}, proofError("tree of %d leaves (the tree holds %d)", size, cur)
	}
	return tlog.TreeHash(size, l.fileReader())
}

// Latest returns the last signed checkpoint, nil before the first.
func (l *Log) Latest() *Signed { return l.signed.Load() }

// Sign returns a checkpoint of the tree as it is now: the last signed one
// when the tree has not grown since, a newly signed one otherwise. The
// files are synced and the tree recorded before it is signed, so a
// restart never resumes from a smaller tree than a checkpoint given out.
func (l *Log) Sign(context.Context) (*Signed, error) {
	l.signMu.Lock()
	defer l.signMu.Unlock()
	c := Checkpoint{Origin: l.origin, Size: l.Size()}
	if s := l.signed.Load(); s != nil && s.Size == c.Size {
		return s, nil
	}
	h, err := tlog.TreeHash(c.Size, l.fileReader())
	if err != nil {
		return nil, fmt.Errorf("root of the tree of %d leaves: %w", c.Size, err)
	}
	c.Hash = h
	if err := errors.Join(l.hashes.Sync(), l.leaves.Sync()); err != nil {
		return nil, fmt.Errorf("sync log: %w", err)
	}
	if err := writeFileSync(filepath.Join(l.cfg.Dir, treeFile), []byte(c.String()), 0o600); err != nil {
		return nil, fmt.Errorf("record log tree: %w", err)
	}
	msg, err := note.Sign(&note.Note{Text: c.String()}, l.cfg.Key.Signer)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	s := &Signed{Checkpoint: c, Note: msg, At: l.cfg.Clock()}
	l.signed.Store(s)
	return s, nil
}

// Ready reports whether the log has caught up with the records stored
// when Run started and still follows the store.
func (l *Log) Ready() bool { return l.ready.Load() && l.stopped.Load() == nil }

// Err returns why Run stopped following the store (the history no longer
// holds the log's last leaf, say), or nil while it follows it or stopped
// only because its context ended. The tree and its checkpoints are then
// no longer extended; the ledger itself goes on.
func (l *Log) Err() error {
	if p := l.stopped.Load(); p != nil {
		return *p
	}
	return nil
}

// Wait blocks until the tree holds the record at position p (or one
// after it), or ctx ends.
func (l *Log) Wait(ctx context.Context, p eventstore.Position) error {
	for {
		l.wakeMu.Lock()
		ch := l.wake
		l.wakeMu.Unlock()
		if l.Position() >= p {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for the log to reach position %d: %w", p, ctx.Err())
		}
	}
}

// checkLastLeaf checks that the store still holds, at its position, the
// record of the tree's last leaf: a store whose history was cut or
// rewritten under a tree kept from before is not followed, since the tree
// would then prove a history the store no longer holds.
func (l *Log) checkLastLeaf(ctx context.Context, store eventstore.Store) error {
	l.mu.RLock()
	n := l.n
	var after, last eventstore.Position
	if n > 0 {
		last = l.positions[n-1]
	}
	if n > 1 {
		after = l.positions[n-2]
	}
	l.mu.RUnlock()
	if n == 0 {
		return nil
	}
	var want tlog.Hash
	if err := l.readHash(tlog.StoredHashIndex(0, n-1), &want); err != nil {
		return err
	}
	for rec, err := range store.ReadAll(ctx, after) {
		if err != nil && !errors.Is(err, eventstore.ErrUnreadable) {
			return fmt.Errorf("log check: %w", err)
		}
		if rec.Position == last && LeafHash(rec, err) == want {
			return nil
		}
		break
	}
	return fmt.Errorf("the store no longer holds at position %d the record of the log's leaf %d: its history changed under the log kept in %s: %w",
		last, n-1, l.cfg.Dir, ErrInconsistent)
}

// catchUpBatch is how many records catching up appends at once.
const catchUpBatch = 1024

// Run appends every record of the store after the last leaf, then follows
// the store, signing a checkpoint at least every SignEvery while the tree
// grows, until ctx ends. It returns ctx's error or the first error reading
// the store that is not about one record (eventstore.ErrUnreadable records
// are leaves).
func (l *Log) Run(ctx context.Context, store eventstore.Store) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer func() {
		if err != nil && ctx.Err() == nil {
			l.stopped.Store(&err)
		}
	}()
	if err := l.checkLastLeaf(ctx, store); err != nil {
		return err
	}
	batch := make([]Leaf, 0, catchUpBatch)
	for rec, err := range store.ReadAll(ctx, l.Position()) {
		if err != nil && !errors.Is(err, eventstore.ErrUnreadable) {
			return fmt.Errorf("log catch up: %w", err)
		}
		batch = append(batch, Leaf{rec, err})
		if len(batch) == cap(batch) {
			if err := l.Append(batch...); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := l.Append(batch...); err != nil {
		return err
	}
	if _, err := l.Sign(ctx); err != nil {
		return err
	}
	l.ready.Store(true)
	l.log.InfoContext(ctx, "log caught up", "size", l.Size(), "origin", l.origin)

	follow := store.Subscribe
	if l.cfg.Feed != nil {
		follow = func(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
			return l.cfg.Feed.Records(ctx, store, after)
		}
	}
	live := make(chan Leaf, 256)
	errc := make(chan error, 1)
	go func() {
		defer close(live)
		for rec, err := range follow(ctx, l.Position()) {
			if err != nil && !errors.Is(err, eventstore.ErrUnreadable) {
				errc <- err
				return
			}
			select {
			case live <- Leaf{rec, err}:
			case <-ctx.Done():
				return
			}
		}
	}()
	tick := time.NewTicker(min(l.cfg.SignEvery, time.Second))
	defer tick.Stop()
	for {
		select {
		case lf, ok := <-live:
			if !ok {
				select {
				case err := <-errc:
					if ctx.Err() == nil {
						return fmt.Errorf("log follow: %w", err)
					}
				default:
				}
				return ctx.Err()
			}
			batch = append(batch[:0], lf)
		drain:
			for len(batch) < cap(batch) {
				select {
				case lf, ok := <-live:
					if !ok {
						break drain
					}
					batch = append(batch, lf)
				default:
					break drain
				}
			}
			if err := l.Append(batch...); err != nil {
				return err
			}
		case <-tick.C:
			l.maybeSign(ctx)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// maybeSign signs a checkpoint when the tree grew and the last one is
// SignEvery old.
func (l *Log) maybeSign(ctx context.Context) {
	if s := l.Latest(); s == nil || (s.Size != l.Size() && l.cfg.Clock().Sub(s.At) >= l.cfg.SignEvery) {
		if _, err := l.Sign(ctx); err != nil {
			l.log.ErrorContext(ctx, "sign checkpoint", "err", err)
		}
	}
}
