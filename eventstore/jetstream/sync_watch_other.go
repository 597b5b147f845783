//go:build !linux

package jetstream

// watcher is not available on this system: the syncer looks at every
// stream in every round.
type watcher struct{}

type changes struct {
	dirty, lost map[string]bool
	blocks      map[string]uint32
	other       map[string]bool
	overflow    bool
}

func newChanges() changes {
	return changes{dirty: make(map[string]bool), lost: make(map[string]bool),
		blocks: make(map[string]uint32), other: make(map[string]bool)}
}

func newWatcher() *watcher                       { return nil }
func (w *watcher) add(string, string, bool) bool { return false }
func (w *watcher) drain(ch *changes) error       { return nil }
func (w *watcher) close()                        {}
