// Package keys keeps the data keys of sealed personal data in EventStoreDB /
// KurrentDB, one stream per user, through EventStore-Client-Go/v4. It
// implements [pii.KeyStore] for the esdb event store backend.
//
// # Streams
//
// The key of id "<account>.<user>" ([pii.KeyID]) lives in the stream
// "pii-key-<account>.<user>" (prefix [DefaultPrefix]). The prefix keeps key
// streams out of the event store's global order: the esdb adapter reads $all
// through a server-side filter on the prefixes "ledger-" and "activity-",
// which no key stream name starts with, so projections and the relay never
// see a key.
//
// A key stream holds one event of type [EventType] whose data is the 32 raw
// key bytes (content type application/octet-stream). Put appends it with the
// expectation NoStream, so the first key stored wins: a racing second Put
// gets a wrong-expected-version answer and reads back the stored key, which
// stays. Get reads the first event.
//
// # Destroying a key
//
// Destroy hard-deletes the stream (a tombstone, TombstoneStream in the
// client): from then on every read and append of the stream fails with
// "stream deleted", which the store reports as [pii.ErrErased], and the
// stream can never be written again, so no later Put can bring a key back.
// A tombstone is refused only on an already tombstoned stream, which
// Destroy treats as done; destroying an id that never had a key tombstones
// its stream too, so a late Put for it fails.
//
// # When the bytes are gone
//
// A tombstone makes the key unreadable through the server at once, but the
// key event stays in the database files until the node's next scavenge
// rewrites the chunk that holds it, and scavenging only rewrites completed
// chunks (256 MB each by default): a key in the chunk being written stays
// on disk until that chunk is full and a scavenge runs after that. Until
// then a read of $all without a filter (the admin UI's stream browser, a
// backup) still shows it. Each node of a cluster has its own copy and must
// be scavenged. Scavenges do not run by themselves; start one on each node
// with the HTTP API (an admin or ops user):
//
//	curl -i -d {} -X POST http://localhost:2113/admin/scavenge -u "admin:changeit"
//
// or from the admin UI's Admin page, or schedule them with the
// Auto-Scavenge feature (KurrentDB 25.0+, licensed). Setting the server
// option AlwaysKeepScavenged makes a scavenge replace a chunk even when it
// saves no space, so a deleted event is really gone from it. See
// docs/esdb.md.
//
// The Store keeps no key in memory: every Get asks the server. Callers cache
// through [pii.Keyring].
package keys

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore/esdb/internal/clients"
	"github.com/licenseledger/ledger/internal/pii"
)

// DefaultPrefix is put before the key id to name its stream unless
// Config.Prefix says otherwise.
const DefaultPrefix = "pii-key-"

// EventType is the type of the one event of a key stream.
const EventType = "DataKeyCreated"

// ErrInvalidID is returned for a key id that cannot name a stream: empty,
// longer than 200 bytes, or holding control characters or whitespace.
var ErrInvalidID = errors.New("keys: invalid key id")

// ErrInvalidKey is returned by Put for a key that is not pii.KeySize bytes.
var ErrInvalidKey = errors.New("keys: invalid key")

// ErrCorrupt is returned when a key stream holds something other than one
// key event.
var ErrCorrupt = errors.New("keys: unexpected event in key stream")

// ErrClosed is returned by every call after Close.
var ErrClosed = errors.New("keys: store closed")

// maxIDLen bounds key ids; real ones are two ids of at most 64 bytes.
const maxIDLen = 200

// maxAttempts bounds Put's append-then-read loop: a stream goes from empty
// to holding a key to tombstoned and never back, so two rounds suffice.
const maxAttempts = 3

// Config configures a Store. The zero value is usable.
type Config struct {
	// Prefix is put before the key id to name its stream; default
	// [DefaultPrefix]. It must not start with "ledger-", "activity-" or
	// "$", so that key streams stay out of the event store's global order
	// and out of the system streams.
	Prefix string
}

// Store is a [pii.KeyStore] on an EventStoreDB node or cluster. It is safe
// for concurrent use, also by several processes on the same database.
//
// Every call returns when its context ends, also while the client waits for
// a connection, which it does without looking at contexts; a client of
// [Open] that gave up after a failed node discovery is replaced by a new
// one.
type Store struct {
	pool   *clients.Pool
	prefix string
}

var _ pii.KeyPutter = (*Store)(nil)

// New returns a Store that uses c, which the caller keeps and closes.
func New(c *esdb.Client, cfg Config) (*Store, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	for _, bad := range []string{"ledger-", "activity-", "$"} {
		if strings.HasPrefix(cfg.Prefix, bad) {
			return nil, fmt.Errorf("keys: stream prefix %q must not start with %q", cfg.Prefix, bad)
		}
	}
	if !validID(cfg.Prefix) {
		return nil, fmt.Errorf("keys: invalid stream prefix %q", cfg.Prefix)
	}
	return &Store{pool: clients.Borrow(c, ErrClosed), prefix: cfg.Prefix}, nil
}

// Open connects to the node or cluster named by connString, an EventStoreDB
// connection string such as "esdb://localhost:2113?tls=false", and returns
// a Store that owns the connection; Close closes it.
func Open(connString string, cfg Config) (*Store, error) {
	conf, err := esdb.ParseConnectionString(connString)
	if err != nil {
		return nil, fmt.Errorf("keys: parse connection string: %w", err)
	}
	s, err := New(nil, cfg)
	if err != nil {
		return nil, err
	}
	if s.pool, err = clients.New(*conf, ErrClosed); err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	return s, nil
}

// Close closes the connection when Open made it, once no call is inside
// it; a Store from New leaves the caller's client open. Later calls return
// [ErrClosed].
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// StreamName returns the name of the stream that holds the key of id.
func (s *Store) StreamName(id string) string { return s.prefix + id }

func (s *Store) stream(id string) (string, error) {
	if !validID(id) {
		return "", fmt.Errorf("%w %q", ErrInvalidID, id)
	}
	return s.StreamName(id), nil
}

// validID reports whether id is 1 to maxIDLen bytes without whitespace or
// control characters.
func validID(id string) bool {
	if id == "" || len(id) > maxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// code returns the client error code of err, or ErrorCodeUnknown.
func code(err error) esdb.ErrorCode {
	var e *esdb.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return esdb.ErrorCodeUnknown
}

// Put stores key under id unless id already has a key, which stays: the
// server accepts only the first append to an empty stream. It returns
// pii.ErrErased when id was destroyed. Putting again after a lost
// acknowledgement is safe.
func (s *Store) Put(ctx context.Context, id string, key []byte) error {
	_, err := s.PutNew(ctx, id, key)
	return err
}

// PutNew is Put that also reports whether this call stored key: true only
// when the server accepted its append to the empty stream, false (with a
// nil error) when the stream already held a key, which stays.
func (s *Store) PutNew(ctx context.Context, id string, key []byte) (bool, error) {
	name, err := s.stream(id)
	if err != nil {
		return false, fmt.Errorf("put key: %w", err)
	}
	if len(key) != pii.KeySize {
		return false, fmt.Errorf("put key %s: %w: %d bytes, want %d", id, ErrInvalidKey, len(key), pii.KeySize)
	}
	ev := esdb.EventData{
		EventID:     uuid.New(),
		EventType:   EventType,
		ContentType: esdb.ContentTypeBinary,
		Data:        key,
	}
	for range maxAttempts {
		var cn *clients.Conn
		_, cn, err = clients.Start(ctx, s.pool, func(c *esdb.Client) (*esdb.WriteResult, error) {
			return c.AppendToStream(ctx, name, esdb.AppendToStreamOptions{ExpectedRevision: esdb.NoStream{}}, ev)
		})
		s.pool.Failed(cn, err)
		switch code(err) {
		case esdb.ErrorCodeUnknown:
			if err == nil {
				return true, nil
			}
		case esdb.ErrorCodeStreamDeleted:
			return false, fmt.Errorf("put key %s: %w", id, pii.ErrErased)
		case esdb.ErrorCodeWrongExpectedVersion:
			// A key is stored already (ours after a lost acknowledgement,
			// or a racing writer's): it stays, unless it was destroyed
			// since.
			_, err := s.read(ctx, name)
			switch {
			case err == nil:
				return false, nil
			case errors.Is(err, pii.ErrErased):
				return false, fmt.Errorf("put key %s: %w", id, err)
			case errors.Is(err, pii.ErrNoKey):
				continue // soft-deleted by someone else: append again
			default:
				return false, fmt.Errorf("put key %s: %w", id, err)
			}
		}
		if ctx.Err() != nil {
			return false, fmt.Errorf("put key %s: %w (%w)", id, ctx.Err(), err)
		}
		return false, fmt.Errorf("put key %s: %w", id, err)
	}
	return false, fmt.Errorf("put key %s: stream keeps changing", id)
}

// Get returns the key stored under id, pii.ErrErased when it was destroyed
// or pii.ErrNoKey when none was stored.
func (s *Store) Get(ctx context.Context, id string) ([]byte, error) {
	name, err := s.stream(id)
	if err != nil {
		return nil, fmt.Errorf("get key: %w", err)
	}
	key, err := s.read(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("get key %s: %w", id, err)
	}
	return key, nil
}

// read returns the key in stream name.
func (s *Store) read(ctx context.Context, name string) ([]byte, error) {
	rs, cn, err := clients.Open(ctx, s.pool, func(c *esdb.Client) (*esdb.ReadStream, error) {
		return c.ReadStream(ctx, name, esdb.ReadStreamOptions{From: esdb.Start{}}, 1)
	})
	if err != nil {
		s.pool.Failed(cn, err)
		return nil, readError(err)
	}
	defer cn.Release()
	defer rs.Close()
	ev, err := clients.Recv(ctx, s.pool, cn, rs)
	if errors.Is(err, io.EOF) {
		return nil, pii.ErrNoKey
	}
	if err != nil {
		s.pool.Failed(cn, err)
		return nil, readError(err)
	}
	e := ev.OriginalEvent()
	if e.EventType != EventType || len(e.Data) != pii.KeySize {
		return nil, fmt.Errorf("%w: %s holds an event of type %q with %d bytes", ErrCorrupt, name, e.EventType, len(e.Data))
	}
	return e.Data, nil
}

func readError(err error) error {
	switch code(err) {
	case esdb.ErrorCodeStreamDeleted:
		return fmt.Errorf("%w (%w)", pii.ErrErased, err)
	case esdb.ErrorCodeResourceNotFound:
		return pii.ErrNoKey
	}
	return err
}

// Destroy hard-deletes the key stream of id, so that Get returns
// pii.ErrErased and Put refuses id from now on. Destroying twice, or an id
// without a key, is not an error. The key's bytes leave the database files
// only at the next scavenge of each node (see the package documentation).
func (s *Store) Destroy(ctx context.Context, id string) error {
	name, err := s.stream(id)
	if err != nil {
		return fmt.Errorf("destroy key: %w", err)
	}
	_, cn, err := clients.Start(ctx, s.pool, func(c *esdb.Client) (*esdb.DeleteResult, error) {
		return c.TombstoneStream(ctx, name, esdb.TombstoneStreamOptions{ExpectedRevision: esdb.Any{}})
	})
	s.pool.Failed(cn, err)
	if err != nil && code(err) != esdb.ErrorCodeStreamDeleted {
		return fmt.Errorf("destroy key %s: %w", id, err)
	}
	return nil
}
