package translog_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	esdbclient "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/go-json-experiment/json"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/esdb"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/esdbtest"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/internal/translog"
)

var t0 = time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)

func jetstreamStore(t testing.TB) *jetstream.Store {
	t.Helper()
	s, err := jetstream.Embedded(context.Background(), jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1}, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func esdbStore(t testing.TB) eventstore.Store {
	t.Helper()
	_, s := esdbServerStore(t)
	return s
}

// esdbServerStore returns the store over an EventStoreDB double and the
// double, which can change its history behind the store's back.
func esdbServerStore(t testing.TB) (*esdbtest.Server, eventstore.Store) {
	t.Helper()
	srv, err := esdbtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := esdb.Open(ctx, srv.ConnectionString(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return srv, s
}

// ledgerEnv is a store with an application service writing real events.
type ledgerEnv struct {
	store eventstore.Store
	keys  *pii.MemoryKeys
	svc   *accounts.Service
	now   time.Time
	mu    sync.Mutex
	last  eventstore.Position
}

func newLedger(t testing.TB, store eventstore.Store) *ledgerEnv {
	e := &ledgerEnv{store: store, keys: pii.NewMemoryKeys(), now: t0}
	rng := mrand.NewChaCha8([32]byte{1})
	e.svc = accounts.New(accounts.Config{
		Store: store, Codec: codec.New(pii.NewKeyring(e.keys, rand.Reader)),
		Clock: func() time.Time {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.now = e.now.Add(time.Minute)
			return e.now
		},
		NewEventID: uuid.New,
		NewULID: func() ulid.ULID {
			e.mu.Lock()
			defer e.mu.Unlock()
			return ulid.MustNew(ulid.Timestamp(e.now), rng)
		},
		OnAppend: func(a accounts.Appended) {
			if a.Err == nil {
				e.mu.Lock()
				e.last = max(e.last, a.Result.Position)
				e.mu.Unlock()
			}
		},
	})
	return e
}

var operator = accounts.Request{Actor: codec.Actor{ID: "tok_op", Role: "operator"}}

// at returns the time of the next command.
func (e *ledgerEnv) at() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(time.Minute)
	return e.now
}

func (e *ledgerEnv) do(t testing.TB, account string, cmd ledger.Command) accounts.Result {
	t.Helper()
	res, err := e.svc.Execute(context.Background(), account, cmd, operator)
	if err != nil {
		t.Fatalf("%T on %s: %v", cmd, account, err)
	}
	return res
}

// history writes two accounts' interleaved histories: users added,
// activities recorded, one user deleted.
func (e *ledgerEnv) history(t testing.TB) {
	t.Helper()
	for _, acct := range []string{"acme", "globex"} {
		e.do(t, acct, ledger.OpenAccount{Account: acct, Name: "Acct " + acct, Seats: 3, At: e.at()})
	}
	for i := range 3 {
		for _, acct := range []string{"acme", "globex"} {
			e.do(t, acct, ledger.AddUser{UserID: fmt.Sprintf("u%d", i), Name: fmt.Sprintf("User %d", i),
				Email: fmt.Sprintf("u%d@%s.test", i, acct), Role: ledger.RoleAdmin, At: e.at()})
		}
	}
	for i := range 4 {
		e.do(t, "acme", ledger.RecordActivity{ActivityID: fmt.Sprintf("a%d", i), UserID: "u1", Kind: "note", Ref: "r", At: e.at()})
		e.do(t, "globex", ledger.PurchaseSeats{Count: 1, At: e.at()})
	}
	e.do(t, "acme", ledger.DeleteUser{UserID: "u2", Confirm: "u2", At: e.at()})
	e.do(t, "acme", ledger.PurchaseSeats{Count: 2, At: e.at()})
}

func newKey(t testing.TB, dir string) translog.Key {
	t.Helper()
	k, err := translog.LoadKey(dir, "", "ledger.test/log", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// runLog opens a log in dir following store and returns it once it holds
// the record at position upTo.
func runLog(t testing.TB, store eventstore.Store, dir string, key translog.Key, upTo eventstore.Position) *translog.Log {
	t.Helper()
	l, err := translog.Open(translog.Config{Dir: dir, Key: key, SignEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx, store) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("log run: %v", err)
		}
		l.Close()
	})
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := l.Wait(wctx, upTo); err != nil {
		t.Fatal(err)
	}
	return l
}

// exportBundle writes account's audit bundle, with the data keys of its
// users not deleted.
func exportBundle(t testing.TB, l *translog.Log, store eventstore.Store, keys pii.KeyStore, account string) []byte {
	t.Helper()
	ctx := context.Background()
	cp, err := l.Sign(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	write := func(bl *translog.BundleLine) error {
		if err := json.MarshalWrite(&buf, bl); err != nil {
			return err
		}
		return buf.WriteByte('\n')
	}
	if err := write(new(translog.CheckpointLine(account, cp))); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"u0", "u1", "u2"} {
		k, err := keys.Get(ctx, pii.KeyID(account, u))
		if errors.Is(err, pii.ErrErased) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := write(&translog.BundleLine{Kind: translog.KindKey, User: u, Key: k}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Export(ctx, store, account, cp, write); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func stores() map[string]func(testing.TB) eventstore.Store {
	return map[string]func(testing.TB) eventstore.Store{
		"jetstream": func(t testing.TB) eventstore.Store { return jetstreamStore(t) },
		"esdb":      esdbStore,
	}
}

// The tree follows the store's global order: its leaves are the
// records of ReadAll, every one, and its proofs check.
func TestTreeFollowsGlobalOrder(t *testing.T) {
	for name, open := range stores() {
		t.Run(name, func(t *testing.T) {
			store := open(t)
			e := newLedger(t, store)
			e.history(t)
			dir := t.TempDir()
			l := runLog(t, store, dir, newKey(t, dir), e.last)
			var leaves [][]byte
			for rec, err := range store.ReadAll(context.Background(), 0) {
				if err != nil {
					t.Fatal(err)
				}
				leaves = append(leaves, translog.LeafData(rec, nil))
			}
			if got := l.Size(); got != int64(len(leaves)) {
				t.Fatalf("tree of %d leaves, store holds %d records", got, len(leaves))
			}
			root, err := l.TreeHash(l.Size())
			if err != nil {
				t.Fatal(err)
			}
			if want := naiveRoot(leaves); root != want {
				t.Fatalf("root %s, want %s from the records in global order", root, want)
			}
			for i := range leaves {
				p, err := l.InclusionProof(int64(i), l.Size(), nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := checkRecord(p, l.Size(), root, int64(i), leaves[i]); err != nil {
					t.Fatalf("leaf %d: %v", i, err)
				}
			}
			for old := int64(1); old <= l.Size(); old += 5 {
				oldRoot, _ := l.TreeHash(old)
				p, err := l.ConsistencyProof(old, l.Size())
				if err != nil {
					t.Fatal(err)
				}
				if err := checkTree(p, l.Size(), root, old, oldRoot); err != nil {
					t.Fatalf("consistency %d..%d: %v", old, l.Size(), err)
				}
			}
			if _, err := l.InclusionProof(0, l.Size()+1, nil); !errors.Is(err, translog.ErrProof) {
				t.Errorf("proof in a tree larger than the log: %v, want ErrProof", err)
			}
		})
	}
}

// A bundle exported from each store verifies offline, and the read models
// replayed from it give the account's seats and billing.
func TestBundleVerifies(t *testing.T) {
	for name, open := range stores() {
		t.Run(name, func(t *testing.T) {
			store := open(t)
			e := newLedger(t, store)
			e.history(t)
			dir := t.TempDir()
			key := newKey(t, dir)
			l := runLog(t, store, dir, key, e.last)
			b := exportBundle(t, l, store, e.keys, "acme")
			v, err := translog.VerifyBundle(context.Background(), bytes.NewReader(b), key.Verifier, e.now)
			if err != nil {
				t.Fatal(err)
			}
			// acme: opened, 3 users, 4 activities, 1 deletion, 1 purchase.
			if v.Records != 10 || v.Keys != 2 || len(v.Streams) != 2 || v.Streams[0].Events != 6 || v.Streams[1].Events != 4 {
				t.Errorf("verified %d records, %d keys, streams %+v; want 10, 2, ledger 6 and activity 4", v.Records, v.Keys, v.Streams)
			}
			if v.Seats.Purchased != 5 || v.Seats.Active != 2 || v.Seats.Deleted != 1 {
				t.Errorf("replayed seats %+v, want 5 purchased, 2 active, 1 deleted", v.Seats)
			}
			if len(v.Cycles) != 1 || v.Cycles[0].SeatsBilled != 3 || v.Cycles[0].Totals.PurchasedSeats != 2 {
				t.Errorf("replayed cycles %+v, want one with 3 billed and 2 purchased", v.Cycles)
			}
		})
	}
}

// Every kind of tampering with a bundle exported from each store is
// refused, naming where.
func TestBundleTampering(t *testing.T) {
	for name, open := range stores() {
		t.Run(name, func(t *testing.T) { testBundleTampering(t, open(t)) })
	}
}

func testBundleTampering(t *testing.T, store eventstore.Store) {
	e := newLedger(t, store)
	e.history(t)
	dir := t.TempDir()
	key := newKey(t, dir)
	l := runLog(t, store, dir, key, e.last)
	good := exportBundle(t, l, store, e.keys, "acme")
	lines := strings.SplitAfter(strings.TrimSuffix(string(good), "\n"), "\n")
	const first = 3 // checkpoint, two keys, then the records
	otherDir := t.TempDir()
	other := newKey(t, otherDir)
	edit := func(i int, f func(*translog.BundleLine)) []string {
		var bl translog.BundleLine
		if err := json.Unmarshal([]byte(lines[i]), &bl); err != nil {
			t.Fatal(err)
		}
		f(&bl)
		b, err := json.Marshal(&bl)
		if err != nil {
			t.Fatal(err)
		}
		out := append([]string(nil), lines...)
		out[i] = string(b) + "\n"
		return out
	}
	cases := []struct {
		name  string
		lines []string
		vkey  string
		want  string // in the error
	}{
		{"flipped byte of a payload", edit(first+2, func(bl *translog.BundleLine) { bl.Data[len(bl.Data)/2] ^= 1 }), "", "line 6 "},
		{"flipped byte of metadata", edit(first+4, func(bl *translog.BundleLine) { bl.Metadata[3] ^= 1 }), "", "line 8 "},
		{"flipped byte of a proof", edit(first+1, func(bl *translog.BundleLine) { bl.Proof[0] ^= 1 }), "", "line 5 "},
		// The last hash a line gives leads to the path the line before
		// proved.
		{"flipped byte of a proof's last hash", edit(first+2, func(bl *translog.BundleLine) { bl.Proof[len(bl.Proof)-1] ^= 1 }), "", "line 6 "},
		{"whole proof given, an upper hash altered", edit(first+2, func(bl *translog.BundleLine) {
			bl.Proof = wholeProof(t, l, bl.Leaf)
			bl.Proof[len(bl.Proof)-1] ^= 1
		}), "", "line 6 "},
		{"first record's proof cut", edit(first, func(bl *translog.BundleLine) { bl.Proof = bl.Proof[:len(bl.Proof)-32] }), "", "line 4 "},
		{"proof of the line before", edit(first+2, func(bl *translog.BundleLine) { bl.Proof = wholeProof(t, l, bl.Leaf-1) }), "", "line 6 "},
		{"leaf of the line before", edit(first+2, func(bl *translog.BundleLine) { bl.Leaf-- }), "", "line 6 "},
		{"hash added to a proof", edit(first+2, func(bl *translog.BundleLine) { bl.Proof = append(bl.Proof, bl.Proof[:32]...) }), "", "line 6 "},
		{"hash taken from a proof", edit(first+2, func(bl *translog.BundleLine) { bl.Proof = bl.Proof[:len(bl.Proof)-32] }), "", "line 6 "},
		{"unknown member with a bad value", func() []string {
			out := append([]string(nil), lines...)
			out[first+2] = strings.Replace(out[first+2], `{`, `{"extra":[1,}`, 1)
			return out
		}(), "", "line 6: not a bundle line"},
		{"two objects on a line", func() []string {
			out := append([]string(nil), lines...)
			out[first+2] = strings.TrimSuffix(out[first+2], "\n") + "{}\n"
			return out
		}(), "", "line 6: not a bundle line"},
		{"repeated member", func() []string {
			out := append([]string(nil), lines...)
			out[first+2] = strings.Replace(out[first+2], `{`, `{"leaf":1,`, 1)
			return out
		}(), "", "line 6: not a bundle line"},
		{"missing record", append(append([]string(nil), lines[:first+2]...), lines[first+3:]...), "", "is missing"},
		{"reordered records", func() []string {
			out := append([]string(nil), lines...)
			out[first+1], out[first+2] = out[first+2], out[first+1]
			return out
		}(), "", "line 5 (leaf 4, ledger-acme revision 2): revision 1 of ledger-acme is missing"},
		{"records moved back", func() []string {
			out := append([]string(nil), lines[:first]...)
			out = append(out, lines[first+1], lines[first])
			return append(out, lines[first+2:]...)
		}(), "", "line 4 (leaf 2, ledger-acme revision 1): revision 0 of ledger-acme is missing"},
		{"other key", lines, other.Verifier, "line 1"},
		{"record of another account", edit(first, func(bl *translog.BundleLine) { bl.Stream = "ledger-globex" }), "", "not of account"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vkey := key.Verifier
			if tc.vkey != "" {
				vkey = tc.vkey
			}
			_, err := translog.VerifyBundle(context.Background(), strings.NewReader(strings.Join(tc.lines, "")), vkey, e.now)
			if !errors.Is(err, translog.ErrBundle) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("verify = %v, want ErrBundle naming %q", err, tc.want)
			}
		})
	}
}

// wholeProof returns leaf's whole inclusion proof in the log's tree, as a
// bundle line holds it.
func wholeProof(t *testing.T, l *translog.Log, leaf int64) []byte {
	t.Helper()
	p, err := l.InclusionProof(leaf, l.Size(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, h := range p {
		b = append(b, h[:]...)
	}
	return b
}

// Record lines give only the hashes of their proof that the line before
// does not prove, the first its whole proof; a bundle whose lines all give
// their whole proof, as those of format 1 did, verifies the same.
func TestBundleWholeProofs(t *testing.T) {
	for name, open := range stores() {
		t.Run(name, func(t *testing.T) { testBundleWholeProofs(t, open(t)) })
	}
}

func testBundleWholeProofs(t *testing.T, store eventstore.Store) {
	e := newLedger(t, store)
	e.history(t)
	dir := t.TempDir()
	key := newKey(t, dir)
	l := runLog(t, store, dir, key, e.last)
	compact := exportBundle(t, l, store, e.keys, "acme")
	var whole bytes.Buffer
	shorter := 0
	for i, line := range strings.SplitAfter(strings.TrimSuffix(string(compact), "\n"), "\n") {
		var bl translog.BundleLine
		if err := json.Unmarshal([]byte(line), &bl); err != nil {
			t.Fatal(err)
		}
		switch bl.Kind {
		case translog.KindCheckpoint:
			if bl.Format != translog.BundleFormat {
				t.Fatalf("format %q, want %q", bl.Format, translog.BundleFormat)
			}
			bl.Format = "license-ledger-audit-bundle/1"
		case translog.KindRecord:
			w := wholeProof(t, l, bl.Leaf)
			if len(bl.Proof) > len(w) || !bytes.Equal(w[:len(bl.Proof)], bl.Proof) {
				t.Fatalf("line %d: the proof given is not the start of the whole proof", i+1)
			}
			if len(bl.Proof) < len(w) {
				shorter++
			} else if i > 3 {
				t.Errorf("line %d (leaf %d) gives its whole proof", i+1, bl.Leaf)
			}
			bl.Proof = w
		}
		if err := json.MarshalWrite(&whole, &bl); err != nil {
			t.Fatal(err)
		}
		whole.WriteByte('\n')
	}
	if shorter == 0 {
		t.Fatal("no record line gives less than its whole proof")
	}
	for name, b := range map[string][]byte{"compact": compact, "whole": whole.Bytes()} {
		v, err := translog.VerifyBundle(context.Background(), bytes.NewReader(b), key.Verifier, e.now)
		if err != nil {
			t.Fatalf("%s proofs: %v", name, err)
		}
		if v.Records != 10 {
			t.Fatalf("%s proofs: verified %d records, want 10", name, v.Records)
		}
	}
}

// A restart resumes from the recorded tree, on each store: the same root,
// and records stored meanwhile appended after it.
func TestRestartResumes(t *testing.T) {
	for name, open := range stores() {
		t.Run(name, func(t *testing.T) { testRestartResumes(t, open(t)) })
	}
}

func testRestartResumes(t *testing.T, store eventstore.Store) {
	e := newLedger(t, store)
	e.do(t, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 3, At: e.at()})
	dir := t.TempDir()
	key := newKey(t, dir)
	l, err := translog.Open(translog.Config{Dir: dir, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	var first []translog.Leaf
	for rec, err := range store.ReadAll(context.Background(), 0) {
		first = append(first, translog.Leaf{Record: rec, Err: err})
	}
	if err := l.Append(first...); err != nil {
		t.Fatal(err)
	}
	cp, err := l.Sign(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// A leaf appended after the checkpoint but never signed is dropped at
	// the restart and appended again from the store.
	e.do(t, "acme", ledger.PurchaseSeats{Count: 1, At: e.at()})
	for rec, err := range store.ReadAll(context.Background(), l.Position()) {
		if err := l.Append(translog.Leaf{Record: rec, Err: err}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	e.do(t, "acme", ledger.PurchaseSeats{Count: 2, At: e.at()})
	l2 := runLog(t, store, dir, key, e.last)
	if l2.Size() != 3 {
		t.Fatalf("restarted log of %d leaves, want 3", l2.Size())
	}
	old, err := l2.TreeHash(cp.Size)
	if err != nil || old != cp.Hash {
		t.Fatalf("root of the first %d leaves after restart %s (%v), signed %s", cp.Size, old, err, cp.Hash)
	}
	// The leaves appended after the restart are the store's records in
	// its global order.
	var leaves [][]byte
	for rec, err := range store.ReadAll(context.Background(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, translog.LeafData(rec, nil))
	}
	root, err := l2.TreeHash(l2.Size())
	if err != nil || root != naiveRoot(leaves) {
		t.Fatalf("root after restart %s (%v), want %s from the store's records", root, err, naiveRoot(leaves))
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	k1 := newKey(t, dir)
	k2 := newKey(t, dir)
	if k1.Verifier != k2.Verifier {
		t.Fatalf("second start made a new key: %s then %s", k1.Verifier, k2.Verifier)
	}
	st, err := osStat(filepath.Join(dir, translog.KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("signing key file mode %v (%v), want 0600", st, err)
	}
	vk, err := osReadFile(filepath.Join(dir, translog.VerifierKeyFile))
	if err != nil || strings.TrimSpace(string(vk)) != k1.Verifier {
		t.Fatalf("log.vkey = %q (%v), want %q", vk, err, k1.Verifier)
	}
	l, err := translog.Open(translog.Config{Dir: filepath.Join(dir, "log"), Key: k1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := l.Sign(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c, err := translog.OpenCheckpoint(s.Note, k1.Verifier)
	if err != nil || c.Size != 0 || c.Origin != "ledger.test/log" {
		t.Fatalf("open checkpoint = %+v, %v", c, err)
	}
	if !strings.HasPrefix(string(s.Note), "ledger.test/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— ledger.test/log ") {
		t.Errorf("checkpoint note:\n%s", s.Note)
	}
}

// logSource is a watcher's view of a log, without HTTP.
type logSource struct{ l *translog.Log }

func (s logSource) Checkpoint(ctx context.Context) ([]byte, error) {
	cp, err := s.l.Sign(ctx)
	if err != nil {
		return nil, err
	}
	return cp.Note, nil
}

func (s logSource) Consistency(_ context.Context, old, size int64) (tlog.TreeProof, error) {
	return s.l.ConsistencyProof(old, size)
}

// A watcher keeps the checkpoint it verified; when whoever runs the
// service rewrites a stored record or truncates the stream and serves a
// tree rebuilt from what is left, the watcher reports it and keeps the
// checkpoint it verified.
func TestWatchDetectsRewrittenHistory(t *testing.T) {
	ctx := context.Background()
	// Each store's history changed behind its back: the last three records
	// removed, or the last one (a purchase of one seat) rewritten.
	type tampering struct {
		store             eventstore.Store
		truncate, rewrite func(t *testing.T)
	}
	rewritten := func(t *testing.T, data []byte) []byte {
		out := bytes.Replace(data, []byte(`"count":1`), []byte(`"count":9`), 1)
		if bytes.Equal(out, data) {
			t.Fatalf("control: the last record is not a purchase of one seat: %s", data)
		}
		return out
	}
	for name, open := range map[string]func(t *testing.T) tampering{
		"jetstream": func(t *testing.T) tampering {
			store := jetstreamStore(t)
			js, err := natsjs.New(store.Conn())
			if err != nil {
				t.Fatal(err)
			}
			stream := func() (natsjs.Stream, uint64) {
				s, err := js.Stream(ctx, "LEDGER")
				if err != nil {
					t.Fatal(err)
				}
				info, err := s.Info(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return s, info.State.LastSeq
			}
			return tampering{store: store,
				truncate: func(t *testing.T) {
					s, last := stream()
					for seq := last - 2; seq <= last; seq++ {
						if err := s.SecureDeleteMsg(ctx, seq); err != nil {
							t.Fatal(err)
						}
					}
				},
				rewrite: func(t *testing.T) {
					// The last record is replaced: deleted, and its bytes
					// with one changed published again.
					s, seq := stream()
					m, err := s.GetMsg(ctx, seq)
					if err != nil {
						t.Fatal(err)
					}
					if err := s.SecureDeleteMsg(ctx, seq); err != nil {
						t.Fatal(err)
					}
					msg := nats.NewMsg(m.Subject)
					msg.Data = rewritten(t, m.Data)
					for k, v := range m.Header {
						msg.Header[k] = v
					}
					msg.Header.Set(natsjs.MsgIDHeader, uuid.NewString())
					msg.Header.Del(natsjs.ExpectedLastSubjSeqHeader)
					msg.Header.Del(natsjs.ExpectedLastSubjSeqSubjHeader)
					msg.Header.Del(natsjs.ExpectedLastSeqHeader)
					msg.Header.Del(natsjs.ExpectedLastMsgIDHeader)
					if _, err := js.PublishMsg(ctx, msg); err != nil {
						t.Fatal(err)
					}
				}}
		},
		"esdb": func(t *testing.T) tampering {
			srv, store := esdbServerStore(t)
			return tampering{store: store,
				truncate: func(*testing.T) { srv.Truncate(3) },
				rewrite:  func(t *testing.T) { srv.RewriteLast(func(data []byte) []byte { return rewritten(t, data) }) }}
		},
	} {
		for _, tc := range []struct {
			name   string
			tamper func(tampering) func(*testing.T)
			want   string
		}{
			{"truncated", func(x tampering) func(*testing.T) { return x.truncate }, "fewer than"},
			{"record rewritten", func(x tampering) func(*testing.T) { return x.rewrite }, "rewritten"},
		} {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				x := open(t)
				store := x.store
				e := newLedger(t, store)
				e.history(t)
				dir := t.TempDir()
				key := newKey(t, dir)
				l := runLog(t, store, filepath.Join(dir, "log"), key, e.last)
				state := filepath.Join(t.TempDir(), "checkpoint")
				if _, err := translog.Watch(ctx, logSource{l}, key.Verifier, state); err != nil {
					t.Fatal(err)
				}
				e.do(t, "acme", ledger.PurchaseSeats{Count: 1, At: e.at()})
				if err := l.Wait(ctx, e.last); err != nil {
					t.Fatal(err)
				}
				res, err := translog.Watch(ctx, logSource{l}, key.Verifier, state)
				if err != nil || res.Old == nil || res.New.Size != res.Old.Size+1 {
					t.Fatalf("watch of a grown log: %+v, %v", res, err)
				}
				kept, _ := osReadFile(state)

				tc.tamper(x)(t)

				// The log kept in its directory no longer matches the
				// store: it refuses to follow it.
				l2, err := translog.Open(translog.Config{Dir: filepath.Join(dir, "log"), Key: key})
				if err != nil {
					t.Fatal(err)
				}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a store unchanged is followed for good
				if err := l2.Run(rctx, store); !errors.Is(err, translog.ErrInconsistent) {
					t.Errorf("log over a changed store: %v, want ErrInconsistent", err)
				}
				cancel()
				l2.Close()
				// A tree rebuilt from what the store holds now, signed with
				// the same key, is caught by the watcher.
				var last eventstore.Position
				for rec := range store.ReadAll(ctx, 0) {
					last = rec.Position
				}
				rebuilt := runLog(t, store, t.TempDir(), key, last)
				_, err = translog.Watch(ctx, logSource{rebuilt}, key.Verifier, state)
				if !errors.Is(err, translog.ErrInconsistent) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("watch after the history was changed: %v, want ErrInconsistent saying %q", err, tc.want)
				}
				if now, _ := osReadFile(state); !bytes.Equal(now, kept) {
					t.Errorf("the kept checkpoint was replaced after a failed check")
				}
			})
		}
	}
}

// Records another client wrote on an account's streams are stored:
// each is a leaf, its place proved in the account's bundle, which then
// does not verify, naming it. On JetStream, a message on the account's
// subjects that is no event; on EventStoreDB, garbage appended to the
// account's ledger stream, and an event in "ledger-", a stream of no
// account, which the store reads as unreadable.
func TestForeignRecordIsALeaf(t *testing.T) {
	ctx := context.Background()
	type foreign struct {
		at   eventstore.Position // of the record in acme's ledger stream
		want string              // what verify says of it, %d its leaf
		more []eventstore.Position
	}
	// Each store, and a function writing the foreign records into it.
	for name, open := range map[string]func(t *testing.T) (eventstore.Store, func() foreign){
		"jetstream": func(t *testing.T) (eventstore.Store, func() foreign) {
			store := jetstreamStore(t)
			return store, func() foreign {
				js, err := natsjs.New(store.Conn())
				if err != nil {
					t.Fatal(err)
				}
				ack, err := js.Publish(ctx, "ledger.acme.SeatsPurchased", []byte("{not an event"))
				if err != nil {
					t.Fatal(err)
				}
				return foreign{at: eventstore.Position(ack.Sequence),
					want: fmt.Sprintf("(leaf %%d, ledger-acme revision 0): the store could not read this record (position %d)", ack.Sequence)}
			}
		},
		"esdb": func(t *testing.T) (eventstore.Store, func() foreign) {
			srv, store := esdbServerStore(t)
			return store, func() foreign {
				raw := esdbRawClient(t, srv)
				write := func(stream string) eventstore.Position {
					r, err := raw.AppendToStream(ctx, stream, esdbclient.AppendToStreamOptions{ExpectedRevision: esdbclient.Any{}},
						esdbclient.EventData{EventID: uuid.New(), EventType: "SeatsPurchased", ContentType: esdbclient.ContentTypeBinary,
							Data: []byte("{not an event"), Metadata: []byte("not json")})
					if err != nil {
						t.Fatal(err)
					}
					return eventstore.Position(r.CommitPosition)
				}
				nowhere := write("ledger-")
				return foreign{at: write("ledger-acme"), want: "(leaf %d, ledger-acme revision 6): cannot replay the event", more: []eventstore.Position{nowhere}}
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			store, write := open(t)
			e := newLedger(t, store)
			e.history(t)
			f := write()
			e.do(t, "acme", ledger.PurchaseSeats{Count: 1, At: e.at()})
			dir := t.TempDir()
			key := newKey(t, dir)
			l := runLog(t, store, dir, key, e.last)
			var leaves [][]byte
			for rec, err := range store.ReadAll(ctx, 0) {
				if err != nil && !errors.Is(err, eventstore.ErrUnreadable) {
					t.Fatal(err)
				}
				leaves = append(leaves, translog.LeafData(rec, err))
			}
			if l.Size() != int64(len(leaves)) {
				t.Fatalf("tree of %d leaves, the store holds %d records", l.Size(), len(leaves))
			}
			if root, err := l.TreeHash(l.Size()); err != nil || root != naiveRoot(leaves) {
				t.Fatalf("root %s (%v), want %s from the records in global order", root, err, naiveRoot(leaves))
			}
			for _, at := range append([]eventstore.Position{f.at}, f.more...) {
				if _, ok := l.LeafIndex(at); !ok {
					t.Fatalf("the foreign record at %d is no leaf", at)
				}
			}
			idx, _ := l.LeafIndex(f.at)
			b := exportBundle(t, l, store, e.keys, "acme")
			_, err := translog.VerifyBundle(ctx, bytes.NewReader(b), key.Verifier, e.now)
			want := fmt.Sprintf(f.want, idx)
			if !errors.Is(err, translog.ErrBundle) || !strings.Contains(err.Error(), want) {
				t.Fatalf("verify = %v, want it to name %q", err, want)
			}
		})
	}
}

// esdbRawClient returns a client of the EventStoreDB double, to write
// what the service never would.
func esdbRawClient(t *testing.T, srv *esdbtest.Server) *esdbclient.Client {
	t.Helper()
	conf, err := esdbclient.ParseConnectionString(srv.ConnectionString())
	if err != nil {
		t.Fatal(err)
	}
	conf.Logger = esdbclient.NoopLogging()
	c, err := esdbclient.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Deleting a user destroys their key and changes no stored byte, on each
// store: a tree rebuilt from the store afterwards has the root of the
// checkpoint signed before, the tree grown since is consistent with it,
// the bundle exported before still verifies, and the one exported after
// gives the same records without the deleted user's key.
func TestProofsHoldAfterADeletion(t *testing.T) {
	ctx := context.Background()
	for name, open := range stores() {
		t.Run(name, func(t *testing.T) {
			store := open(t)
			e := newLedger(t, store)
			e.do(t, "acme", ledger.OpenAccount{Account: "acme", Name: "Acme", Seats: 3, At: e.at()})
			for i := range 3 {
				e.do(t, "acme", ledger.AddUser{UserID: fmt.Sprintf("u%d", i), Name: fmt.Sprintf("User %d", i),
					Email: fmt.Sprintf("u%d@acme.test", i), Role: ledger.RoleMember, At: e.at()})
			}
			e.do(t, "acme", ledger.RecordActivity{ActivityID: "a0", UserID: "u1", Kind: "note", Ref: "r", At: e.at()})
			dir := t.TempDir()
			key := newKey(t, dir)
			l := runLog(t, store, filepath.Join(dir, "log"), key, e.last)
			before := exportBundle(t, l, store, e.keys, "acme")
			cp, err := l.Sign(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(before, []byte(`"user":"u1"`)) {
				t.Fatal("control: the bundle before the deletion has no key of u1")
			}

			e.do(t, "acme", ledger.DeleteUser{UserID: "u1", Confirm: "u1", At: e.at()})
			if _, err := e.keys.Get(ctx, pii.KeyID("acme", "u1")); !errors.Is(err, pii.ErrErased) {
				t.Fatalf("u1's key after the deletion: %v, want it erased", err)
			}
			if err := l.Wait(ctx, e.last); err != nil {
				t.Fatal(err)
			}
			rebuilt := runLog(t, store, t.TempDir(), key, e.last)
			for name, l := range map[string]*translog.Log{"kept": l, "rebuilt from the store": rebuilt} {
				if root, err := l.TreeHash(cp.Size); err != nil || root != cp.Hash {
					t.Fatalf("%s tree: root of the first %d leaves %s (%v), signed before the deletion %s", name, cp.Size, root, err, cp.Hash)
				}
				root, err := l.TreeHash(l.Size())
				if err != nil {
					t.Fatal(err)
				}
				p, err := l.ConsistencyProof(cp.Size, l.Size())
				if err != nil {
					t.Fatal(err)
				}
				if err := checkTree(p, l.Size(), root, cp.Size, cp.Hash); err != nil {
					t.Fatalf("%s tree is not consistent with the checkpoint before the deletion: %v", name, err)
				}
			}
			if _, err := translog.VerifyBundle(ctx, bytes.NewReader(before), key.Verifier, e.now); err != nil {
				t.Fatalf("the bundle exported before the deletion: %v", err)
			}
			after := exportBundle(t, rebuilt, store, e.keys, "acme")
			v, err := translog.VerifyBundle(ctx, bytes.NewReader(after), key.Verifier, e.now)
			if err != nil {
				t.Fatalf("the bundle exported after the deletion: %v", err)
			}
			if v.Keys != 2 || v.Seats.Deleted != 1 || bytes.Contains(after, []byte(`"user":"u1"`)) {
				t.Fatalf("bundle after the deletion: %d keys, seats %+v; want the 2 keys left and 1 deleted", v.Keys, v.Seats)
			}
			records := func(b []byte) []string {
				var out []string
				for line := range strings.Lines(string(b)) {
					if strings.Contains(line, `"kind":"record"`) {
						var bl translog.BundleLine
						if err := json.Unmarshal([]byte(line), &bl); err != nil {
							t.Fatal(err)
						}
						out = append(out, fmt.Sprintf("%d %s %d %x %x", bl.Leaf, bl.Stream, bl.Revision, bl.Data, bl.Metadata))
					}
				}
				return out
			}
			old, now := records(before), records(after)
			if len(now) != len(old)+1 || strings.Join(now[:len(old)], "\n") != strings.Join(old, "\n") {
				t.Fatalf("records before the deletion:\n%s\nafter:\n%s", strings.Join(old, "\n"), strings.Join(now, "\n"))
			}
		})
	}
}
