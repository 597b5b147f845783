package jetstream

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/cputime"
)

// BenchmarkSyncRound runs group sync rounds over a streams directory laid
// out as the service's (the ledger's stream, the published stream, 8 key
// shards, the token and webhook buckets), with real fsyncs, as the server
// writes between rounds under the default mix: about 1 KB to the
// ledger's last block before every round, the published stream's every
// 4th round, a key shard's every 10th. "stat" looks at every written
// stream through its stats, as rounds did before they synced a stream
// through its open block alone ("name"); both in the same run, with real
// fsyncs ("fsync") and with the fsync left out ("nosync": what a round
// costs besides its fsyncs). cpu-us/round is the process's CPU (the
// writes included) per round.
func BenchmarkSyncRound(b *testing.B) {
	for _, mode := range []string{"fsync/stat", "fsync/name", "nosync/stat", "nosync/name"} {
		b.Run(mode, func(b *testing.B) {
			byName := strings.HasSuffix(mode, "/name")
			streams := filepath.Join(b.TempDir(), "jetstream", "$G", "streams")
			names := []string{"LEDGER", "EVENTS", "KV_LEDGER_TOKENS", "KV_webhooks"}
			for i := range 8 {
				names = append(names, fmt.Sprintf("LEDGER_KEYS_%02d", i))
			}
			files := map[string]*os.File{}
			for _, n := range names {
				dir := filepath.Join(streams, n, "msgs")
				if err := os.MkdirAll(dir, 0o755); err != nil {
					b.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(streams, n, "meta.inf"), []byte("{}"), 0o644); err != nil {
					b.Fatal(err)
				}
				f, err := os.OpenFile(filepath.Join(dir, "1.blk"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				files[n] = f
			}
			y := newSyncer(streams, slog.New(slog.DiscardHandler))
			defer y.close()
			y.mu.Lock()
			y.byName = byName
			if strings.HasPrefix(mode, "nosync") {
				y.fsync = func(*os.File) error { return nil }
			}
			y.mu.Unlock()
			if err := y.wait(b.Context()); err != nil {
				b.Fatal(err)
			}
			// Every directory older than racyWindow, as in a service
			// that runs for a while.
			time.Sleep(2 * racyWindow)
			msg := make([]byte, 1000)
			put := func(n string) {
				if _, err := files[n].Write(msg); err != nil {
					b.Fatal(err)
				}
			}
			named := y.named.Load()
			b.ResetTimer()
			cpu := cputime.Process()
			for i := range b.N {
				put("LEDGER")
				if i%4 == 0 {
					put("EVENTS")
				}
				if i%10 == 0 {
					put(names[4+(i/10)%8])
				}
				if err := y.wait(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cputime.Process()-cpu).Nanoseconds())/1e3/float64(b.N), "cpu-us/round")
			b.ReportMetric(float64(y.named.Load()-named)/float64(b.N), "by-name/round")
		})
	}
}
