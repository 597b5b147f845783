package runner_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/licenseledger/ledger/projections/runner"
)

// leftover writes the temporary file of a save killed before it renamed
// it, holding personal data, last written at mtime.
func leftover(t *testing.T, dir, name string, mtime time.Time) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("license-ledger read models v1\nAda Lovelace ada@acme.test"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	return path
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return err == nil
}

// A process killed while it saved a snapshot leaves the temporary file it
// was writing, which holds the personal data of the read models. The next
// start (Load) removes it, and so does a save once it is old enough not to
// be another process's save in progress: once the service checkpoints, no
// file of the directory holds the name of a user deleted since.
func TestTheTemporaryFileOfAKilledSaveIsRemoved(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	snaps := runner.FileSnapshots{Dir: dir}
	other := leftover(t, dir, "notes.tmp", time.Now().Add(-time.Hour)) // not a snapshot's: left alone

	old := leftover(t, dir, "read-models.snapshot.2718281828.tmp", time.Now().Add(-2*time.Minute))
	recent := leftover(t, dir, "read-models.snapshot.3141592653.tmp", time.Now())
	if err := snaps.Save(ctx, runner.Snapshot{Position: 7, Parts: map[string][]byte{"seats": []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if exists(t, old) {
		t.Fatalf("a save left %s, the file of a save that did not finish two minutes ago", old)
	}
	if !exists(t, recent) {
		t.Fatal("a save removed a file another save may still be writing")
	}

	if s, err := snaps.Load(ctx); err != nil || s.Position != 7 {
		t.Fatalf("load: %+v %v", s, err)
	}
	if exists(t, recent) {
		t.Fatalf("a start (Load) left %s, the file of a save that did not finish", recent)
	}
	if !exists(t, other) {
		t.Fatal("a file that is not a snapshot's was removed")
	}

	// With no snapshot saved yet, a start still removes them.
	empty := runner.FileSnapshots{Dir: t.TempDir()}
	first := leftover(t, empty.Dir, "read-models.snapshot.1.tmp", time.Now())
	if _, err := empty.Load(ctx); err != runner.ErrNoSnapshot {
		t.Fatalf("load of an empty directory: %v", err)
	}
	if exists(t, first) {
		t.Fatalf("a start without a snapshot left %s", first)
	}
}
