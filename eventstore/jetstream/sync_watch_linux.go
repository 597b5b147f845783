//go:build linux

package jetstream

import (
	"errors"
	"fmt"
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
	wds map[int32]string // watch descriptor -> stream name ("" for the streams directory)
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
	return &watcher{fd: fd, buf: make([]byte, 64<<10), wds: make(map[int32]string)}
}

// add watches the directory path for the stream name and reports whether
// it is watched.
func (w *watcher) add(path, name string) bool {
	wd, err := syscall.InotifyAddWatch(w.fd, path, watchMask)
	if err != nil {
		return false
	}
	w.wds[int32(wd)] = name
	return true
}

// changes is what a drain found: the streams whose directories had events
// (the streams directory as ""), those whose watch the kernel dropped (a
// directory removed), and whether events were lost (queue overflow).
type changes struct {
	dirty, lost map[string]bool
	overflow    bool
}

// drain reads every event queued and clears ch before filling it.
func (w *watcher) drain(ch *changes) error {
	clear(ch.dirty)
	clear(ch.lost)
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
			name, ok := w.wds[ev.Wd]
			if !ok {
				continue
			}
			ch.dirty[name] = true
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
				end := off
				start := end - int(ev.Len)
				b := w.buf[start:end]
				for i, c := range b {
					if c == 0 {
						b = b[:i]
						break
					}
				}
				ch.dirty[string(b)] = true
			}
		}
	}
}

func (w *watcher) close() {
	syscall.Close(w.fd)
}
