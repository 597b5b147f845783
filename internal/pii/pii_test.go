package pii_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/pii"
)

const (
	testName  = "Grace Hopper"
	testEmail = "grace.hopper@example.com"
)

// newKeyring returns a keyring over a fresh memory store with a key for
// each id.
func newKeyring(t *testing.T, ids ...string) (*pii.Keyring, *pii.MemoryKeys) {
	t.Helper()
	store := pii.NewMemoryKeys()
	k := pii.NewKeyring(store, rand.Reader)
	for _, id := range ids {
		if err := k.Create(t.Context(), id); err != nil {
			t.Fatalf("Create(%q): %v", id, err)
		}
	}
	return k, store
}

func seal(t *testing.T, k *pii.Keyring, id, field, plain string) string {
	t.Helper()
	s, err := k.Seal(t.Context(), id, field, plain)
	if err != nil {
		t.Fatalf("Seal(%q, %q): %v", id, field, err)
	}
	return s
}

func TestSealOpenRoundTrip(t *testing.T) {
	id := pii.KeyID("acme", "u-1")
	k, _ := newKeyring(t, id)
	for _, plain := range []string{testName, testEmail, "x", "Zoë Ñúñez 🚀", strings.Repeat("long ", 500), ""} {
		sealed := seal(t, k, id, "name", plain)
		got, err := k.Open(t.Context(), id, "name", sealed)
		if err != nil {
			t.Fatalf("Open(Seal(%q)): %v", plain, err)
		}
		if got != plain {
			t.Errorf("Open(Seal(%q)) = %q", plain, got)
		}
		if plain == "" && sealed != "" {
			t.Errorf("Seal(\"\") = %q, want \"\"", sealed)
		}
	}
}

func TestSealHidesPlaintext(t *testing.T) {
	id := pii.KeyID("acme", "u-1")
	k, _ := newKeyring(t, id)
	for _, plain := range []string{testName, testEmail} {
		sealed := seal(t, k, id, "email", plain)
		raw, err := base64.StdEncoding.DecodeString(sealed)
		if err != nil {
			t.Fatalf("sealed value %q is not base64: %v", sealed, err)
		}
		for _, form := range []string{plain, strings.ToLower(plain), base64.StdEncoding.EncodeToString([]byte(plain))} {
			if strings.Contains(sealed, form) || strings.Contains(string(raw), form) {
				t.Errorf("sealed value of %q contains %q", plain, form)
			}
		}
		if len(raw) <= len(plain) {
			t.Errorf("sealed value of %q has %d bytes, not more than the plaintext", plain, len(raw))
		}
	}
}

func TestSealFreshNonce(t *testing.T) {
	id := pii.KeyID("acme", "u-1")
	k, _ := newKeyring(t, id)
	seen := make(map[string]bool)
	nonces := make(map[string]bool)
	for range 100 {
		s := seal(t, k, id, "name", testName)
		if seen[s] {
			t.Fatalf("Seal returned %q twice", s)
		}
		seen[s] = true
		raw, _ := base64.StdEncoding.DecodeString(s)
		nonce := string(raw[:12])
		if nonces[nonce] {
			t.Fatalf("nonce %x used twice", nonce)
		}
		nonces[nonce] = true
	}
}

func TestOpenWrongUserOrField(t *testing.T) {
	ctx := t.Context()
	u1, u2 := pii.KeyID("acme", "u-1"), pii.KeyID("acme", "u-2")
	other := pii.KeyID("globex", "u-1")
	k, _ := newKeyring(t, u1, u2, other)
	sealed := seal(t, k, u1, "name", testName)

	tests := []struct {
		name      string
		id, field string
	}{
		{"other user", u2, "name"},
		{"same user id in another account", other, "name"},
		{"other field", u1, "email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := k.Open(ctx, tt.id, tt.field, sealed)
			if !errors.Is(err, pii.ErrTampered) {
				t.Fatalf("Open(%s, %s) = %q, %v; want ErrTampered", tt.id, tt.field, got, err)
			}
			if got != "" {
				t.Errorf("Open returned %q with an error", got)
			}
		})
	}
}

func TestOpenTampered(t *testing.T) {
	ctx := t.Context()
	id := pii.KeyID("acme", "u-1")
	k, _ := newKeyring(t, id)
	sealed := seal(t, k, id, "name", testName)
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		for _, bit := range []byte{0x01, 0x80} {
			c := append([]byte(nil), raw...)
			c[i] ^= bit
			got, err := k.Open(ctx, id, "name", base64.StdEncoding.EncodeToString(c))
			if !errors.Is(err, pii.ErrTampered) {
				t.Fatalf("byte %d ^ %#x: Open = %q, %v; want ErrTampered", i, bit, got, err)
			}
		}
	}
	for _, bad := range []string{"not base64!", base64.StdEncoding.EncodeToString(raw[:10]), sealed[:len(sealed)-4], sealed + "AAAA"} {
		if _, err := k.Open(ctx, id, "name", bad); !errors.Is(err, pii.ErrTampered) {
			t.Errorf("Open(%q) = %v, want ErrTampered", bad, err)
		}
	}
	// The original still opens: nothing above changed it.
	if got, err := k.Open(ctx, id, "name", sealed); err != nil || got != testName {
		t.Errorf("Open(original) = %q, %v", got, err)
	}
}

func TestDestroyErases(t *testing.T) {
	ctx := t.Context()
	id, keep := pii.KeyID("acme", "u-1"), pii.KeyID("acme", "u-2")
	k, store := newKeyring(t, id, keep)
	sealed := seal(t, k, id, "name", testName)
	kept := seal(t, k, keep, "name", testName)

	if err := k.Destroy(ctx, id); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	check := func(t *testing.T, k *pii.Keyring) {
		t.Helper()
		got, err := k.Open(ctx, id, "name", sealed)
		if !errors.Is(err, pii.ErrErased) {
			t.Errorf("Open after Destroy = %q, %v; want ErrErased", got, err)
		}
		if got != "" {
			t.Errorf("Open after Destroy returned %q", got)
		}
		if _, err := k.Seal(ctx, id, "name", testName); !errors.Is(err, pii.ErrErased) {
			t.Errorf("Seal after Destroy = %v, want ErrErased", err)
		}
		if got, err := k.Open(ctx, keep, "name", kept); err != nil || got != testName {
			t.Errorf("other user's Open = %q, %v; want %q", got, err, testName)
		}
	}
	t.Run("same keyring", func(t *testing.T) { check(t, k) })
	t.Run("second keyring on the store", func(t *testing.T) {
		check(t, pii.NewKeyring(store, rand.Reader))
	})
	t.Run("after Forget", func(t *testing.T) {
		k.Forget(id)
		check(t, k)
	})
	t.Run("Create refuses", func(t *testing.T) {
		if err := k.Create(ctx, id); !errors.Is(err, pii.ErrErased) {
			t.Errorf("Create after Destroy = %v, want ErrErased", err)
		}
		check(t, k)
	})
	t.Run("store", func(t *testing.T) {
		if _, err := store.Get(ctx, id); !errors.Is(err, pii.ErrErased) {
			t.Errorf("store Get after Destroy = %v, want ErrErased", err)
		}
	})
}

// A keyring that cached a key learns of a deletion made elsewhere through
// Forget.
func TestDestroyedElsewhere(t *testing.T) {
	ctx := t.Context()
	id := pii.KeyID("acme", "u-1")
	k, store := newKeyring(t, id)
	sealed := seal(t, k, id, "email", testEmail)
	other := pii.NewKeyring(store, rand.Reader)
	if got, err := other.Open(ctx, id, "email", sealed); err != nil || got != testEmail {
		t.Fatalf("second keyring Open = %q, %v", got, err)
	}
	if err := other.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	k.Forget(id)
	if _, err := k.Open(ctx, id, "email", sealed); !errors.Is(err, pii.ErrErased) {
		t.Errorf("Open after Destroy elsewhere and Forget = %v, want ErrErased", err)
	}
}

func TestOpenWithoutKey(t *testing.T) {
	ctx := t.Context()
	k, _ := newKeyring(t)
	if _, err := k.Seal(ctx, "acme.nobody", "name", testName); !errors.Is(err, pii.ErrNoKey) {
		t.Errorf("Seal without key = %v, want ErrNoKey", err)
	}
	if _, err := k.Open(ctx, "acme.nobody", "name", "AAAA"); !errors.Is(err, pii.ErrNoKey) {
		t.Errorf("Open without key = %v, want ErrNoKey", err)
	}
}

func TestCreateIdempotent(t *testing.T) {
	ctx := t.Context()
	id := pii.KeyID("acme", "u-1")
	k, store := newKeyring(t, id)
	before, err := store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	sealed := seal(t, k, id, "name", testName)
	for range 3 {
		if err := k.Create(ctx, id); err != nil {
			t.Fatalf("Create again: %v", err)
		}
	}
	// Another keyring creating the same id keeps the stored key too.
	if err := pii.NewKeyring(store, rand.Reader).Create(ctx, id); err != nil {
		t.Fatal(err)
	}
	after, err := store.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Error("Create replaced an existing key")
	}
	if got, err := k.Open(ctx, id, "name", sealed); err != nil || got != testName {
		t.Errorf("Open after Create again = %q, %v", got, err)
	}
}

// Concurrent Creates of one id agree on one key: what was sealed under
// the key one of them returned with opens everywhere.
func TestCreateConcurrent(t *testing.T) {
	ctx := t.Context()
	store := pii.NewMemoryKeys()
	id := pii.KeyID("acme", "u-1")
	const n = 8
	rings := make([]*pii.Keyring, n)
	sealed := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		rings[i] = pii.NewKeyring(store, rand.Reader)
		wg.Go(func() {
			if err := rings[i].Create(ctx, id); err != nil {
				t.Errorf("Create: %v", err)
				return
			}
			s, err := rings[i].Seal(ctx, id, "name", testName)
			if err != nil {
				t.Errorf("Seal: %v", err)
			}
			sealed[i] = s
		})
	}
	wg.Wait()
	fresh := pii.NewKeyring(store, rand.Reader)
	for i, s := range sealed {
		if got, err := fresh.Open(ctx, id, "name", s); err != nil || got != testName {
			t.Errorf("value sealed by keyring %d: Open = %q, %v", i, got, err)
		}
	}
}

func TestMemoryKeys(t *testing.T) {
	ctx := t.Context()
	m := pii.NewMemoryKeys()
	key := make([]byte, pii.KeySize)
	key[0] = 7
	if _, err := m.Get(ctx, "a"); !errors.Is(err, pii.ErrNoKey) {
		t.Errorf("Get of missing key = %v, want ErrNoKey", err)
	}
	if err := m.Put(ctx, "a", key); err != nil {
		t.Fatal(err)
	}
	key[0] = 9 // the store keeps its own copy
	got, err := m.Get(ctx, "a")
	if err != nil || got[0] != 7 {
		t.Fatalf("Get = %v, %v; want the key put", got, err)
	}
	got[1] = 5 // and hands out copies
	if again, _ := m.Get(ctx, "a"); again[1] != 0 {
		t.Error("Get returned the store's own slice")
	}
	if err := m.Put(ctx, "a", got); err != nil {
		t.Errorf("Put of another key: %v", err)
	}
	if again, _ := m.Get(ctx, "a"); again[1] != 0 {
		t.Error("Put replaced the stored key")
	}
	for range 2 {
		if err := m.Destroy(ctx, "a"); err != nil {
			t.Fatalf("Destroy: %v", err)
		}
	}
	if err := m.Destroy(ctx, "never"); err != nil {
		t.Errorf("Destroy of missing key: %v", err)
	}
	if _, err := m.Get(ctx, "a"); !errors.Is(err, pii.ErrErased) {
		t.Errorf("Get after Destroy = %v, want ErrErased", err)
	}
	if err := m.Put(ctx, "a", key); !errors.Is(err, pii.ErrErased) {
		t.Errorf("Put after Destroy = %v, want ErrErased", err)
	}
	if _, err := m.Get(ctx, "a"); !errors.Is(err, pii.ErrErased) {
		t.Errorf("Get after refused Put = %v, want ErrErased", err)
	}
	if err := m.Put(ctx, "never", key); !errors.Is(err, pii.ErrErased) {
		t.Errorf("Put after Destroy of a missing key = %v, want ErrErased", err)
	}
}

func TestKeyring_BadKeySize(t *testing.T) {
	ctx := t.Context()
	store := pii.NewMemoryKeys()
	if err := store.Put(ctx, "short", []byte("too short")); err != nil {
		t.Fatal(err)
	}
	k := pii.NewKeyring(store, rand.Reader)
	if _, err := k.Seal(ctx, "short", "name", testName); err == nil {
		t.Error("Seal with a 9-byte key succeeded")
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("no entropy") }

func TestRandFailure(t *testing.T) {
	ctx := t.Context()
	store := pii.NewMemoryKeys()
	k := pii.NewKeyring(store, failingReader{})
	if err := k.Create(ctx, "a"); err == nil {
		t.Fatal("Create succeeded without randomness")
	}
	if _, err := store.Get(ctx, "a"); !errors.Is(err, pii.ErrNoKey) {
		t.Errorf("failed Create left a key: %v", err)
	}
	if err := store.Put(ctx, "a", make([]byte, pii.KeySize)); err != nil {
		t.Fatal(err)
	}
	if s, err := k.Seal(ctx, "a", "name", testName); err == nil {
		t.Errorf("Seal succeeded without randomness: %q", s)
	}
}

// Seal, Open and Destroy run concurrently on one keyring; after Destroy
// returns, nothing opens and no Seal succeeds, however the cache was
// filled meanwhile.
func TestConcurrentDestroy(t *testing.T) {
	ctx := context.Background()
	const users = 16
	ids := make([]string, users)
	for i := range ids {
		ids[i] = pii.KeyID("acme", fmt.Sprintf("u-%d", i))
	}
	k, store := newKeyring(t, ids...)
	sealed := make([]string, users)
	for i, id := range ids {
		sealed[i] = seal(t, k, id, "name", testName)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for j := range 200 {
				i := (w + j) % users
				if got, err := k.Open(ctx, ids[i], "name", sealed[i]); err == nil && got != testName {
					t.Errorf("Open = %q", got)
				} else if err != nil && !errors.Is(err, pii.ErrErased) {
					t.Errorf("Open: %v", err)
				}
				if _, err := k.Seal(ctx, ids[i], "email", testEmail); err != nil && !errors.Is(err, pii.ErrErased) {
					t.Errorf("Seal: %v", err)
				}
				if j%50 == 0 {
					k.Forget(ids[i])
				}
			}
		})
	}
	for i := range users {
		if i%2 == 0 {
			wg.Go(func() {
				if err := k.Destroy(ctx, ids[i]); err != nil {
					t.Errorf("Destroy: %v", err)
				}
			})
		}
	}
	wg.Wait()
	second := pii.NewKeyring(store, rand.Reader)
	for i, id := range ids {
		for _, ring := range []*pii.Keyring{k, second} {
			got, err := ring.Open(ctx, id, "name", sealed[i])
			if i%2 == 0 && !errors.Is(err, pii.ErrErased) {
				t.Errorf("%s after Destroy: Open = %q, %v; want ErrErased", id, got, err)
			}
			if i%2 == 1 && (err != nil || got != testName) {
				t.Errorf("%s kept: Open = %q, %v", id, got, err)
			}
		}
	}
}

// pausingStore holds a Get that found a key until released, so a Destroy
// can run between the store's answer and the keyring caching it.
type pausingStore struct {
	pii.KeyStore
	found, release chan struct{}
}

func (p *pausingStore) Get(ctx context.Context, id string) ([]byte, error) {
	key, err := p.KeyStore.Get(ctx, id)
	if err == nil && p.found != nil {
		p.found <- struct{}{}
		<-p.release
	}
	return key, err
}

// A key read from the store just before a Destroy is not cached after it:
// once Destroy returned, the keyring opens nothing sealed under it.
func TestDestroyDuringKeyLoad(t *testing.T) {
	ctx := t.Context()
	id := pii.KeyID("acme", "u-1")
	mem := pii.NewMemoryKeys()
	k0 := pii.NewKeyring(mem, rand.Reader)
	if err := k0.Create(ctx, id); err != nil {
		t.Fatal(err)
	}
	sealed := seal(t, k0, id, "name", testName)

	store := &pausingStore{KeyStore: mem, found: make(chan struct{}), release: make(chan struct{})}
	k := pii.NewKeyring(store, rand.Reader)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = k.Open(ctx, id, "name", sealed) // either answer is fine for a racing call
	}()
	<-store.found
	if err := k.Destroy(ctx, id); err != nil {
		t.Fatal(err)
	}
	close(store.release)
	<-done
	store.found = nil
	if got, err := k.Open(ctx, id, "name", sealed); !errors.Is(err, pii.ErrErased) {
		t.Errorf("Open after Destroy = %q, %v; want ErrErased", got, err)
	}
}

// hookStore runs before once, just before the first Put.
type hookStore struct {
	pii.KeyStore
	before func()
}

func (h *hookStore) Put(ctx context.Context, id string, key []byte) error {
	if f := h.before; f != nil {
		h.before = nil
		f()
	}
	return h.KeyStore.Put(ctx, id, key)
}

// hookPutter is a KeyPutter that runs before once, just before the first
// PutNew.
type hookPutter struct {
	*pii.MemoryKeys
	before func()
}

func (h *hookPutter) Put(ctx context.Context, id string, key []byte) error {
	_, err := h.PutNew(ctx, id, key)
	return err
}

func (h *hookPutter) PutNew(ctx context.Context, id string, key []byte) (bool, error) {
	if f := h.before; f != nil {
		h.before = nil
		f()
	}
	return h.MemoryKeys.PutNew(ctx, id, key)
}

// When another process stores a key between Create's look-up and its Put,
// Create adopts the stored key instead of sealing under its own, whether
// the store only puts or also tells whether it stored the key.
func TestCreateLosesRace(t *testing.T) {
	for _, putter := range []bool{false, true} {
		t.Run(fmt.Sprintf("putter=%v", putter), func(t *testing.T) {
			ctx := t.Context()
			id := pii.KeyID("acme", "u-1")
			mem := pii.NewMemoryKeys()
			other := pii.NewKeyring(mem, rand.Reader)
			var otherSealed string
			before := func() {
				if err := other.Create(ctx, id); err != nil {
					t.Fatal(err)
				}
				otherSealed = seal(t, other, id, "name", testName)
			}
			var store pii.KeyStore = &hookStore{KeyStore: mem, before: before}
			if putter {
				store = &hookPutter{MemoryKeys: mem, before: before}
			}
			k := pii.NewKeyring(store, rand.Reader)
			if err := k.Create(ctx, id); err != nil {
				t.Fatal(err)
			}
			mine := seal(t, k, id, "email", testEmail)
			if got, err := k.Open(ctx, id, "name", otherSealed); err != nil || got != testName {
				t.Errorf("Open of the other process's value = %q, %v", got, err)
			}
			if got, err := other.Open(ctx, id, "email", mine); err != nil || got != testEmail {
				t.Errorf("other process Open = %q, %v", got, err)
			}
		})
	}
}

// countingGets is a memory store that counts its Gets.
type countingGets struct {
	*pii.MemoryKeys
	gets atomic.Int64
}

func (c *countingGets) Get(ctx context.Context, id string) ([]byte, error) {
	c.gets.Add(1)
	return c.MemoryKeys.Get(ctx, id)
}

// A store that reports it stored the key Create drew is not asked for it
// again: Create caches that key, and what it seals opens under the key
// the store holds.
func TestCreateKeepsStoredKey(t *testing.T) {
	ctx := t.Context()
	id := pii.KeyID("acme", "u-1")
	store := &countingGets{MemoryKeys: pii.NewMemoryKeys()}
	k := pii.NewKeyring(store, rand.Reader)
	if err := k.Create(ctx, id); err != nil {
		t.Fatal(err)
	}
	sealed := seal(t, k, id, "name", testName)
	if got, err := k.Open(ctx, id, "name", sealed); err != nil || got != testName {
		t.Errorf("Open = %q, %v", got, err)
	}
	if n := store.gets.Load(); n != 0 {
		t.Errorf("%d reads of the key just stored, want 0", n)
	}
	second := pii.NewKeyring(store.MemoryKeys, rand.Reader)
	if got, err := second.Open(ctx, id, "name", sealed); err != nil || got != testName {
		t.Errorf("Open under the stored key = %q, %v", got, err)
	}
	// A key destroyed before Create caches it stays destroyed.
	gone := pii.KeyID("acme", "u-2")
	if err := k.Destroy(ctx, gone); err != nil {
		t.Fatal(err)
	}
	if err := k.Create(ctx, gone); !errors.Is(err, pii.ErrErased) {
		t.Errorf("Create after Destroy: %v, want ErrErased", err)
	}
}

// gatedKeys is a memory store whose Put of one id waits for a gate.
type gatedKeys struct {
	*pii.MemoryKeys
	slow    string
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedKeys) Put(ctx context.Context, id string, key []byte) error {
	_, err := g.PutNew(ctx, id, key)
	return err
}

func (g *gatedKeys) PutNew(ctx context.Context, id string, key []byte) (bool, error) {
	if id == g.slow {
		close(g.entered)
		select {
		case <-g.gate:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	return g.MemoryKeys.PutNew(ctx, id, key)
}

// A Create waiting on the store for one user does not hold up the
// Create of another: adding users of different accounts runs in
// parallel.
func TestCreateNotSerialized(t *testing.T) {
	ctx := t.Context()
	g := &gatedKeys{MemoryKeys: pii.NewMemoryKeys(), slow: "acme.slow", entered: make(chan struct{}), gate: make(chan struct{})}
	k := pii.NewKeyring(g, rand.Reader)
	slow := make(chan error, 1)
	go func() { slow <- k.Create(ctx, "acme.slow") }()
	<-g.entered
	fast := make(chan error, 1)
	go func() { fast <- k.Create(ctx, "beta.fast") }()
	select {
	case err := <-fast:
		if err != nil {
			t.Fatalf("Create beside a slow one: %v", err)
		}
	case <-time.After(10 * time.Second):
		close(g.gate)
		t.Fatal("a Create waited for another user's Create")
	}
	if _, err := k.Seal(ctx, "beta.fast", "name", testName); err != nil {
		t.Fatalf("Seal under the new key: %v", err)
	}
	select {
	case err := <-slow:
		t.Fatalf("the slow Create returned before its store answered: %v", err)
	default:
	}
	close(g.gate)
	if err := <-slow; err != nil {
		t.Fatalf("slow Create: %v", err)
	}
}

// TestFingerprint: equal messages under one key give equal fingerprints,
// other messages or keys other ones, and none is made once the key is
// destroyed.
func TestFingerprint(t *testing.T) {
	ctx := context.Background()
	store := pii.NewMemoryKeys()
	k := pii.NewKeyring(store, rand.Reader)
	for _, id := range []string{"acme.ada", "acme.bob"} {
		if err := k.Create(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	fp := func(k *pii.Keyring, id, msg string) string {
		t.Helper()
		b, err := k.Fingerprint(ctx, id, []byte(msg))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	a := fp(k, "acme.ada", "Ada Lovelace")
	if len(a) != 32 || a != fp(pii.NewKeyring(store, rand.Reader), "acme.ada", "Ada Lovelace") {
		t.Fatal("a fingerprint differs between keyrings over one store")
	}
	if a == fp(k, "acme.ada", "Ada Lovelace ") || a == fp(k, "acme.bob", "Ada Lovelace") {
		t.Fatal("another message or key gives the same fingerprint")
	}
	if err := k.Destroy(ctx, "acme.ada"); err != nil {
		t.Fatal(err)
	}
	for _, kr := range []*pii.Keyring{k, pii.NewKeyring(store, rand.Reader)} {
		if _, err := kr.Fingerprint(ctx, "acme.ada", []byte("Ada Lovelace")); !errors.Is(err, pii.ErrErased) {
			t.Fatalf("fingerprint under a destroyed key: %v, want ErrErased", err)
		}
	}
}
