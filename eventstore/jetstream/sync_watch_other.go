//go:build !linux

package jetstream

// watcher is not available on this system: the syncer looks at every
// stream in every round.
type watcher struct{}

func newWatcher() *watcher                       { return nil }
func (w *watcher) add(string, string, bool) bool { return false }
func (w *watcher) drain(ch *changes) error       { return nil }
func (w *watcher) close()                        {}
