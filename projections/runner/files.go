package runner

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/licenseledger/ledger/eventstore"
)

// FileSnapshots keeps the latest snapshot in one file of a directory. Save
// writes a new file, syncs it and renames it over the old one, so a crash
// leaves either snapshot whole and the old one's file is gone once Save
// returns; the file a crash leaves half written is removed by the next
// Load (a start) or, once a minute old, by a Save.
type FileSnapshots struct {
	Dir string
}

var _ SnapshotStore = FileSnapshots{}

const snapshotFile = "read-models.snapshot"

// The snapshot file: a magic line, the position, the number of parts, each
// part as its name and bytes (uvarint lengths), then a CRC-32C of all that
// precedes it. Parts are written as they are, so saving and loading cost
// little more than the disk.
const snapshotMagic = "license-ledger read models v1\n"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// unfinishedAge is how old the temporary file of a save must be for
// another save to take it for one that did not finish. A save writes its
// file in one go, in well under that; two processes sharing a data
// directory may save at the same time.
const unfinishedAge = time.Minute

// Save replaces the snapshot file with s. It also removes the temporary
// files of saves that did not finish (a process killed while saving, Load
// removes them all at the start): they hold read-model state, personal
// data included, that no later snapshot rewrites.
func (f FileSnapshots) Save(_ context.Context, s Snapshot) error {
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return err
	}
	f.removeUnfinished(unfinishedAge)
	tmp, err := os.CreateTemp(f.Dir, snapshotFile+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := encodeSnapshot(tmp, s); err != nil {
		tmp.Close()
		return fmt.Errorf("write snapshot: %w", err)
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

// removeUnfinished removes, as far as it can, the temporary files of
// saves last written more than age ago (every one for 0).
func (f FileSnapshots) removeUnfinished(age time.Duration) {
	entries, err := os.ReadDir(f.Dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, snapshotFile+".") || !strings.HasSuffix(name, ".tmp") {
			continue
		}
		if info, err := e.Info(); err != nil || time.Since(info.ModTime()) < age {
			continue
		}
		os.Remove(filepath.Join(f.Dir, name))
	}
}

// Load reads the snapshot file, or returns ErrNoSnapshot. Called as a
// process starts, it first removes the temporary files of every save that
// did not finish.
func (f FileSnapshots) Load(context.Context) (Snapshot, error) {
	f.removeUnfinished(0)
	b, err := os.ReadFile(filepath.Join(f.Dir, snapshotFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Snapshot{}, ErrNoSnapshot
	}
	if err != nil {
		return Snapshot{}, err
	}
	s, err := decodeSnapshot(b)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot in %s: %w", f.Dir, err)
	}
	return s, nil
}

func encodeSnapshot(w io.Writer, s Snapshot) error {
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 1<<20)
	var n [binary.MaxVarintLen64]byte
	uvarint := func(v uint64) { bw.Write(n[:binary.PutUvarint(n[:], v)]) }
	bw.WriteString(snapshotMagic)
	uvarint(uint64(s.Position))
	uvarint(uint64(len(s.Parts)))
	names := make([]string, 0, len(s.Parts))
	for name := range s.Parts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		uvarint(uint64(len(name)))
		bw.WriteString(name)
		uvarint(uint64(len(s.Parts[name])))
		bw.Write(s.Parts[name])
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(crc.Sum(nil))
	return err
}

// errCorrupt is wrapped by Load for a snapshot file it cannot read.
var errCorrupt = errors.New("corrupt snapshot")

// decodeSnapshot reads what encodeSnapshot wrote. Parts share memory with b.
func decodeSnapshot(b []byte) (Snapshot, error) {
	if len(b) < len(snapshotMagic)+4 || !bytes.HasPrefix(b, []byte(snapshotMagic)) {
		return Snapshot{}, fmt.Errorf("%w: not a snapshot file of this version", errCorrupt)
	}
	body, sum := b[:len(b)-4], b[len(b)-4:]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(sum) {
		return Snapshot{}, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	rest := body[len(snapshotMagic):]
	next := func() (uint64, bool) {
		v, k := binary.Uvarint(rest)
		if k <= 0 {
			return 0, false
		}
		rest = rest[k:]
		return v, true
	}
	bytesOf := func() ([]byte, bool) {
		l, ok := next()
		if !ok || l > uint64(len(rest)) {
			return nil, false
		}
		v := rest[:l:l]
		rest = rest[l:]
		return v, true
	}
	pos, ok1 := next()
	count, ok2 := next()
	if !ok1 || !ok2 || count > uint64(len(rest)) {
		return Snapshot{}, fmt.Errorf("%w: bad header", errCorrupt)
	}
	s := Snapshot{Position: eventstore.Position(pos), Parts: make(map[string][]byte, count)}
	for range count {
		name, ok1 := bytesOf()
		part, ok2 := bytesOf()
		if !ok1 || !ok2 {
			return Snapshot{}, fmt.Errorf("%w: truncated part", errCorrupt)
		}
		s.Parts[string(name)] = part
	}
	if len(rest) != 0 {
		return Snapshot{}, fmt.Errorf("%w: %d trailing bytes", errCorrupt, len(rest))
	}
	return s, nil
}
