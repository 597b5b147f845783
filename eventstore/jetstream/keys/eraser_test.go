package keys

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/pii"
)

// TestDestroyTakesEffectBeforeErasure holds the eraser back: once Destroy
// returns, the id reads as destroyed in this process and in another one,
// while the key's bytes are still on disk; they go when the eraser runs.
func TestDestroyTakesEffectBeforeErasure(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	s, other := ts.open(ctx), ts.open(ctx)
	id, bystander := pii.KeyID("acme", "u1"), pii.KeyID("acme", "u2")
	key, bystanderKey := newKey(t), newKey(t)
	for id, k := range map[string][]byte{id: key, bystander: bystanderKey} {
		if err := s.Put(ctx, id, k); err != nil {
			t.Fatal(err)
		}
	}

	s.er.pause()
	if err := s.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	for name, st := range map[string]*Store{"same store": s, "other store": other} {
		if _, err := st.Get(ctx, id); !errors.Is(err, pii.ErrErased) {
			t.Errorf("%s: Get right after Destroy: %v, want ErrErased", name, err)
		}
		if err := st.Put(ctx, id, newKey(t)); !errors.Is(err, pii.ErrErased) {
			t.Errorf("%s: Put right after Destroy: %v, want ErrErased", name, err)
		}
	}
	if hits := filesContaining(t, ts.Dir, map[string][]byte{"key raw": key}); len(hits) == 0 {
		t.Fatal("control: the key left the disk while the eraser was paused; the test proves nothing")
	}
	if n := subjectMessages(t, ctx, s, id); n != 2 {
		t.Fatalf("%d messages on the subject before the erasure, want the key and its tombstone", n)
	}
	if n := s.er.pending(); n != 1 {
		t.Fatalf("%d erasures pending, want 1", n)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := s.Flush(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush with the eraser paused: %v, want DeadlineExceeded", err)
	}

	s.er.resume()
	flush(t, s)
	if hits := filesContaining(t, ts.Dir, forms("key", key)); len(hits) > 0 {
		t.Fatalf("key bytes on disk after Flush: %v", hits)
	}
	if n := subjectMessages(t, ctx, s, id); n != 1 {
		t.Fatalf("%d messages on the subject after Flush, want the tombstone only", n)
	}
	if got, err := other.Get(ctx, bystander); err != nil || !bytes.Equal(got, bystanderKey) {
		t.Fatalf("Get bystander = %x, %v; want %x", got, err, bystanderKey)
	}
}

// TestCloseDrains queues erasures behind a paused eraser and closes the
// store: Close erases them all before it returns. A Destroy after Close
// erases before returning.
func TestCloseDrains(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	s, err := Open(ctx, ts.connect(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	destroyed := make(map[string][]byte)
	for i := range 5 {
		destroyed[pii.KeyID("acme", "gone"+strconv.Itoa(i))] = newKey(t)
	}
	late, lateKey := pii.KeyID("acme", "late"), newKey(t)
	for id, k := range destroyed {
		if err := s.Put(ctx, id, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(ctx, late, lateKey); err != nil {
		t.Fatal(err)
	}

	s.er.pause()
	for id := range destroyed {
		if err := s.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	all := make(map[string][]byte)
	for id, k := range destroyed {
		all[id] = k
	}
	if hits := filesContaining(t, ts.Dir, all); len(hits) != len(destroyed) {
		t.Fatalf("control: %d of %d destroyed keys on disk before Close: %v", len(hits), len(destroyed), hits)
	}

	if err := s.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for id, k := range destroyed {
		if hits := filesContaining(t, ts.Dir, forms(id, k)); len(hits) > 0 {
			t.Fatalf("key of %s on disk after Close: %v", id, hits)
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("Flush after Close: %v", err)
	}

	if err := s.Destroy(ctx, late); err != nil {
		t.Fatalf("Destroy after Close: %v", err)
	}
	if hits := filesContaining(t, ts.Dir, forms("late key", lateKey)); len(hits) > 0 {
		t.Fatalf("key destroyed after Close on disk: %v", hits)
	}
	if _, err := s.Get(ctx, late); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("Get after Destroy after Close: %v, want ErrErased", err)
	}
}

// TestCrashBeforeErasure stops a process whose eraser had not run: Close
// gives up at once and says so, the server restarts, and the next Open
// erases the key. A second Destroy from another process, before that,
// also finishes an erasure left undone.
func TestCrashBeforeErasure(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	crashed, err := Open(ctx, ts.connect(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	id, again := pii.KeyID("acme", "u1"), pii.KeyID("acme", "u2")
	key, againKey := newKey(t), newKey(t)
	for id, k := range map[string][]byte{id: key, again: againKey} {
		if err := crashed.Put(ctx, id, k); err != nil {
			t.Fatal(err)
		}
	}
	crashed.er.pause()
	for _, id := range []string{id, again} {
		if err := crashed.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if err := crashed.Close(gone); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close with a done context and 2 erasures queued: %v, want Canceled", err)
	}
	// (The server may be rewriting a block beside it: count keys, not files.)
	hits := filesContaining(t, ts.Dir, map[string][]byte{"key raw": key, "again raw": againKey})
	if !slices.ContainsFunc(hits, func(h string) bool { return strings.HasSuffix(h, "(key raw)") }) ||
		!slices.ContainsFunc(hits, func(h string) bool { return strings.HasSuffix(h, "(again raw)") }) {
		t.Fatalf("control: both keys should be on disk after the crash: %v", hits)
	}

	// Another process destroys one of them again and erases it.
	other := ts.open(ctx)
	if err := other.Destroy(ctx, again); err != nil {
		t.Fatal(err)
	}
	flush(t, other)
	if hits := filesContaining(t, ts.Dir, forms("again", againKey)); len(hits) > 0 {
		t.Fatalf("key destroyed twice on disk: %v", hits)
	}

	ts.Restart()
	s := ts.open(ctx)
	if _, err := s.Get(ctx, id); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("Get after restart: %v, want ErrErased", err)
	}
	flush(t, s)
	if hits := filesContaining(t, ts.Dir, forms("key", key)); len(hits) > 0 {
		t.Fatalf("key bytes on disk after Open and Flush: %v", hits)
	}
	for _, id := range []string{id, again} {
		if n := subjectMessages(t, ctx, s, id); n != 1 {
			t.Fatalf("%s: %d messages on the subject, want the tombstone only", id, n)
		}
	}
}

// TestCorruptTombstoneErasesNothing writes a tombstone that names the key
// of another subject: the eraser refuses it, Flush reports ErrCorrupt, and
// the other key stays.
func TestCorruptTombstoneErasesNothing(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	s := ts.open(ctx)
	// Two ids of one shard, so that the tombstone names a message of the
	// victim's stream.
	victim := pii.KeyID("acme", "u1")
	bystander := sameShard(t, s, victim)
	bystanderKey := newKey(t)
	if err := s.Put(ctx, bystander, bystanderKey); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, victim, newKey(t)); err != nil {
		t.Fatal(err)
	}
	bsubj, _ := s.subject(bystander)
	vsubj, _ := s.subject(victim)
	blast, err := s.last(ctx, bsubj)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(vsubj)
	msg.Header.Set(TombstoneHeader, strconv.FormatUint(blast.Sequence, 10))
	if _, err := s.js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}

	if err := s.Destroy(ctx, victim); err != nil {
		t.Fatalf("Destroy over a tombstone: %v", err)
	}
	if err := s.Flush(ctx); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Flush: %v, want ErrCorrupt", err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatalf("second Flush: %v, want the failure reported once", err)
	}
	if got, err := s.Get(ctx, bystander); err != nil || !bytes.Equal(got, bystanderKey) {
		t.Fatalf("Get bystander = %x, %v; want %x", got, err, bystanderKey)
	}
}

// TestThirdMessageRefused checks the per-subject limit the stream sets to
// get smaller blocks: a message beyond a key and its tombstone is refused,
// not stored by evicting the key unerased.
func TestThirdMessageRefused(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	s := ts.open(ctx)
	id := pii.KeyID("acme", "u1")
	if err := s.Put(ctx, id, newKey(t)); err != nil {
		t.Fatal(err)
	}
	subj, _ := s.subject(id)
	keyMsg, err := s.last(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	s.er.pause()
	if err := s.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	_, err = s.js.Publish(ctx, subj, newKey(t))
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("third message on a subject: %v, want refused", err)
	}
	if _, err := s.partOf(subj).stream.GetMsg(ctx, keyMsg.Sequence); err != nil {
		t.Fatalf("the key before its erasure: %v, want still there", err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("Get: %v, want ErrErased", err)
	}
	s.er.resume()
	flush(t, s)
	if _, err := s.partOf(subj).stream.GetMsg(ctx, keyMsg.Sequence); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("the key after Flush: %v, want ErrMsgNotFound", err)
	}
}

// sameShard returns an id of another user whose key lives in the shard of
// id's.
func sameShard(t *testing.T, s *Store, id string) string {
	t.Helper()
	account, user, err := splitID(id)
	if err != nil {
		t.Fatal(err)
	}
	want := s.shard(account, user)
	for i := range 1000 {
		other := pii.KeyID(account, "other"+strconv.Itoa(i))
		if s.shard(account, "other"+strconv.Itoa(i)) == want {
			return other
		}
	}
	t.Fatal("no id in the same shard")
	return ""
}

// TestErasureRunsWithoutFlush checks that queued erasures run by
// themselves once they waited eraseDelay, with nobody flushing.
func TestErasureRunsWithoutFlush(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	s := ts.open(ctx)
	ids := []string{pii.KeyID("acme", "u1"), pii.KeyID("acme", "u2"), pii.KeyID("beta", "u3")}
	for _, id := range ids {
		if err := s.Put(ctx, id, newKey(t)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	for _, id := range ids {
		if err := s.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for s.er.pending() > 0 {
		if time.Since(start) > eraseDelay+20*time.Second {
			t.Fatalf("%d erasures still pending %v after Destroy, with nobody flushing", s.er.pending(), time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, id := range ids {
		if n := subjectMessages(t, ctx, s, id); n != 1 {
			t.Fatalf("%s: %d messages on the subject, want the tombstone only", id, n)
		}
	}
}

// TestFlushWaitsForEarlierErasures queues erasures in two shards, then
// one more in the first shard after a Flush began: the eraser takes that
// one before the other shard's, and Flush still returns only once every
// erasure queued before it is done.
func TestFlushWaitsForEarlierErasures(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	s := ts.open(ctx)
	a1 := pii.KeyID("acme", "u1")
	a2 := sameShard(t, s, a1)
	var b string
	for i := range 100 {
		b = pii.KeyID("acme", "b"+strconv.Itoa(i))
		if mustStreamOf(t, s, b) != mustStreamOf(t, s, a1) {
			break
		}
	}
	bStream := mustStreamOf(t, s, b)
	for _, id := range []string{a1, a2, b} {
		if err := s.Put(ctx, id, newKey(t)); err != nil {
			t.Fatal(err)
		}
	}
	s.er.pause()
	// The erasure in b's shard waits until released.
	started, release := make(chan struct{}), make(chan struct{})
	s.er.erase = func(ctx context.Context, x erasure) error {
		if x.p.name == bStream {
			close(started)
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return s.eraseOne(ctx, x)
	}
	for _, id := range []string{a1, b} {
		if err := s.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	flushed := make(chan error, 1)
	go func() { flushed <- s.Flush(ctx) }()
	for {
		s.er.mu.Lock()
		h := s.er.hurry
		s.er.mu.Unlock()
		if h > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Destroy(ctx, a2); err != nil {
		t.Fatal(err)
	}
	s.er.resume()
	<-started // a1's and a2's erasures are done
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned (%v) while an erasure queued before it waits", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a1, a2, b} {
		if n := subjectMessages(t, ctx, s, id); n != 1 {
			t.Fatalf("%s: %d messages on the subject after Flush, want the tombstone only", id, n)
		}
	}
}

func mustStreamOf(t *testing.T, s *Store, id string) string {
	t.Helper()
	name, err := s.StreamOf(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// TestFlushSyncsErasures checks that Flush returns only after a
// Config.Sync that began after the last erasure it waited for (the server
// does not fsync the msgs directory a rewritten block is renamed in), and
// that it reports a Sync that failed there.
func TestFlushSyncsErasures(t *testing.T) {
	ctx := t.Context()
	broken := errors.New("disk on fire")
	var (
		mu   sync.Mutex
		log  []string // "erase" and "sync", in the order they ended and began
		fail bool
	)
	s, err := Open(ctx, newTestServer(t).connect(), Config{paused: true, Sync: func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		log = append(log, "sync")
		if fail {
			return broken
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, s)
	s.er.erase = func(ctx context.Context, x erasure) error {
		err := s.eraseOne(ctx, x)
		mu.Lock()
		log = append(log, "erase")
		mu.Unlock()
		return err
	}
	ids := []string{pii.KeyID("acme", "u1"), pii.KeyID("acme", "u2"), pii.KeyID("beta", "u3")}
	for _, id := range ids {
		if err := s.Put(ctx, id, newKey(t)); err != nil {
			t.Fatal(err)
		}
		if err := s.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	s.er.resume()
	flush(t, s)
	mu.Lock()
	erasures, lastErase := 0, -1
	for i, op := range log {
		if op == "erase" {
			erasures, lastErase = erasures+1, i
		}
	}
	synced := slices.Contains(log[lastErase+1:], "sync")
	got := slices.Clone(log)
	mu.Unlock()
	if erasures != len(ids) {
		t.Fatalf("%d erasures before Flush returned, want %d (log %v)", erasures, len(ids), got)
	}
	if !synced {
		t.Fatalf("Flush returned without a sync after the last erasure: %v", got)
	}

	// A failed sync after an erasure fails the Flush that waits for it.
	id := pii.KeyID("acme", "u4")
	if err := s.Put(ctx, id, newKey(t)); err != nil {
		t.Fatal(err)
	}
	s.er.pause()
	if err := s.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	s.er.resume()
	if err := s.Flush(ctx); !errors.Is(err, broken) {
		t.Fatalf("Flush with a failing sync after the erasure: %v, want %v", err, broken)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	flush(t, s)
}

// TestEraserRunIsCapped keeps queueing erasures in one stream while the
// eraser erases there: the erasure of another stream, queued before the
// run began, goes next instead of after all of them.
func TestEraserRunIsCapped(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, newTestServer(t).connect(), Config{paused: true})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, s)
	a := pii.KeyID("acme", "u1")
	var b string
	for i := range 100 {
		b = pii.KeyID("acme", "b"+strconv.Itoa(i))
		if mustStreamOf(t, s, b) != mustStreamOf(t, s, a) {
			break
		}
	}
	aStream, bStream := mustStreamOf(t, s, a), mustStreamOf(t, s, b)
	const more = 20
	var (
		mu    sync.Mutex
		order []string
		added int
	)
	s.er.erase = func(ctx context.Context, x erasure) error {
		err := s.eraseOne(ctx, x)
		mu.Lock()
		order = append(order, x.p.name)
		again := x.p.name == aStream && added < more
		if again {
			added++
		}
		mu.Unlock()
		if again {
			// Another erasure in the same stream, as a Destroy in that
			// shard would queue; the message is gone already, which the
			// erasure takes as done.
			if err := s.er.enqueue(ctx, erasure{p: x.p, subject: x.subject, seq: x.seq}); err != nil {
				return err
			}
		}
		return err
	}
	for _, id := range []string{a, b} {
		if err := s.Put(ctx, id, newKey(t)); err != nil {
			t.Fatal(err)
		}
		if err := s.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	s.er.resume()
	for s.er.pending() > 0 {
		flush(t, s)
	}
	mu.Lock()
	got := slices.Clone(order)
	mu.Unlock()
	if len(got) != more+2 {
		t.Fatalf("%d erasures, want %d: %v", len(got), more+2, got)
	}
	if i := slices.Index(got, bStream); i != 1 {
		t.Fatalf("the erasure in %s ran %d-th, after %d erasures in %s; want second: %v",
			bStream, i+1, i, aStream, got)
	}
}
