package jetstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/licenseledger/ledger/eventstore"
)

// errSyncFailed marks every append refused because the group sync failed.
var errSyncFailed = errors.New("jetstream: sync of the stream files failed")

// syncer is the group commit of an embedded server running without
// SyncAlways: the server write()s each message to its block file before it
// acknowledges it, and an append waits, after its acknowledgement, for the
// next sync round, which fsyncs every block file that may hold data
// written since the previous round. Appends acknowledged while a round runs
// wait for the next one, so one round serves every append acknowledged
// before it started.
//
// A round covers every stream of the account (the ledger's, and the key
// and token buckets on the same server): for each stream it fsyncs the
// block files from the last one of the previous round on (the server only
// appends to its last block) that changed since their last fsync (inode,
// size or modification time), its msgs directory when a block file
// appeared, its meta files (configuration) and directory when they
// changed, and, the first time, the directories above the streams'.
// Streams named unsynced are left out: their files reach the disk on the
// server's own interval.
//
// Where the kernel tells which files changed (inotify), a round looks only
// at the streams written since the previous round drained the events, and
// a stream whose only events were writes to the block file the previous
// round left open (the server appending to its last block) is synced
// through that file alone, without a stat: a block created, removed or
// replaced, a meta file renamed, anything else, is an event of its own
// that sends the round through the stats as above. A change made before
// the previous round drained the events is covered by that round's
// fsyncs; one made after is in this round's drain, so the open file is
// never one replaced since.
//
// Once an fsync fails every later round fails too: after a failed fsync
// the kernel may have dropped the dirty pages, so a later fsync that
// succeeds proves nothing about them.
type syncer struct {
	dir string // <store dir>/jetstream/<account>/streams
	log *slog.Logger
	// unsynced names the stream directories the rounds leave out.
	unsynced map[string]bool

	mu   sync.Mutex
	next *round // the round appends acknowledged now wait for
	// fsync syncs one file or directory: (*os.File).Sync unless a test
	// replaces it.
	fsync func(*os.File) error
	// byName is whether a stream whose only events were writes to its open
	// block is synced through that file without stats (see above); off
	// only in benchmarks measuring what it saves.
	byName bool

	kick    chan struct{}
	stop    chan struct{}
	stopped chan struct{}

	// Owned by the loop goroutine.
	sync    func(*os.File) error // fsync, read at the start of the round
	fast    bool                 // byName, read at the start of the round
	streams map[string]*streamFiles
	names   []string // stream directories at the last listing
	listing listing  // of the streams directory
	parents bool     // the directories above the streams' were synced
	failed  error    // sticky: the first failed fsync
	// watch tells which stream directories changed since the previous
	// round; nil when the system cannot tell: every stream is looked at.
	watch   *watcher
	changed changes
	// watched is whether the streams directory is watched since before
	// its last listing.
	watched bool

	rounds atomic.Uint64 // rounds run, for tests and benchmarks
	// looked counts the streams a round looked at, named those synced
	// by name alone, for tests.
	looked, named atomic.Uint64
}

// round is one group sync; done is closed when it has ended, err set.
type round struct {
	waiters int
	done    chan struct{}
	err     error
}

// streamFiles is what the syncer keeps of one stream's directory.
type streamFiles struct {
	last    uint32  // highest block index of the previous round
	top     uint32  // highest block index of the last listing
	listing listing // of the msgs directory
	// The msgs and stream directories as they were at their last fsync.
	msgs, dir listing
	seen      bool // synced once
	// watched is whether the stream's directory and msgs directory are
	// watched since before the round that last looked at them.
	watched bool
	// The last block file, kept open across rounds: opening it for each
	// fsync cost as much as the stats of a round.
	open     *os.File
	openIdx  uint32
	openInfo os.FileInfo
	// What each block file (index >= last) and meta file looked like
	// before its last fsync.
	blocks map[uint32]os.FileInfo
	meta   map[string]os.FileInfo
}

func newSyncer(dir string, log *slog.Logger, unsynced ...string) *syncer {
	y := &syncer{
		dir:      dir,
		log:      log,
		unsynced: make(map[string]bool, len(unsynced)),
		fsync:    (*os.File).Sync,
		next:     &round{done: make(chan struct{})},
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		stopped:  make(chan struct{}),
		streams:  make(map[string]*streamFiles),
		byName:   true,
		changed:  newChanges(),
	}
	for _, name := range unsynced {
		y.unsynced[name] = true
	}
	y.watch = newWatcher()
	go y.loop()
	return y
}

// wait returns once a sync round that started after the call has ended:
// everything the server acknowledged before the call is then on disk.
func (y *syncer) wait(ctx context.Context) error {
	y.mu.Lock()
	r := y.next
	r.waiters++
	y.mu.Unlock()
	select {
	case y.kick <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	case <-y.stopped:
		return eventstore.ErrClosed
	}
}

// close stops the loop once the round in progress has ended.
func (y *syncer) close() {
	close(y.stop)
	<-y.stopped
}

func (y *syncer) loop() {
	defer close(y.stopped)
	defer func() {
		for _, st := range y.streams {
			st.closeBlock()
		}
		if y.watch != nil {
			y.watch.close()
		}
	}()
	for {
		select {
		case <-y.kick:
		case <-y.stop:
			return
		}
		y.mu.Lock()
		r := y.next
		if r.waiters == 0 {
			// A late kick for a round already run.
			y.mu.Unlock()
			continue
		}
		y.next = &round{done: make(chan struct{})}
		y.sync, y.fast = y.fsync, y.byName
		y.mu.Unlock()
		r.err = y.syncAll()
		y.rounds.Add(1)
		close(r.done)
	}
}

// syncAll runs one round.
func (y *syncer) syncAll() error {
	if y.failed != nil {
		return y.failed
	}
	if err := y.syncStreams(); err != nil {
		y.failed = fmt.Errorf("%w: %w", errSyncFailed, err)
		y.log.Error("fsync of the stream files failed: appends are refused from now on", "err", err)
		return y.failed
	}
	return nil
}

func (y *syncer) syncStreams() error {
	// Which streams changed since the previous round drained the events:
	// the others are skipped. Every stream is looked at when the system
	// cannot tell, or lost events.
	all := y.watch == nil
	if !all {
		if err := y.watch.drain(&y.changed); err != nil {
			y.log.Warn("watching the stream files failed: every sync round looks at every stream", "err", err)
			y.watch.close()
			y.watch = nil
			all = true
		} else if y.changed.overflow {
			// Events were lost, among them perhaps the one saying the
			// kernel dropped the watch of a directory removed and made
			// again since: a watch thought live could report nothing. A
			// new instance, on which every directory is watched again
			// before it is looked at, knows of no such watch.
			all = true
			y.watch.close()
			y.watch = newWatcher()
			if y.watch == nil {
				y.log.Warn("watching the stream files failed after lost events: every sync round looks at every stream")
			}
			y.watched = false
			for _, st := range y.streams {
				st.watched = false
			}
		}
		for name := range y.changed.lost {
			if name == "" {
				y.watched = false
			} else if st := y.streams[name]; st != nil {
				// The directory went, or moved: a stream of the same name
				// later is another stream, whose blocks start again at 1.
				st.closeBlock()
				delete(y.streams, name)
			}
		}
	}
	if all || !y.watched || y.changed.dirty[""] {
		if err := y.listStreams(); err != nil {
			return err
		}
	}
	newStream := false
	for _, name := range y.names {
		st := y.streams[name]
		if st == nil {
			st = &streamFiles{blocks: make(map[uint32]os.FileInfo), meta: make(map[string]os.FileInfo)}
			y.streams[name] = st
		}
		if !all && st.watched && st.seen {
			if !y.changed.dirty[name] {
				// Nothing of the stream changed since the previous round
				// looked at it.
				continue
			}
			if idx, ok := y.changed.blocks[name]; ok && y.fast && !y.changed.other[name] &&
				st.open != nil && st.openIdx == idx && idx == st.top && idx == st.last {
				// Only the block the previous round left open was written:
				// nothing else of the stream needs looking at. What it
				// looks like is taken before the fsync, as a stat would be,
				// for a later round that looks at the stream.
				y.looked.Add(1)
				y.named.Add(1)
				fi, err := st.open.Stat()
				if err != nil {
					return fmt.Errorf("stat %s: %w", st.open.Name(), err)
				}
				if err := y.sync(st.open); err != nil {
					return fmt.Errorf("sync %s: %w", st.open.Name(), err)
				}
				st.blocks[idx] = fi
				continue
			}
		}
		dir := filepath.Join(y.dir, name)
		if y.watch != nil && !st.watched {
			// Watched before it is looked at: a change after the look
			// marks it for the next round.
			st.watched = y.watch.add(dir, name, false) && y.watch.add(filepath.Join(dir, "msgs"), name, true)
		}
		if !st.seen {
			newStream = true
		}
		y.looked.Add(1)
		if err := y.syncStream(dir, st); err != nil {
			return err
		}
	}
	if !newStream {
		return nil
	}
	// A stream directory appeared: its entry must last too, and, the first
	// time, those of the directories above it.
	dirs := []string{y.dir}
	if !y.parents {
		acct := filepath.Dir(y.dir)
		dirs = append(dirs, acct, filepath.Dir(acct), filepath.Dir(filepath.Dir(acct)))
	}
	for _, d := range dirs {
		if err := y.syncPath(d); err != nil {
			return err
		}
	}
	y.parents = true
	return nil
}

// listStreams lists the streams directory when it changed since its last
// listing.
func (y *syncer) listStreams() error {
	if y.watch != nil && !y.watched {
		// Watched before it is stat'ed and listed.
		y.watched = y.watch.add(y.dir, "", false)
	}
	fi, err := os.Stat(y.dir)
	if err != nil {
		return fmt.Errorf("stat streams: %w", err)
	}
	if at := listed(fi); !y.listing.valid(fi) {
		ents, err := os.ReadDir(y.dir)
		if err != nil {
			return fmt.Errorf("list streams: %w", err)
		}
		y.names = y.names[:0]
		for _, e := range ents {
			// The server deletes a stream by renaming its directory to
			// ".<name>" and then removing it.
			if e.IsDir() && !y.unsynced[e.Name()] && !strings.HasPrefix(e.Name(), ".") {
				y.names = append(y.names, e.Name())
			}
		}
		y.listing = at
		// The records of the streams gone, and their open blocks, go too.
		for name, st := range y.streams {
			if !slices.Contains(y.names, name) {
				st.closeBlock()
				delete(y.streams, name)
			}
		}
	}
	return nil
}

// syncStream fsyncs the files of one stream that may hold data written
// since the previous round: its block files from the last one of the
// previous round on, its msgs directory when an entry appeared, went or
// was replaced (a new block, a block rewritten by an erasure), and its
// meta files and directory when they changed. It lists a directory only
// when the directory changed since its last listing.
//
// A stream whose directory or msgs directory is not there, or goes while
// the round looks at it, is being created or deleted: what is left of it
// is not the syncer's to sync, and the round goes on.
func (y *syncer) syncStream(dir string, st *streamFiles) error {
	dfi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		st.reset()
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", dir, err)
	}
	dirAt := listed(dfi)
	if st.dir.fi != nil && !os.SameFile(st.dir.fi, dfi) {
		// Another directory of the same name: the stream was deleted and
		// made again, its blocks start again at 1, and the directories
		// watched, if any, are the old ones.
		st.reset()
		st.watched = false
	}
	msgs := filepath.Join(dir, "msgs")
	mfi, err := os.Stat(msgs)
	if errors.Is(err, os.ErrNotExist) {
		st.reset()
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", msgs, err)
	}
	msgsAt := listed(mfi)
	if !st.listing.valid(mfi) {
		ents, err := os.ReadDir(msgs)
		if errors.Is(err, os.ErrNotExist) {
			st.reset()
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", msgs, err)
		}
		var top uint32
		for _, e := range ents {
			if idx, ok := blockIndex(e.Name()); ok {
				top = max(top, idx)
			}
		}
		if top < st.last {
			// Block indices only grow in a stream: this is another
			// stream of the same name (its directory got the inode of
			// the one deleted).
			st.reset()
			st.watched = false
		}
		st.top = top
		st.listing = msgsAt
	}
	// The server only appends to its last block, and creates block i+1
	// after block i: the blocks that may hold unsynced data are those from
	// the previous round's last on.
	for idx := st.last; idx <= st.top; idx++ {
		fn := filepath.Join(msgs, strconv.FormatUint(uint64(idx), 10)+".blk")
		fi, err := os.Stat(fn)
		if errors.Is(err, os.ErrNotExist) {
			continue // removed by the server, or never there (index 0)
		}
		if err != nil {
			return fmt.Errorf("stat block: %w", err)
		}
		if unchanged(st.blocks[idx], fi) {
			// Nothing written since its last fsync: the server only
			// appends to a block (size), truncates it (size), or replaces
			// it with a new file (inode). A clean fsync still costs a
			// device flush.
			continue
		}
		if err := y.syncBlock(st, idx, fn, fi); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return err
		}
		st.blocks[idx] = fi
	}
	for idx := range st.blocks {
		if idx < st.top {
			delete(st.blocks, idx)
		}
	}
	st.last = st.top
	// The stream's configuration: the server rewrites it (a new file
	// renamed over the old, which changes the directory) when the stream
	// is created or updated, which Open does, and the stream cannot be
	// recovered without it.
	if !st.dir.valid(dfi) {
		if err := y.syncMeta(dir, st); errors.Is(err, os.ErrNotExist) {
			st.reset()
			return nil
		} else if err != nil {
			return err
		}
		st.dir = dirAt
	}
	if !st.msgs.valid(mfi) {
		if err := y.syncPath(msgs); errors.Is(err, os.ErrNotExist) {
			st.reset()
			return nil
		} else if err != nil {
			return err
		}
		st.msgs = msgsAt
	}
	st.seen = true
	return nil
}

// reset forgets what the syncer knew of a stream, which is gone or another
// stream of the same name, closing its open block; whether its
// directories are watched stays.
func (st *streamFiles) reset() {
	st.closeBlock()
	*st = streamFiles{
		watched: st.watched,
		blocks:  make(map[uint32]os.FileInfo),
		meta:    make(map[string]os.FileInfo),
	}
}

// syncBlock fsyncs block idx of a stream, named fn and stat'ed as fi,
// through the stream's open file when that is the same file, and keeps the
// last block open.
func (y *syncer) syncBlock(st *streamFiles, idx uint32, fn string, fi os.FileInfo) error {
	if st.open != nil && st.openIdx == idx && os.SameFile(st.openInfo, fi) {
		if err := y.sync(st.open); err != nil {
			return fmt.Errorf("sync %s: %w", fn, err)
		}
		return nil
	}
	if idx != st.top {
		return y.syncPath(fn)
	}
	f, err := os.Open(fn)
	if err != nil {
		return fmt.Errorf("sync %s: %w", fn, err)
	}
	if err := y.sync(f); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", fn, err)
	}
	// fi may predate a replacement of the file between the stat and the
	// open: then the next round sees another inode and opens it again.
	st.closeBlock()
	st.open, st.openIdx, st.openInfo = f, idx, fi
	return nil
}

// closeBlock closes the stream's open block file, if any.
func (st *streamFiles) closeBlock() {
	if st.open != nil {
		st.open.Close()
		st.open, st.openInfo = nil, nil
	}
}

// syncMeta fsyncs the meta files of a stream that changed since their last
// fsync, and the stream directory.
func (y *syncer) syncMeta(dir string, st *streamFiles) error {
	for _, name := range []string{"meta.inf", "meta.sum"} {
		fn := filepath.Join(dir, name)
		fi, err := os.Stat(fn)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", fn, err)
		}
		if unchanged(st.meta[name], fi) {
			continue
		}
		if err := y.syncPath(fn); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		st.meta[name] = fi
	}
	return y.syncPath(dir)
}

// racyWindow is how old a directory's modification time must be for a
// listing of it, or an fsync of it, to stand for the directory as long as
// the time stays: the kernel stamps changes with a clock that ticks every
// few milliseconds, so a change in the same tick as the stat before a
// listing would leave the time as it was.
const racyWindow = 100 * time.Millisecond

// listing is a directory as it was when it was stat'ed, before it was
// listed or fsynced.
type listing struct {
	fi os.FileInfo
	at time.Time
}

func listed(fi os.FileInfo) listing { return listing{fi: fi, at: time.Now()} }

// valid reports whether the directory, stat'ed again as now, holds the
// same entries as at the listing or fsync: the same directory with the
// same modification time, which was older than racyWindow then.
func (l listing) valid(now os.FileInfo) bool {
	return l.fi != nil && unchanged(l.fi, now) && l.at.Sub(now.ModTime()) > racyWindow
}

// syncPath opens and fsyncs a file or directory.
func (y *syncer) syncPath(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("sync %s: %w", name, err)
	}
	defer f.Close()
	if err := y.sync(f); err != nil {
		return fmt.Errorf("sync %s: %w", name, err)
	}
	return nil
}

// unchanged reports whether a file looks as it did when it was last
// synced (old, nil if never): same file, size and modification time.
func unchanged(old, now os.FileInfo) bool {
	return old != nil && os.SameFile(old, now) && old.Size() == now.Size() && old.ModTime().Equal(now.ModTime())
}

// blockIndex parses a message block file name, "<index>.blk".
func blockIndex(name string) (uint32, bool) {
	s, ok := strings.CutSuffix(name, ".blk")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}
