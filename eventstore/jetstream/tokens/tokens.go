// Package tokens keeps the bearer tokens of [auth] in a NATS JetStream
// key/value bucket, so that every process on the same NATS cluster accepts
// the same tokens. It implements [auth.Store].
//
// # Bucket layout
//
// One file-backed bucket (default "LEDGER_TOKENS", history 1) with the keys:
//
//   - "hash.<hex SHA-256 of the secret>": the token as JSON ([auth.Token]:
//     id, hash, role, account, creation time). The secret is never stored.
//   - "id.<token id>": the hex hash of the token holding that id. It is
//     written first, with Create, so that two tokens cannot share an id;
//     the hash key is then written with Create too, so two tokens cannot
//     share a hash either. A token exists once its hash key exists.
//   - "bootstrap": the id of the first operator token, written with Create
//     by [Store.Bootstrap] so that processes starting together mint one.
//
// # Reads
//
// [auth.Authenticate] looks a token up on every request, so the Store
// keeps every token in memory: Open reads the hash keys and then watches
// them, so a token put through another process shows up within
// milliseconds, and a hash key deleted by hand (say with
// "nats kv del LEDGER_TOKENS hash.<hex>") revokes the token everywhere.
// A lookup that misses the cache asks the server once, so that a token
// minted by one process is accepted by another even before the watch
// delivers it.
//
// # Revocation
//
// [Store.Revoke] deletes the hash key, then the id key. The revoking
// process forgets the token at once; the others when their watch delivers
// the delete, within milliseconds. The cache remembers the revision of
// every hash key it has seen, deletes included, so that a lookup that
// raced with a revocation cannot put the token back.
//
// The last operator token is refused. Two processes revoking the last two
// operator tokens at the same time cannot both succeed: each checks, after
// its delete, that another operator token is still on the server, and puts
// its own back otherwise (the others see it vanish and return).
//
// The watch is a nats.go ordered consumer. After the server restarts or
// the connection moves to another server, it resumes when nats.go notices
// the missing heartbeats, 10 to 20 seconds later; until then lookups of
// new tokens still succeed through the server, while Len and revocations
// lag.
package tokens

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/auth"
)

// DefaultBucket is the name of the token bucket unless Config.Bucket says
// otherwise.
const DefaultBucket = "LEDGER_TOKENS"

// BootstrapKey is the key Bootstrap claims before minting the first
// operator token.
const BootstrapKey = "bootstrap"

// DefaultStaleClaim is how old a bootstrap claim must be, with still no
// token in the bucket, before another process takes it over.
const DefaultStaleClaim = time.Minute

// ErrInvalidID is returned by Put for a token id that cannot be a key: it
// must be 1 to 128 characters of [A-Za-z0-9_-].
var ErrInvalidID = errors.New("tokens: invalid token id")

// ErrCorrupt is returned when a value of the bucket is not a token.
var ErrCorrupt = errors.New("tokens: unexpected value in token bucket")

// Config configures a Store. The zero value is usable.
type Config struct {
	// Bucket is the name of the key/value bucket; default [DefaultBucket].
	Bucket string
	// Replicas is the number of copies of the bucket in a cluster when
	// Open creates it; default 1. An existing bucket keeps its own.
	Replicas int
	// StaleClaim is how old a bootstrap claim without any token must be
	// before Bootstrap takes it over (its owner stopped between claiming
	// and minting); default [DefaultStaleClaim].
	StaleClaim time.Duration
	// Logger receives notices about the watch of the bucket; nil discards
	// them. No secret or hash is ever logged.
	Logger *slog.Logger
	// Sync, when set, is called after the writes the server acknowledged
	// and before Put, Revoke or Bootstrap returns; it returns once those
	// writes are on disk, so that a token shown to its owner stays valid
	// and a revoked one stays revoked after a crash of the machine.
	// [storejs.Store.Sync] is the one for a ledger store on the same
	// embedded server when that server does not sync every write (fsync
	// durability by group sync). Nil: an acknowledged write is as durable
	// as the server makes it.
	Sync func(context.Context) error
}

// Store is an [auth.Store] on a JetStream key/value bucket, shared by
// every process using the same bucket. It is safe for concurrent use.
// Close it to stop its watch.
type Store struct {
	kv    jetstream.KeyValue
	stale time.Duration
	log   *slog.Logger
	sync  func(context.Context) error // nil: the server's acknowledgement is enough

	mu     sync.RWMutex
	byHash map[auth.Hash]auth.Token
	byID   map[string]auth.Hash
	// rev is the revision of the last entry applied for each hash key,
	// deletes included: an older entry, read by a lookup that raced with
	// the watch, is not applied.
	rev map[auth.Hash]uint64

	watcher jetstream.KeyWatcher
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once
}

var _ auth.Store = (*Store)(nil)

// Open creates the token bucket when missing, reads every token and
// starts watching the bucket. It returns once the tokens stored before the
// call are in memory.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.StaleClaim == 0 {
		cfg.StaleClaim = DefaultStaleClaim
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Replicas < 1 {
		return nil, fmt.Errorf("tokens: invalid replicas %d", cfg.Replicas)
	}
	kv, err := ensureBucket(ctx, js, cfg)
	if err != nil {
		return nil, fmt.Errorf("tokens: bucket %s: %w", cfg.Bucket, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	w, err := kv.Watch(wctx, "hash.>")
	if err != nil {
		cancel()
		return nil, fmt.Errorf("tokens: watch bucket %s: %w", cfg.Bucket, err)
	}
	s := &Store{
		kv: kv, stale: cfg.StaleClaim, log: cfg.Logger, sync: cfg.Sync,
		byHash: make(map[auth.Hash]auth.Token), byID: make(map[string]auth.Hash), rev: make(map[auth.Hash]uint64),
		watcher: w, cancel: cancel, done: make(chan struct{}),
	}
	// The watcher sends every current value, then nil, then the updates.
	for initial := true; initial; {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				cancel()
				return nil, fmt.Errorf("tokens: watch bucket %s: ended while reading", cfg.Bucket)
			}
			if e == nil {
				initial = false
				continue
			}
			if err := s.apply(e); err != nil {
				_ = w.Stop()
				cancel()
				return nil, fmt.Errorf("tokens: read bucket %s: %w", cfg.Bucket, err)
			}
		case <-ctx.Done():
			_ = w.Stop()
			cancel()
			return nil, fmt.Errorf("tokens: read bucket %s: %w", cfg.Bucket, ctx.Err())
		}
	}
	go s.watch()
	return s, nil
}

func ensureBucket(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if err == nil || !errors.Is(err, jetstream.ErrBucketNotFound) {
		// An existing bucket is left as it is: updating it could scale its
		// replicas down.
		return kv, err
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "Bearer tokens: SHA-256 hashes of their secrets, never the secrets.",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.KeyValue(ctx, cfg.Bucket) // another process created it first
	}
	return kv, err
}

// watch applies the updates of the bucket until Close.
func (s *Store) watch() {
	defer close(s.done)
	for e := range s.watcher.Updates() {
		if e == nil {
			continue
		}
		if err := s.apply(e); err != nil {
			s.log.Warn("token bucket: skipped an entry", "key", redactKey(e.Key()), "err", err)
		}
	}
}

// apply brings the cache up to date with one entry of a hash key, unless
// the cache has seen a later entry of that key.
func (s *Store) apply(e jetstream.KeyValueEntry) error {
	var h auth.Hash
	if err := h.UnmarshalText([]byte(e.Key()[len("hash."):])); err != nil {
		return fmt.Errorf("%w: key %s: %w", ErrCorrupt, redactKey(e.Key()), err)
	}
	var t auth.Token
	if e.Operation() == jetstream.KeyValuePut {
		var err error
		if t, err = decode(e); err != nil {
			return err
		}
		if t.Hash != h {
			return fmt.Errorf("%w: token %s under the key of another hash", ErrCorrupt, t.ID)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		s.forget(h, e.Revision())
		return nil
	}
	s.learn(t, e.Revision())
	return nil
}

// learn caches t, read at revision rev of its hash key, unless a later
// revision was applied. s.mu is held.
func (s *Store) learn(t auth.Token, rev uint64) {
	if rev <= s.rev[t.Hash] {
		return
	}
	s.rev[t.Hash] = rev
	s.byHash[t.Hash], s.byID[t.ID] = t, t.Hash
}

// forget drops the token of hash h, deleted at revision rev, unless a
// later revision was applied. s.mu is held.
func (s *Store) forget(h auth.Hash, rev uint64) {
	if rev <= s.rev[h] {
		return
	}
	s.rev[h] = rev
	if t, ok := s.byHash[h]; ok {
		delete(s.byID, t.ID)
		delete(s.byHash, h)
	}
}

func decode(e jetstream.KeyValueEntry) (auth.Token, error) {
	var t auth.Token
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		return auth.Token{}, fmt.Errorf("%w: key %s: %w", ErrCorrupt, redactKey(e.Key()), err)
	}
	return t, nil
}

// redactKey keeps a hash key's prefix only: hashes stay out of logs.
func redactKey(k string) string {
	if len(k) > len("hash.")+8 && k[:len("hash.")] == "hash." {
		return k[:len("hash.")+8] + "…"
	}
	return k
}

// Close stops the watch. After Close, Put still writes to the bucket and
// lookups still answer, from the tokens known at Close and from the
// server. Closing twice is not an error.
func (s *Store) Close() error {
	var err error
	s.once.Do(func() {
		err = s.watcher.Stop()
		s.cancel()
		<-s.done
	})
	// A consumer the server lost (a restart) or a closed connection leave
	// nothing to stop.
	if err != nil && !errors.Is(err, jetstream.ErrConnectionClosed) && !errors.Is(err, nats.ErrConnectionClosed) &&
		!errors.Is(err, nats.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("tokens: stop watch: %w", err)
	}
	return nil
}

// Put stores t unless its id or its hash is stored already, which is
// auth.ErrDuplicate. With Config.Sync it returns nil only once the token
// is on disk.
func (s *Store) Put(ctx context.Context, t auth.Token) error {
	if !validID(t.ID) {
		return fmt.Errorf("put token %q: %w", t.ID, ErrInvalidID)
	}
	b, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("put token %s: %w", t.ID, err)
	}
	hashKey := "hash." + t.Hash.String()
	if _, err := s.kv.Create(ctx, "id."+t.ID, []byte(t.Hash.String())); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("put token %s: id taken: %w", t.ID, auth.ErrDuplicate)
		}
		return fmt.Errorf("put token %s: %w", t.ID, err)
	}
	rev, err := s.kv.Create(ctx, hashKey, b)
	if err != nil {
		// Give the id back; when that fails too, the id stays taken by no
		// token, which is harmless: ids are random.
		if derr := s.kv.Delete(ctx, "id."+t.ID); derr != nil {
			s.log.Warn("token bucket: could not release an id", "id", t.ID, "err", derr)
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("put token %s: hash taken: %w", t.ID, auth.ErrDuplicate)
		}
		return fmt.Errorf("put token %s: %w", t.ID, err)
	}
	s.mu.Lock()
	s.learn(t, rev)
	s.mu.Unlock()
	if err := s.synced(ctx); err != nil {
		return fmt.Errorf("put token %s: %w", t.ID, err)
	}
	return nil
}

// synced waits, when the Store was given a Sync, until the writes the
// server acknowledged so far are on disk.
func (s *Store) synced(ctx context.Context) error {
	if s.sync == nil {
		return nil
	}
	return s.sync(ctx)
}

// ByHash returns the token whose secret hashes to h, or auth.ErrNotFound.
func (s *Store) ByHash(ctx context.Context, h auth.Hash) (auth.Token, error) {
	s.mu.RLock()
	t, ok := s.byHash[h]
	s.mu.RUnlock()
	if ok {
		return t, nil
	}
	return s.fetch(ctx, h)
}

// fetch reads the token of hash h from the server, for a token put by
// another process that the watch has not delivered yet.
func (s *Store) fetch(ctx context.Context, h auth.Hash) (auth.Token, error) {
	e, err := s.kv.Get(ctx, "hash."+h.String())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return auth.Token{}, fmt.Errorf("token by hash: %w", auth.ErrNotFound)
	}
	if err != nil {
		return auth.Token{}, fmt.Errorf("token by hash: %w", err)
	}
	if err := s.apply(e); err != nil {
		return auth.Token{}, fmt.Errorf("token by hash: %w", err)
	}
	// The watch may have applied a revocation after the read: answer from
	// the cache, which holds the latest of both.
	s.mu.RLock()
	t, ok := s.byHash[h]
	s.mu.RUnlock()
	if !ok {
		return auth.Token{}, fmt.Errorf("token by hash: %w", auth.ErrNotFound)
	}
	return t, nil
}

// ByID returns the token with id, or auth.ErrNotFound.
func (s *Store) ByID(ctx context.Context, id string) (auth.Token, error) {
	s.mu.RLock()
	h, ok := s.byID[id]
	t := s.byHash[h]
	s.mu.RUnlock()
	if ok {
		return t, nil
	}
	if !validID(id) {
		return auth.Token{}, fmt.Errorf("token %q: %w", id, auth.ErrNotFound)
	}
	e, err := s.kv.Get(ctx, "id."+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return auth.Token{}, fmt.Errorf("token %s: %w", id, auth.ErrNotFound)
	}
	if err != nil {
		return auth.Token{}, fmt.Errorf("token %s: %w", id, err)
	}
	if err := h.UnmarshalText(e.Value()); err != nil {
		return auth.Token{}, fmt.Errorf("token %s: %w: %w", id, ErrCorrupt, err)
	}
	t, err = s.fetch(ctx, h)
	if err != nil {
		return auth.Token{}, fmt.Errorf("token %s: %w", id, err)
	}
	return t, nil
}

// Len returns how many tokens the store holds, as far as the watch has
// delivered them.
func (s *Store) Len(context.Context) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byHash), nil
}

// Revoke deletes the token with id from the bucket: its hash key, then its
// id key. An unknown id, or one revoked already, is auth.ErrNotFound; the
// only operator token on the server is auth.ErrLastOperator. This process
// refuses the token as soon as Revoke returns, the others once their watch
// delivers the delete. With Config.Sync it returns nil only once the
// deletes are on disk.
func (s *Store) Revoke(ctx context.Context, id string) error {
	t, err := s.ByID(ctx, id)
	if err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	if t.Role == auth.Operator {
		ok, err := s.otherOperator(ctx, id)
		if err != nil {
			return fmt.Errorf("revoke token %s: %w", id, err)
		}
		if !ok {
			return fmt.Errorf("revoke token %s: %w", id, auth.ErrLastOperator)
		}
	}
	hashKey := "hash." + t.Hash.String()
	e, err := s.kv.Get(ctx, hashKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("revoke token %s: %w", id, auth.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	if err := s.kv.Delete(ctx, hashKey, jetstream.LastRevision(e.Revision())); err != nil {
		if wrongLastRevision(err) {
			// Revoked (or put back) by another process in between.
			return fmt.Errorf("revoke token %s: changed meanwhile: %w", id, auth.ErrNotFound)
		}
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	s.mu.Lock()
	// The delete marker's revision is above e's: nothing read before it
	// may come back.
	s.forget(t.Hash, e.Revision()+1)
	s.mu.Unlock()
	if t.Role == auth.Operator {
		// Another process may have revoked the other operator tokens
		// meanwhile: check again, and put this one back if it is the last.
		ok, err := s.otherOperator(ctx, id)
		if err == nil && !ok {
			err = auth.ErrLastOperator
		}
		if err != nil {
			rev, rerr := s.kv.Create(ctx, hashKey, e.Value())
			if rerr != nil {
				s.log.Error("token bucket: could not put back an operator token whose revocation was refused", "id", id, "err", rerr)
				return fmt.Errorf("revoke token %s: %w (and putting it back failed: %w)", id, err, rerr)
			}
			s.mu.Lock()
			s.learn(t, rev)
			s.mu.Unlock()
			if serr := s.synced(ctx); serr != nil {
				return fmt.Errorf("revoke token %s: %w (and keeping the token put back failed: %w)", id, err, serr)
			}
			return fmt.Errorf("revoke token %s: %w", id, err)
		}
	}
	// Without its hash key the token is gone; a leftover id key only keeps
	// a random id taken.
	if err := s.kv.Delete(ctx, "id."+id); err != nil {
		s.log.Warn("token bucket: could not delete the id of a revoked token", "id", id, "err", err)
	}
	// One wait covers both deletes: the revocation lasts once Revoke
	// returns nil.
	if err := s.synced(ctx); err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

// otherOperator reports whether the server holds an operator token other
// than id, among the operator tokens the cache knows.
func (s *Store) otherOperator(ctx context.Context, id string) (bool, error) {
	s.mu.RLock()
	var hashes []auth.Hash
	for h, t := range s.byHash {
		if t.Role == auth.Operator && t.ID != id {
			hashes = append(hashes, h)
		}
	}
	s.mu.RUnlock()
	for _, h := range hashes {
		_, err := s.kv.Get(ctx, "hash."+h.String())
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return false, fmt.Errorf("look up operator tokens: %w", err)
		}
	}
	return false, nil
}

// wrongLastRevision reports whether err is the server refusing a write
// whose expected revision of the key is not the last one.
func wrongLastRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Bootstrap is [auth.Bootstrap] made safe for processes starting together
// on an empty bucket: only the one whose Create of [BootstrapKey] succeeds
// mints the first operator token; the others return "", false. A claim
// left by a process that stopped before minting is taken over once it is
// Config.StaleClaim old and the bucket still holds no token.
func (s *Store) Bootstrap(ctx context.Context, random io.Reader, now time.Time) (string, bool, error) {
	secret, created, err := auth.Bootstrap(ctx, claimingStore{s}, random, now)
	if errors.Is(err, errClaimed) {
		return "", false, nil
	}
	return secret, created, err
}

var errClaimed = errors.New("bootstrap claimed by another process")

// claimingStore claims BootstrapKey before putting a token.
type claimingStore struct{ *Store }

func (c claimingStore) Put(ctx context.Context, t auth.Token) error {
	rev, err := c.claim(ctx, t.ID)
	if err != nil {
		return err
	}
	if err := c.Store.Put(ctx, t); err != nil {
		// Release the claim so the next start need not wait for it to go
		// stale.
		if derr := c.kv.Delete(ctx, BootstrapKey, jetstream.LastRevision(rev)); derr != nil {
			c.log.Warn("token bucket: could not release the bootstrap claim", "err", derr)
		}
		return err
	}
	return nil
}

// claim claims BootstrapKey for token id and returns the revision of the
// claim, or errClaimed when another process holds it.
func (s *Store) claim(ctx context.Context, id string) (uint64, error) {
	rev, err := s.kv.Create(ctx, BootstrapKey, []byte(id))
	if err == nil {
		return rev, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("claim bootstrap: %w", err)
	}
	e, err := s.kv.Get(ctx, BootstrapKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, errClaimed // deleted in between: leave it to the next start
	}
	if err != nil {
		return 0, fmt.Errorf("claim bootstrap: %w", err)
	}
	if time.Since(e.Created()) < s.stale {
		return 0, errClaimed
	}
	// The claim is stale: its owner minted nothing, or it would be known
	// by now; take it over, unless a token exists after all.
	if _, err := s.ByID(ctx, string(e.Value())); err == nil {
		return 0, errClaimed
	} else if !errors.Is(err, auth.ErrNotFound) {
		return 0, fmt.Errorf("claim bootstrap: %w", err)
	}
	rev, err = s.kv.Update(ctx, BootstrapKey, []byte(id), e.Revision())
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
			return 0, errClaimed
		}
		return 0, fmt.Errorf("claim bootstrap: %w", err)
	}
	s.log.Warn("token bucket: took over a stale bootstrap claim", "claimed_at", e.Created())
	return rev, nil
}

// validID reports whether id matches [A-Za-z0-9_-]{1,128}, the characters
// a key may hold without separators.
func validID(id string) bool {
	if len(id) < 1 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
