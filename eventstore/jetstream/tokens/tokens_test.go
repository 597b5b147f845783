package tokens

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore/jetstream/internal/jstest"
	"github.com/licenseledger/ledger/internal/auth"
)

// testServer is the embedded server of these tests.
type testServer struct{ *jstest.Server }

func newTestServer(t testing.TB) *testServer {
	t.Helper()
	return &testServer{jstest.Start(t, "tokens-test")}
}

func (ts *testServer) connect() jetstream.JetStream {
	ts.T.Helper()
	return ts.Connect(nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
}

// open opens a Store on a new connection, as another process would, and
// closes it when the test ends.
func (ts *testServer) open(ctx context.Context, cfg Config) *Store {
	ts.T.Helper()
	s, err := Open(ctx, ts.connect(), cfg)
	if err != nil {
		ts.T.Fatalf("open: %v", err)
	}
	ts.T.Cleanup(func() {
		if err := s.Close(); err != nil {
			ts.T.Errorf("close: %v", err)
		}
	})
	return s
}

func mint(t *testing.T, s auth.Store, role auth.Role, account string) (auth.Token, string) {
	t.Helper()
	tok, secret, err := auth.Mint(t.Context(), s, rand.Reader, role, account, time.Now())
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	return tok, secret
}

// eventually polls cond for up to five seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func length(t *testing.T, s *Store) int {
	t.Helper()
	n, err := s.Len(t.Context())
	if err != nil {
		t.Fatalf("len: %v", err)
	}
	return n
}

func TestPutAndLookups(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	s := ts.open(ctx, Config{})
	if n := length(t, s); n != 0 {
		t.Fatalf("Len of a new bucket = %d", n)
	}
	tok, secret := mint(t, s, auth.Admin, "acme")
	other, _ := mint(t, s, auth.Service, "")

	got, err := s.ByHash(ctx, auth.HashSecret(secret))
	if err != nil || got != tok {
		t.Fatalf("ByHash = %+v, %v; want %+v", got, err, tok)
	}
	if got, err := s.ByID(ctx, tok.ID); err != nil || got != tok {
		t.Fatalf("ByID = %+v, %v; want %+v", got, err, tok)
	}
	p, err := auth.Authenticate(ctx, s, "Bearer "+secret)
	if err != nil || p != (auth.Principal{TokenID: tok.ID, Role: auth.Admin, Account: "acme"}) {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	if n := length(t, s); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
	if _, err := s.ByHash(ctx, auth.HashSecret("ll_unknown")); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("ByHash unknown: %v, want ErrNotFound", err)
	}
	for _, id := range []string{"tok_0000000000000000", "no.such/id", ""} {
		if _, err := s.ByID(ctx, id); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("ByID(%q): %v, want ErrNotFound", id, err)
		}
	}
	if _, err := auth.Authenticate(ctx, s, "Bearer ll_unknown"); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("Authenticate unknown: %v, want ErrUnauthenticated", err)
	}

	// Same id, another hash; same hash, another id: both refused.
	sameID := tok
	sameID.Hash = auth.HashSecret("ll_another")
	if err := s.Put(ctx, sameID); !errors.Is(err, auth.ErrDuplicate) {
		t.Fatalf("Put with a taken id: %v, want ErrDuplicate", err)
	}
	sameHash := other
	sameHash.ID = "tok_fresh"
	if err := s.Put(ctx, sameHash); !errors.Is(err, auth.ErrDuplicate) {
		t.Fatalf("Put with a taken hash: %v, want ErrDuplicate", err)
	}
	if got, err := s.ByID(ctx, tok.ID); err != nil || got != tok {
		t.Fatalf("ByID after refused overwrite = %+v, %v; want the first token", got, err)
	}
	if n := length(t, s); n != 2 {
		t.Fatalf("Len after refused puts = %d, want 2", n)
	}
	// The id the refused hash took is given back.
	sameHash.Hash = auth.HashSecret("ll_third")
	if err := s.Put(ctx, sameHash); err != nil {
		t.Fatalf("Put with the id of a refused put: %v", err)
	}
	bad := sameHash
	bad.ID, bad.Hash = "tok.x", auth.HashSecret("ll_fourth")
	if err := s.Put(ctx, bad); !errors.Is(err, ErrInvalidID) {
		t.Fatalf("Put with id %q: %v, want ErrInvalidID", bad.ID, err)
	}
}

// TestSharedAcrossStores opens two stores on two connections, as two
// licensed processes: a token minted through one authenticates through the
// other at once, and its watch brings it into the other's memory.
func TestSharedAcrossStores(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	a, b := ts.open(ctx, Config{}), ts.open(ctx, Config{})

	tok, secret := mint(t, a, auth.Auditor, "")
	p, err := auth.Authenticate(ctx, b, "Bearer "+secret)
	if err != nil || p.TokenID != tok.ID {
		t.Fatalf("Authenticate through the other store = %+v, %v", p, err)
	}
	tok2, _ := mint(t, a, auth.Service, "acme")
	// Len reads memory only: it reaches 2 through the watch.
	eventually(t, "the other store's watch", func() bool { return length(t, b) == 2 })
	if got, err := b.ByID(ctx, tok2.ID); err != nil || got != tok2 {
		t.Fatalf("ByID through the other store = %+v, %v", got, err)
	}
	if err := b.Put(ctx, tok2); !errors.Is(err, auth.ErrDuplicate) {
		t.Fatalf("Put through the other store of a token put through the first: %v, want ErrDuplicate", err)
	}

	// Deleting the hash key revokes the token in every process.
	kv, err := ts.connect().KeyValue(ctx, DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "hash."+tok.Hash.String()); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Store{"a": a, "b": b} {
		eventually(t, name+" to forget the revoked token", func() bool {
			_, err := auth.Authenticate(ctx, s, "Bearer "+secret)
			return errors.Is(err, auth.ErrUnauthenticated)
		})
		if n := length(t, s); n != 1 {
			t.Fatalf("%s: Len after revocation = %d, want 1", name, n)
		}
	}
}

// TestSurvivesRestart restarts the server on the same directory: tokens
// are still there for a new store, and a store open across the restart
// keeps following the bucket.
func TestSurvivesRestart(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	old := ts.open(ctx, Config{})
	tok, secret := mint(t, old, auth.Operator, "")

	ts.Restart()
	s := ts.open(ctx, Config{})
	if n := length(t, s); n != 1 {
		t.Fatalf("Len after restart = %d, want 1", n)
	}
	if p, err := auth.Authenticate(ctx, s, "Bearer "+secret); err != nil || p.TokenID != tok.ID {
		t.Fatalf("Authenticate after restart = %+v, %v", p, err)
	}
	tok2, secret2 := mint(t, s, auth.Admin, "acme")
	if p, err := auth.Authenticate(ctx, old, "Bearer "+secret2); err != nil || p.TokenID != tok2.ID {
		t.Fatalf("Authenticate through the store opened before the restart = %+v, %v", p, err)
	}
	// Its watch resumes only after nats.go's missed-heartbeat check, 10 to
	// 20 seconds later (see the package documentation): too slow to wait
	// for here.
}

// TestBootstrapOnce: processes starting together on an empty bucket create
// one operator token between them.
func TestBootstrapOnce(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	stores := make([]*Store, 4)
	for i := range stores {
		stores[i] = ts.open(ctx, Config{})
	}
	var wg sync.WaitGroup
	created := make([]bool, len(stores))
	errs := make([]error, len(stores))
	for i, s := range stores {
		wg.Go(func() { _, created[i], errs[i] = s.Bootstrap(ctx, rand.Reader, time.Now()) })
	}
	wg.Wait()
	n := 0
	for i := range stores {
		if errs[i] != nil {
			t.Fatalf("store %d: Bootstrap: %v", i, errs[i])
		}
		if created[i] {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d stores created an operator token, want 1", n)
	}
	for i, s := range stores {
		eventually(t, "every store to see the operator token", func() bool { return length(t, s) == 1 })
		if _, created, err := s.Bootstrap(ctx, rand.Reader, time.Now()); err != nil || created {
			t.Fatalf("store %d: second Bootstrap created=%v, %v", i, created, err)
		}
	}
}

// TestBootstrapClaim makes the race of two fresh processes deterministic:
// the second one has not seen the first one's token (its watch stopped
// before), so auth.Bootstrap alone mints a second operator token, and the
// claim prevents it.
func TestBootstrapClaim(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	first := ts.open(ctx, Config{})
	late, blind := ts.open(ctx, Config{}), ts.open(ctx, Config{})
	for _, s := range []*Store{late, blind} {
		if err := s.Close(); err != nil { // their memory stays empty
			t.Fatal(err)
		}
	}
	if _, created, err := first.Bootstrap(ctx, rand.Reader, time.Now()); err != nil || !created {
		t.Fatalf("first Bootstrap: created=%v, %v", created, err)
	}
	if _, created, err := late.Bootstrap(ctx, rand.Reader, time.Now()); err != nil || created {
		t.Fatalf("Bootstrap after another process's: created=%v, %v; want nothing created", created, err)
	}
	// Control: without the claim, the same situation mints a second one.
	if _, created, err := auth.Bootstrap(ctx, blind, rand.Reader, time.Now()); err != nil || !created {
		t.Fatalf("control: auth.Bootstrap on a store that missed the token: created=%v, %v; the test proves nothing", created, err)
	}
}

// TestStaleClaim: a claim left by a process that stopped before minting
// blocks others while fresh, and is taken over once stale.
func TestStaleClaim(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	kv, err := ensureBucket(ctx, ts.connect(), Config{Bucket: DefaultBucket, Replicas: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, BootstrapKey, []byte("tok_vanished")); err != nil {
		t.Fatal(err)
	}
	fresh := ts.open(ctx, Config{})
	if _, created, err := fresh.Bootstrap(ctx, rand.Reader, time.Now()); err != nil || created {
		t.Fatalf("Bootstrap under a fresh claim: created=%v, %v; want nothing created", created, err)
	}
	time.Sleep(20 * time.Millisecond)
	s := ts.open(ctx, Config{StaleClaim: 10 * time.Millisecond})
	secret, created, err := s.Bootstrap(ctx, rand.Reader, time.Now())
	if err != nil || !created {
		t.Fatalf("Bootstrap under a stale claim: created=%v, %v; want a token", created, err)
	}
	pr, err := auth.Authenticate(ctx, s, "Bearer "+secret)
	if err != nil || pr.Role != auth.Operator {
		t.Fatalf("Authenticate the bootstrap token = %+v, %v", pr, err)
	}
	e, err := kv.Get(ctx, BootstrapKey)
	if err != nil || string(e.Value()) != pr.TokenID {
		t.Fatalf("claim after take-over = %q, %v; want %s", e.Value(), err, pr.TokenID)
	}
}

// TestRevokeAcrossStores revokes through one store: that store refuses the
// token at once, a second store on the same server once its watch delivers
// the delete, both keys are gone, and a stale read of the hash key, as a
// lookup racing with the revocation would make, does not bring it back.
func TestRevokeAcrossStores(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	a, b := ts.open(ctx, Config{}), ts.open(ctx, Config{})
	kv, err := ts.connect().KeyValue(ctx, DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}

	mint(t, a, auth.Operator, "")
	tok, secret := mint(t, a, auth.Service, "acme")
	if _, err := auth.Authenticate(ctx, b, "Bearer "+secret); err != nil {
		t.Fatalf("before revocation, through b: %v", err)
	}
	stale, err := kv.Get(ctx, "hash."+tok.Hash.String())
	if err != nil {
		t.Fatal(err)
	}

	if err := a.Revoke(ctx, tok.ID); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if _, err := auth.Authenticate(ctx, a, "Bearer "+secret); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("revoking store still accepts the token: %v", err)
	}
	eventually(t, "b to refuse the revoked token", func() bool {
		_, err := auth.Authenticate(ctx, b, "Bearer "+secret)
		return errors.Is(err, auth.ErrUnauthenticated)
	})
	for _, key := range []string{"hash." + tok.Hash.String(), "id." + tok.ID} {
		if _, err := kv.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("key %s after revocation: %v, want ErrKeyNotFound", redactKey(key), err)
		}
	}
	if _, err := b.ByID(ctx, tok.ID); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("ByID through b after revocation: %v", err)
	}

	// An entry read before the revocation and applied after it is ignored.
	if err := b.apply(stale); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.Authenticate(ctx, b, "Bearer "+secret); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("a stale read brought the revoked token back: %v", err)
	}
	if n := length(t, b); n != 1 {
		t.Fatalf("b: Len after revocation = %d, want 1", n)
	}

	for name, s := range map[string]*Store{"a": a, "b": b} {
		if err := s.Revoke(ctx, tok.ID); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("second revocation through %s: %v, want ErrNotFound", name, err)
		}
	}
	if err := a.Revoke(ctx, "tok_nosuch"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("unknown id: %v, want ErrNotFound", err)
	}
}

// TestRevokeLastOperator refuses the last operator token, through any
// store, and allows it once another exists.
func TestRevokeLastOperator(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	a, b := ts.open(ctx, Config{}), ts.open(ctx, Config{})

	op1, secret1 := mint(t, a, auth.Operator, "")
	mint(t, a, auth.Admin, "acme")
	for name, s := range map[string]*Store{"a": a, "b": b} {
		if err := s.Revoke(ctx, op1.ID); !errors.Is(err, auth.ErrLastOperator) {
			t.Fatalf("through %s: %v, want ErrLastOperator", name, err)
		}
	}
	if _, err := auth.Authenticate(ctx, b, "Bearer "+secret1); err != nil {
		t.Fatalf("refused revocation revoked: %v", err)
	}

	op2, _ := mint(t, b, auth.Operator, "")
	eventually(t, "a to learn the second operator token", func() bool { return length(t, a) == 3 })
	if err := a.Revoke(ctx, op1.ID); err != nil {
		t.Fatalf("revoke with another operator left: %v", err)
	}
	eventually(t, "b to forget the first operator token", func() bool { return length(t, b) == 2 })
	if err := b.Revoke(ctx, op2.ID); !errors.Is(err, auth.ErrLastOperator) {
		t.Fatalf("new last operator: %v, want ErrLastOperator", err)
	}
}

// TestRevokeOperatorsConcurrently revokes the only two operator tokens at
// once through two stores: at most one revocation succeeds and an operator
// token still authenticates.
func TestRevokeOperatorsConcurrently(t *testing.T) {
	ctx := t.Context()
	for round := range 3 {
		ts := newTestServer(t)
		a, b := ts.open(ctx, Config{}), ts.open(ctx, Config{})
		op1, s1 := mint(t, a, auth.Operator, "")
		op2, s2 := mint(t, b, auth.Operator, "")
		eventually(t, "both stores to know both tokens", func() bool {
			_, e1 := a.ByID(ctx, op2.ID)
			_, e2 := b.ByID(ctx, op1.ID)
			return e1 == nil && e2 == nil
		})
		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Go(func() { errs[0] = a.Revoke(ctx, op1.ID) })
		wg.Go(func() { errs[1] = b.Revoke(ctx, op2.ID) })
		wg.Wait()
		if errs[0] == nil && errs[1] == nil {
			t.Fatalf("round %d: both last operator tokens revoked", round)
		}
		for _, err := range errs {
			if err != nil && !errors.Is(err, auth.ErrLastOperator) {
				t.Fatalf("round %d: %v, want ErrLastOperator", round, err)
			}
		}
		fresh := ts.open(ctx, Config{})
		alive := 0
		for _, secret := range []string{s1, s2} {
			if _, err := auth.Authenticate(ctx, fresh, "Bearer "+secret); err == nil {
				alive++
			}
		}
		if alive == 0 {
			t.Fatalf("round %d: no operator token left (%v)", round, errs)
		}
	}
}

// TestSyncFailureFailsWrites checks that Put and Revoke report a failed
// Sync instead of success: the write may not be on disk.
func TestSyncFailureFailsWrites(t *testing.T) {
	ctx := t.Context()
	ts := newTestServer(t)
	broken := errors.New("disk on fire")
	var fail, calls atomic.Int32
	s := ts.open(ctx, Config{Sync: func(context.Context) error {
		calls.Add(1)
		if fail.Load() != 0 {
			return broken
		}
		return nil
	}})
	a, _ := mint(t, s, auth.Operator, "")
	b, _ := mint(t, s, auth.Admin, "acme")
	if calls.Load() == 0 {
		t.Fatal("Put did not call Sync")
	}
	fail.Store(1)
	if _, _, err := auth.Mint(ctx, s, rand.Reader, auth.Admin, "acme", time.Now()); !errors.Is(err, broken) {
		t.Errorf("mint with a failing sync: %v, want %v", err, broken)
	}
	if err := s.Revoke(ctx, b.ID); !errors.Is(err, broken) {
		t.Errorf("revoke with a failing sync: %v, want %v", err, broken)
	}
	fail.Store(0)
	if _, err := s.ByID(ctx, a.ID); err != nil {
		t.Errorf("operator token: %v", err)
	}
}
