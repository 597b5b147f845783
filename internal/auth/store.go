package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// ErrDuplicate is returned by Store.Put for a token id or hash already
// stored.
var ErrDuplicate = errors.New("auth: token already stored")

// MemoryStore is a Store kept in memory.
type MemoryStore struct {
	mu     sync.RWMutex
	byHash map[Hash]Token
	byID   map[string]Hash
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty in-memory token store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{byHash: make(map[Hash]Token), byID: make(map[string]Hash)}
}

// Put stores t.
func (m *MemoryStore) Put(_ context.Context, t Token) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.put(t)
}

func (m *MemoryStore) put(t Token) error {
	if _, ok := m.byHash[t.Hash]; ok {
		return fmt.Errorf("put token %s: %w", t.ID, ErrDuplicate)
	}
	if _, ok := m.byID[t.ID]; ok {
		return fmt.Errorf("put token %s: %w", t.ID, ErrDuplicate)
	}
	m.byHash[t.Hash], m.byID[t.ID] = t, t.Hash
	return nil
}

// ByHash returns the token with hash h.
func (m *MemoryStore) ByHash(_ context.Context, h Hash) (Token, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.byHash[h]
	if !ok {
		return Token{}, ErrNotFound
	}
	return t, nil
}

// ByID returns the token with id.
func (m *MemoryStore) ByID(_ context.Context, id string) (Token, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	h, ok := m.byID[id]
	if !ok {
		return Token{}, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	return m.byHash[h], nil
}

// Len returns the number of tokens.
func (m *MemoryStore) Len(context.Context) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.byHash), nil
}

// Revoke removes the token with id, unless it is the last operator token.
func (m *MemoryStore) Revoke(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.revoke(id)
	return err
}

// revoke removes the token with id and returns it; m.mu is held.
func (m *MemoryStore) revoke(id string) (Token, error) {
	h, ok := m.byID[id]
	if !ok {
		return Token{}, fmt.Errorf("revoke token %s: %w", id, ErrNotFound)
	}
	t := m.byHash[h]
	if t.Role == Operator && !otherOperator(m.byHash, id) {
		return Token{}, fmt.Errorf("revoke token %s: %w", id, ErrLastOperator)
	}
	delete(m.byHash, h)
	delete(m.byID, id)
	return t, nil
}

// otherOperator reports whether tokens hold an operator token whose id is
// not id.
func otherOperator(tokens map[Hash]Token, id string) bool {
	for _, t := range tokens {
		if t.Role == Operator && t.ID != id {
			return true
		}
	}
	return false
}

// FileStore is a Store kept in memory and written, whole, to a JSON file of
// token hashes (never secrets) after every Put and Revoke: to a temporary file in the
// same directory, synced, then renamed over the old one, so a crash leaves
// the old file or the new one. The file has mode 0600.
type FileStore struct {
	path string
	mu   sync.Mutex // serialises Put, Revoke and the file write
	mem  *MemoryStore
}

var _ Store = (*FileStore)(nil)

// FileName is the name of the token file in its directory.
const FileName = "tokens.json"

type tokenFile struct {
	Version int     `json:"version"`
	Tokens  []Token `json:"tokens"`
}

// OpenFileStore opens the token file in dir, creating dir (mode 0700) when
// missing. A missing file is an empty store.
func OpenFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open token store: %w", err)
	}
	f := &FileStore{path: filepath.Join(dir, FileName), mem: NewMemoryStore()}
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open token store: %w", err)
	}
	var tf tokenFile
	if err := json.Unmarshal(b, &tf); err != nil {
		return nil, fmt.Errorf("open token store %s: %w", f.path, err)
	}
	for _, t := range tf.Tokens {
		if err := f.mem.put(t); err != nil {
			return nil, fmt.Errorf("open token store %s: %w", f.path, err)
		}
	}
	return f, nil
}

// Put stores t and rewrites the file. When the write fails, t is not kept.
func (f *FileStore) Put(ctx context.Context, t Token) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.mem.Put(ctx, t); err != nil {
		return err
	}
	if err := f.write(); err != nil {
		f.mem.mu.Lock()
		delete(f.mem.byHash, t.Hash)
		delete(f.mem.byID, t.ID)
		f.mem.mu.Unlock()
		return err
	}
	return nil
}

// Revoke removes the token with id, unless it is the last operator token,
// and rewrites the file. When the write fails, the token is kept.
func (f *FileStore) Revoke(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mem.mu.Lock()
	t, err := f.mem.revoke(id)
	f.mem.mu.Unlock()
	if err != nil {
		return err
	}
	if err := f.write(); err != nil {
		f.mem.mu.Lock()
		f.mem.byHash[t.Hash], f.mem.byID[t.ID] = t, t.Hash
		f.mem.mu.Unlock()
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

func (f *FileStore) write() error {
	f.mem.mu.RLock()
	tf := tokenFile{Version: 1, Tokens: make([]Token, 0, len(f.mem.byHash))}
	for _, t := range f.mem.byHash {
		tf.Tokens = append(tf.Tokens, t)
	}
	f.mem.mu.RUnlock()
	sort.Slice(tf.Tokens, func(i, j int) bool { return tf.Tokens[i].ID < tf.Tokens[j].ID })
	b, err := json.MarshalIndent(tf, "", "  ")
	if err != nil {
		return fmt.Errorf("write token store: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), ".tokens-*.json")
	if err != nil {
		return fmt.Errorf("write token store: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write token store: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write token store: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write token store: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write token store: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("write token store: %w", err)
	}
	return nil
}

// ByHash returns the token with hash h.
func (f *FileStore) ByHash(ctx context.Context, h Hash) (Token, error) { return f.mem.ByHash(ctx, h) }

// ByID returns the token with id.
func (f *FileStore) ByID(ctx context.Context, id string) (Token, error) { return f.mem.ByID(ctx, id) }

// Len returns the number of tokens.
func (f *FileStore) Len(ctx context.Context) (int, error) { return f.mem.Len(ctx) }
