// Package runner keeps read models up to date: it feeds them every event of
// the store's global order, starting from a snapshot when there is one,
// follows the store live, saves snapshots with their position so that a
// restart costs only the events since the last one, rebuilds from zero on
// demand, and tells how far behind it is.
//
// # Snapshots and erasure
//
// A snapshot holds the state of every read model at one position. Read
// models blank a deleted user's name and email, so a snapshot taken after
// a deletion holds neither; the runner takes one soon after it applies a
// deletion, replacing the older snapshot that still held them.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections"
)

// ErrNoSnapshot is returned by SnapshotStore.Load when none was saved.
var ErrNoSnapshot = errors.New("runner: no snapshot")

// Snapshot is the state of a set of read models at a position.
type Snapshot struct {
	Position eventstore.Position
	// Parts holds each read model's state by its name.
	Parts map[string][]byte
}

// SnapshotStore keeps the latest snapshot of a runner.
type SnapshotStore interface {
	// Save replaces the stored snapshot with s. After Save returns, the
	// previous snapshot's bytes are no longer readable from the store.
	Save(ctx context.Context, s Snapshot) error
	// Load returns the stored snapshot, or ErrNoSnapshot.
	Load(ctx context.Context) (Snapshot, error)
}

// Config holds what a Runner needs.
type Config struct {
	Store eventstore.Store
	Codec *codec.Codec
	// Projections are the read models to feed. Snapshots are used only
	// when every one of them is a projections.Snapshotter.
	Projections []projections.Projection
	// Fresh returns new empty read models of the same kinds, in the same
	// order; Rebuild restores the live ones to their empty state with it.
	Fresh func() []projections.Projection
	// Snapshots keeps snapshots; nil for none.
	Snapshots SnapshotStore
	// SnapshotEvery is the number of events between snapshots (default
	// 100,000); SnapshotInterval the longest time between two snapshots
	// while events arrive (default 1 minute); ErasureDelay how soon a
	// snapshot follows a deletion (default 10 seconds: a snapshot of a large
	// history takes a good fraction of a second, during which events wait).
	SnapshotEvery    int
	SnapshotInterval time.Duration
	ErasureDelay     time.Duration
	// OnEvent, if set, sees every event after the read models applied it
	// and before Position reaches it (the service uses it to forget the
	// keys of users deleted elsewhere and the API's kept answers about
	// them).
	OnEvent func(codec.Decoded)
	// OnRecord, if set, sees every record the runner reads from the store
	// after the snapshot it restored, in the store's order and before the
	// read models fold it, with the error it was read with (nil, or one
	// wrapping eventstore.ErrUnreadable) and the position of the record
	// read before it (the position the runner started from, for the
	// first; 0 after a rebuild). It must not block (the transparency log
	// is fed from it instead of following the store a second time).
	OnRecord func(prev eventstore.Position, rec eventstore.Record, readErr error)
	Logger   *slog.Logger
	Clock    func() time.Time
}

// Runner feeds read models from the store. Its methods are safe for
// concurrent use; Run is called once.
type Runner struct {
	cfg   Config
	set   projections.Set
	log   *slog.Logger
	snaps bool

	mu                 sync.Mutex // held while applying, snapshotting or rebuilding
	pos                atomic.Uint64
	seen               atomic.Uint64 // highest position known to exist, for lag
	ready              atomic.Bool
	wakeMu             sync.Mutex
	wake               chan struct{}
	applied            int // events since the last snapshot
	lastSnap, erasedAt time.Time
	deletions          uint64    // deletions applied, ever: a snapshot knows which it covers
	failedAt           time.Time // when the last save failed, to space retries
	total              uint64    // events applied, ever: the ticker's measure of idleness
	saveMu             sync.Mutex
	savedPos           eventstore.Position // the position of the last snapshot saved
	rebuild            chan chan error
	pending            chan error // the rebuild request being served
	q                  quarantine // the streams' verified chains; r.mu guards it
}

// New returns a runner; call Run to start it.
func New(cfg Config) *Runner {
	if cfg.SnapshotEvery <= 0 {
		cfg.SnapshotEvery = 100_000
	}
	if cfg.SnapshotInterval <= 0 {
		cfg.SnapshotInterval = time.Minute
	}
	if cfg.ErasureDelay <= 0 {
		cfg.ErasureDelay = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	r := &Runner{cfg: cfg, set: projections.Set(cfg.Projections), log: cfg.Logger,
		wake: make(chan struct{}), rebuild: make(chan chan error), q: newQuarantine()}
	r.snaps = cfg.Snapshots != nil
	for _, p := range cfg.Projections {
		if _, ok := p.(projections.Snapshotter); !ok {
			r.snaps = false
		}
	}
	return r
}

// Position returns the global position of the last event every read model
// has applied.
func (r *Runner) Position() eventstore.Position { return eventstore.Position(r.pos.Load()) }

// Observe tells the runner that an event exists at position p (a write
// that reached it, say), for Lag.
func (r *Runner) Observe(p eventstore.Position) {
	for {
		cur := r.seen.Load()
		if uint64(p) <= cur || r.seen.CompareAndSwap(cur, uint64(p)) {
			return
		}
	}
}

// Lag returns how many positions the read models are behind the highest
// position the runner knows exists.
func (r *Runner) Lag() uint64 {
	seen, pos := r.seen.Load(), r.pos.Load()
	if seen <= pos {
		return 0
	}
	return seen - pos
}

// Ready reports whether the runner has caught up with the events stored
// when it started.
func (r *Runner) Ready() bool { return r.ready.Load() }

// Changed returns a channel closed when Position next changes, for
// waiters that select on it with channels of their own (the HTTP API's
// waits for a position, without a context per wait).
func (r *Runner) Changed() <-chan struct{} {
	r.wakeMu.Lock()
	defer r.wakeMu.Unlock()
	return r.wake
}

// Wait blocks until the read models have applied position p or ctx ends.
func (r *Runner) Wait(ctx context.Context, p eventstore.Position) error {
	for {
		r.wakeMu.Lock()
		ch := r.wake
		r.wakeMu.Unlock()
		if r.Position() >= p {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for position %d (at %d): %w", p, r.Position(), ctx.Err())
		}
	}
}

func (r *Runner) advance(p eventstore.Position) {
	r.pos.Store(uint64(p))
	r.Observe(p)
	r.wakeMu.Lock()
	close(r.wake)
	r.wake = make(chan struct{})
	r.wakeMu.Unlock()
}

// Run restores the latest snapshot, catches up with the store and follows
// it until ctx ends. It returns ctx's error, or the first error reading,
// decoding or applying an event that is not about one record alone.
//
// A record that cannot be read, that does not verify against its
// stream's hash chain, or that does not decode (codec.Unfoldable) is
// quarantined instead: skipped by every read model, logged once, counted
// and listed (Quarantined). Verification is deterministic, so a restart
// or a rebuild quarantines the same records.
func (r *Runner) Run(ctx context.Context) error {
	start := r.cfg.Clock()
	if err := r.restore(ctx); err != nil {
		return err
	}
	from := r.Position()
	for {
		err := r.follow(ctx, start, from)
		if !errors.Is(err, errRebuild) {
			return err
		}
		// Rebuild: back to empty read models and position 0.
		err = r.reset(ctx)
		r.pending <- err
		if err != nil {
			return err
		}
		start, from = r.cfg.Clock(), 0
	}
}

var errRebuild = errors.New("rebuild requested")

// follow applies the stored events after from, then live ones.
func (r *Runner) follow(ctx context.Context, start time.Time, from eventstore.Position) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n := 0
	// Catching up folds events in batches: each read model takes its lock
	// once per batch and waiters are woken once per batch. Three
	// goroutines share the work: one reads the store, one decodes the
	// records and hashes them for their chains, this one verifies the
	// chains and folds.
	prev := from // the position of the last record read
	reads := make(chan []read, 4)
	used := make(chan []read, 8) // decoded reads, for the reader to reuse
	decoded := make(chan batch, 4)
	free := make(chan batch, 8) // folded batches, for the decoder to reuse
	var stages sync.WaitGroup
	stages.Go(func() { readAhead(ctx, r.cfg.Store, from, used, reads) })
	stages.Go(func() { r.decodeAhead(ctx, from, reads, used, free, decoded) })
	defer func() {
		cancel() // the reader and the decoder stop at ctx's end
		stages.Wait()
	}()
	for b := range decoded {
		// The records to fold are moved to the front of the batch and
		// folded together (catchUpBatch records were read together):
		// b.ds[start:kept] is what is folded next.
		start, kept := 0, 0
		for i := range b.its {
			d, it := &b.ds[i], &b.its[i]
			if it.readErr != nil && !errors.Is(it.readErr, eventstore.ErrUnreadable) {
				return fmt.Errorf("catch up: %w", it.readErr)
			}
			r.offer(&prev, d.Record, it.readErr)
			if d.Record.Position <= r.Position() {
				continue // a snapshot covered it
			}
			if it.fatal != nil {
				return it.fatal
			}
			if it.redo {
				// Decoded before the deletion of its user was folded:
				// fold what precedes it (the deletion's hook runs), then
				// decode it again.
				if err := r.applyBatch(b.ds[start:kept], b.its[start:kept]); err != nil {
					return err
				}
				if err := r.decode(ctx, d.Record, it.readErr, d, it); err != nil {
					return err
				}
				start, kept = i, i
			}
			if kept != i {
				b.ds[kept], b.its[kept] = *d, *it
			}
			kept++
			n++
		}
		if err := r.applyBatch(b.ds[start:kept], b.its[start:kept]); err != nil {
			return err
		}
		select {
		case free <- b: // the read models kept copies, not the batch
		default:
		}
		if req, ok := r.rebuildRequested(); ok {
			r.pending = req
			return errRebuild
		}
	}
	if !r.ready.Swap(true) {
		r.log.InfoContext(ctx, "read models caught up", "events", n, "position", r.Position(),
			"duration", r.cfg.Clock().Sub(start).String())
	}
	r.maybeSnapshot(ctx, true)
	// Live records queue up while the last ones fold, and fold together
	// (see applyLive).
	live := make(chan read, liveBatch)
	go func() {
		defer close(live)
		for rec, err := range r.cfg.Store.Subscribe(ctx, r.Position()) {
			select {
			case live <- read{rec, err}:
			case <-ctx.Done():
				return
			}
			if err != nil && !errors.Is(err, eventstore.ErrUnreadable) {
				return
			}
		}
	}()
	var lb liveBuf
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastTotal := uint64(0) // events applied at the last tick
	for {
		select {
		case m, ok := <-live:
			if !ok {
				return ctx.Err()
			}
			// With what else has arrived since.
			lb.recs = append(lb.recs[:0], m)
			closed := false
		more:
			for len(lb.recs) < liveBatch {
				select {
				case m, ok := <-live:
					if !ok {
						closed = true
						break more
					}
					lb.recs = append(lb.recs, m)
				default:
					break more
				}
			}
			if err := r.applyLive(ctx, &prev, &lb); err != nil {
				return err
			}
			if closed {
				return ctx.Err()
			}
			r.maybeSnapshot(ctx, false)
		case <-tick.C:
			// Idle only when no event arrived since the last tick: a busy
			// stream waits ErasureDelay before a deletion's snapshot.
			r.mu.Lock()
			idle := r.total == lastTotal
			lastTotal = r.total
			r.mu.Unlock()
			r.maybeSnapshot(ctx, idle)
		case req := <-r.rebuild:
			r.pending = req
			return errRebuild
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// read is one record as the store's ReadAll yielded it.
type read struct {
	rec eventstore.Record
	err error
}

// readAhead reads the store after from in a goroutine of its own and sends
// the records, catchUpBatch at a time, to out, which it closes at the end
// of the read, after an error that ends it, or when ctx ends. Catching up
// then reads the next records while it decodes and folds the last ones.
// It fills the slices the decoder hands back on used when there are some.
func readAhead(ctx context.Context, store eventstore.Store, from eventstore.Position, used <-chan []read, out chan<- []read) {
	defer close(out)
	buf := make([]read, 0, catchUpBatch)
	send := func() bool {
		select {
		case out <- buf:
			select {
			case buf = <-used:
				buf = buf[:0]
			default:
				buf = make([]read, 0, catchUpBatch)
			}
			return true
		case <-ctx.Done():
			return false
		}
	}
	for rec, err := range store.ReadAll(ctx, from) {
		buf = append(buf, read{rec, err})
		if len(buf) == catchUpBatch && !send() {
			return
		}
	}
	if len(buf) > 0 {
		send()
	}
}

// decodeAhead decodes the records readAhead sends on in, and computes the
// chain link each would take if it verifies (the SHA-256 the fold would
// otherwise compute), then sends them on to out, which it closes at the
// end. Records at or before from are passed on untouched. It fills the
// slices the fold hands back on free when there are some.
//
// A user's sealed data must not be decoded after the deletion of that user
// has been read yet before it has been folded (the hooks that forget the
// user's key run when it is folded). An event with sealed fields of a user
// whose deletion this goroutine decoded and the fold has not reached is
// marked redo: the fold decodes it again once the deletion is folded.
func (r *Runner) decodeAhead(ctx context.Context, from eventstore.Position, in <-chan []read, used chan<- []read, free <-chan batch, out chan<- batch) {
	defer close(out)
	deleting := make(map[deletedUser]eventstore.Position) // read, maybe not folded
	for rs := range in {
		var b batch
		select {
		case b = <-free:
		default:
		}
		if cap(b.its) < len(rs) {
			b = batch{ds: make([]codec.Decoded, len(rs)), its: make([]item, len(rs))}
		}
		b.ds, b.its = b.ds[:len(rs)], b.its[:len(rs)]
		if len(deleting) > 0 {
			applied := r.Position()
			for u, p := range deleting {
				if p <= applied {
					delete(deleting, u)
				}
			}
		}
		for i := range rs {
			rd, d, it := &rs[i], &b.ds[i], &b.its[i]
			if rd.rec.Position <= from || rd.err != nil && !errors.Is(rd.err, eventstore.ErrUnreadable) {
				*d, *it = codec.Decoded{Record: rd.rec}, item{readErr: rd.err}
				continue
			}
			if r.decode(ctx, rd.rec, rd.err, d, it) != nil || it.err != nil {
				continue
			}
			it.next, it.hashed = codec.RecordHash(d.Meta.PrevHash, d.Record), true
			if len(deleting) == 0 {
				if _, ok := d.Event.(ledger.UserDeleted); !ok {
					continue // the common case: nothing to remember, nothing to redo
				}
			}
			u := deletedUser{projections.AccountOf(*d), ledger.UserOf(d.Event)}
			if _, ok := d.Event.(ledger.UserDeleted); ok {
				deleting[u] = d.Record.Position
				continue
			}
			if u.user == "" {
				continue
			}
			if _, ok := deleting[u]; ok && hasSealed(d.Record.Type) {
				it.redo = true
			}
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return
		}
		select {
		case used <- rs: // b holds copies of the records, not rs
		default:
		}
	}
}

// deletedUser names a user whose deletion was read.
type deletedUser struct{ account, user string }

// hasSealed reports whether events of type typ hold sealed personal data
// (an unknown type may).
func hasSealed(typ string) bool {
	unsealed, ok := withoutSealed[typ]
	return !ok || !unsealed
}

// withoutSealed tells, for every event type, whether it holds no sealed
// personal data.
var withoutSealed = func() map[string]bool {
	m := make(map[string]bool)
	for _, info := range codec.Events() {
		m[info.Type] = len(info.Sealed()) == 0
	}
	return m
}()

func (r *Runner) rebuildRequested() (chan error, bool) {
	select {
	case req := <-r.rebuild:
		return req, true
	default:
		return nil, false
	}
}

// catchUpBatch is how many events catching up folds at once.
const catchUpBatch = 256

// batch is records read together, decoded and not yet verified against
// their streams' chains: ds[i] is the i-th record decoded (its Record set
// even when it did not decode), its[i] the rest of what is known of it.
type batch struct {
	ds  []codec.Decoded
	its []item
}

// item is what the fold needs besides the decoded event of a record read
// and decoded: err is the read's or the decoder's error about this record
// alone (see codec.Unfoldable).
type item struct {
	err error
	// readErr is the error the record was read with; fatal a decoding
	// failure that stops the read models (see Runner.decode).
	readErr, fatal error
	// next is the chain link the record takes if it verifies, computed
	// ahead when hashed.
	next   codec.Hash
	hashed bool
	// redo asks the fold to decode the record again (see decodeAhead).
	redo bool
}

// offer hands a record read after *prev to OnRecord; a record at or
// before *prev (a resubscription repeating it) is not handed again.
func (r *Runner) offer(prev *eventstore.Position, rec eventstore.Record, readErr error) {
	if rec.Position <= *prev {
		return
	}
	if r.cfg.OnRecord != nil {
		r.cfg.OnRecord(*prev, rec, readErr)
	}
	*prev = rec.Position
}

// decode decodes rec, read with readErr, into *d and *it; d.Record is rec
// whatever happens. It returns an error, also set as it.fatal, only when
// the read models must stop: a failure that says nothing of the record (a
// key store that does not answer, say).
func (r *Runner) decode(ctx context.Context, rec eventstore.Record, readErr error, d *codec.Decoded, it *item) error {
	*it = item{readErr: readErr}
	if readErr != nil {
		*d = codec.Decoded{Record: rec}
		it.err = readErr
		return nil
	}
	var err error
	if *d, err = r.cfg.Codec.Decode(ctx, rec); err == nil {
		return nil
	}
	*d = codec.Decoded{Record: rec}
	if !codec.Unfoldable(err) {
		it.fatal = fmt.Errorf("read models at position %d: %w", rec.Position, err)
		return it.fatal
	}
	it.err = err
	return nil
}

// applyBatch verifies a batch of records (see admit), in order, against
// their streams' chains and folds those that verify into every read
// model; the others are quarantined. The read models then stand at the
// last record's position. It reorders ds.
func (r *Runner) applyBatch(ds []codec.Decoded, its []item) error {
	if len(ds) == 0 {
		return nil
	}
	last := ds[len(ds)-1].Record.Position
	r.mu.Lock()
	n := len(ds)
	ds, q := r.admit(ds, its)
	err := r.set.ApplyBatch(ds)
	r.applied += n
	r.total += uint64(n)
	for i := range ds {
		r.noteDeletion(&ds[i])
	}
	r.mu.Unlock()
	r.logQuarantined(q)
	if err != nil {
		return fmt.Errorf("read models up to position %d: %w", last, err)
	}
	// OnEvent runs before the position advances: a write that waits for the
	// read models to reach its events answers after the hook saw them.
	if r.cfg.OnEvent != nil {
		for i := range ds {
			r.cfg.OnEvent(ds[i])
		}
	}
	r.advance(last)
	return nil
}

// liveBatch is the most live records folded together.
var liveBatch = 64

// liveBuf is what following reuses from one batch of live records to the
// next: the records received, and the batch they decode into.
type liveBuf struct {
	recs []read
	ds   []codec.Decoded
	its  []item
}

// applyLive decodes and folds live records received together, in order,
// as one batch: each read model takes its lock once, and the position
// advances, waking its waiters, once. A record at or before the position
// (a snapshot covered it, or a resubscription repeated it) is skipped. A
// deletion is folded before the next record is decoded, as catching up
// does (see decodeAhead): the hooks that forget the user's key run first.
// A read error that is not about one record, or a decoding failure that
// stops the read models, is returned once what precedes it is folded.
func (r *Runner) applyLive(ctx context.Context, prev *eventstore.Position, lb *liveBuf) error {
	ds, its := lb.ds[:0], lb.its[:0]
	defer func() { lb.ds, lb.its = ds[:0], its[:0] }()
	flush := func() error {
		err := r.applyBatch(ds, its)
		ds, its = ds[:0], its[:0]
		return err
	}
	hi := r.Position()
	for _, m := range lb.recs {
		if m.err != nil && !errors.Is(m.err, eventstore.ErrUnreadable) {
			if err := flush(); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("follow: %w", m.err)
		}
		r.offer(prev, m.rec, m.err)
		if m.rec.Position <= hi {
			continue
		}
		hi = m.rec.Position
		ds, its = append(ds, codec.Decoded{}), append(its, item{})
		d, it := &ds[len(ds)-1], &its[len(its)-1]
		if err := r.decode(ctx, m.rec, m.err, d, it); err != nil {
			ds, its = ds[:len(ds)-1], its[:len(its)-1]
			if ferr := flush(); ferr != nil {
				return ferr
			}
			return err
		}
		if _, ok := d.Event.(ledger.UserDeleted); ok {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// noteDeletion marks a snapshot due after a deletion. r.mu is held.
func (r *Runner) noteDeletion(d *codec.Decoded) {
	if _, ok := d.Event.(ledger.UserDeleted); ok {
		r.deletions++
		if r.erasedAt.IsZero() {
			r.erasedAt = r.cfg.Clock()
		}
	}
}

// maybeSnapshot saves a snapshot when enough events or time have passed,
// or soon after a deletion so that no snapshot keeps an erased name.
func (r *Runner) maybeSnapshot(ctx context.Context, idle bool) {
	if !r.snaps {
		return
	}
	r.mu.Lock()
	now := r.cfg.Clock()
	if !r.failedAt.IsZero() && now.Sub(r.failedAt) < 5*time.Second {
		r.mu.Unlock()
		return // the last save failed just now: try again in a moment
	}
	due := r.applied >= r.cfg.SnapshotEvery ||
		(r.applied > 0 && idle && now.Sub(r.lastSnap) >= r.cfg.SnapshotInterval) ||
		(!r.erasedAt.IsZero() && (idle || now.Sub(r.erasedAt) >= r.cfg.ErasureDelay))
	r.mu.Unlock()
	if !due {
		return
	}
	if err := r.SaveSnapshot(ctx); err != nil {
		r.log.ErrorContext(ctx, "save snapshot of read models", "err", err)
	}
}

// SaveSnapshot saves the read models' state at their current position.
// Saves run one at a time and never replace a snapshot with an older one.
// A save that fails leaves the snapshot due, so it is tried again.
func (r *Runner) SaveSnapshot(ctx context.Context) error {
	if !r.snaps {
		return errors.New("runner: snapshots not configured or a read model cannot snapshot")
	}
	r.saveMu.Lock()
	defer r.saveMu.Unlock()
	r.mu.Lock()
	s := Snapshot{Position: r.Position(), Parts: make(map[string][]byte, len(r.set))}
	for _, p := range r.set {
		b, err := p.(projections.Snapshotter).Snapshot()
		if err != nil {
			r.mu.Unlock()
			return fmt.Errorf("snapshot %s: %w", p.Name(), err)
		}
		s.Parts[p.Name()] = b
	}
	s.Parts[quarantinePart] = r.snapshotQuarantine()
	applied, deletions := r.applied, r.deletions
	r.mu.Unlock()
	if s.Position < r.savedPos {
		return nil // a newer snapshot is saved already
	}
	err := r.cfg.Snapshots.Save(ctx, s)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.failedAt = r.cfg.Clock()
		return fmt.Errorf("save snapshot at %d: %w", s.Position, err)
	}
	r.savedPos, r.failedAt, r.lastSnap = s.Position, time.Time{}, r.cfg.Clock()
	r.applied -= min(applied, r.applied)
	if r.deletions == deletions {
		r.erasedAt = time.Time{} // every deletion so far is in the saved snapshot
	} else {
		r.erasedAt = r.cfg.Clock() // deletions applied while saving: another one is due
	}
	r.log.DebugContext(ctx, "snapshot saved", "position", s.Position)
	return nil
}

func (r *Runner) restore(ctx context.Context) error {
	if !r.snaps {
		return nil
	}
	s, err := r.cfg.Snapshots.Load(ctx)
	if errors.Is(err, ErrNoSnapshot) {
		return nil
	}
	if errors.Is(err, errCorrupt) {
		// Nothing was restored yet: folding from the first event rebuilds
		// what the snapshot held.
		r.log.WarnContext(ctx, "snapshot unreadable, rebuilding from the first event", "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("load snapshot: %w", err)
	}
	b, ok := s.Parts[quarantinePart]
	if !ok {
		// Without the streams' chains the events after the snapshot
		// cannot be verified.
		r.log.WarnContext(ctx, "snapshot lacks the streams' chains, rebuilding from the first event")
		return r.reset(ctx)
	}
	q, err := restoreQuarantine(b)
	if err != nil {
		r.log.WarnContext(ctx, "snapshot unreadable, rebuilding from the first event", "read_model", quarantinePart, "err", err)
		return r.reset(ctx)
	}
	for _, p := range r.set {
		b, ok := s.Parts[p.Name()]
		if !ok {
			r.log.WarnContext(ctx, "snapshot lacks a read model, rebuilding from the first event", "read_model", p.Name())
			return r.reset(ctx)
		}
		if err := p.(projections.Snapshotter).Restore(b); err != nil {
			r.log.WarnContext(ctx, "snapshot unreadable, rebuilding from the first event", "read_model", p.Name(), "err", err)
			return r.reset(ctx)
		}
	}
	r.mu.Lock()
	r.q = q
	r.mu.Unlock()
	r.advance(s.Position)
	names := make([]string, len(r.set))
	for i, p := range r.set {
		names[i] = p.Name()
	}
	r.log.InfoContext(ctx, "read models restored from snapshot", "read_models", names, "position", s.Position, "quarantined", q.count)
	return nil
}

// reset restores every read model to its empty state at position 0.
func (r *Runner) reset(context.Context) error {
	if r.cfg.Fresh == nil {
		return errors.New("runner: rebuild needs Config.Fresh")
	}
	fresh := r.cfg.Fresh()
	r.saveMu.Lock() // saveMu before mu, as SaveSnapshot takes them
	defer r.saveMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, p := range r.set {
		src, ok1 := fresh[i].(projections.Snapshotter)
		dst, ok2 := p.(projections.Snapshotter)
		if !ok1 || !ok2 {
			return fmt.Errorf("runner: %s cannot be reset", p.Name())
		}
		b, err := src.Snapshot()
		if err == nil {
			err = dst.Restore(b)
		}
		if err != nil {
			return fmt.Errorf("reset %s: %w", p.Name(), err)
		}
	}
	r.q = newQuarantine()
	r.pos.Store(0)
	r.ready.Store(false)
	r.applied, r.savedPos = 0, 0
	return nil
}

// Rebuild empties every read model and folds the whole store again, while
// Run goes on. It returns once the rebuild has started from zero; Wait
// and Ready tell when it has caught up.
func (r *Runner) Rebuild(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case r.rebuild <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
