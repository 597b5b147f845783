// Package pii keeps personal data sealed: every user gets a random data key,
// names, emails and deactivation reasons are sealed with AES-256-GCM under
// it, and destroying the key (crypto-shredding) makes them unreadable for
// good while the events that carry them still decode, fold and verify.
//
// Keys live in a [KeyStore]: [MemoryKeys] here, durable ones next to each
// event store backend. A [Keyring] creates keys, caches them and seals and
// opens fields.
package pii

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ErrErased is returned when a key was destroyed: the data it sealed is
// gone for good.
var ErrErased = errors.New("pii: personal data erased")

// ErrNoKey is returned when no key was ever stored for an id.
var ErrNoKey = errors.New("pii: no key")

// ErrTampered is returned when a sealed field does not open under its key:
// it was changed, or sealed for another user or field.
var ErrTampered = errors.New("pii: sealed field does not authenticate")

// KeySize is the size of a data key: AES-256.
const KeySize = 32

// KeyStore keeps data keys by id.
type KeyStore interface {
	// Put stores key under id. Putting under an id that already has a key
	// is not an error and keeps the stored key (the first key put wins), so
	// that racing creators agree on one key; putting under a destroyed id
	// returns ErrErased.
	Put(ctx context.Context, id string, key []byte) error
	// Get returns the key stored under id, ErrErased when it was destroyed
	// or ErrNoKey when there never was one.
	Get(ctx context.Context, id string) ([]byte, error)
	// Destroy erases the key under id for good. Destroying twice, or an id
	// without a key, is not an error.
	Destroy(ctx context.Context, id string) error
}

// KeyPutter is a KeyStore whose put tells whether the key it was given is
// the one stored. A [Keyring] that creates a key then uses the key it drew
// when it was stored, instead of reading back what the store kept.
type KeyPutter interface {
	KeyStore
	// PutNew stores key under id as Put does and reports whether this
	// call stored it: false, with a nil error, when id already had a key,
	// which stays (another writer's, or this writer's after a lost
	// acknowledgement). It never reports true for a key other than the
	// one stored.
	PutNew(ctx context.Context, id string, key []byte) (stored bool, err error)
}

// KeyID returns the id of the data key of a user of an account.
func KeyID(account, user string) string { return account + "." + user }

// MemoryKeys is a KeyStore kept in memory, for tests and single-process use
// without durability.
type MemoryKeys struct {
	mu        sync.Mutex
	keys      map[string][]byte
	destroyed map[string]bool
}

var _ KeyPutter = (*MemoryKeys)(nil)

// NewMemoryKeys returns an empty in-memory key store.
func NewMemoryKeys() *MemoryKeys {
	return &MemoryKeys{keys: make(map[string][]byte), destroyed: make(map[string]bool)}
}

// Put stores key under id, unless id already has a key, which stays.
func (m *MemoryKeys) Put(ctx context.Context, id string, key []byte) error {
	_, err := m.PutNew(ctx, id, key)
	return err
}

// PutNew stores key under id, unless id already has a key, which stays,
// and reports whether it stored it.
func (m *MemoryKeys) PutNew(_ context.Context, id string, key []byte) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.destroyed[id] {
		return false, fmt.Errorf("put key %s: %w", id, ErrErased)
	}
	if _, ok := m.keys[id]; ok {
		return false, nil
	}
	m.keys[id] = append([]byte(nil), key...)
	return true, nil
}

// Get returns the key under id.
func (m *MemoryKeys) Get(_ context.Context, id string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.destroyed[id] {
		return nil, fmt.Errorf("get key %s: %w", id, ErrErased)
	}
	k, ok := m.keys[id]
	if !ok {
		return nil, fmt.Errorf("get key %s: %w", id, ErrNoKey)
	}
	return append([]byte(nil), k...), nil
}

// Destroy overwrites and forgets the key under id.
func (m *MemoryKeys) Destroy(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k, ok := m.keys[id]; ok {
		clear(k)
		delete(m.keys, id)
	}
	m.destroyed[id] = true
	return nil
}

// Keyring seals and opens personal fields with the keys of a KeyStore,
// caching keys in memory. It is safe for concurrent use.
type Keyring struct {
	store KeyStore
	rand  io.Reader

	mu    sync.RWMutex
	aeads map[string]*dataKey // nil value: key destroyed
}

// dataKey is a data key ready for use: its cipher, and the key of the
// fingerprints made under it, derived from it.
type dataKey struct {
	aead cipher.AEAD
	mac  []byte
}

// NewKeyring returns a Keyring over store that draws new keys and nonces
// from rand (crypto/rand.Reader in production).
func NewKeyring(store KeyStore, rand io.Reader) *Keyring {
	return &Keyring{store: store, rand: rand, aeads: make(map[string]*dataKey)}
}

// Create draws a new key for id and stores it. Creating a key that exists
// replaces nothing: the stored key stays. Creating a key that was
// destroyed returns ErrErased. Creates of different ids, and of one id,
// run concurrently: the store keeps the first key put, and every creator
// caches what the store kept.
func (k *Keyring) Create(ctx context.Context, id string) error {
	key := make([]byte, KeySize)
	defer clear(key)
	if _, err := io.ReadFull(k.rand, key); err != nil {
		return fmt.Errorf("create key %s: %w", id, err)
	}
	var stored bool
	var err error
	if p, ok := k.store.(KeyPutter); ok {
		stored, err = p.PutNew(ctx, id, key)
	} else {
		err = k.store.Put(ctx, id, key)
	}
	if err != nil {
		return fmt.Errorf("create key %s: %w", id, err)
	}
	if stored {
		// The store kept this key: no other can be the id's.
		if err := k.cache(id, key); err != nil {
			return fmt.Errorf("create key %s: %w", id, err)
		}
		return nil
	}
	// Another creator, here or in another process, may have put its key
	// first: load what the store kept rather than caching the key drawn
	// here.
	if _, err := k.aead(ctx, id); err != nil {
		return fmt.Errorf("create key %s: %w", id, err)
	}
	return nil
}

// cache keeps key, the one the store holds under id, unless the cache has
// an entry for id already: a Destroy that ran meanwhile stays.
func (k *Keyring) cache(id string, key []byte) error {
	aead, err := newAEAD(key)
	if err != nil {
		return err
	}
	d := &dataKey{aead: aead, mac: macKey(key)}
	k.mu.Lock()
	defer k.mu.Unlock()
	if cached, ok := k.aeads[id]; ok {
		if cached == nil {
			return ErrErased
		}
		return nil
	}
	k.aeads[id] = d
	return nil
}

// Destroy destroys the key of id in the store and forgets it here.
func (k *Keyring) Destroy(ctx context.Context, id string) error {
	// This keyring stops opening the user's data at once, whatever the
	// store answers: a destroy that fails there is retried by its caller.
	k.MarkDestroyed(id)
	if err := k.store.Destroy(ctx, id); err != nil {
		return fmt.Errorf("destroy key %s: %w", id, err)
	}
	return nil
}

// MarkDestroyed makes this keyring treat the key of id as destroyed
// without asking the store: a process that learns of a deletion made by
// another process calls it, and never opens that user's data again even
// while the store still holds the key.
func (k *Keyring) MarkDestroyed(id string) {
	k.mu.Lock()
	k.aeads[id] = nil
	k.mu.Unlock()
}

// Forget drops the cached key of id, so that the next use asks the store.
func (k *Keyring) Forget(id string) {
	k.mu.Lock()
	delete(k.aeads, id)
	k.mu.Unlock()
}

func (k *Keyring) aead(ctx context.Context, id string) (cipher.AEAD, error) {
	d, err := k.load(ctx, id)
	if err != nil {
		return nil, err
	}
	return d.aead, nil
}

func (k *Keyring) load(ctx context.Context, id string) (*dataKey, error) {
	k.mu.RLock()
	a, ok := k.aeads[id]
	k.mu.RUnlock()
	if ok {
		if a == nil {
			return nil, ErrErased
		}
		return a, nil
	}
	key, err := k.store.Get(ctx, id)
	switch {
	case errors.Is(err, ErrErased):
		k.mu.Lock()
		k.aeads[id] = nil
		k.mu.Unlock()
		return nil, ErrErased
	case err != nil:
		return nil, err
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	a = &dataKey{aead: aead, mac: macKey(key)}
	// A Destroy (or another load) may have filled the cache while the store
	// answered: what is cached wins, so a destroyed key stays destroyed.
	k.mu.Lock()
	defer k.mu.Unlock()
	if cached, ok := k.aeads[id]; ok {
		if cached == nil {
			return nil, ErrErased
		}
		return cached, nil
	}
	k.aeads[id] = a
	return a, nil
}

// macKey derives the key of a data key's fingerprints: HMAC-SHA-256 of a
// fixed label under the data key, so that it is gone with the data key and
// tells nothing about it.
func macKey(key []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("license ledger: fingerprint key"))
	return h.Sum(nil)
}

// Fingerprint returns HMAC-SHA-256 of msg under a key derived from the data
// key of id: a value that tells whether two messages are equal while the
// data key exists, and that nobody can compute or test a guess against
// once it is destroyed. It returns ErrErased (wrapped) when the key was
// destroyed.
func (k *Keyring) Fingerprint(ctx context.Context, id string, msg []byte) ([]byte, error) {
	d, err := k.load(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("fingerprint under %s: %w", id, err)
	}
	h := hmac.New(sha256.New, d.mac)
	h.Write(msg)
	return h.Sum(nil), nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("pii: key of %d bytes, want %d", len(key), KeySize)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("pii: %w", err)
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("pii: %w", err)
	}
	return a, nil
}

// Seal seals plaintext as field of the user whose key is id, returning
// base64 of nonce and ciphertext. The id and field name are bound in as
// additional data, so a sealed value cannot be moved to another user or
// field. An empty plaintext seals to "".
func (k *Keyring) Seal(ctx context.Context, id, field, plaintext string) (string, error) {
	if plaintext == "" {
		return "", nil
	}
	a, err := k.aead(ctx, id)
	if err != nil {
		return "", fmt.Errorf("seal %s of %s: %w", field, id, err)
	}
	// One buffer holds the nonce, the plaintext sealed in place into the
	// ciphertext, the additional data, then the base64 of nonce and
	// ciphertext: one allocation besides the string returned.
	n, sealed := a.NonceSize(), a.NonceSize()+len(plaintext)+a.Overhead()
	ad := len(id) + 1 + len(field)
	buf := make([]byte, sealed+ad, sealed+ad+base64.StdEncoding.EncodedLen(sealed))
	if _, err := io.ReadFull(k.rand, buf[:n]); err != nil {
		return "", fmt.Errorf("seal %s of %s: %w", field, id, err)
	}
	copy(buf[n:], plaintext)
	additional := append(append(append(buf[sealed:sealed], id...), 0), field...)
	out := a.Seal(buf[n:n], buf[:n], buf[n:n+len(plaintext)], additional)
	return string(base64.StdEncoding.AppendEncode(buf[sealed+ad:], buf[:n+len(out)])), nil
}

// Open opens a value Seal returned. It returns ErrErased (wrapped) when the
// key was destroyed and ErrTampered when the value does not authenticate.
func (k *Keyring) Open(ctx context.Context, id, field, sealed string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	a, err := k.aead(ctx, id)
	if err != nil {
		return "", fmt.Errorf("open %s of %s: %w", field, id, err)
	}
	raw, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil || len(raw) < a.NonceSize()+a.Overhead() {
		return "", fmt.Errorf("open %s of %s: %w", field, id, ErrTampered)
	}
	n := a.NonceSize()
	plain, err := a.Open(raw[n:n], raw[:n], raw[n:], additional(id, field))
	if err != nil {
		return "", fmt.Errorf("open %s of %s: %w", field, id, ErrTampered)
	}
	return string(plain), nil
}

func additional(id, field string) []byte { return []byte(id + "\x00" + field) }
