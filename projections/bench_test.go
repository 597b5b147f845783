package projections_test

import (
	"context"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"

	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/cputime"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/attribution"
	"github.com/licenseledger/ledger/projections/audit"
	"github.com/licenseledger/ledger/projections/billing"
	"github.com/licenseledger/ledger/projections/internal/fixture"
	"github.com/licenseledger/ledger/projections/runner"
	"github.com/licenseledger/ledger/projections/seats"
)

// The benchmark history: 1,000 accounts of 1,000 events each, interleaved
// in global order as concurrent writers would leave them (50 each with
// -short). Generated once per process, outside any timing.
var (
	benchOnce sync.Once
	benchLog  *fixture.Log
	benchErr  error
)

func benchHistory(b *testing.B) *fixture.Log {
	b.Helper()
	benchOnce.Do(func() {
		per := 1000
		if testing.Short() {
			per = 50
		}
		start := time.Now()
		benchLog, benchErr = fixture.History(context.Background(), 1000, per)
		if benchErr == nil {
			b.Logf("generated %d events in %s", len(benchLog.Records()), time.Since(start).Round(time.Millisecond))
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchLog
}

func allModels() projections.Set { return newModels().set() }

// settle collects the garbage that generating the history (or an earlier
// benchmark's read models) left, so that a fold does not pay for it.
func settle() { runtime.GC() }

// measure starts the timed part of a benchmark from a collected heap and
// returns what ends it: done stops the timer and reports on the events
// each iteration folded.
func measure(b *testing.B) (done func(events int)) {
	b.ReportAllocs()
	settle()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	cpu := cputime.Process()
	b.ResetTimer()
	return func(events int) {
		b.StopTimer()
		report(b, events, &ms, cputime.Process()-cpu)
	}
}

// report sets events/s and allocs/event from the events folded, the time
// the timer ran and the mallocs since before. It also reports events per
// CPU-second of the process (cpu is the CPU time of the timed parts), which
// a machine shared with other work distorts less than wall time.
func report(b *testing.B, events int, before *runtime.MemStats, cpu time.Duration) {
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	total := float64(events) * float64(b.N)
	b.ReportMetric(total/b.Elapsed().Seconds(), "events/s")
	if cpu > 0 {
		b.ReportMetric(total/cpu.Seconds(), "events/cpu-s")
	}
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/total, "allocs/event")
}

// BenchmarkFoldStored decodes every stored record and applies it to every
// read model: a rebuild from the store's bytes.
func BenchmarkFoldStored(b *testing.B) {
	l := benchHistory(b)
	recs := l.Records()
	ctx := context.Background()
	done := measure(b)
	for range b.N {
		set := allModels()
		for _, r := range recs {
			d, err := l.Codec.Decode(ctx, r)
			if err != nil {
				b.Fatal(err)
			}
			if err := set.Apply(d); err != nil {
				b.Fatal(err)
			}
		}
	}
	done(len(recs))
}

// batchSize is the number of events the batched fold benchmarks decode
// before applying them with Set.ApplyBatch.
const batchSize = 256

// BenchmarkFoldStoredBatch is BenchmarkFoldStored feeding the read models
// batches of decoded events through Set.ApplyBatch, each read model
// taking its lock once per batch.
func BenchmarkFoldStoredBatch(b *testing.B) {
	l := benchHistory(b)
	recs := l.Records()
	ctx := context.Background()
	batch := make([]codec.Decoded, 0, batchSize)
	done := measure(b)
	for range b.N {
		set := allModels()
		for i, r := range recs {
			d, err := l.Codec.Decode(ctx, r)
			if err != nil {
				b.Fatal(err)
			}
			batch = append(batch, d)
			if len(batch) == batchSize || i == len(recs)-1 {
				if err := set.ApplyBatch(batch); err != nil {
					b.Fatal(err)
				}
				clear(batch)
				batch = batch[:0]
			}
		}
	}
	done(len(recs))
}

// BenchmarkFoldDecoded applies already decoded events to every read model:
// the read models' share of a rebuild. Events are decoded in chunks with
// the timer stopped, so memory stays bounded.
func BenchmarkFoldDecoded(b *testing.B) { foldDecoded(b, false) }

// BenchmarkFoldDecodedBatch is BenchmarkFoldDecoded applying batches with
// Set.ApplyBatch.
func BenchmarkFoldDecodedBatch(b *testing.B) { foldDecoded(b, true) }

func foldDecoded(b *testing.B, batched bool) {
	l := benchHistory(b)
	recs := l.Records()
	ctx := context.Background()
	const chunk = 20_000
	buf := make([]codec.Decoded, 0, chunk)
	b.ReportAllocs()
	var ms, pause runtime.MemStats
	var untimed uint64 // mallocs while decoding, timer stopped
	settle()
	runtime.ReadMemStats(&ms)
	cpu := -cputime.Process() // CPU time of the timed parts only
	b.ResetTimer()
	for range b.N {
		set := allModels()
		for i := 0; i < len(recs); i += chunk {
			b.StopTimer()
			runtime.ReadMemStats(&pause)
			untimed -= pause.Mallocs
			cpu += cputime.Process()
			buf = buf[:0]
			for _, r := range recs[i:min(i+chunk, len(recs))] {
				d, err := l.Codec.Decode(ctx, r)
				if err != nil {
					b.Fatal(err)
				}
				buf = append(buf, d)
			}
			runtime.ReadMemStats(&pause)
			untimed += pause.Mallocs
			cpu -= cputime.Process()
			b.StartTimer()
			if batched {
				for j := 0; j < len(buf); j += batchSize {
					if err := set.ApplyBatch(buf[j:min(j+batchSize, len(buf))]); err != nil {
						b.Fatal(err)
					}
				}
				continue
			}
			for _, d := range buf {
				if err := set.Apply(d); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	b.StopTimer()
	cpu += cputime.Process()
	ms.Mallocs += untimed
	report(b, len(recs), &ms, cpu)
}

// BenchmarkDecode decodes every stored record and nothing else: the
// codec's share of a rebuild.
func BenchmarkDecode(b *testing.B) {
	l := benchHistory(b)
	recs := l.Records()
	ctx := context.Background()
	done := measure(b)
	for range b.N {
		for _, r := range recs {
			if _, err := l.Codec.Decode(ctx, r); err != nil {
				b.Fatal(err)
			}
		}
	}
	done(len(recs))
}

// jsonMeta and jsonPayload are plain structs for BenchmarkDecodeJSONv2: the
// stored metadata, and the union of every payload's members.
type jsonMeta struct {
	Time           time.Time `json:"time"`
	Subject        string    `json:"subject"`
	SchemaVersion  int       `json:"schemaversion"`
	Account        string    `json:"account"`
	ActorID        string    `json:"actorid"`
	ActorRole      string    `json:"actorrole"`
	CorrelationID  string    `json:"correlationid"`
	CausationID    string    `json:"causationid"`
	IdempotencyKey string    `json:"idempotencykey"`
	PrevHash       string    `json:"prevhash"`
}

type jsonPayload struct {
	Account      string    `json:"account"`
	Name         string    `json:"name"`
	Seats        int       `json:"seats"`
	Count        int       `json:"count"`
	EffectiveAt  time.Time `json:"effective_at"`
	UserID       string    `json:"user_id"`
	NameSealed   string    `json:"name_sealed"`
	EmailSealed  string    `json:"email_sealed"`
	Role         string    `json:"role"`
	ReasonSealed string    `json:"reason_sealed"`
	ReassignTo   string    `json:"reassign_to"`
	ActivityID   string    `json:"activity_id"`
	Kind         string    `json:"kind"`
	Ref          string    `json:"ref"`
	At           time.Time `json:"at"`
}

// BenchmarkDecodeJSONv2 is the baseline of the fold benchmarks, to be
// measured in the same run: the JSON v2 implementation
// (go-json-experiment/json, Go's encoding/json/v2) decoding every stored
// record's metadata and payload into plain structs (times parsed), with no
// sealed field opened and no read model. Wall-clock rates on these shared
// machines move by 2-3x with the host's load; the ratio of a fold's rate to
// this one's moves much less.
func BenchmarkDecodeJSONv2(b *testing.B) {
	l := benchHistory(b)
	recs := l.Records()
	done := measure(b)
	for range b.N {
		for _, r := range recs {
			var m jsonMeta
			var p jsonPayload
			if err := jsonv2.Unmarshal(r.Metadata, &m); err != nil {
				b.Fatal(err)
			}
			if err := jsonv2.Unmarshal(r.Data, &p); err != nil {
				b.Fatal(err)
			}
		}
	}
	done(len(recs))
}

// BenchmarkSnapshotRestore measures a restart from a snapshot at the end of
// the benchmark history: snapshotting the four read models, saving the
// snapshot file the runner writes, loading it and restoring fresh read
// models from it. restart-s is load plus restore: what a restart costs
// before it reads the events after the snapshot. The history is released
// (and generated again by a later benchmark that needs it) and the heap
// collected first, so the process holds what a service does: the read
// models, then only the restored ones.
func BenchmarkSnapshotRestore(b *testing.B) {
	l := benchHistory(b)
	ctx := context.Background()
	m := newModels()
	set := m.set()
	for _, r := range l.Records() {
		d, err := l.Codec.Decode(ctx, r)
		if err != nil {
			b.Fatal(err)
		}
		if err := set.Apply(d); err != nil {
			b.Fatal(err)
		}
	}
	l, benchLog, benchOnce = nil, nil, sync.Once{}
	want := askAll(b, m)
	store := runner.FileSnapshots{Dir: b.TempDir()}
	sizes := map[string]int{}
	var snapT, saveT, loadT, restoreT time.Duration
	runtime.GC()
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		s := runner.Snapshot{Position: m.seats.Position(), Parts: map[string][]byte{}}
		for _, p := range m.set() {
			blob, err := p.(projections.Snapshotter).Snapshot()
			if err != nil {
				b.Fatal(err)
			}
			s.Parts[p.Name()] = blob
			sizes[p.Name()] = len(blob)
		}
		t1 := time.Now()
		if err := store.Save(ctx, s); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		b.StopTimer()
		s, m = runner.Snapshot{}, models{} // a restarting process has neither
		runtime.GC()
		b.StartTimer()
		t3 := time.Now()
		loaded, err := store.Load(ctx)
		if err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		m = newModels()
		for _, p := range m.set() {
			if err := p.(projections.Snapshotter).Restore(loaded.Parts[p.Name()]); err != nil {
				b.Fatal(err)
			}
		}
		t5 := time.Now()
		snapT, saveT, loadT, restoreT = snapT+t1.Sub(t0), saveT+t2.Sub(t1), loadT+t4.Sub(t3), restoreT+t5.Sub(t4)
		b.StopTimer()
		loaded = runner.Snapshot{}
		if got := askAll(b, m); !reflect.DeepEqual(want, got) {
			b.Fatal("the restored read models answer differently")
		}
		b.StartTimer()
	}
	n := float64(b.N)
	total := 0
	for name, size := range sizes {
		total += size
		b.ReportMetric(float64(size), name+"-bytes")
	}
	b.ReportMetric(float64(total), "bytes")
	b.ReportMetric(snapT.Seconds()/n, "snapshot-s")
	b.ReportMetric(saveT.Seconds()/n, "save-s")
	b.ReportMetric(loadT.Seconds()/n, "load-s")
	b.ReportMetric(restoreT.Seconds()/n, "restore-s")
	b.ReportMetric((loadT+restoreT).Seconds()/n, "restart-s")
}

// answers is what the read models answer about a few accounts.
type answers struct {
	usage seats.Usage
	users []seats.User
	page  attribution.Page
	audit []audit.Entry
	bill  billing.Cycle
}

// askAll asks the read models about a few accounts of the benchmark
// history, to compare restored read models with the originals.
func askAll(b *testing.B, m models) []answers {
	b.Helper()
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	var out []answers
	for _, id := range []string{"acct-0000", "acct-0457", "acct-0999"} {
		var a answers
		var err error
		if a.usage, err = m.seats.Usage(id, now); err != nil {
			b.Fatal(err)
		}
		if a.users, err = m.seats.Users(id, ""); err != nil {
			b.Fatal(err)
		}
		if a.page, err = m.attr.Activities(id, 10, 50); err != nil {
			b.Fatal(err)
		}
		if a.audit, err = m.audit.Entries(id, audit.Filter{Limit: 200}); err != nil {
			b.Fatal(err)
		}
		if a.bill, err = m.bill.Current(id, now); err != nil {
			b.Fatal(err)
		}
		if len(a.users) == 0 || len(a.page.Activities) == 0 || len(a.audit) == 0 {
			b.Fatalf("%s: nothing to compare", id)
		}
		out = append(out, a)
	}
	return out
}
