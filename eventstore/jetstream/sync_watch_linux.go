//go:build linux

package jetstream

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"syscall"
	"unsafe"
)

// watcher tells the syncer which stream directories changed since its
// last drain, from the kernel's inotify events: a write(2) to a file, or a
// file created, removed or renamed in a watched directory, queues an event
// before the call returns, so every write the server acknowledged before a
// round starts is in the queue the round drains first.
type watcher struct {
	fd  int
	buf []byte
	wds map[int32]watched // by watch descriptor
}

// watched is a directory watched: the stream's name ("" for the streams
// directory) and whether it is the stream's msgs directory.
type watched struct {
	name string
	msgs bool
}

// watchMask is what changes a directory or the files in it: data written
// or truncated, attributes, entries created, removed or renamed, and the
// directory itself removed or moved.
const watchMask = syscall.IN_MODIFY | syscall.IN_ATTRIB | syscall.IN_CREATE | syscall.IN_DELETE |
	syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF

// newWatcher returns a watcher of no directory yet (the syncer adds the
// streams directory, which the server makes with its first stream, and
// each stream's); nil when the kernel refuses (no inotify, too many
// instances): the syncer then looks at every stream in every round.
func newWatcher() *watcher {
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	return &watcher{fd: fd, buf: make([]byte, 64<<10), wds: make(map[int32]watched)}
}

// add watches the directory path for the stream name, its msgs directory
// when msgs is set, and reports whether it is watched.
func (w *watcher) add(path, name string, msgs bool) bool {
	wd, err := syscall.InotifyAddWatch(w.fd, path, watchMask)
	if err != nil {
		return false
	}
	w.wds[int32(wd)] = watched{name, msgs}
	return true
}

// drain reads every event queued and clears ch before filling it.
func (w *watcher) drain(ch *changes) error {
	clear(ch.dirty)
	clear(ch.lost)
	clear(ch.blocks)
	clear(ch.other)
	ch.overflow = false
	for {
		n, err := syscall.Read(w.fd, w.buf)
		if errors.Is(err, syscall.EAGAIN) {
			return nil
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read inotify events: %w", err)
		}
		if n <= 0 {
			return fmt.Errorf("read inotify events: %d bytes", n)
		}
		for off := 0; off+syscall.SizeofInotifyEvent <= n; {
			ev := (*syscall.InotifyEvent)(unsafe.Pointer(&w.buf[off]))
			off += syscall.SizeofInotifyEvent + int(ev.Len)
			if ev.Mask&syscall.IN_Q_OVERFLOW != 0 {
				ch.overflow = true
				continue
			}
			wt, ok := w.wds[ev.Wd]
			if !ok {
				continue
			}
			name := wt.name
			ch.dirty[name] = true
			if name != "" {
				ch.note(name, wt.msgs, ev.Mask, entryName(w.buf, off, ev.Len))
			}
			switch {
			case ev.Mask&syscall.IN_IGNORED != 0:
				// The directory is gone: its watch with it.
				delete(w.wds, ev.Wd)
				ch.lost[name] = true
			case ev.Mask&syscall.IN_MOVE_SELF != 0:
				// The directory moved: its path is no longer watched.
				syscall.InotifyRmWatch(w.fd, uint32(ev.Wd))
				delete(w.wds, ev.Wd)
				ch.lost[name] = true
			}
			if name == "" && ev.Len > 0 {
				// An entry of the streams directory: that stream.
				n := entryName(w.buf, off, ev.Len)
				ch.dirty[string(n)] = true
				ch.other[string(n)] = true
			}
		}
	}
}

// entryName returns the name of the entry an event of name length n that
// ends at off in buf is about (empty for the watched directory itself).
func entryName(buf []byte, off int, n uint32) []byte {
	b := buf[off-int(n) : off]
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// blockIndexOf parses a message block file name, "<index>.blk", as
// blockIndex does, without making a string of it.
func blockIndexOf(name []byte) (uint32, bool) {
	digits, ok := bytes.CutSuffix(name, []byte(".blk"))
	if !ok || len(digits) == 0 || len(digits) > 10 {
		return 0, false
	}
	var n uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n > math.MaxUint32 {
		return 0, false
	}
	return uint32(n), true
}

// note records an event of stream name's directory (its msgs directory
// when msgs is set) about the entry named entry: a write to a block file
// of the msgs directory in blocks, unless the stream had another event;
// anything else in other.
func (ch *changes) note(name string, msgs bool, mask uint32, entry []byte) {
	if ch.other[name] {
		return
	}
	if msgs && mask == syscall.IN_MODIFY {
		if idx, ok := blockIndexOf(entry); ok {
			if prev, seen := ch.blocks[name]; !seen || prev == idx {
				ch.blocks[name] = idx
				return
			}
		}
	}
	delete(ch.blocks, name)
	ch.other[name] = true
}

func (w *watcher) close() {
	syscall.Close(w.fd)
}
