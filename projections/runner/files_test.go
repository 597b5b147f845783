package runner_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/licenseledger/ledger/projections/runner"
)

// A process killed while it saved a snapshot leaves the temporary file it
// was writing, which holds the personal data of the read models. The next
// save removes it: once the service checkpoints, no file of the directory
// holds the name of a user deleted since.
func TestSaveRemovesTheTemporaryFileOfACrashedSave(t *testing.T) {
	dir := t.TempDir()
	left := filepath.Join(dir, "read-models.snapshot.2718281828.tmp")
	if err := os.WriteFile(left, []byte("license-ledger read models v1\nAda Lovelace ada@acme.test"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "notes.tmp") // not the snapshot's: left alone
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	snaps := runner.FileSnapshots{Dir: dir}
	if err := snaps.Save(context.Background(), runner.Snapshot{Position: 7, Parts: map[string][]byte{"seats": []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Fatalf("the crashed save's file %s is still there after a save (%v)", left, err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Fatalf("a file that is not a snapshot's was removed: %v", err)
	}
	s, err := snaps.Load(context.Background())
	if err != nil || s.Position != 7 {
		t.Fatalf("load after the save: %+v %v", s, err)
	}
}
