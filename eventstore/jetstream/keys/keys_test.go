package keys

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore/jetstream/internal/jstest"
	"github.com/licenseledger/ledger/internal/pii"
)

// testServer is the embedded server of these tests.
type testServer struct{ *jstest.Server }

func newTestServer(t testing.TB) *testServer {
	t.Helper()
	return &testServer{jstest.Start(t, "keys-test")}
}

func (ts *testServer) connect() jetstream.JetStream {
	ts.T.Helper()
	return ts.Connect(nats.MaxReconnects(0))
}

// open opens a Store on a new connection and closes it when the test
// ends, failing the test if its erasures are not done by then.
func (ts *testServer) open(ctx context.Context) *Store {
	ts.T.Helper()
	s, err := Open(ctx, ts.connect(), Config{})
	if err != nil {
		ts.T.Fatalf("open: %v", err)
	}
	closeAtEnd(ts.T, s)
	return s
}

func closeAtEnd(t testing.TB, s *Store) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
}

// flush waits for the erasures s queued.
func flush(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Flush(t.Context()); err != nil {
		t.Fatalf("flush: %v", err)
	}
}

// filesContaining returns the files under dir that contain any of needles.
func filesContaining(t *testing.T, dir string, needles map[string][]byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // a temporary file the server removed meanwhile
		}
		if err != nil {
			return err
		}
		for form, n := range needles {
			if bytes.Contains(b, n) {
				rel, _ := filepath.Rel(dir, path)
				hits = append(hits, rel+" ("+form+")")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return hits
}

// forms returns b as raw bytes and in the text encodings a program might
// write it in.
func forms(name string, b []byte) map[string][]byte {
	return map[string][]byte{
		name + " raw":       b,
		name + " base64":    []byte(base64.StdEncoding.EncodeToString(b)),
		name + " base64raw": []byte(base64.RawStdEncoding.EncodeToString(b)),
		name + " base64url": []byte(base64.RawURLEncoding.EncodeToString(b)),
		name + " hex":       []byte(hex.EncodeToString(b)),
		name + " HEX":       []byte(strings.ToUpper(hex.EncodeToString(b))),
	}
}

func newKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, pii.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestPutGetDestroy(t *testing.T) {
	ctx := t.Context()
	s := newTestServer(t).open(ctx)
	id := pii.KeyID("acme", "u1")

	if _, err := s.Get(ctx, id); !errors.Is(err, pii.ErrNoKey) {
		t.Fatalf("Get before Put: %v, want ErrNoKey", err)
	}
	first := newKey(t)
	if stored, err := s.PutNew(ctx, id, first); err != nil || !stored {
		t.Fatalf("PutNew = %v, %v; want stored", stored, err)
	}
	if stored, err := s.PutNew(ctx, id, first); err != nil || stored {
		t.Fatalf("PutNew of the same key again = %v, %v; want not stored", stored, err)
	}
	if err := s.Put(ctx, id, newKey(t)); err != nil {
		t.Fatalf("Put of another key: %v", err)
	}
	if stored, err := s.PutNew(ctx, id, newKey(t)); err != nil || stored {
		t.Fatalf("PutNew of another key = %v, %v; want not stored", stored, err)
	}
	got, err := s.Get(ctx, id)
	if err != nil || !bytes.Equal(got, first) {
		t.Fatalf("Get = %x, %v; want the first key %x", got, err, first)
	}

	other := pii.KeyID("acme", "u2")
	otherKey := newKey(t)
	if err := s.Put(ctx, other, otherKey); err != nil {
		t.Fatal(err)
	}

	if err := s.Destroy(ctx, id); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("Get after Destroy: %v, want ErrErased", err)
	}
	if err := s.Put(ctx, id, newKey(t)); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("Put after Destroy: %v, want ErrErased", err)
	}
	if err := s.Destroy(ctx, id); err != nil {
		t.Fatalf("second Destroy: %v", err)
	}
	if got, err := s.Get(ctx, other); err != nil || !bytes.Equal(got, otherKey) {
		t.Fatalf("Get of another user = %x, %v; want %x", got, err, otherKey)
	}

	never := pii.KeyID("acme", "never")
	if err := s.Destroy(ctx, never); err != nil {
		t.Fatalf("Destroy without a key: %v", err)
	}
	if _, err := s.Get(ctx, never); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("Get after Destroy without a key: %v, want ErrErased", err)
	}
	if err := s.Put(ctx, never, newKey(t)); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("Put after Destroy without a key: %v, want ErrErased", err)
	}
}

func TestInvalidIDsAndKeys(t *testing.T) {
	ctx := t.Context()
	s := newTestServer(t).open(ctx)
	long := strings.Repeat("a", 64)
	for _, id := range []string{
		"", "acme", "acme.", ".u1", "Acme.u1", "acme.u.1", "acme.*", "acme.>", "*.u1",
		"acme.u 1", "acme.u\t1", "-acme.u1", "acme._u1", "acme.ü", long + ".u1",
		"acme." + long + "b",
	} {
		if err := s.Put(ctx, id, newKey(t)); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Put(%q): %v, want ErrInvalidID", id, err)
		}
		if _, err := s.Get(ctx, id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Get(%q): %v, want ErrInvalidID", id, err)
		}
		if err := s.Destroy(ctx, id); !errors.Is(err, ErrInvalidID) {
			t.Errorf("Destroy(%q): %v, want ErrInvalidID", id, err)
		}
	}
	for _, id := range []string{"a.b", "acme-1_x.U-1_z", long[:63] + "." + long, "0.0"} {
		if err := s.Put(ctx, id, newKey(t)); err != nil {
			t.Errorf("Put(%q): %v", id, err)
		}
	}
	for _, k := range [][]byte{nil, make([]byte, 16), make([]byte, 33)} {
		if err := s.Put(ctx, "acme.u1", k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Put of %d bytes: %v, want ErrInvalidKey", len(k), err)
		}
	}
	if _, err := s.Get(ctx, "acme.u1"); !errors.Is(err, pii.ErrNoKey) {
		t.Errorf("Get after refused Puts: %v, want ErrNoKey", err)
	}

	for _, cfg := range []Config{
		{Stream: "a.b"}, {Stream: "a b"}, {Stream: "a/b"},
		{SubjectPrefix: "keys.*"}, {SubjectPrefix: "keys."}, {SubjectPrefix: ">"},
		{Replicas: -1},
	} {
		if _, err := Open(ctx, s.js, cfg); err == nil {
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
}

func TestKeysSurviveRestart(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	s := ts.open(ctx)
	kept, gone := pii.KeyID("acme", "kept"), pii.KeyID("acme", "gone")
	keptKey := newKey(t)
	if err := s.Put(ctx, kept, keptKey); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, gone, newKey(t)); err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(ctx, gone); err != nil {
		t.Fatal(err)
	}
	flush(t, s)

	ts.Restart()
	s = ts.open(ctx)
	if got, err := s.Get(ctx, kept); err != nil || !bytes.Equal(got, keptKey) {
		t.Fatalf("Get after restart = %x, %v; want %x", got, err, keptKey)
	}
	if _, err := s.Get(ctx, gone); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("Get of destroyed key after restart: %v, want ErrErased", err)
	}
	if err := s.Put(ctx, gone, newKey(t)); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("Put of destroyed key after restart: %v, want ErrErased", err)
	}
	if err := s.Put(ctx, kept, newKey(t)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, kept); err != nil || !bytes.Equal(got, keptKey) {
		t.Fatalf("Put after restart replaced the key: %x, %v; want %x", got, err, keptKey)
	}
}

// TestConcurrentPut races two stores on two connections (two processes)
// putting different keys under one id: exactly one key is kept, both read
// it back, and only its writer reports that it stored it.
func TestConcurrentPut(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	a, b := ts.open(ctx), ts.open(ctx)
	winsA, winsB := 0, 0
	for i := range 20 {
		id := pii.KeyID("acme", "u"+strconv.Itoa(i))
		ka, kb := newKey(t), newKey(t)
		var wg sync.WaitGroup
		var errA, errB error
		var storedA, storedB bool
		start := make(chan struct{})
		wg.Go(func() { <-start; storedA, errA = a.PutNew(ctx, id, ka) })
		wg.Go(func() { <-start; storedB, errB = b.PutNew(ctx, id, kb) })
		close(start)
		wg.Wait()
		if errA != nil || errB != nil {
			t.Fatalf("%s: Put errors %v, %v", id, errA, errB)
		}
		ga, errA := a.Get(ctx, id)
		gb, errB := b.Get(ctx, id)
		if errA != nil || errB != nil {
			t.Fatalf("%s: Get errors %v, %v", id, errA, errB)
		}
		if !bytes.Equal(ga, gb) {
			t.Fatalf("%s: the stores disagree: %x and %x", id, ga, gb)
		}
		// Exactly one reports that it stored its key, the one kept.
		if storedA == storedB || storedA != bytes.Equal(ga, ka) || storedB != bytes.Equal(ga, kb) {
			t.Fatalf("%s: PutNew reported stored %v and %v, kept %x (a %x, b %x)", id, storedA, storedB, ga, ka, kb)
		}
		switch {
		case bytes.Equal(ga, ka):
			winsA++
		case bytes.Equal(ga, kb):
			winsB++
		default:
			t.Fatalf("%s: stored key %x is neither put", id, ga)
		}
		n := subjectMessages(t, ctx, a, id)
		if n != 1 {
			t.Fatalf("%s: %d messages on the subject, want 1", id, n)
		}
	}
	t.Logf("first wins: store a %d, store b %d", winsA, winsB)
}

// TestKeyringsAgreeOverStore races two keyrings (two processes) creating
// the key of one user; each opens what the other sealed.
func TestKeyringsAgreeOverStore(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	ra := pii.NewKeyring(ts.open(ctx), rand.Reader)
	rb := pii.NewKeyring(ts.open(ctx), rand.Reader)
	id := pii.KeyID("acme", "u1")
	var wg sync.WaitGroup
	var errA, errB error
	wg.Go(func() { errA = ra.Create(ctx, id) })
	wg.Go(func() { errB = rb.Create(ctx, id) })
	wg.Wait()
	if errA != nil || errB != nil {
		t.Fatalf("Create: %v, %v", errA, errB)
	}
	sealed, err := ra.Seal(ctx, id, "name", "Ada Lovelace")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rb.Open(ctx, id, "name", sealed); err != nil || got != "Ada Lovelace" {
		t.Fatalf("other keyring opens %q, %v", got, err)
	}
}

func subjectMessages(t *testing.T, ctx context.Context, s *Store, id string) uint64 {
	t.Helper()
	subj, err := s.subject(id)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.partOf(subj).stream.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subj]
}

// TestDestroyErasesKeyBytes checks the files of the server: the key is in
// them before Destroy, in none of them after, nor after a restart, while
// the other users' keys stay.
func TestDestroyErasesKeyBytes(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	s := ts.open(ctx)
	others := make(map[string][]byte)
	for i := range 10 {
		id := pii.KeyID("acme", "before"+strconv.Itoa(i))
		others[id] = newKey(t)
		if err := s.Put(ctx, id, others[id]); err != nil {
			t.Fatal(err)
		}
	}
	victim := pii.KeyID("acme", "victim")
	key := newKey(t)
	if err := s.Put(ctx, victim, key); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		id := pii.KeyID("acme", "after"+strconv.Itoa(i))
		others[id] = newKey(t)
		if err := s.Put(ctx, id, others[id]); err != nil {
			t.Fatal(err)
		}
	}

	needles := forms("key", key)
	if hits := filesContaining(t, ts.Dir, map[string][]byte{"key raw": key}); len(hits) == 0 {
		t.Fatal("control: the key is in no file before Destroy; the scan proves nothing")
	}

	if err := s.Destroy(ctx, victim); err != nil {
		t.Fatal(err)
	}
	flush(t, s)
	if hits := filesContaining(t, ts.Dir, needles); len(hits) > 0 {
		t.Fatalf("key bytes still on disk after Destroy and Flush: %v", hits)
	}
	for id, k := range others {
		if hits := filesContaining(t, ts.Dir, map[string][]byte{"raw": k}); len(hits) == 0 {
			t.Fatalf("key of %s vanished from disk", id)
		}
		if got, err := s.Get(ctx, id); err != nil || !bytes.Equal(got, k) {
			t.Fatalf("Get %s = %x, %v; want %x", id, got, err, k)
		}
	}

	ts.Restart()
	s = ts.open(ctx)
	if hits := filesContaining(t, ts.Dir, needles); len(hits) > 0 {
		t.Fatalf("key bytes on disk after restart: %v", hits)
	}
	if _, err := s.Get(ctx, victim); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("Get after restart: %v, want ErrErased", err)
	}
}

// TestOpenFinishesErasure stops a Destroy between its tombstone and its
// erasure: the key reads as erased at once, and the next Open queues the
// erasure of its bytes.
func TestOpenFinishesErasure(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	s := ts.open(ctx)
	id := pii.KeyID("acme", "u1")
	key := newKey(t)
	if err := s.Put(ctx, id, key); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, pii.KeyID("acme", "u2"), newKey(t)); err != nil {
		t.Fatal(err)
	}
	subj, _ := s.subject(id)
	last, err := s.last(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(subj)
	msg.Header.Set(TombstoneHeader, strconv.FormatUint(last.Sequence, 10))
	if _, err := s.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequenceForSubject(last.Sequence, subj)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("Get after tombstone: %v, want ErrErased", err)
	}
	if hits := filesContaining(t, ts.Dir, map[string][]byte{"key raw": key}); len(hits) == 0 {
		t.Fatal("control: the key is in no file before the erasure")
	}

	ts.Restart()
	s = ts.open(ctx)
	flush(t, s)
	if hits := filesContaining(t, ts.Dir, forms("key", key)); len(hits) > 0 {
		t.Fatalf("key bytes on disk after Open and Flush: %v", hits)
	}
	if n := subjectMessages(t, ctx, s, id); n != 1 {
		t.Fatalf("%d messages on the subject after Open, want the tombstone only", n)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("Get after Open: %v, want ErrErased", err)
	}
}

// TestSealedPersonalDataShredded seals a user's name and email with a
// keyring over the store, keeps the sealed values in an ordinary stream of
// the same server, deletes the user and then looks at every file: the
// name and email were never there in plaintext, and after the key is
// destroyed neither they nor the key are, also after a restart.
func TestSealedPersonalDataShredded(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	js := ts.connect()
	store, err := Open(ctx, js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, store)
	events, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "EVENTS", Subjects: []string{"events.>"}, Storage: jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	ring := pii.NewKeyring(store, rand.Reader)

	const name, email = "Grace Brewster Hopper", "grace.hopper@example.org"
	id := pii.KeyID("acme", "u-grace")
	if err := ring.Create(ctx, id); err != nil {
		t.Fatal(err)
	}
	key, err := store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	sealedName, err := ring.Seal(ctx, id, "name", name)
	if err != nil {
		t.Fatal(err)
	}
	sealedEmail, err := ring.Seal(ctx, id, "email", email)
	if err != nil {
		t.Fatal(err)
	}
	// A bystander whose data must stay readable.
	bystander := pii.KeyID("acme", "u-alan")
	if err := ring.Create(ctx, bystander); err != nil {
		t.Fatal(err)
	}
	sealedBystander, err := ring.Seal(ctx, bystander, "name", "Alan Turing")
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{sealedName, sealedEmail, sealedBystander} {
		body := []byte(`{"type":"UserAdded","sealed":"` + v + `"}`)
		if _, err := js.Publish(ctx, "events.acme."+strconv.Itoa(i), body); err != nil {
			t.Fatal(err)
		}
	}

	personal := forms("name", []byte(name))
	for k, v := range forms("email", []byte(email)) {
		personal[k] = v
	}
	if hits := filesContaining(t, ts.Dir, personal); len(hits) > 0 {
		t.Fatalf("personal data in plaintext before deletion: %v", hits)
	}
	if hits := filesContaining(t, ts.Dir, map[string][]byte{"sealed name": []byte(sealedName)}); len(hits) == 0 {
		t.Fatal("control: the sealed name is in no file; the scan proves nothing")
	}
	if hits := filesContaining(t, ts.Dir, map[string][]byte{"key raw": key}); len(hits) == 0 {
		t.Fatal("control: the key is in no file before deletion")
	}

	if err := ring.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	flush(t, store)

	check := func(when string) {
		t.Helper()
		all := forms("key", key)
		for k, v := range personal {
			all[k] = v
		}
		if hits := filesContaining(t, ts.Dir, all); len(hits) > 0 {
			t.Fatalf("%s: found on disk: %v", when, hits)
		}
		// The sealed values stay, unreadable.
		if hits := filesContaining(t, ts.Dir, map[string][]byte{"sealed email": []byte(sealedEmail)}); len(hits) == 0 {
			t.Fatalf("%s: the sealed email left the event stream", when)
		}
	}
	check("after Destroy")

	ts.Restart()
	js = ts.connect()
	store, err = Open(ctx, js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, store)
	check("after restart")

	fresh := pii.NewKeyring(store, rand.Reader)
	events, err = js.Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.GetMsg(ctx, 1); err != nil {
		t.Fatalf("event of the deleted user: %v", err)
	}
	if _, err := fresh.Open(ctx, id, "name", sealedName); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("Open name after deletion: %v, want ErrErased", err)
	}
	if got, err := fresh.Open(ctx, bystander, "name", sealedBystander); err != nil || got != "Alan Turing" {
		t.Fatalf("Open bystander = %q, %v", got, err)
	}
}

// TestDestroyErasesKeyInOlderBlock erases keys that sit in block files the
// server no longer appends to, the path where the filestore rewrites a
// closed block (and may compact it) rather than the one it writes to. The
// shard streams are created first with a small MaxBytes so that their
// blocks are small (the filestore fixes the block size when it opens the
// stream).
func TestDestroyErasesKeyInOlderBlock(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	js := ts.connect()
	for i := range Shards {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: ShardStream(DefaultStream, i), Subjects: []string{ShardPrefix(DefaultSubjectPrefix, i) + ".*.*"},
			Storage: jetstream.FileStorage, MaxBytes: 100_000,
		}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(ctx, js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, s)
	const n = 4000
	all := make([][]byte, n)
	for i := range n {
		all[i] = newKey(t)
		subj, err := s.subject(pii.KeyID("acme", "u"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishAsync(subj, all[i], jetstream.WithExpectLastSequencePerSubject(0)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	// The first key, one in the middle and the last one put.
	for _, i := range []int{0, 1, n / 2, n - 1} {
		id := pii.KeyID("acme", "u"+strconv.Itoa(i))
		stream, err := s.StreamOf(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		blocks, err := filepath.Glob(filepath.Join(ts.Dir, "jetstream", "*", "streams", stream, "msgs", "*.blk"))
		if err != nil {
			t.Fatal(err)
		}
		if len(blocks) < 3 {
			t.Fatalf("control: %s has %d block files, want several", stream, len(blocks))
		}
		needles := forms("key", all[i])
		if hits := filesContaining(t, ts.Dir, map[string][]byte{"raw": all[i]}); len(hits) == 0 {
			t.Fatalf("control: key %d is in no file", i)
		}
		if err := s.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
		flush(t, s)
		if hits := filesContaining(t, ts.Dir, needles); len(hits) > 0 {
			t.Fatalf("key %d on disk after Destroy: %v", i, hits)
		}
	}
	ts.Restart()
	s = ts.open(ctx)
	for _, i := range []int{0, 1, n / 2, n - 1} {
		if hits := filesContaining(t, ts.Dir, forms("key", all[i])); len(hits) > 0 {
			t.Fatalf("key %d on disk after restart: %v", i, hits)
		}
	}
	for _, i := range []int{2, n/2 + 1, n - 2} {
		if got, err := s.Get(ctx, pii.KeyID("acme", "u"+strconv.Itoa(i))); err != nil || !bytes.Equal(got, all[i]) {
			t.Fatalf("key %d after restart = %x, %v", i, got, err)
		}
	}
}

// TestConcurrentPutAndDestroy races Put against two Destroys of one id:
// whatever the order, the id ends destroyed, with only its tombstone left
// and its key in no file.
func TestConcurrentPutAndDestroy(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	a, b, c := ts.open(ctx), ts.open(ctx), ts.open(ctx)
	putWon := 0
	for i := range 10 {
		id := pii.KeyID("acme", "u"+strconv.Itoa(i))
		key := newKey(t)
		var wg sync.WaitGroup
		var errPut, errA, errB error
		start := make(chan struct{})
		wg.Go(func() { <-start; errPut = a.Put(ctx, id, key) })
		wg.Go(func() { <-start; errA = b.Destroy(ctx, id) })
		wg.Go(func() { <-start; errB = c.Destroy(ctx, id) })
		close(start)
		wg.Wait()
		if errA != nil || errB != nil {
			t.Fatalf("%s: Destroy errors %v, %v", id, errA, errB)
		}
		switch {
		case errPut == nil:
			putWon++
		case !errors.Is(errPut, pii.ErrErased):
			t.Fatalf("%s: Put: %v, want nil or ErrErased", id, errPut)
		}
		if _, err := a.Get(ctx, id); !errors.Is(err, pii.ErrErased) {
			t.Fatalf("%s: Get: %v, want ErrErased", id, err)
		}
		flush(t, b)
		flush(t, c)
		if n := subjectMessages(t, ctx, a, id); n != 1 {
			t.Fatalf("%s: %d messages on the subject, want the tombstone only", id, n)
		}
		if hits := filesContaining(t, ts.Dir, forms("key", key)); len(hits) > 0 {
			t.Fatalf("%s: key on disk: %v", id, hits)
		}
	}
	t.Logf("Put stored its key before the Destroy in %d of 10 races", putWon)
}

// TestSyncFailureFailsWrites checks that Put and Destroy report a failed
// Sync instead of success, and that the erasure of a destroyed key waits
// for the tombstone to be synced.
func TestSyncFailureFailsWrites(t *testing.T) {
	ctx := t.Context()
	broken := errors.New("disk on fire")
	fail := false
	calls := 0
	var mu sync.Mutex
	s, err := Open(ctx, newTestServer(t).connect(), Config{Sync: func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if fail {
			return broken
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	closeAtEnd(t, s)
	id := pii.KeyID("acme", "u1")
	key := newKey(t)
	if err := s.Put(ctx, id, key); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	fail = true
	if calls != 1 {
		t.Errorf("Put called Sync %d times, want 1", calls)
	}
	mu.Unlock()
	if err := s.Put(ctx, pii.KeyID("acme", "u2"), newKey(t)); !errors.Is(err, broken) {
		t.Errorf("put with a failing sync: %v, want %v", err, broken)
	}
	if err := s.Destroy(ctx, id); !errors.Is(err, broken) {
		t.Errorf("destroy with a failing sync: %v, want %v", err, broken)
	}
	flush(t, s)
	// The tombstone is written, but the key was not queued for erasure:
	// Get reads it as destroyed, and the next Destroy erases it.
	if got := subjectMessages(t, ctx, s, id); got != 2 {
		t.Errorf("subject holds %d messages after a destroy whose sync failed, want key and tombstone", got)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	if err := s.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	flush(t, s)
	if got := subjectMessages(t, ctx, s, id); got != 1 {
		t.Errorf("subject holds %d messages after the erasure, want the tombstone", got)
	}
}

// TestSingleStreamKeysStayReadable stores keys in the single-stream layout
// (as the Store did before the shard streams), then opens the shard
// layout on the same server: the old keys read, stay the first key put,
// stay destroyed, and are erased from every file when destroyed, also by
// two processes at once and across a restart; an erasure the old layout
// left undone is finished by Open; new keys go to the shards.
func TestSingleStreamKeysStayReadable(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	old, err := Open(ctx, ts.connect(), Config{single: true})
	if err != nil {
		t.Fatal(err)
	}
	kept, gone, erased, pending := pii.KeyID("acme", "kept"), pii.KeyID("acme", "gone"),
		pii.KeyID("acme", "erased"), pii.KeyID("acme", "pending")
	keyOf := map[string][]byte{kept: newKey(t), gone: newKey(t), erased: newKey(t), pending: newKey(t)}
	for id, k := range keyOf {
		if err := old.Put(ctx, id, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Destroy(ctx, erased); err != nil {
		t.Fatal(err)
	}
	flush(t, old)
	old.er.pause()
	if err := old.Destroy(ctx, pending); err != nil {
		t.Fatal(err)
	}
	stopped, cancel := context.WithCancel(ctx)
	cancel()
	if err := old.Close(stopped); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close with an erasure queued: %v, want Canceled", err)
	}
	if hits := filesContaining(t, ts.Dir, map[string][]byte{"pending raw": keyOf[pending], "gone raw": keyOf[gone]}); len(hits) != 2 {
		t.Fatalf("control: the keys to erase should be on disk: %v", hits)
	}

	// Two processes of the shard layout.
	a, b := ts.open(ctx), ts.open(ctx)
	flush(t, a)
	flush(t, b)
	if hits := filesContaining(t, ts.Dir, forms("pending", keyOf[pending])); len(hits) > 0 {
		t.Fatalf("key whose erasure the single-stream layout left undone still on disk after Open: %v", hits)
	}
	for _, s := range []*Store{a, b} {
		if got, err := s.Get(ctx, kept); err != nil || !bytes.Equal(got, keyOf[kept]) {
			t.Fatalf("Get of a key of the single stream = %x, %v; want %x", got, err, keyOf[kept])
		}
		if stream, err := s.StreamOf(ctx, kept); err != nil || stream != DefaultStream {
			t.Fatalf("StreamOf a key of the single stream = %q, %v", stream, err)
		}
		for _, id := range []string{erased, pending} {
			if _, err := s.Get(ctx, id); !errors.Is(err, pii.ErrErased) {
				t.Fatalf("Get %s destroyed in the single stream: %v, want ErrErased", id, err)
			}
			if err := s.Put(ctx, id, newKey(t)); !errors.Is(err, pii.ErrErased) {
				t.Fatalf("Put %s destroyed in the single stream: %v, want ErrErased", id, err)
			}
		}
	}
	// The first key put stays the id's, and no second one is stored.
	if err := a.Put(ctx, kept, newKey(t)); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(ctx, kept); err != nil || !bytes.Equal(got, keyOf[kept]) {
		t.Fatalf("Put over a key of the single stream replaced it: %x, %v", got, err)
	}
	account, user, _ := splitID(kept)
	shard := a.shard(account, user)
	if info, err := shard.stream.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Fatalf("shard %s holds %+v (%v) after Puts of ids of the single stream, want nothing", shard.name, info.State, err)
	}

	// A new key goes to its shard.
	fresh, freshKey := pii.KeyID("acme", "fresh"), newKey(t)
	if err := a.Put(ctx, fresh, freshKey); err != nil {
		t.Fatal(err)
	}
	if stream, err := b.StreamOf(ctx, fresh); err != nil || !strings.HasPrefix(stream, DefaultStream+"_") {
		t.Fatalf("StreamOf a new key = %q, %v; want a shard", stream, err)
	}
	if got, err := b.Get(ctx, fresh); err != nil || !bytes.Equal(got, freshKey) {
		t.Fatalf("Get new key = %x, %v", got, err)
	}

	// Both processes destroy an old key at once.
	var wg sync.WaitGroup
	var errA, errB error
	wg.Go(func() { errA = a.Destroy(ctx, gone) })
	wg.Go(func() { errB = b.Destroy(ctx, gone) })
	wg.Wait()
	if errA != nil || errB != nil {
		t.Fatalf("Destroy: %v, %v", errA, errB)
	}
	flush(t, a)
	flush(t, b)
	if hits := filesContaining(t, ts.Dir, forms("gone", keyOf[gone])); len(hits) > 0 {
		t.Fatalf("key of the single stream on disk after Destroy and Flush: %v", hits)
	}
	if hits := filesContaining(t, ts.Dir, map[string][]byte{"kept raw": keyOf[kept]}); len(hits) == 0 {
		t.Fatal("the key of another id of the single stream left the disk")
	}

	ts.Restart()
	s := ts.open(ctx)
	if got, err := s.Get(ctx, kept); err != nil || !bytes.Equal(got, keyOf[kept]) {
		t.Fatalf("Get after restart = %x, %v", got, err)
	}
	for _, id := range []string{gone, erased, pending} {
		if _, err := s.Get(ctx, id); !errors.Is(err, pii.ErrErased) {
			t.Fatalf("Get %s after restart: %v, want ErrErased", id, err)
		}
	}
	for _, id := range []string{gone, erased, pending} {
		if hits := filesContaining(t, ts.Dir, forms(id, keyOf[id])); len(hits) > 0 {
			t.Fatalf("key of %s on disk after restart: %v", id, hits)
		}
	}
}

// TestErasureRewritesOneShard spreads keys over the shard streams and
// destroys one: only the block file of the key's shard is replaced (the
// filestore's erasure writes a new file), those of the other shards stay
// the same files, and every shard holds keys.
func TestErasureRewritesOneShard(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	s := ts.open(ctx)
	for i := range 200 {
		if err := s.Put(ctx, pii.KeyID("acme", "u"+strconv.Itoa(i)), newKey(t)); err != nil {
			t.Fatal(err)
		}
	}
	blocks := func() map[string]os.FileInfo {
		t.Helper()
		files, err := filepath.Glob(filepath.Join(ts.Dir, "jetstream", "*", "streams", "*", "msgs", "*.blk"))
		if err != nil {
			t.Fatal(err)
		}
		m := make(map[string]os.FileInfo)
		for _, f := range files {
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			m[f] = fi
		}
		return m
	}
	before := blocks()
	for i := range Shards {
		st, err := s.js.Stream(ctx, ShardStream(DefaultStream, i))
		if err != nil {
			t.Fatal(err)
		}
		if n := st.CachedInfo().State.Msgs; n == 0 {
			t.Fatalf("shard %d holds no key of 200", i)
		}
	}
	victim := pii.KeyID("acme", "u7")
	stream, err := s.StreamOf(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Destroy(ctx, victim); err != nil {
		t.Fatal(err)
	}
	flush(t, s)
	replaced := 0
	for f, fi := range blocks() {
		old, ok := before[f]
		if !ok || os.SameFile(old, fi) {
			continue
		}
		if !strings.Contains(f, string(filepath.Separator)+stream+string(filepath.Separator)) {
			t.Errorf("erasing a key of %s replaced %s", stream, f)
		}
		replaced++
	}
	if replaced != 1 {
		t.Fatalf("%d block files replaced by the erasure, want the one of %s", replaced, stream)
	}
}

// TestSingleStreamDeleted deletes the stream of the single-stream layout
// under an open Store: the Store goes on with its shards.
func TestSingleStreamDeleted(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	js := ts.connect()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: DefaultStream, Subjects: []string{DefaultSubjectPrefix + ".*.*"}}); err != nil {
		t.Fatal(err)
	}
	s := ts.open(ctx)
	if s.legacy == nil {
		t.Fatal("control: Open did not find the single stream")
	}
	if err := js.DeleteStream(ctx, DefaultStream); err != nil {
		t.Fatal(err)
	}
	id, key := pii.KeyID("acme", "u1"), newKey(t)
	if err := s.Put(ctx, id, key); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if got, err := s.Get(ctx, id); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Get = %x, %v", got, err)
	}
	if _, err := s.Get(ctx, pii.KeyID("acme", "none")); !errors.Is(err, pii.ErrNoKey) {
		t.Fatalf("Get of no key: %v, want ErrNoKey", err)
	}
	if err := s.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	flush(t, s)
	if _, err := s.Get(ctx, id); !errors.Is(err, pii.ErrErased) {
		t.Fatalf("Get after Destroy: %v, want ErrErased", err)
	}
}

// TestDestroyOfOwnKeyReadsNothing checks that a Store destroys a key it
// stored without reading the key's subject first (it expects the key's
// sequence from its own write), that it still destroys a key another
// Store destroyed in between (the server refuses the stale expectation;
// it then reads the subject and finds the tombstone), and that a key
// another Store stored is read first as before.
func TestDestroyOfOwnKeyReadsNothing(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	a, b := ts.open(ctx), ts.open(ctx)
	nc := ts.connect().Conn()
	var reads atomic.Int64
	for _, subj := range []string{"$JS.API.STREAM.MSG.GET.>", "$JS.API.DIRECT.GET.>"} {
		sub, err := nc.Subscribe(subj, func(*nats.Msg) { reads.Add(1) })
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	readsDuring := func(f func() error) int64 {
		t.Helper()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		n := reads.Load()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil { // the copies of its requests came before
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		return reads.Load() - n
	}
	erased := func(id string) {
		t.Helper()
		for _, s := range []*Store{a, b} {
			if _, err := s.Get(ctx, id); !errors.Is(err, pii.ErrErased) {
				t.Fatalf("Get %s after Destroy: %v, want ErrErased", id, err)
			}
		}
	}
	put := func(s *Store, id string) {
		t.Helper()
		if stored, err := s.PutNew(ctx, id, newKey(t)); err != nil || !stored {
			t.Fatalf("PutNew %s = %v, %v", id, stored, err)
		}
	}

	own := pii.KeyID("acme", "own")
	put(a, own)
	if n := readsDuring(func() error { return a.Destroy(ctx, own) }); n != 0 {
		t.Errorf("Destroy of a key the Store stored read %d messages, want none", n)
	}
	erased(own)

	stale := pii.KeyID("acme", "stale")
	put(a, stale)
	if err := b.Destroy(ctx, stale); err != nil {
		t.Fatal(err)
	}
	if n := readsDuring(func() error { return a.Destroy(ctx, stale) }); n == 0 {
		t.Errorf("Destroy of a key destroyed elsewhere read nothing, want the subject read")
	}
	erased(stale)

	other := pii.KeyID("acme", "other")
	put(b, other)
	if n := readsDuring(func() error { return a.Destroy(ctx, other) }); n == 0 {
		t.Errorf("Destroy of a key another Store stored read nothing, want the subject read")
	}
	erased(other)
	for _, s := range []*Store{a, b} {
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
