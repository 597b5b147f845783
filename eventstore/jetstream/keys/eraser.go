package keys

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// erasure is a key message to erase.
type erasure struct {
	p       *part  // the stream holding it
	n       uint64 // its place in the order queued, from 1
	subject string
	seq     uint64
	// check asks to read the message first and erase it only if it is
	// still there on subject: seq came from a tombstone's header rather
	// than from an expectation the server checked.
	check bool
}

// Backoff between attempts at an erasure that failed for a reason that
// may pass (a lost connection, a timeout).
const (
	minEraseBackoff = 50 * time.Millisecond
	maxEraseBackoff = 5 * time.Second
)

// eraseDelay is how long the eraser lets erasures gather before it runs
// them, unless a Flush or Close waits for them. Each erasure replaces a
// block file, which changes the msgs directory of its stream, and the
// group syncer of an embedded store lists and fsyncs a changed directory
// in every round for a while after (sync.go, racyWindow): erasures run
// back to back, stream by stream, make those windows overlap instead of
// keeping the directories of several shards changing all the time.
const eraseDelay = time.Second

// eraser erases queued key messages one at a time, in a goroutine of its
// own, once the first of them waited eraseDelay, or at once when a Flush
// or Close waits. It runs them stream by stream: it starts a run with the
// oldest erasure queued and takes next the erasures of that stream queued
// before the run started, in the order queued, then starts the next run.
// Erasures queued for the stream during a run wait for a later one, so
// that a stream whose keys are destroyed faster than they are erased
// cannot hold back the other streams or a Flush. Each erasure rewrites a
// block file of the server; running them here keeps that cost off
// Destroy's path.
//
// The server fsyncs the rewritten block before it renames it over the old
// one, but not the msgs directory after the rename: with the group sync of
// an embedded store (Config.Sync) that is the store's syncer's work, and
// a power loss before it can bring the old block, with the key's bytes,
// back. So the eraser waits for Config.Sync whenever its queue empties,
// and flush and close wait for it before they return.
type eraser struct {
	s      *Store
	erase  func(context.Context, erasure) error // s.eraseOne; tests wrap it
	cancel context.CancelFunc
	exited chan struct{} // closed when run returns
	wake   chan struct{} // one pending wake-up for run

	mu       sync.Mutex
	queue    []erasure
	queued   uint64        // erasures ever queued
	done     uint64        // of those, erasures done or given up
	synced   uint64        // done when the last Config.Sync that succeeded was called
	failed   []error       // erasures given up since the last flush or close
	progress chan struct{} // closed and replaced when done grows or run returns
	closing  bool          // close was called: drain, then return
	stopped  bool          // run returned
	paused   bool          // tests hold the eraser back with pause
	since    time.Time     // when the queue last went from empty to not
	hurry    int           // flushes waiting
	delay    time.Duration // eraseDelay; tests set 0
}

// newEraser starts the eraser of s, paused if asked.
func newEraser(s *Store, paused bool) *eraser {
	ctx, cancel := context.WithCancel(context.Background())
	e := &eraser{
		s:        s,
		erase:    s.eraseOne,
		cancel:   cancel,
		exited:   make(chan struct{}),
		wake:     make(chan struct{}, 1),
		progress: make(chan struct{}),
		paused:   paused,
		delay:    eraseDelay,
	}
	go e.run(ctx)
	return e
}

// signal wakes run if it waits.
func (e *eraser) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// enqueue queues x. Once close was called, it erases x, and waits for
// Config.Sync, before returning.
func (e *eraser) enqueue(ctx context.Context, x erasure) error {
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		if err := e.s.eraseOne(ctx, x); err != nil {
			return err
		}
		if e.s.sync != nil {
			return e.s.sync(ctx)
		}
		return nil
	}
	if len(e.queue) == 0 {
		e.since = time.Now()
	}
	e.queued++
	x.n = e.queued
	e.queue = append(e.queue, x)
	e.mu.Unlock()
	e.signal()
	return nil
}

// pause holds the eraser back before its next erasure until resume, or
// until close; for tests.
func (e *eraser) pause() {
	e.mu.Lock()
	e.paused = true
	e.mu.Unlock()
}

// resume lets a paused eraser go on.
func (e *eraser) resume() {
	e.mu.Lock()
	e.paused = false
	e.mu.Unlock()
	e.signal()
}

// pending returns the number of erasures queued and not done.
func (e *eraser) pending() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.queued - e.done
}

func (e *eraser) run(ctx context.Context) {
	defer func() {
		e.mu.Lock()
		e.stopped = true
		close(e.progress)
		e.progress = make(chan struct{})
		e.mu.Unlock()
		close(e.exited)
	}()
	backoff := minEraseBackoff
	// The run in progress: the erasures of runPart queued up to runEnd.
	var runPart *part
	var runEnd uint64
	for {
		e.mu.Lock()
		for {
			if e.closing && len(e.queue) == 0 {
				e.mu.Unlock()
				return
			}
			var wait time.Duration
			if len(e.queue) > 0 && (!e.paused || e.closing) {
				if e.closing || e.hurry > 0 {
					break
				}
				if wait = e.delay - time.Since(e.since); wait <= 0 {
					break
				}
			}
			e.mu.Unlock()
			var timer *time.Timer
			var fire <-chan time.Time
			if wait > 0 {
				timer = time.NewTimer(wait)
				fire = timer.C
			}
			select {
			case <-e.wake:
			case <-fire:
			case <-ctx.Done():
			}
			if timer != nil {
				timer.Stop()
			}
			if ctx.Err() != nil {
				return
			}
			e.mu.Lock()
		}
		i := -1
		if runPart != nil {
			i = slices.IndexFunc(e.queue, func(x erasure) bool { return x.p == runPart && x.n <= runEnd })
		}
		if i < 0 {
			i, runPart, runEnd = 0, e.queue[0].p, e.queued
		}
		x := e.queue[i]
		e.mu.Unlock()

		err := e.erase(ctx, x)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			if ctx.Err() != nil {
				return
			}
			e.s.log.WarnContext(ctx, "erasing a destroyed data key failed; retrying",
				"subject", x.subject, "seq", x.seq, "stream", x.p.name, "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, maxEraseBackoff)
			continue
		}
		backoff = minEraseBackoff
		if err != nil {
			e.s.log.ErrorContext(ctx, "not erasing a destroyed data key", "subject", x.subject,
				"seq", x.seq, "stream", x.p.name, "err", err)
		}

		e.mu.Lock()
		e.queue = slices.Delete(e.queue, i, i+1)
		e.done++
		if err != nil {
			e.failed = append(e.failed, err)
		}
		close(e.progress)
		e.progress = make(chan struct{})
		empty := len(e.queue) == 0
		e.mu.Unlock()
		if empty {
			if err := e.sync(ctx); err != nil && ctx.Err() == nil {
				e.s.log.WarnContext(ctx, "syncing after erasures failed; the next flush syncs again", "err", err)
			}
		}
	}
}

// sync returns once the erasures done so far are on disk: it calls
// Config.Sync, unless there is none or a call that succeeded began after
// the last erasure done. The server fsyncs a rewritten block file but not
// the directory it was renamed in.
func (e *eraser) sync(ctx context.Context) error {
	if e.s.sync == nil {
		return nil
	}
	e.mu.Lock()
	done, synced := e.done, e.synced
	e.mu.Unlock()
	if done <= synced {
		return nil
	}
	if err := e.s.sync(ctx); err != nil {
		return fmt.Errorf("keys: sync after %d erasures: %w", done-synced, err)
	}
	e.mu.Lock()
	e.synced = max(e.synced, done)
	e.mu.Unlock()
	return nil
}

// flush waits until the erasures queued before the call are done and on
// disk.
func (e *eraser) flush(ctx context.Context) error {
	e.mu.Lock()
	e.hurry++
	defer func() {
		e.mu.Lock()
		e.hurry--
		e.mu.Unlock()
	}()
	e.signal()
	target := e.queued
	for {
		// The eraser takes erasures out of order (stream by stream), so
		// the count done says nothing of which: look for those queued
		// before the call in the queue, where each stays until done.
		n := 0
		for _, x := range e.queue {
			if x.n <= target {
				n++
			}
		}
		if n == 0 {
			break
		}
		if e.stopped {
			e.mu.Unlock()
			return fmt.Errorf("keys: flush: %d erasures left undone by a stopped eraser; the next Open queues them again", n)
		}
		ch := e.progress
		e.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("keys: flush with %d erasures pending: %w", e.pending(), ctx.Err())
		}
		e.mu.Lock()
	}
	failed := e.failed
	e.failed = nil
	e.mu.Unlock()
	if err := e.sync(ctx); err != nil {
		failed = append(failed, fmt.Errorf("keys: flush: %w", err))
	}
	return errors.Join(failed...)
}

// close drains the queue, even when paused, and stops run; when ctx ends
// first it stops run at once.
func (e *eraser) close(ctx context.Context) error {
	e.mu.Lock()
	e.closing = true
	e.mu.Unlock()
	e.signal()
	var cerr error
	select {
	case <-e.exited:
	case <-ctx.Done():
		cerr = ctx.Err()
		e.cancel()
		<-e.exited
	}
	e.cancel()
	e.mu.Lock()
	left := e.queued - e.done
	failed := e.failed
	e.failed = nil
	e.mu.Unlock()
	if cerr == nil {
		if err := e.sync(ctx); err != nil {
			failed = append(failed, fmt.Errorf("keys: close: %w", err))
		}
	}
	if left > 0 {
		if cerr == nil {
			cerr = errors.New("eraser stopped")
		}
		failed = append(failed, fmt.Errorf("keys: close with %d erasures not done, left for the next Open: %w", left, cerr))
	}
	return errors.Join(failed...)
}

// abort stops run without draining the queue.
func (e *eraser) abort() {
	e.mu.Lock()
	e.closing = true
	e.mu.Unlock()
	e.cancel()
	<-e.exited
}

// eraseOne erases x now.
func (s *Store) eraseOne(ctx context.Context, x erasure) error {
	if x.check {
		return s.eraseChecked(ctx, x)
	}
	return x.p.erase(ctx, x.seq)
}
