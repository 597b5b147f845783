package runner

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// FileSnapshots keeps the latest snapshot in one file of a directory. Save
// writes a new file, syncs it and renames it over the old one, so a crash
// leaves either snapshot whole and the old one's file is gone once Save
// returns.
type FileSnapshots struct {
	Dir string
}

var _ SnapshotStore = FileSnapshots{}

const snapshotFile = "read-models.snapshot"

// Save replaces the snapshot file with s.
func (f FileSnapshots) Save(_ context.Context, s Snapshot) error {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(s); err != nil {
		return fmt.Errorf("encode snapshot: %w", err)
	}
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(f.Dir, snapshotFile+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(f.Dir, snapshotFile)); err != nil {
		return err
	}
	if d, err := os.Open(f.Dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Load reads the snapshot file, or returns ErrNoSnapshot.
func (f FileSnapshots) Load(context.Context) (Snapshot, error) {
	b, err := os.ReadFile(filepath.Join(f.Dir, snapshotFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Snapshot{}, ErrNoSnapshot
	}
	if err != nil {
		return Snapshot{}, err
	}
	var s Snapshot
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&s); err != nil {
		return Snapshot{}, fmt.Errorf("decode snapshot %s: %w", f.Dir, err)
	}
	return s, nil
}
