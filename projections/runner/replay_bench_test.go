package runner_test

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/cputime"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/attribution"
	"github.com/licenseledger/ledger/projections/audit"
	"github.com/licenseledger/ledger/projections/billing"
	lfixture "github.com/licenseledger/ledger/projections/internal/fixture"
	"github.com/licenseledger/ledger/projections/runner"
	"github.com/licenseledger/ledger/projections/seats"
)

// The replay benchmarks read a history of 1,000 accounts of 1,000 events
// each (50 each with -short) out of an embedded JetStream store. The
// history is generated and loaded once per process, outside any timing,
// into a temporary directory that the benchmarks share.
var (
	replayOnce sync.Once
	replay     *replayData
	replayErr  error
)

type replayData struct {
	dir    string // the JetStream data directory
	events int
	// written is when the last event was acknowledged: for as long as
	// the stream's de-duplication window, every restart rebuilds the
	// server's table of message ids out of the events written since.
	written time.Time
	last    eventstore.Position
	keys    *pii.MemoryKeys // the users' data keys
	keyIDs  map[string]bool // the ids of every key, to save them
}

// savedHistory is what history.json holds beside a kept store: what the
// benchmarks know of the history, and the users' data keys (nil: erased).
type savedHistory struct {
	Events  int               `json:"events"`
	Last    uint64            `json:"last"`
	Written time.Time         `json:"written"`
	Keys    map[string][]byte `json:"keys"`
}

func saveHistory(dir string, d *replayData) error {
	sh := savedHistory{Events: d.events, Last: uint64(d.last), Written: d.written, Keys: map[string][]byte{}}
	for id := range d.keyIDs {
		k, err := d.keys.Get(context.Background(), id)
		switch {
		case errors.Is(err, pii.ErrErased):
			sh.Keys[id] = nil
		case err != nil:
			return err
		default:
			sh.Keys[id] = k
		}
	}
	b, err := json.Marshal(sh)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "history.json"), b, 0o600)
}

// reuseHistory returns the history kept in dir, ok false when dir holds
// none of events events.
func reuseHistory(b *testing.B, dir string, events int) (*replayData, bool, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "history.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var sh savedHistory
	if err := json.Unmarshal(raw, &sh); err != nil {
		return nil, false, err
	}
	if sh.Events != events {
		return nil, false, fmt.Errorf("%s holds a history of %d events, not %d: remove it or name another directory", dir, sh.Events, events)
	}
	keys := pii.NewMemoryKeys()
	for id, k := range sh.Keys {
		if k == nil {
			err = keys.Destroy(context.Background(), id)
		} else {
			err = keys.Put(context.Background(), id, k)
		}
		if err != nil {
			return nil, false, err
		}
	}
	b.Logf("reusing the history of %d events in %s", sh.Events, dir)
	return &replayData{dir: dir, events: sh.Events, last: eventstore.Position(sh.Last), written: sh.Written, keys: keys}, true, nil
}

// newCodec returns a codec over the history's keys, as a new process has.
func (d *replayData) newCodec() *codec.Codec {
	return codec.New(pii.NewKeyring(d.keys, crand.Reader))
}

// replayDirEnv names a directory that keeps the history's store between
// runs: loaded there when it holds none (with the users' keys beside it,
// in history.json), reused as it is when it does. Without it each process
// loads the history into a temporary directory and removes it at the end.
const replayDirEnv = "LEDGER_REPLAY_DIR"

func replayHistory(b *testing.B) *replayData {
	b.Helper()
	replayOnce.Do(func() {
		per := 1000
		if testing.Short() {
			per = 50
		}
		dir := os.Getenv(replayDirEnv)
		if dir == "" {
			replay, replayErr = loadHistory(b, 1000, per, "")
			return
		}
		var ok bool
		if replay, ok, replayErr = reuseHistory(b, dir, 1000*per); ok || replayErr != nil {
			return
		}
		replay, replayErr = loadHistory(b, 1000, per, dir)
		if replayErr == nil {
			replayErr = saveHistory(dir, replay)
		}
	})
	if replayErr != nil {
		b.Fatal(replayErr)
	}
	return replay
}

func TestMain(m *testing.M) {
	code := m.Run()
	if replay != nil && os.Getenv(replayDirEnv) == "" {
		os.RemoveAll(replay.dir)
	}
	os.Exit(code)
}

// loadHistory generates the history and appends it to a store in dir (a
// new temporary directory when empty), each account's events in their
// order by one writer per account, with interval durability (loading is
// not what is measured).
func loadHistory(b *testing.B, accounts, per int, dir string) (*replayData, error) {
	ctx := context.Background()
	t0 := time.Now()
	l, err := lfixture.History(ctx, accounts, per)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	if dir == "" {
		dir, err = os.MkdirTemp("", "ledger-replay-")
	} else {
		err = os.MkdirAll(dir, 0o700)
	}
	if err != nil {
		return nil, err
	}
	s, err := jetstream.Embedded(ctx, jetstream.ServerConfig{DataDir: dir, Port: -1, Durability: jetstream.DurabilityInterval}, replayConfig)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer s.Close()
	byAccount := map[string][]eventstore.Record{}
	for _, r := range l.Records() {
		byAccount[r.Stream.Account] = append(byAccount[r.Stream.Account], r)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(byAccount))
	for _, recs := range byAccount {
		wg.Go(func() {
			// Runs of events of one stream go in one append.
			for i := 0; i < len(recs); {
				j := i
				var ps []eventstore.Proposed
				for ; j < len(recs) && j-i < 100 && recs[j].Stream == recs[i].Stream; j++ {
					r := recs[j]
					ps = append(ps, eventstore.Proposed{ID: r.ID, Type: r.Type, Data: r.Data, Metadata: r.Metadata})
				}
				if _, err := s.Append(ctx, recs[i].Stream, eventstore.ExpectRevisionAfter(recs[i].Revision), ps...); err != nil {
					errs <- err
					return
				}
				i = j
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	d := &replayData{dir: dir, events: len(l.Records()), keys: l.KeyStore, written: time.Now()}
	d.keyIDs = map[string]bool{}
	for _, r := range l.Records() {
		if r.Stream.Category != eventstore.Ledger {
			continue
		}
		for id := range l.Peek(r.Stream.Account).Users {
			d.keyIDs[pii.KeyID(r.Stream.Account, id)] = true
		}
	}
	for rec, err := range s.ReadAll(ctx, eventstore.Position(d.events-1)) {
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		d.last = rec.Position
	}
	b.Logf("generated %d events in %s, stored them in %s", d.events, t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	return d, nil
}

// replayConfig is the store's configuration in the benchmarks: the
// service's, with its short de-duplication window; with
// LEDGER_REPLAY_COMPRESS=1 the stream's blocks are compressed, with
// LEDGER_LARGE_BLOCKS=1 they are 8 MB instead of 4 MB (keep such a
// history in a directory of its own).
var replayConfig = jetstream.Config{
	Duplicates:  jetstream.ShortDuplicates,
	Compress:    os.Getenv("LEDGER_REPLAY_COMPRESS") == "1",
	LargeBlocks: os.Getenv("LEDGER_LARGE_BLOCKS") == "1",
}

// openReplay opens the history's store, on an embedded server as a
// restarted process does.
func openReplay(b *testing.B, d *replayData) *jetstream.Store {
	b.Helper()
	return openStore(b, d.dir)
}

func freshModels() []projections.Projection {
	return []projections.Projection{seats.New(), attribution.New(), audit.New(), billing.New()}
}

func reportReplay(b *testing.B, events int, cpu time.Duration) {
	total := float64(events) * float64(b.N)
	b.ReportMetric(total/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cpu.Microseconds())/total, "cpu-us/event")
}

// BenchmarkReplayRaw reads every message of the stream through a
// JetStream ordered consumer and nothing else: the ceiling of a replay.
func BenchmarkReplayRaw(b *testing.B) {
	d := replayHistory(b)
	s := openReplay(b, d)
	defer s.Close()
	js, err := natsjs.New(s.Conn())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	cpu := cputime.Process()
	b.ResetTimer()
	for range b.N {
		cons, err := js.OrderedConsumer(ctx, "LEDGER", natsjs.OrderedConsumerConfig{})
		if err != nil {
			b.Fatal(err)
		}
		it, err := cons.Messages(natsjs.PullMaxMessages(1000))
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for n < d.events {
			msg, err := it.Next()
			if err != nil {
				b.Fatal(err)
			}
			if len(msg.Data()) == 0 {
				b.Fatal("empty message")
			}
			n++
		}
		it.Stop()
	}
	b.StopTimer()
	reportReplay(b, d.events, cputime.Process()-cpu)
}

// BenchmarkReplayProjections replays the history into all four read models
// (seats, attribution, audit, billing) the way a rebuild does: the store's
// ReadAll, the codec's decoding, the read models' Apply. The stages split
// the cost: read (ReadAll alone, records parsed from the envelopes),
// decode (read and decode) and all (read, decode and apply); runner is a
// rebuild by the runner (runner.New(...).Run until Ready, no snapshot),
// which reads ahead in a goroutine of its own while it decodes and folds;
// service is the rebuild the service runs (cmd/licensed): the runner
// with the accounts' read model beside the four, every record offered to
// two feeds (the transparency log's and the publisher's, no follower
// reading them) and the service's hook on deletions.
func BenchmarkReplayProjections(b *testing.B) {
	d := replayHistory(b)
	s := openReplay(b, d)
	defer s.Close()
	ctx := context.Background()
	for _, stage := range []string{"read", "decode", "all", "runner", "service"} {
		b.Run(stage, func(b *testing.B) {
			cpu := cputime.Process()
			b.ResetTimer()
			for range b.N {
				if stage == "runner" || stage == "service" {
					cfg := runner.Config{Store: s, Codec: d.newCodec(), Projections: freshModels(), Fresh: freshModels}
					if stage == "service" {
						cfg = serviceRebuild(s, cfg.Codec)
					}
					r := runner.New(cfg)
					runUntilReady(b, r)
					if r.Position() != d.last {
						b.Fatalf("ready at position %d, want %d", r.Position(), d.last)
					}
					b.StopTimer()
					stopRunner(r)
					b.StartTimer()
					continue
				}
				c := d.newCodec()
				set := projections.Set(freshModels())
				n := 0
				for rec, err := range s.ReadAll(ctx, 0) {
					if err != nil {
						b.Fatal(err)
					}
					n++
					if stage == "read" {
						continue
					}
					dec, err := c.Decode(ctx, rec)
					if err != nil {
						b.Fatal(err)
					}
					if stage == "decode" {
						continue
					}
					if err := set.Apply(dec); err != nil {
						b.Fatal(err)
					}
				}
				if n != d.events {
					b.Fatalf("replayed %d events, want %d", n, d.events)
				}
			}
			b.StopTimer()
			reportReplay(b, d.events, cputime.Process()-cpu)
		})
	}
}

// serviceRebuild is the runner's configuration in the service
// (cmd/licensed), over store s and codec c.
func serviceRebuild(s eventstore.Store, c *codec.Codec) runner.Config {
	models := func() []projections.Projection {
		return append(freshModels(), accounts.NewReadModel(time.Now, 0))
	}
	tlog, pub := eventstore.NewFeed(0), eventstore.NewFeed(0)
	return runner.Config{Store: s, Codec: c, Projections: models(), Fresh: models,
		OnRecord: func(prev eventstore.Position, rec eventstore.Record, readErr error) {
			tlog.Offer(prev, rec, readErr)
			pub.Offer(prev, rec, readErr)
		},
		OnEvent: func(d codec.Decoded) {
			if del, ok := d.Event.(ledger.UserDeleted); ok {
				c.Keys().MarkDestroyed(pii.KeyID(projections.AccountOf(d), del.UserID))
			}
		},
	}
}

// BenchmarkRestart measures a restart over the history: opening the store
// on its data directory (the embedded server recovers the stream), then
// runner.New(...).Run until Ready, with the snapshot the runner saved at
// the end of the history or with none (a replay of every event).
//
// A restart within the stream's de-duplication window of writes costs
// more: nats-server rereads every message stored in the window to rebuild
// its table of message ids (stream.rebuildDedupe, about 2-3.5 us a
// message), which for a history written just before is all of it.
// snapshot-after-writes measures that case, right after the history was
// loaded, when the window is long enough for it (set replayConfig's
// Duplicates to 2 minutes, the store's default); with the service's
// window (jetstream.ShortDuplicates) it is skipped, and
// eventstore/jetstream's BenchmarkOpenAfterBurst measures what a burst
// adds to an open. snapshot and no-snapshot run once the history is older
// than the window, as a process restarted at 1,000,000 events usually
// finds it, waiting for that if need be (skipped with -short).
func BenchmarkRestart(b *testing.B) {
	d := replayHistory(b)
	ctx := context.Background()
	snapDir := b.TempDir()
	// Take the snapshot once, as a runner that has caught up does.
	{
		s := openReplay(b, d)
		r := runner.New(runner.Config{Store: s, Codec: d.newCodec(), Projections: freshModels(),
			Fresh: freshModels, Snapshots: runner.FileSnapshots{Dir: snapDir}})
		runUntilReady(b, r)
		if err := r.SaveSnapshot(ctx); err != nil {
			b.Fatal(err)
		}
		stopRunner(r)
		s.Close()
	}
	window := jetstream.StreamConfig(replayConfig).Duplicates
	b.Run("snapshot-after-writes", func(b *testing.B) {
		if time.Since(d.written) > window/2 {
			b.Skipf("the history was written %s ago: no longer a restart right after it", time.Since(d.written).Round(time.Second))
		}
		benchRestart(b, d, snapDir, true)
	})
	if wait := time.Until(d.written.Add(window + time.Second)); wait > 0 && !testing.Short() {
		b.Logf("waiting %s for the history to leave the de-duplication window", wait.Round(time.Second))
		time.Sleep(wait)
	}
	b.Run("snapshot", func(b *testing.B) { benchRestart(b, d, snapDir, true) })
	b.Run("no-snapshot", func(b *testing.B) { benchRestart(b, d, snapDir, false) })
}

// benchRestart restarts over the history b.N times, with the snapshot in
// snapDir or with none.
func benchRestart(b *testing.B, d *replayData, snapDir string, withSnap bool) {
	var open, ready time.Duration
	for range b.N {
		t0 := time.Now()
		s := openReplay(b, d)
		t1 := time.Now()
		logs := &logRecorder{}
		cfg := runner.Config{Store: s, Codec: d.newCodec(), Projections: freshModels(), Fresh: freshModels,
			Logger: slog.New(logs)}
		if withSnap {
			cfg.Snapshots = runner.FileSnapshots{Dir: snapDir}
		}
		r := runner.New(cfg)
		runUntilReady(b, r)
		t2 := time.Now()
		if r.Position() != d.last {
			b.Fatalf("ready at position %d, want %d", r.Position(), d.last)
		}
		// A restart with the snapshot restores every read model from it:
		// one falling back to the first event would measure a replay.
		if msgs := logs.above(slog.LevelWarn); len(msgs) != 0 {
			b.Fatalf("the restart logged %q", msgs)
		}
		if restored := len(logs.find("read models restored from snapshot")); withSnap != (restored == 1) {
			b.Fatalf("%d restores from the snapshot", restored)
		}
		b.StopTimer()
		stopRunner(r)
		s.Close()
		b.StartTimer()
		open += t1.Sub(t0)
		ready += t2.Sub(t1)
	}
	b.ReportMetric(open.Seconds()/float64(b.N), "open-s")
	b.ReportMetric(ready.Seconds()/float64(b.N), "catchup-s")
	b.ReportMetric((open+ready).Seconds()/float64(b.N), "restart-s")
}

// running remembers how to stop each runner the benchmarks started.
var running sync.Map // *runner.Runner -> func() error

// runUntilReady starts r and returns once it is Ready.
func runUntilReady(b *testing.B, r *runner.Runner) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	running.Store(r, func() error { cancel(); return <-done })
	for !r.Ready() {
		select {
		case err := <-done:
			b.Fatalf("runner stopped before it was ready: %v", err)
		case <-time.After(200 * time.Microsecond):
		}
	}
}

func stopRunner(r *runner.Runner) {
	stop, ok := running.LoadAndDelete(r)
	if !ok {
		return
	}
	if err := stop.(func() error)(); err != nil && !errors.Is(err, context.Canceled) {
		panic(fmt.Sprintf("runner: %v", err))
	}
}

// BenchmarkColdAccount measures what the first command on an account
// costs right after a restart over the history (1,000,000 events, 1,000
// accounts). Each iteration opens the store anew (the server's block
// caches empty) and takes 50 accounts one after the other; p50-ms and
// p99-ms are over every account, p99-not-first-ms over every account but
// the first after each start (whose read loads the server's first block).
//
//   - streams: the store's read of both streams whole (ReadStream of the
//     ledger and the activity stream), what loading an account costs
//     without the accounts' read model;
//
//   - heads: only their last events (Store.LastEvent), the baseline: a
//     message get of each stream's last message;
//
//   - command-streams: the first command through a new accounts.Service
//     that loads the account from its streams;
//
//   - command-model: the same with the accounts' read model
//     (accounts.ReadModel, restored from the snapshot a runner took at
//     the end of the history, untimed): the state is taken from the read
//     model once the store confirms that nothing followed it
//     (Store.ConfirmEnds), else what follows it is read from the store;
//
//   - command-model-accepted: the same with a command the ledger accepts
//     (a purchase of one seat), appended to a copy of the history's store
//     (made once per process, untimed, removed at the end) so that the
//     history stays as it is. Each account takes one command in the
//     process (so at most 1,000 accounts in all the iterations of a run):
//     an account appended to is past the read model's snapshot.
//     append-p50-ms and append-p99-ms are the store's append alone
//     (accounts.Config.OnAppend), the server's check of the expectation
//     included;
//
//   - command-model-accepted-busy: the same while another writer appends
//     to a stream of its own, one event every 200 microseconds at most,
//     as other accounts' commands do on a service in use: the stream's
//     last sequence moves between an account's load and its append.
//
//   - command-model-accepted-fsync: command-model-accepted with the
//     service's default durability, fsync: the store syncs the server's
//     files itself and sequences its appends (checked against the
//     stream's last sequence, which the server holds in memory);
//     append-p99-ms includes the wait for the sync round;
//
//   - command-model-accepted-fsync-per-subject: the same with every
//     append checked by its stream's own expectation
//     (jetstream.Config.PerSubjectChecks), the baseline of the one above.
//
// command-model's command is one the ledger refuses (deactivating a user
// the account never had), decided on the loaded state: nothing is
// appended, so the stored history stays as it is.
func BenchmarkColdAccount(b *testing.B) {
	d := replayHistory(b)
	ctx := context.Background()
	var held []byte   // the accounts' read model at the end of the history
	var copied string // the copy of the history's store appended to
	defer func() {
		if copied != "" {
			os.RemoveAll(copied)
		}
	}()
	accepted := 0 // accounts taken by command-model-accepted so far
	for _, mode := range []string{"streams", "heads", "command-streams", "command-model", "command-model-accepted", "command-model-accepted-busy",
		"command-model-accepted-fsync", "command-model-accepted-fsync-per-subject"} {
		b.Run(mode, func(b *testing.B) {
			b.StopTimer()
			if strings.HasPrefix(mode, "command-model") && held == nil {
				held = accountsReadModel(b, d)
			}
			dir := d.dir
			accepting := strings.HasPrefix(mode, "command-model-accepted")
			if accepting {
				if copied == "" {
					var err error
					if copied, err = copyHistory(d.dir); err != nil {
						b.Fatal(err)
					}
				}
				dir = copied
				if accepted+b.N*50 > 1000 {
					b.Fatalf("%d iterations after %d accounts: at most 1,000 accounts take an accepted command in one run", b.N, accepted)
				}
			}
			b.StartTimer()
			var took, later []time.Duration // every account's; those after the first of a start
			var appends []time.Duration     // the store's appends alone (command-model-accepted)
			for i := range b.N {
				b.StopTimer()
				var s *jetstream.Store
				switch mode {
				case "command-model-accepted-fsync":
					s = openStoreWith(b, dir, jetstream.DurabilityFsync, replayConfig)
				case "command-model-accepted-fsync-per-subject":
					cfg := replayConfig
					cfg.PerSubjectChecks = true
					s = openStoreWith(b, dir, jetstream.DurabilityFsync, cfg)
				default:
					s = openStore(b, dir)
				}
				var svc *accounts.Service
				if strings.HasPrefix(mode, "command-") {
					cfg := accounts.Config{Store: s, Codec: d.newCodec(), Clock: time.Now, NewEventID: uuid.New, NewULID: ulid.Make}
					if accepting {
						cfg.OnAppend = func(a accounts.Appended) {
							if a.Stream.Account != busyAccount {
								appends = append(appends, a.Took)
							}
						}
					}
					if strings.HasPrefix(mode, "command-model") {
						cfg.States = accounts.NewReadModel(nil, 0)
						if err := cfg.States.Restore(held); err != nil {
							b.Fatal(err)
						}
					}
					svc = accounts.New(cfg)
				}
				stopBusy := func() {}
				if mode == "command-model-accepted-busy" {
					stopBusy = busyWrites(b, s)
				}
				b.StartTimer()
				for a := range 50 {
					account := fmt.Sprintf("acct-%04d", (i*50+a)*7%1000)
					if accepting {
						account = fmt.Sprintf("acct-%04d", accepted*7%1000)
						accepted++
					}
					t0 := time.Now()
					switch mode {
					case "command-model-accepted", "command-model-accepted-busy", "command-model-accepted-fsync", "command-model-accepted-fsync-per-subject":
						res, err := svc.Execute(ctx, account, ledger.PurchaseSeats{Count: 1, At: time.Now()}, accounts.Request{Actor: codec.Actor{ID: "bench", Role: "admin"}})
						if err != nil || len(res.Events) != 1 {
							b.Fatalf("%s: %d events, %v; want one seat purchased", account, len(res.Events), err)
						}
					case "command-streams", "command-model":
						_, err := svc.Execute(ctx, account, ledger.DeactivateUser{UserID: "nobody-cold", At: time.Now()}, accounts.Request{Actor: codec.Actor{ID: "bench", Role: "admin"}})
						var rule *ledger.RuleError
						if !errors.As(err, &rule) || rule.Rule != ledger.RuleUserNotFound {
							b.Fatalf("%s: %v, want the rule %s broken", account, err, ledger.RuleUserNotFound)
						}
					default:
						for _, stream := range []eventstore.StreamID{eventstore.LedgerStream(account), eventstore.ActivityStream(account)} {
							if mode == "heads" {
								if _, err := s.LastEvent(ctx, stream); err != nil {
									b.Fatal(err)
								}
								continue
							}
							n := 0
							for _, err := range s.ReadStream(ctx, stream, 0) {
								if err != nil {
									b.Fatal(err)
								}
								n++
							}
							if n == 0 {
								b.Fatalf("%s: no events", stream)
							}
						}
					}
					took = append(took, time.Since(t0))
					if a > 0 {
						later = append(later, took[len(took)-1])
					}
				}
				b.StopTimer()
				stopBusy()
				s.Close()
				b.StartTimer()
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
			slices.Sort(later)
			b.ReportMetric(float64(later[len(later)*99/100].Microseconds())/1000, "p99-not-first-ms")
			if len(appends) > 0 {
				slices.Sort(appends)
				b.ReportMetric(float64(appends[len(appends)/2].Microseconds())/1000, "append-p50-ms")
				b.ReportMetric(float64(appends[len(appends)*99/100].Microseconds())/1000, "append-p99-ms")
			}
		})
	}
}

// busyAccount is the account of the busy writer's stream.
const busyAccount = "busy-writer"

// busyWrites appends to a stream of its own in s, one event at a time with
// a pause of 200 microseconds, until the returned function is called.
func busyWrites(b *testing.B, s *jetstream.Store) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		stream := eventstore.LedgerStream(busyAccount)
		for ctx.Err() == nil {
			e := eventstore.Proposed{ID: uuid.New(), Type: "SeatsPurchased", Data: []byte(`{"count":1}`)}
			if _, err := s.Append(ctx, stream, eventstore.Any(), e); err != nil && ctx.Err() == nil {
				done <- err
				return
			}
			time.Sleep(200 * time.Microsecond)
		}
		done <- nil
	}()
	return func() {
		cancel()
		if err := <-done; err != nil {
			b.Fatalf("busy writer: %v", err)
		}
	}
}

// openStore opens the store in dir on an embedded server, as a restarted
// process does.
func openStore(b *testing.B, dir string) *jetstream.Store {
	b.Helper()
	return openStoreWith(b, dir, jetstream.DurabilityInterval, replayConfig)
}

// openStoreWith is openStore with durability d and configuration cfg.
func openStoreWith(b *testing.B, dir string, d jetstream.Durability, cfg jetstream.Config) *jetstream.Store {
	b.Helper()
	s, err := jetstream.Embedded(context.Background(), jetstream.ServerConfig{DataDir: dir, Port: -1, Durability: d}, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// copyHistory copies the history's store in dir (its files as the server
// left them) into a new temporary directory and returns it.
func copyHistory(dir string) (string, error) {
	dst, err := os.MkdirTemp("", "ledger-replay-copy-")
	if err != nil {
		return "", err
	}
	err = filepath.WalkDir(dir, func(path string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if e.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
	if err != nil {
		os.RemoveAll(dst)
		return "", fmt.Errorf("copy the history's store: %w", err)
	}
	return dst, nil
}

// accountsReadModel folds the history into the accounts' read model with a
// runner and returns its snapshot.
func accountsReadModel(b *testing.B, d *replayData) []byte {
	s := openReplay(b, d)
	defer s.Close()
	states := accounts.NewReadModel(nil, 0)
	r := runner.New(runner.Config{Store: s, Codec: d.newCodec(), Projections: []projections.Projection{states}})
	runUntilReady(b, r)
	if r.Position() != d.last {
		b.Fatalf("ready at position %d, want %d", r.Position(), d.last)
	}
	stopRunner(r)
	held, err := states.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("accounts' read model: %d bytes", len(held))
	return held
}
