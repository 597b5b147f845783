package jetstream_test

import (
	"bytes"
	"encoding/binary"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// BenchmarkStoredBytes reports where the bytes of a ledger stream's
// events go on disk, per event, from the block files of a data directory
// kept by a run of the service (licenseload -keep-data) or of the replay
// benchmarks (LEDGER_REPLAY_DIR): set LEDGER_STORE_DIR to it. Beside the
// store's bytes it reports raw-B/event, what raw JetStream needs for the
// same payloads: the file store's record (header, subject, checksum) and
// the body with a Nats-Msg-Id header only. file-B/event is what the block
// files hold on disk per event (less than B/event once compressed blocks
// are decompressed to count them). It reads the files once; the timing
// means nothing.
func BenchmarkStoredBytes(b *testing.B) {
	dir := os.Getenv("LEDGER_STORE_DIR")
	if dir == "" {
		b.Skip("set LEDGER_STORE_DIR to a data directory holding a LEDGER stream")
	}
	// Every account's LEDGER stream: the service's, and the downstream
	// account's mirror of it when there is one.
	streams := map[string][]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		msgs := filepath.Dir(path)
		if !d.IsDir() && filepath.Ext(path) == ".blk" && filepath.Base(msgs) == "msgs" &&
			filepath.Base(filepath.Dir(msgs)) == "LEDGER" && filepath.Base(filepath.Dir(filepath.Dir(msgs))) == "streams" {
			account := filepath.Base(filepath.Dir(filepath.Dir(filepath.Dir(msgs))))
			streams[account] = append(streams[account], path)
		}
		return nil
	})
	if err != nil || len(streams) == 0 {
		b.Fatalf("no LEDGER block files under %s (%v)", dir, err)
	}
	for account, blks := range streams {
		b.Run("account="+account, func(b *testing.B) { storedBytes(b, blks) })
	}
}

func storedBytes(b *testing.B, blks []string) {
	var files, events, record, subject, headers, body, msgID, raw int
	hdrBytes := map[string]int{}
	for range b.N {
		files, events, record, subject, headers, body, msgID, raw = 0, 0, 0, 0, 0, 0, 0, 0
		clear(hdrBytes)
		for _, f := range blks {
			buf, err := os.ReadFile(f)
			if err != nil {
				b.Fatal(err)
			}
			files += len(buf)
			var ci server.CompressionInfo
			if n, err := ci.UnmarshalMetadata(buf); err != nil {
				b.Fatal(err)
			} else if n > 0 {
				if buf, err = ci.Algorithm.Decompress(buf[n:]); err != nil {
					b.Fatal(err)
				}
			}
			for off := 0; off+22 <= len(buf); {
				rl := binary.LittleEndian.Uint32(buf[off:])
				hasHdr := rl&(1<<31) != 0
				rl &^= 1 << 31
				seq := binary.LittleEndian.Uint64(buf[off+4:])
				slen := int(binary.LittleEndian.Uint16(buf[off+20:]))
				if rl < 30 || off+int(rl) > len(buf) {
					break
				}
				rec := buf[off : off+int(rl)]
				off += int(rl)
				if seq>>62 != 0 {
					continue // erased or a tombstone
				}
				events++
				record += int(rl)
				subject += slen
				data := rec[22+slen : len(rec)-8]
				if hasHdr {
					hl := int(binary.LittleEndian.Uint32(data))
					h := data[4 : 4+hl]
					headers += 4 + hl
					data = data[4+hl:]
					for line := range bytes.SplitSeq(h, []byte("\r\n")) {
						k, _, ok := bytes.Cut(line, []byte(":"))
						if !ok {
							hdrBytes["(status line, blank line)"] += len(line) + 2
							continue
						}
						hdrBytes[string(k)] += len(line) + 2
						if string(k) == "Nats-Msg-Id" {
							msgID += len(line) + 2
						}
					}
				}
				body += len(data)
			}
		}
		// Raw JetStream: the same record without headers but the message
		// id ("NATS/1.0\r\n" + the id's line + "\r\n", and the length).
		raw = record - headers + msgID + events*(len("NATS/1.0\r\n\r\n")+4)
	}
	n := float64(events)
	b.ReportMetric(float64(files)/n, "file-B/event")
	b.ReportMetric(float64(record)/n, "B/event")
	b.ReportMetric(float64(raw)/n, "raw-B/event")
	b.ReportMetric(float64(subject)/n, "subject-B/event")
	b.ReportMetric(float64(headers)/n, "headers-B/event")
	b.ReportMetric(float64(body)/n, "body-B/event")
	b.ReportMetric(n, "events")
	for k, v := range hdrBytes {
		b.Logf("header %-45s %6.1f B/event", k, float64(v)/n)
	}
}
