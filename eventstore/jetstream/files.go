package jetstream

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
)

// Reading the embedded server's stream from its files.
//
// A replay of the whole log through a consumer costs the server and this
// process several microseconds a message (the server builds each
// delivery's acknowledgement subject and flow control, the client parses
// them), which bounds a rebuild of the read models and a restart without
// a snapshot. With the server in this process and its stream on local
// files, ReadAll reads the stream's message blocks itself instead: the
// file store writes every message to its block file before it
// acknowledges it, and appends to a block, never rewrites it, while no
// message of the stream is removed.
//
// The layout read is nats-server's file store (v2.15): the directory
// <store>/<account>/streams/<stream>/msgs holds <n>.blk files in
// sequence order, each a run of records
//
//	length  uint32 (bit 31: the record has headers)
//	seq     uint64 (bit 63: erased, bit 62: a tombstone)
//	ts      int64  (Unix nanoseconds)
//	subjlen uint16, subject
//	[hdrlen uint32, headers]  when bit 31 is set
//	payload
//	checksum [8]byte
//
// all integers little-endian, length counting the whole record. A full
// block of a compressed stream is instead "cmp", the algorithm's byte
// and the original size (server.CompressionInfo), then the records
// compressed with S2 and the last record's checksum as it was. The read
// is taken only when it is safe: an unencrypted stream of one replica that has never had a message removed (no deleted
// sequences), and it checks as it goes that the sequences run without a
// gap from the first one wanted. Anything else it does not expect (a
// record that does not parse, a gap, an erased record) ends it, and the
// read goes on from that sequence through a consumer. The checksums are
// not verified here: the server verifies them when it loads a block, and
// the events' own hash chains are verified above the store.

// blockRecordHeader is the size of a record's fixed header.
const blockRecordHeader = 22

const (
	recHeadersBit = 1 << 31
	seqErasedBit  = 1 << 63
	seqTombBit    = 1 << 62
	recChecksum   = 8
	maxRecord     = 32 << 20 // larger records are not the file store's
)

// minFileRead is the fewest messages ReadAll reads from the files: a
// shorter read (the tail a follower catches up with, a single record)
// costs less through a consumer than the stream's info, a listing of its
// blocks and the read of a whole block (up to 8 MB).
var minFileRead uint64 = 4096

// filesReadable reports whether ReadAll may read the stream's block
// files: an embedded server, one replica, no encryption (compressed blocks
// are decompressed as they are read, see [blockReader]),
// and no message ever removed.
func (s *Store) filesReadable(ctx context.Context) bool {
	if s.streamsDir == "" || s.replicated {
		return false
	}
	info, err := s.stream.Info(ctx)
	if err != nil {
		return false
	}
	if info.Config.Storage != jetstream.FileStorage ||
		info.Config.Replicas > 1 || info.State.NumDeleted > 0 {
		return false
	}
	if _, err := os.Stat(filepath.Join(s.streamsDir, s.cfg.Stream, "meta.key")); !errors.Is(err, os.ErrNotExist) {
		return false // encrypted, or cannot tell
	}
	return true
}

// block is one message block file of the stream.
type block struct {
	path  string
	index uint64
}

// blocks lists the stream's block files in order, from the last one that
// begins at or before sequence first. It looks at the first record of the
// last two blocks (a tail's read opens few files), then bisects the others:
// blocks begin at increasing sequences, and only a block just created at
// the end holds no record yet. A full read of a stream of 250 blocks opens
// 10 of them here, not 250.
func (s *Store) blocks(first uint64) ([]block, error) {
	return blocksFrom(filepath.Join(s.streamsDir, s.cfg.Stream, "msgs"), first)
}

// blocksFrom is [Store.blocks] for the block files in dir.
func blocksFrom(dir string, first uint64) ([]block, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var bs []block
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".blk")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil {
			continue
		}
		bs = append(bs, block{path: filepath.Join(dir, e.Name()), index: n})
	}
	slices.SortFunc(bs, func(a, b block) int { return cmp.Compare(a.index, b.index) })
	var serr error
	begins := func(i int) bool { // whether bs[i] begins at or before first
		seq, ok, err := firstSeq(bs[i].path)
		if err != nil && serr == nil {
			serr = err
		}
		return err == nil && ok && seq <= first
	}
	rest := max(len(bs)-2, 0)
	for i := len(bs) - 1; i >= rest; i-- {
		if begins(i) {
			return bs[i:], nil
		}
		if serr != nil {
			return nil, serr
		}
	}
	// The first of bs[:rest] that begins after first; the one before it
	// is where the read starts.
	i := sort.Search(rest, func(i int) bool { return !begins(i) })
	if serr != nil {
		return nil, serr
	}
	return bs[max(i-1, 0):], nil
}

// firstSeq returns the sequence of the first record of the block file at
// path, ok false when it holds none yet. Of a compressed block it
// decompresses only the first chunk.
func firstSeq(path string) (seq uint64, ok bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	var h [blockRecordHeader]byte
	if _, err := io.ReadFull(f, h[:]); errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return 0, false, nil // empty: a block just created
	} else if err != nil {
		return 0, false, err
	}
	var ci server.CompressionInfo
	n, err := ci.UnmarshalMetadata(h[:])
	if err != nil {
		return 0, false, err
	}
	if n > 0 {
		if ci.Algorithm != server.S2Compression {
			return 0, false, errNoFiles
		}
		if _, err := f.Seek(int64(n), io.SeekStart); err != nil {
			return 0, false, err
		}
		if _, err := io.ReadFull(s2.NewReader(f), h[:]); err != nil {
			return 0, false, err
		}
	}
	return binary.LittleEndian.Uint64(h[4:]) &^ (seqErasedBit | seqTombBit), true, nil
}

// errNoFiles reports a block the store cannot read.
var errNoFiles = errors.New("jetstream: a block of an unknown compression")

// readFiles yields the messages of sequences first to last from the
// stream's block files. It returns the sequence it could not read (0 once
// it read them all) for the caller to read on from in another way, and
// whether it stopped because yield asked it to or after an error it
// yielded.
func (s *Store) readFiles(ctx context.Context, first, last uint64, yield func(eventstore.Record, error) bool) (next uint64, stopped bool) {
	bs, err := s.blocks(first)
	if err != nil || len(bs) == 0 {
		return first, false
	}
	next = first
	var br blockReader
	var buf []byte
	// Subjects repeat (a stream's events, one type after the other):
	// each is parsed once, up to a bound.
	streams := make(map[string]subjectStream)
	var subj0 subjectStream // the last record's subject
	var parser eventstore.CloudEventParser
	for _, b := range bs {
		if err := ctx.Err(); err != nil {
			yield(eventstore.Record{}, fmt.Errorf("jetstream: read: %w", err))
			return 0, true
		}
		buf, err = br.read(b.path)
		if err != nil {
			return next, false
		}
		for off := 0; off < len(buf); {
			if len(buf)-off < blockRecordHeader {
				return next, false
			}
			h := buf[off : off+blockRecordHeader]
			rl := binary.LittleEndian.Uint32(h[0:])
			hasHdr := rl&recHeadersBit != 0
			rl &^= recHeadersBit
			rawSeq := binary.LittleEndian.Uint64(h[4:])
			ts := int64(binary.LittleEndian.Uint64(h[12:]))
			slen := int(binary.LittleEndian.Uint16(h[20:]))
			if rl < blockRecordHeader+recChecksum || rl > maxRecord || int(rl) > len(buf)-off {
				return next, false
			}
			rec := buf[off : off+int(rl)]
			off += int(rl)
			if rawSeq&seqTombBit != 0 {
				continue // the record of a removal, not a message
			}
			seq := rawSeq &^ seqErasedBit
			if seq < next {
				continue // before the read, or a record already passed
			}
			if seq != next || rawSeq&seqErasedBit != 0 {
				return next, false // a gap or an erased message: not ours to judge
			}
			data := rec[blockRecordHeader : len(rec)-recChecksum]
			if slen > len(data) {
				return next, false
			}
			subj, data := data[:slen], data[slen:]
			var hdr rawHeaders
			if hasHdr {
				if len(data) < 4 {
					return next, false
				}
				hl := int(binary.LittleEndian.Uint32(data))
				if hl > len(data)-4 {
					return next, false
				}
				if hdr, err = parseStoredHeaders(data[4 : 4+hl]); err != nil {
					return next, false
				}
				data = data[4+hl:]
			}
			if string(subj) != subj0.subject {
				var ok bool
				if subj0, ok = streams[string(subj)]; !ok {
					if len(streams) >= maxSubjects {
						clear(streams)
					}
					subj0.subject = string(subj)
					subj0.stream, ok = streamOf(subj0.subject)
					subj0.ok = ok && checkStream(subj0.stream) == nil
					streams[subj0.subject] = subj0
				}
			}
			m := hdr.parts()
			m.stream, m.streamOK = subj0.stream, subj0.ok
			r, err := newRecord(m, data, &parser, seq, time.Unix(0, ts).UTC())
			s.fileReads.Add(1)
			if !yield(r, err) || stops(err) {
				return 0, true
			}
			if seq == last {
				return 0, false
			}
			next = seq + 1
		}
	}
	return next, false
}

// subjectStream is a subject and the stream it names, if it does (ok).
type subjectStream struct {
	subject string
	stream  eventstore.StreamID
	ok      bool
}

// maxSubjects bounds the subjects readFiles keeps parsed.
const maxSubjects = 4096

// blockReader reads block files one after the other, reusing its buffers
// and its decompressor from one block to the next: a read of the whole
// stream decompresses hundreds of blocks of 4 MB, and the server's
// StoreCompression.Decompress would allocate each one's output anew,
// growing it from a few bytes (io.ReadAll), and a decompressor with its
// own buffers.
type blockReader struct {
	raw   []byte // the file's bytes
	plain []byte // a compressed block's records
	dec   *s2.Reader
}

// maxBlock bounds the size of a block once decompressed: the file
// store's blocks are at most 16 MB, and a larger size read from a file's
// compression metadata is not one of them.
const maxBlock = 64 << 20

// read returns the records of the block file at path, decompressed when
// the block is compressed, in storage that the next read reuses.
func (br *blockReader) read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	n := int(fi.Size())
	if cap(br.raw) < n {
		br.raw = make([]byte, n)
	}
	buf := br.raw[:n]
	m, err := io.ReadFull(f, buf)
	if err = ignoreShort(err); err != nil {
		return nil, err
	}
	buf = buf[:m]
	// A compressed block starts with its compression's metadata; an
	// uncompressed one with a record, whose length's low byte could be
	// 'c' but whose next ones, for the ledger's records, are not "mp".
	var ci server.CompressionInfo
	n, err = ci.UnmarshalMetadata(buf)
	if err != nil || n == 0 {
		return buf, err
	}
	// Then the records compressed as one S2 stream, but for the last
	// record's checksum, which follows as it is; the metadata's size is
	// the whole once decompressed.
	size := ci.OriginalSize
	if ci.Algorithm != server.S2Compression || len(buf)-n < recChecksum || size < recChecksum || size > maxBlock {
		return nil, errNoFiles
	}
	body, sum := buf[n:len(buf)-recChecksum], buf[len(buf)-recChecksum:]
	if uint64(cap(br.plain)) < size {
		br.plain = make([]byte, size)
	}
	out := br.plain[:size]
	if br.dec == nil {
		br.dec = s2.NewReader(nil)
	}
	br.dec.Reset(bytes.NewReader(body))
	if _, err := io.ReadFull(br.dec, out[:size-recChecksum]); err != nil {
		return nil, fmt.Errorf("jetstream: decompress %s: %w", path, err)
	}
	var more [1]byte
	if _, err := io.ReadFull(br.dec, more[:]); !errors.Is(err, io.EOF) {
		// More records than the metadata says: not the file store's.
		return nil, errNoFiles
	}
	copy(out[size-recChecksum:], sum)
	return out, nil
}

// ignoreShort ignores a file that shrank while it was read: the records
// read are whole or fail their checks.
func ignoreShort(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
