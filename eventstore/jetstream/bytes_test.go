package jetstream_test

import (
	"bytes"
	"encoding/binary"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/licenseledger/ledger/internal/cputime"
)

// BenchmarkStoredBytes reports where the bytes of the ledger's events go
// on disk, per event, from the block files of a data directory kept by a
// run of the service (licenseload -keep-data) or of the replay benchmarks
// (LEDGER_REPLAY_DIR): set LEDGER_STORE_DIR to it. It reports every
// stream of every account under the directory (account=<name>/stream=
// <name>), and then total: the streams that keep a copy of each event
// (the store's, the published one and its downstream mirror) per event
// of the store: file-B/event on disk now, full-B/event the sum of each
// copy's bytes per event in its full blocks (what the streams tend to as
// they grow), beside raw-one-copy-B/event, one copy of the store's
// payloads in raw JetStream.
//
// Per stream, B/event is the records once decompressed (record header,
// subject, headers, body, checksum) and file-B/event what the block files
// hold on disk; full-B/event is the same for full blocks only (a stream's
// last block is written uncompressed and is compressed only once full,
// so a short run's last block weighs on file-B/event more than it will).
// Beside them raw-B/event is what raw JetStream needs for the same
// payloads: the file store's record (header, subject, checksum) and the
// body with a Nats-Msg-Id header only, uncompressed. It reads the files
// once; the timing means nothing.
func BenchmarkStoredBytes(b *testing.B) {
	dir := os.Getenv("LEDGER_STORE_DIR")
	if dir == "" {
		b.Skip("set LEDGER_STORE_DIR to a data directory holding a LEDGER stream")
	}
	// <account>/streams/<stream>/msgs/<n>.blk
	streams := map[string][]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		msgs := filepath.Dir(path)
		sdir := filepath.Dir(msgs)
		if !d.IsDir() && filepath.Ext(path) == ".blk" && filepath.Base(msgs) == "msgs" &&
			filepath.Base(filepath.Dir(sdir)) == "streams" {
			account := filepath.Base(filepath.Dir(filepath.Dir(sdir)))
			key := "account=" + account + "/stream=" + filepath.Base(sdir)
			streams[key] = append(streams[key], path)
		}
		return nil
	})
	if err != nil || len(streams) == 0 {
		b.Fatalf("no block files under %s (%v)", dir, err)
	}
	keys := make([]string, 0, len(streams))
	for k := range streams {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	all := map[string]blockStats{}
	for _, k := range keys {
		b.Run(k, func(b *testing.B) {
			var st blockStats
			for range b.N {
				st = storedBytes(b, streams[k])
			}
			all[k] = st
			st.report(b, st.events)
		})
	}
	// The copies of each event: the store's stream, the published stream
	// and the downstream mirror, per event of the store's stream.
	b.Run("total", func(b *testing.B) {
		ledger, ok := all["account=LEDGER/stream=LEDGER"]
		if !ok {
			b.Skip("no service account LEDGER with a LEDGER stream (a replay history holds the store's stream only)")
		}
		var sum blockStats
		var full float64
		for range b.N {
			sum, full = blockStats{hdrBytes: map[string]int{}}, 0
			for _, k := range keys {
				if !strings.HasSuffix(k, "/stream=LEDGER") && !strings.HasSuffix(k, "/stream=EVENTS") {
					continue
				}
				st := all[k]
				f := float64(st.files) / float64(st.events)
				if st.fullEvents > 0 {
					f = float64(st.fullFiles) / float64(st.fullEvents)
				}
				full += f
				b.Logf("%-40s %8d events %7.1f file-B/event (of the store's events), %7.1f in full blocks", k, st.events, float64(st.files)/float64(ledger.events), f)
				sum.add(st)
			}
		}
		sum.report(b, ledger.events)
		// Each copy's bytes per event in its full blocks (what a stream
		// tends to as it grows), summed.
		b.ReportMetric(full, "full-B/event")
		// What raw JetStream needs for one copy of the store's payloads.
		b.ReportMetric(float64(ledger.raw)/float64(ledger.events), "raw-one-copy-B/event")
	})
}

// blockStats counts the bytes of a stream's block files.
type blockStats struct {
	blocks, fullBlocks                                 int
	files, fullFiles, fullEvents                       int
	events, record, subject, headers, body, msgID, raw int
	hdrBytes                                           map[string]int
}

func (s *blockStats) add(o blockStats) {
	s.blocks += o.blocks
	s.fullBlocks += o.fullBlocks
	s.files += o.files
	s.fullFiles += o.fullFiles
	s.fullEvents += o.fullEvents
	s.events += o.events
	s.record += o.record
	s.subject += o.subject
	s.headers += o.headers
	s.body += o.body
	s.msgID += o.msgID
	s.raw += o.raw
	for k, v := range o.hdrBytes {
		s.hdrBytes[k] += v
	}
}

// report reports s per event of n events.
func (s blockStats) report(b *testing.B, n int) {
	if n == 0 {
		b.ReportMetric(float64(s.files), "file-B")
		return
	}
	f := float64(n)
	b.ReportMetric(float64(s.files)/f, "file-B/event")
	if s.fullEvents > 0 && s.events == n {
		b.ReportMetric(float64(s.fullFiles)/float64(s.fullEvents), "full-B/event")
	}
	b.ReportMetric(float64(s.record)/f, "B/event")
	b.ReportMetric(float64(s.raw)/f, "raw-B/event")
	b.ReportMetric(float64(s.subject)/f, "subject-B/event")
	b.ReportMetric(float64(s.headers)/f, "headers-B/event")
	b.ReportMetric(float64(s.body)/f, "body-B/event")
	b.ReportMetric(float64(s.events), "events")
	b.ReportMetric(float64(s.blocks), "blocks")
	names := make([]string, 0, len(s.hdrBytes))
	for k := range s.hdrBytes {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		b.Logf("header %-45s %6.1f B/event", k, float64(s.hdrBytes[k])/f)
	}
}

func storedBytes(b *testing.B, blks []string) blockStats {
	st := blockStats{hdrBytes: map[string]int{}, blocks: len(blks)}
	// The block with the highest index is the one being written.
	last := ""
	lastN := -1
	for _, f := range blks {
		if n, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(f), ".blk")); err == nil && n > lastN {
			last, lastN = f, n
		}
	}
	for _, f := range blks {
		buf, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		st.files += len(buf)
		full := f != last
		var ci server.CompressionInfo
		if n, err := ci.UnmarshalMetadata(buf); err != nil {
			b.Fatal(err)
		} else if n > 0 {
			if buf, err = ci.Algorithm.Decompress(buf[n:]); err != nil {
				b.Fatal(err)
			}
		}
		events := 0
		for off := 0; off+22 <= len(buf); {
			rl := binary.LittleEndian.Uint32(buf[off:])
			hasHdr := rl&(1<<31) != 0
			rl &^= 1 << 31
			seq := binary.LittleEndian.Uint64(buf[off+4:])
			slen := int(binary.LittleEndian.Uint16(buf[off+20:]))
			if rl < 30 || off+int(rl) > len(buf) || 22+slen+8 > int(rl) {
				break
			}
			rec := buf[off : off+int(rl)]
			off += int(rl)
			if seq>>62 != 0 {
				continue // erased or a tombstone
			}
			events++
			st.record += int(rl)
			st.subject += slen
			data := rec[22+slen : len(rec)-8]
			if hasHdr && len(data) >= 4 {
				hl := int(binary.LittleEndian.Uint32(data))
				if 4+hl > len(data) {
					continue
				}
				h := data[4 : 4+hl]
				st.headers += 4 + hl
				data = data[4+hl:]
				for line := range bytes.SplitSeq(h, []byte("\r\n")) {
					k, _, ok := bytes.Cut(line, []byte(":"))
					if !ok {
						st.hdrBytes["(status line, blank line)"] += len(line) + 2
						continue
					}
					st.hdrBytes[string(k)] += len(line) + 2
					if string(k) == "Nats-Msg-Id" {
						st.msgID += len(line) + 2
					}
				}
			}
			st.body += len(data)
		}
		st.events += events
		if full {
			st.fullBlocks++
			st.fullFiles += int(fileSize(b, f))
			st.fullEvents += events
		}
	}
	// Raw JetStream: the same record without headers but the message
	// id ("NATS/1.0\r\n" + the id's line + "\r\n", and the length).
	st.raw = st.record - st.headers + st.msgID + st.events*(len("NATS/1.0\r\n\r\n")+4)
	return st
}

func fileSize(b *testing.B, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

// BenchmarkBlockS2 measures S2 on the full blocks of the streams that
// keep a copy of each event, under LEDGER_STORE_DIR (see
// [BenchmarkStoredBytes]): compress is what the server does once when a
// block of a compressed stream is full (it then writes the result to a
// file of its own, syncs it and renames it over the block); decompress is
// what every load of a compressed block into the server's cache costs
// (a read of a message of a block not cached: a consumer's, a get's, the
// check of an append's per-account expectation), against read, the
// reading of the same block uncompressed from the page cache. The
// figures are the CPU per 8 MB block and per event of it.
func BenchmarkBlockS2(b *testing.B) {
	dir := os.Getenv("LEDGER_STORE_DIR")
	if dir == "" {
		b.Skip("set LEDGER_STORE_DIR to a data directory holding a LEDGER stream")
	}
	for _, stream := range []string{"LEDGER/streams/LEDGER", "LEDGER/streams/EVENTS", "DOWNSTREAM/streams/LEDGER"} {
		// The jetstream directory is the data directory or below it.
		var paths []string
		for _, up := range []string{"", "*", "*/*", "*/*/*", "*/*/*/*"} {
			m, _ := filepath.Glob(filepath.Join(dir, up, filepath.FromSlash(stream), "msgs", "1.blk"))
			paths = append(paths, m...)
		}
		if len(paths) == 0 {
			continue
		}
		buf, err := os.ReadFile(paths[0])
		if err != nil {
			b.Fatal(err)
		}
		var ci server.CompressionInfo
		if n, err := ci.UnmarshalMetadata(buf); err != nil {
			b.Fatal(err)
		} else if n > 0 {
			if buf, err = ci.Algorithm.Decompress(buf[n:]); err != nil {
				b.Fatal(err)
			}
		}
		if len(buf) < 4<<20 {
			continue // not a full block
		}
		events := len(storedBytesOf(b, buf))
		c, err := server.S2Compression.Compress(buf)
		if err != nil {
			b.Fatal(err)
		}
		name := strings.ReplaceAll(strings.ReplaceAll(stream, "/streams/", "/"), "/", "-")
		// CPU time, which other work on the machine distorts less than
		// the elapsed time.
		var cpu0 time.Duration
		report := func(b *testing.B) {
			cpu := cputime.Process() - cpu0
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/block")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(events), "cpu-ns/event")
			b.ReportMetric(float64(len(buf))/float64(len(c)), "ratio")
			b.ReportMetric(float64(events), "events/block")
		}
		b.Run(name+"/compress", func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			cpu0 = cputime.Process()
			for range b.N {
				if _, err := server.S2Compression.Compress(buf); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
		b.Run(name+"/decompress", func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			cpu0 = cputime.Process()
			for range b.N {
				if _, err := server.S2Compression.Decompress(c); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
		tmp := filepath.Join(b.TempDir(), "1.blk")
		if err := os.WriteFile(tmp, buf, 0o600); err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/read", func(b *testing.B) {
			b.SetBytes(int64(len(buf)))
			cpu0 = cputime.Process()
			for range b.N {
				if _, err := os.ReadFile(tmp); err != nil {
					b.Fatal(err)
				}
			}
			report(b)
		})
	}
}

// storedBytesOf returns the offsets of the records of an uncompressed
// block.
func storedBytesOf(b *testing.B, buf []byte) []int {
	var offs []int
	for off := 0; off+22 <= len(buf); {
		rl := int(binary.LittleEndian.Uint32(buf[off:]) &^ (1 << 31))
		if rl < 30 || off+rl > len(buf) {
			break
		}
		offs = append(offs, off)
		off += rl
	}
	return offs
}
