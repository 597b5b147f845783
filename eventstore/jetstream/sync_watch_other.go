//go:build !linux

package jetstream

// watcher is not available on this system: the syncer looks at every
// stream in every round.
type watcher struct{}

type changes struct {
	dirty, lost map[string]bool
	overflow    bool
}

func newWatcher() *watcher                 { return nil }
func (w *watcher) add(string, string) bool { return false }
func (w *watcher) drain(ch *changes) error { return nil }
func (w *watcher) close()                  {}
