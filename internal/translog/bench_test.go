package translog_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/google/uuid"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/cputime"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/internal/translog"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/billing"
	"github.com/licenseledger/ledger/projections/runner"
	"github.com/licenseledger/ledger/projections/seats"
)

// BenchmarkAppend appends ledger events through the embedded JetStream
// store (each durability, 64 writers each on an account of its own) and
// stops the clock once every follower holds every event appended; it
// reports the events appended per second and the CPU the process (the
// embedded server included) used per event:
//
//   - raw-publish: the same number of messages published to the same
//     server by JetStream's client, without the store (the floor);
//   - store: the store's appends, no follower;
//   - read-models: the read models' runner follows the store (the
//     service without a transparency log);
//   - read-models+log: the service, the log fed by the runner;
//   - read-models+log-subscribed: the log following the store on its own
//     subscription beside the runner;
//   - log-subscribed: the log alone on its own subscription.
func BenchmarkAppend(b *testing.B) {
	for _, d := range []jetstream.Durability{jetstream.DurabilityFsync, jetstream.DurabilityInterval} {
		b.Run(string(d)+"/raw-publish", func(b *testing.B) { benchRawPublish(b, d) })
		for _, f := range []struct {
			name             string
			runner, log, fed bool
		}{
			{"store", false, false, false},
			{"read-models", true, false, false},
			{"read-models+log", true, true, true},
			{"read-models+log-subscribed", true, true, false},
			{"log-subscribed", false, true, false},
		} {
			b.Run(string(d)+"/"+f.name, func(b *testing.B) { benchAppend(b, d, f.runner, f.log, f.fed) })
		}
	}
}

const benchWriters = 64

// benchEvents returns each writer's events: an account opened and a user
// added (appended before the clock starts), then n activities between
// them, each naming the chain link of the one before.
func benchEvents(b *testing.B, ctx context.Context, cod *codec.Codec, n int) [][]eventstore.Proposed {
	t := time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
	out := make([][]eventstore.Proposed, benchWriters)
	for a := range benchWriters {
		acct := fmt.Sprintf("acct%04d", a)
		var prevLedger, prevAct codec.Hash
		enc := func(prev *codec.Hash, e ledger.Event) eventstore.Proposed {
			id := ulid.Make()
			p, err := cod.Encode(ctx, e, codec.Metadata{EventID: uuid.New(), Time: t, Account: acct,
				Actor: codec.Actor{ID: "tok_admin", Role: "admin"}, CorrelationID: id, CausationID: id, PrevHash: *prev})
			if err != nil {
				b.Fatal(err)
			}
			*prev = codec.NextHash(*prev, p)
			return p
		}
		if err := cod.Keys().Create(ctx, pii.KeyID(acct, "u1")); err != nil {
			b.Fatal(err)
		}
		out[a] = append(out[a], enc(&prevLedger, ledger.AccountOpened{Account: acct, Name: "Acct", Seats: 5, At: t}),
			enc(&prevLedger, ledger.UserAdded{UserID: "u1", Name: "Ada", Email: "ada@acme.test", Role: ledger.RoleAdmin, At: t}))
		for i := a; i < n; i += benchWriters {
			out[a] = append(out[a], enc(&prevAct, ledger.ActivityRecorded{ActivityID: fmt.Sprintf("a%07d", i), UserID: "u1", Kind: "note", Ref: "candidate-17", At: t}))
		}
	}
	return out
}

func benchRawPublish(b *testing.B, d jetstream.Durability) {
	ctx := context.Background()
	s, err := jetstream.Embedded(ctx, jetstream.ServerConfig{DataDir: b.TempDir(), Port: -1, Durability: d}, jetstream.Config{MaxBatch: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	js, err := natsjs.New(s.Conn())
	if err != nil {
		b.Fatal(err)
	}
	events := benchEvents(b, ctx, codec.New(pii.NewKeyring(pii.NewMemoryKeys(), rand.Reader)), b.N)
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu := cputime.Process()
	for a := range benchWriters {
		wg.Go(func() {
			stream := eventstore.ActivityStream(fmt.Sprintf("acct%04d", a))
			for n, e := range events[a][2:] {
				m, err := jetstream.Message(stream, e, uint64(n), false)
				if err != nil {
					b.Error(err)
					return
				}
				if _, err := js.PublishMsg(ctx, m); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N), "cpu-ns/event")
}

func benchAppend(b *testing.B, d jetstream.Durability, withRunner, withLog, fed bool) {
	ctx := context.Background()
	s, err := jetstream.Embedded(ctx, jetstream.ServerConfig{DataDir: b.TempDir(), Port: -1, Durability: d}, jetstream.Config{MaxBatch: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	cod := codec.New(pii.NewKeyring(pii.NewMemoryKeys(), rand.Reader))
	events := benchEvents(b, ctx, cod, b.N)
	var start eventstore.Position
	for a := range benchWriters {
		res, err := s.Append(ctx, eventstore.LedgerStream(fmt.Sprintf("acct%04d", a)), eventstore.NoStream(), events[a][:2]...)
		if err != nil {
			b.Fatal(err)
		}
		start = max(start, res.Position)
	}
	rctx, cancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	defer func() { cancel(); bg.Wait() }()
	var feed *eventstore.Feed
	if fed {
		feed = eventstore.NewFeed(0)
	}
	var r *runner.Runner
	if withRunner {
		cfg := runner.Config{Store: s, Codec: cod, Projections: []projections.Projection{seats.New(), billing.New()}}
		if feed != nil {
			cfg.OnRecord = feed.Offer
		}
		r = runner.New(cfg)
		bg.Go(func() { r.Run(rctx) })
		if err := r.Wait(ctx, start); err != nil {
			b.Fatal(err)
		}
	}
	var l *translog.Log
	if withLog {
		dir := b.TempDir()
		key, err := translog.LoadKey(dir, "", "bench/log", rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		if l, err = translog.Open(translog.Config{Dir: filepath.Join(dir, "log"), Key: key, Feed: feed}); err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		bg.Go(func() { l.Run(rctx, s) })
		if err := l.Wait(ctx, start); err != nil {
			b.Fatal(err)
		}
	}
	var last atomic.Uint64
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu := cputime.Process()
	for a := range benchWriters {
		wg.Go(func() {
			stream := eventstore.ActivityStream(fmt.Sprintf("acct%04d", a))
			for n, e := range events[a][2:] {
				res, err := s.Append(ctx, stream, eventstore.ExpectRevisionAfter(uint64(n)), e)
				if err != nil {
					b.Error(err)
					return
				}
				for p := last.Load(); uint64(res.Position) > p && !last.CompareAndSwap(p, uint64(res.Position)); p = last.Load() {
				}
			}
		})
	}
	wg.Wait()
	if r != nil {
		if err := r.Wait(ctx, eventstore.Position(last.Load())); err != nil {
			b.Fatal(err)
		}
	}
	if l != nil {
		if err := l.Wait(ctx, eventstore.Position(last.Load())); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N), "cpu-ns/event")
}

// BenchmarkLogAppend is the transparency log's own cost per record, the
// part of an append it adds: records appended to the tree (leaf hash,
// stored hashes, their files) in batches of 64, as the feed hands them,
// beside the least any tree of them does: each record's leaf hash. Compare
// with the CPU per event of BenchmarkAppend (tens of microseconds).
func BenchmarkLogAppend(b *testing.B) {
	ev := benchEvent()
	streams := make([]eventstore.StreamID, benchWriters)
	for a := range streams {
		streams[a] = eventstore.ActivityStream(fmt.Sprintf("acct%04d", a))
	}
	rec := func(i int) eventstore.Record {
		return eventstore.Record{ID: ev.ID, Stream: streams[i%benchWriters],
			Type: ev.Type, Data: ev.Data, Metadata: ev.Metadata, Revision: uint64(i), Position: eventstore.Position(i + 1)}
	}
	b.Run("log", func(b *testing.B) {
		dir := b.TempDir()
		key, err := translog.LoadKey(dir, "", "bench/log", rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		l, err := translog.Open(translog.Config{Dir: filepath.Join(dir, "log"), Key: key})
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		batch := make([]translog.Leaf, 0, 64)
		cpu := cputime.Process()
		i := 0
		for b.Loop() {
			batch = append(batch, translog.Leaf{Record: rec(i)})
			i++
			if len(batch) == cap(batch) {
				if err := l.Append(batch...); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		if err := l.Append(batch...); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N), "cpu-ns/record")
	})
	b.Run("leaf-hash", func(b *testing.B) {
		cpu := cputime.Process()
		i := 0
		for b.Loop() {
			if h := translog.LeafHash(rec(i), nil); h[0]|h[1]|h[2]|h[3] == 0 {
				b.Fatalf("leaf %d: hash %x", i, h)
			}
			i++
		}
		b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N), "cpu-ns/record")
	})
}

func benchStream(a int) eventstore.StreamID {
	return eventstore.LedgerStream(fmt.Sprintf("acct%04d", a))
}

// benchEvent is an event of about the size of the ledger's (a 370-byte
// payload and metadata).
func benchEvent() eventstore.Proposed {
	return eventstore.Proposed{ID: uuid.New(), Type: "SeatsPurchased",
		Data:     []byte(`{"count":1,"at":"2026-03-10T09:00:00Z","note":"` + fmt.Sprintf("%0200d", 7) + `"}`),
		Metadata: []byte(`{"time":"2026-03-10T09:00:00Z","schemaversion":1,"account":"acme","actorid":"tok_0123456789abcdef","actorrole":"admin","correlationid":"01KKBFJYM0VNBC69PEBG2KZWY9","causationid":"01KKBFJYM0VNBC69PEBG2KZWY9","prevhash":"0000000000000000000000000000000000000000000000000000000000000000"}`)}
}

// bundleRecords is the size of the bundle the verify benchmark checks:
// LEDGER_BUNDLE_RECORDS, 100,000 by default.
func bundleRecords(b *testing.B) int {
	n := 100_000
	if v := os.Getenv("LEDGER_BUNDLE_RECORDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 3 {
			b.Fatalf("LEDGER_BUNDLE_RECORDS=%q", v)
		}
	}
	return n
}

// sliceHistory serves streams from memory.
type sliceHistory map[eventstore.StreamID][]eventstore.Record

func (h sliceHistory) ReadStream(_ context.Context, s eventstore.StreamID, from uint64) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		recs := h[s]
		if len(recs) == 0 {
			yield(eventstore.Record{}, eventstore.ErrStreamNotFound)
			return
		}
		for _, r := range recs[from:] {
			if !yield(r, nil) {
				return
			}
		}
	}
}

func writeBenchBundle(dir string, n int) (string, string, error) {
	ctx := context.Background()
	key, err := translog.LoadKey(dir, "", "bench/log", rand.Reader)
	if err != nil {
		return "", "", err
	}
	l, err := translog.Open(translog.Config{Dir: filepath.Join(dir, "log"), Key: key})
	if err != nil {
		return "", "", err
	}
	defer l.Close()
	keys := pii.NewMemoryKeys()
	cod := codec.New(pii.NewKeyring(keys, rand.Reader))
	if err := cod.Keys().Create(ctx, pii.KeyID("acme", "u1")); err != nil {
		return "", "", err
	}
	t := time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
	hist := sliceHistory{}
	prev := map[eventstore.StreamID]codec.Hash{}
	pos := eventstore.Position(0)
	var batch []translog.Leaf
	add := func(stream eventstore.StreamID, e ledger.Event) error {
		id := ulid.Make()
		p, err := cod.Encode(ctx, e, codec.Metadata{EventID: uuid.New(), Time: t, Account: "acme",
			Actor: codec.Actor{ID: "tok_admin", Role: "admin"}, CorrelationID: id, CausationID: id, PrevHash: prev[stream]})
		if err != nil {
			return err
		}
		pos++
		rec := eventstore.Record{ID: p.ID, Stream: stream, Type: p.Type, Data: p.Data, Metadata: p.Metadata,
			Revision: uint64(len(hist[stream])), Position: pos}
		prev[stream] = codec.RecordHash(prev[stream], rec)
		hist[stream] = append(hist[stream], rec)
		pos++
		other := benchEvent()
		batch = append(batch, translog.Leaf{Record: rec}, translog.Leaf{Record: eventstore.Record{ID: other.ID,
			Stream: eventstore.LedgerStream("other"), Type: other.Type, Data: other.Data, Metadata: other.Metadata, Revision: uint64(pos), Position: pos}})
		if len(batch) >= 4096 {
			err = l.Append(batch...)
			batch = batch[:0]
		}
		return err
	}
	if err := add(eventstore.LedgerStream("acme"), ledger.AccountOpened{Account: "acme", Name: "Acme", Seats: 5, At: t}); err != nil {
		return "", "", err
	}
	if err := add(eventstore.LedgerStream("acme"), ledger.UserAdded{UserID: "u1", Name: "Ada", Email: "ada@acme.test", Role: ledger.RoleAdmin, At: t}); err != nil {
		return "", "", err
	}
	for i := range n - 2 {
		if err := add(eventstore.ActivityStream("acme"), ledger.ActivityRecorded{ActivityID: fmt.Sprintf("a%07d", i), UserID: "u1", Kind: "note", Ref: "candidate-17", At: t}); err != nil {
			return "", "", err
		}
	}
	if err := l.Append(batch...); err != nil {
		return "", "", err
	}
	cp, err := l.Sign(ctx)
	if err != nil {
		return "", "", err
	}
	path := filepath.Join(dir, "bundle.jsonl")
	f, err := os.Create(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	emit := func(bl *translog.BundleLine) error {
		if err := json.MarshalWrite(w, bl); err != nil {
			return err
		}
		return w.WriteByte('\n')
	}
	k, _ := keys.Get(ctx, pii.KeyID("acme", "u1"))
	if err := errors.Join(emit(new(translog.CheckpointLine("acme", cp))), emit(&translog.BundleLine{Kind: translog.KindKey, User: "u1", Key: k})); err != nil {
		return "", "", err
	}
	if err := l.Export(ctx, hist, "acme", cp, emit); err != nil {
		return "", "", err
	}
	return path, key.Verifier, w.Flush()
}

// BenchmarkVerifyBundle verifies an audit bundle offline (signature,
// every inclusion proof, the chains, the replay of seats and billing),
// beside a plain read of the same file and a decode of its every line.
func BenchmarkVerifyBundle(b *testing.B) {
	n := bundleRecords(b)
	// The parent runs once: the bundle is written once and removed after.
	path, vkey, err := writeBenchBundle(b.TempDir(), n)
	if err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("verify", func(b *testing.B) {
		b.SetBytes(st.Size())
		cpu := cputime.Process()
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			v, err := translog.VerifyBundle(context.Background(), f, vkey, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC))
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
			if v.Records != n {
				b.Fatalf("verified %d records, want %d", v.Records, n)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(cputime.Process()-cpu)/float64(n)/float64(b.N), "cpu-ns/record")
	})
	b.Run("read", func(b *testing.B) {
		b.SetBytes(st.Size())
		cpu := cputime.Process()
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			lines := 0
			r := bufio.NewReaderSize(f, 1<<20)
			for {
				_, err := r.ReadSlice('\n')
				if err != nil {
					break
				}
				lines++
			}
			f.Close()
			if lines != n+2 {
				b.Fatalf("%d lines, want %d", lines, n+2)
			}
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		b.ReportMetric(float64(cputime.Process()-cpu)/float64(n)/float64(b.N), "cpu-ns/record")
	})
	b.Run("decode-lines", func(b *testing.B) {
		b.SetBytes(st.Size())
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			r := bufio.NewReaderSize(f, 1<<20)
			for {
				line, err := r.ReadSlice('\n')
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				var bl translog.BundleLine
				if err := json.Unmarshal(line, &bl); err != nil {
					b.Fatal(err)
				}
			}
			f.Close()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
}

// BenchmarkInclusionProof is the latency of one inclusion proof in a tree
// of 1,000,000 leaves read from its files, beside reading the leaf's
// stored hash alone.
func BenchmarkInclusionProof(b *testing.B) {
	dir := b.TempDir()
	key, err := translog.LoadKey(dir, "", "bench/log", rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	l, err := translog.Open(translog.Config{Dir: filepath.Join(dir, "log"), Key: key})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	const size = 1_000_000
	batch := make([]translog.Leaf, 0, 4096)
	ev := benchEvent()
	for i := range size {
		batch = append(batch, translog.Leaf{Record: eventstore.Record{ID: ev.ID, Stream: eventstore.LedgerStream("acme"),
			Type: ev.Type, Data: ev.Data, Metadata: ev.Metadata, Revision: uint64(i), Position: eventstore.Position(i + 1)}})
		if len(batch) == cap(batch) {
			if err := l.Append(batch...); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := l.Append(batch...); err != nil {
		b.Fatal(err)
	}
	b.Run("proof", func(b *testing.B) {
		i := int64(0)
		for b.Loop() {
			if _, err := l.InclusionProof(i%size, size, nil); err != nil {
				b.Fatal(err)
			}
			i += 7919
		}
	})
	b.Run("leaf-hash", func(b *testing.B) {
		i := int64(0)
		for b.Loop() {
			if _, err := l.TreeHash(1); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
