// Package keys keeps the data keys of sealed personal data in NATS
// JetStream streams, so that they survive restarts and can be destroyed for
// good. It implements [pii.KeyStore].
//
// # Stream layout
//
// [Shards] file-backed streams, "LEDGER_KEYS_00" to "LEDGER_KEYS_07" by
// default ([ShardStream]), with the subjects
// "<prefix>.<shard>.<account>.<user>" (default prefix "keys", shard "00"
// to "07", [ShardPrefix]). The shard of a key id "<account>.<user>" is the
// 32-bit FNV-1a hash of the id modulo [Shards]: every process finds a key
// in the same stream without asking anyone. A subject holds at most two
// messages, in this order:
//
//   - the key: the 32 raw key bytes as the body, published with the
//     expectation that the subject is empty
//     (Nats-Expected-Last-Subject-Sequence: 0), so the first key stored
//     wins and a racing second Put is refused by the server;
//   - the tombstone: an empty body with the header [TombstoneHeader] that
//     holds the sequence of the key it destroys ("0" when there was none),
//     published with the expectation that the key is still the last
//     message of the subject.
//
// The shards are there to make erasures cheaper (below): an erasure
// rewrites a block of one shard, which holds an eighth of the keys.
//
// The keys stored before the shards, in the single-stream layout (one
// stream "LEDGER_KEYS", subjects "<prefix>.<account>.<user>"), stay where
// they are. When that stream exists, Open finds it (it never creates it)
// and the Store reads it as a fallback: an id whose subject there holds a
// message lives there for good (its key is read there, a Put keeps it as
// the first key, Destroy writes the tombstone and erases the key there,
// Open finishes its unfinished erasures), and any other id lives in its
// shard. Nothing writes a new subject of the old stream, and its subjects
// never go empty (a key is erased only after its tombstone is stored), so
// an id never moves between the two and two processes agree on where it
// is. Old keys were not migrated into the shards at Open: the old copies
// would have to go, by one erasure each (a rewrite of a block of up to
// 4 MB per key: minutes at 100,000 keys, at every process's start until
// done) or by deleting the old stream, which is safe only once no other
// process sharing the server reads or destroys keys in it. A process that
// destroys a key in the old stream while another copies that key into its
// shard would leave the copy alive, so a migration would need a lock
// across the processes, which the store has not. The fallback costs one
// more read for a Put, and for a Get or Destroy of an id without a message
// in its shard, while the old stream exists; a key of the old stream
// still costs the rewrite of an old-stream block when it is destroyed,
// and that stream no longer grows. All processes sharing the server must
// run the shard layout: one still writing new keys to the old stream
// could store a second key for an id that has one in its shard.
//
// The server stores the expectation headers with the message
// (Nats-Expected-Stream and Nats-Expected-Last-Subject-Sequence, the
// per-subject form that does not repeat the subject): they are most of a
// record's size, and the size of the blocks an erasure rewrites.
//
// Get reads the last message of the subject: a tombstone means
// [pii.ErrErased], no message [pii.ErrNoKey].
//
// # Erasure
//
// Destroy writes the tombstone, so that from then on the id reads as
// destroyed in every process, and queues the key message for erasure: a
// background eraser owned by the Store deletes it with erasure (the
// JetStream message-delete API without no_erase, which is
// [jetstream.Stream.SecureDeleteMsg]). The erasure is kept off the caller's
// path because the filestore pays for it with a rewrite of a whole block
// file (see below). [Store.Flush] waits for the erasures queued so far,
// [Store.Close] drains the queue, and a process that stops before its
// queue is empty leaves subjects holding a key and its tombstone, which
// the next [Open] finds and erases. What the nats-server v2.15 filestore
// does with each way of removing a message (server/filestore.go):
//
//   - EraseMsg calls removeMsg(seq, secure=true); removeMsgFromBlock then
//     calls msgBlock.eraseMsg, which overwrites the whole record (subject,
//     headers, body) in the block's buffer with random bytes, sets the
//     erased bit on the sequence and rewrites the block file through
//     atomicOverwriteFile (a new file, fsynced, renamed over the old one).
//     The bytes are gone from every file at once, whatever the block's
//     size or position. This is what the eraser uses. Its cost is that of
//     writing and fsyncing the block holding the key (and loading it first
//     when it is not cached): up to the block size, which the server
//     chooses when it opens the stream (autoTuneFileStorageBlockSize,
//     dynBlkSize): 8 MB for a limits stream without limits, 4 MB when a
//     per-subject limit is set, and below 4 MB (32 KB) only when MaxBytes
//     or MaxMsgs caps the whole stream to about 128 KB. There is no
//     block-size field in the stream configuration, and the API erases
//     one message per request: erasures of several keys of one block
//     cannot be coalesced into one rewrite. The rewrite holds the store's
//     lock, so reads and writes of the stream, from any process, wait for
//     an erasure in progress; the eraser runs one erasure at a time.
//     Compressed (S2) blocks write a third of the bytes but cost about
//     four times the CPU per erasure at 100,000 keys (BenchmarkDestroy),
//     so the streams stay uncompressed.
//   - RemoveMsg (DeleteMsg, no_erase) calls removeMsg(seq, secure=false):
//     it only writes a delete tombstone and marks the sequence deleted; the
//     record stays in the block file until the block is compacted, which
//     happens inline only for a block that is not the last one and when
//     that saves half of it (shouldCompactInline, over compactMinimum), or
//     later in the sync loop (shouldCompactSync). A small key stream lives
//     in its last block, so the bytes could stay for a long time.
//   - A purge by subject (PurgeEx) removes each message with
//     removeMsgFromBlock(..., secure=false): the same as RemoveMsg. Only
//     a whole-stream purge drops block files.
//   - A per-subject limit removes the oldest message with
//     removeMsgViaLimits, also secure=false, when a message beyond the
//     limit arrives. The stream sets the limit to 2 (a key and its
//     tombstone, the most a subject ever holds) together with
//     DiscardNewPer, so that a third message is refused rather than
//     evicting the key without erasing it; the limit is there because it
//     halves the block size, and so the cost of each erasure.
//
// Limits of that guarantee: the filestore turns erasure off when the
// server encrypts its store at rest (removeMsg: "If in encrypted mode
// negate secure rewrite here"), where the old block's bytes are ciphertext
// under the server's key; a replicated stream (Replicas > 1) also holds
// the published key in its Raft log until that log is compacted after a
// snapshot; and the filesystem may keep the freed blocks of the replaced
// file on the device until they are reused. The guarantee is that no file
// of the data directory holds the key, not that no disk sector does.
//
// # Cost of an erasure, and the number of shards
//
// An erasure writes and fsyncs the whole current content of the block
// holding the key, and loads it first when it is not cached: with K keys
// of about 190 bytes a record (subject, expectation headers, key,
// framing), about K*190/8 bytes per shard until a shard's block fills at
// 4 MB (about 175,000 keys in all), instead of K*190 bytes in the single
// stream. The shards divide the bytes by 8; they do not bound them below
// 4 MB. Nothing in the server does: blocks under 4 MB go only to streams
// capped at about 128 KB, that is a stream per 650 records and a number of
// streams growing with the keys, and the block size cannot be set
// otherwise (see above). Each erasure also costs a floor of about 0.8 ms
// of CPU whatever the block's size (the requests, a new file created,
// fsynced and renamed, and the tombstone written; BenchmarkDestroy at
// 10,000 keys).
//
// Each shard is a stream of the server, and the count is a trade-off:
// the group syncer of an embedded store (eventstore/jetstream, sync.go)
// stats three files of every stream in every round, and lists and fsyncs
// a stream's msgs directory in every round for 100 ms after it changed,
// which each erasure does (the block file is replaced); Open makes three
// requests per shard; and the server keeps a filestore, its goroutines
// and its per-subject index per stream. With 16 shards the CPU per
// erasure fell little further at the service's sizes (BenchmarkDestroy),
// while the syncer's share grew with the streams. The eraser lets
// erasures gather for a second and runs them stream by stream (eraseDelay)
// so that the directory windows of the shards overlap.
//
// # Permissions
//
// The shard streams live in the service's account like the single
// stream; the service's user has every right there and needs no new
// grant. The downstream identity has its own account and gets nothing of
// them (eventstore/jetstream, auth.go, TestDownstreamCannotWrite).
//
// A Destroy whose erasure did not run leaves a subject with two messages;
// Open queues those erasures, and so does the next Destroy of the same id.
//
// The Store keeps no key in memory: every Get asks the server. Callers
// cache through [pii.Keyring].
package keys

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	storejs "github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/eventstore/jetstream/internal/reply"
	"github.com/licenseledger/ledger/internal/pii"
)

// DefaultStream is the name of the key stream of the single-stream
// layout, and the first part of the names of the shard streams, unless
// Config.Stream says otherwise.
const DefaultStream = "LEDGER_KEYS"

// DefaultSubjectPrefix is the first token(s) of the key subjects unless
// Config.SubjectPrefix says otherwise.
const DefaultSubjectPrefix = "keys"

// Shards is the number of shard streams the keys are spread over. It is
// part of the layout: a key id's shard is its hash modulo Shards, so
// changing it would lose every key.
const Shards = 8

// TombstoneHeader marks the message that destroys a key. Its value is the
// stream sequence of the key message it destroys, "0" when there was none.
const TombstoneHeader = "Ledger-Key-Destroyed"

// maxAttempts bounds the read-and-retry loops of Put and Destroy. Each
// retry follows a write by someone else, and a subject takes at most two
// writes, so a few attempts always suffice.
const maxAttempts = 5

// ErrInvalidID is returned when a key id is not "<account>.<user>" with an
// account id matching [a-z0-9][a-z0-9_-]{0,62} and a user id matching
// [A-Za-z0-9][A-Za-z0-9_-]{0,63}: the id becomes two subject tokens, and
// nothing else may.
var ErrInvalidID = errors.New("keys: invalid key id")

// ErrInvalidKey is returned by Put for a key that is not pii.KeySize bytes.
var ErrInvalidKey = errors.New("keys: invalid key")

// ErrCorrupt is returned when a message of the key stream is neither a key
// nor a tombstone.
var ErrCorrupt = errors.New("keys: unexpected message in key stream")

// Config configures a Store. The zero value is usable.
type Config struct {
	// Stream names the streams: the shard streams are named
	// "<Stream>_00" to "<Stream>_07", and the stream of the single-stream
	// layout, read for the keys stored before the shards, is Stream
	// itself; default [DefaultStream].
	Stream string
	// SubjectPrefix is put before "<shard>.<account>.<user>" in the
	// subjects of the shard streams, and before "<account>.<user>" in
	// those of the single-stream layout; one or more dot-separated tokens
	// without wildcards. Default [DefaultSubjectPrefix].
	SubjectPrefix string
	// Replicas is the number of copies of the streams in a cluster;
	// default 1.
	Replicas int
	// Logger receives notices about finished erasures; nil discards them.
	// No key is ever logged.
	Logger *slog.Logger
	// Sync, when set, is called after a write the server acknowledged and
	// before Put or Destroy returns, and after erasures before Flush or
	// Close returns and whenever the eraser's queue empties; it returns
	// once that write, or erasure, is on disk. [storejs.Store.Sync] is the one for a store on the same
	// embedded server when that server does not sync every write (fsync
	// durability by group sync). Nil: an acknowledged write is as durable
	// as the server makes it.
	Sync func(context.Context) error

	// stream, when set, adjusts the stream configurations before they are
	// applied; benchmarks compare configurations with it.
	stream func(*jetstream.StreamConfig)
	// shards, when not 0, replaces [Shards]; benchmarks compare counts.
	shards int
	// single stores new keys in the single-stream layout, as the Store did
	// before the shards; tests make keys of that layout with it and
	// benchmarks compare it.
	single bool
	// paused starts the eraser paused; for tests.
	paused bool
}

// part is one stream of the key store: a shard stream, or the stream of
// the single-stream layout.
type part struct {
	stream jetstream.Stream
	name   string
	prefix string // subjects are prefix + "." + <account> + "." + <user>
}

// subject returns the subject of the key of account and user in p.
func (p *part) subject(account, user string) string {
	return p.prefix + "." + account + "." + user
}

// Store is a [pii.KeyStore] on JetStream streams. It is safe for
// concurrent use, also by several processes on the same streams. Close it
// to let it finish the erasures it queued.
type Store struct {
	js     jetstream.JetStream
	boxes  *reply.Boxes // reply inboxes of the key and tombstone writes
	shards []*part
	// legacy is the stream of the single-stream layout when it exists and
	// the Store writes new keys to the shards: the keys stored in it
	// before stay there, and so do their tombstones and erasures.
	legacy *part
	log    *slog.Logger
	er     *eraser
	sync   func(context.Context) error // nil: the server's acknowledgement is enough

	// put holds the sequence of each key this Store stored (PutNew that
	// reported true), by id, until Destroy takes it (at most maxPut): a
	// destroy of such a key writes its tombstone expecting that sequence
	// without reading the subject first. Another writer's tombstone since
	// makes the server refuse the expectation, and Destroy then reads the
	// subject as for any other key.
	putMu sync.Mutex
	put   map[string]uint64
}

// maxPut bounds the keys whose sequence a Store remembers.
const maxPut = 1 << 16

// remember keeps seq as the sequence of the key of id this Store stored.
func (s *Store) remember(id string, seq uint64) {
	s.putMu.Lock()
	defer s.putMu.Unlock()
	if len(s.put) < maxPut {
		s.put[id] = seq
	}
}

// takePut returns and forgets the sequence of the key of id this Store
// stored, if it remembers one.
func (s *Store) takePut(id string) (uint64, bool) {
	s.putMu.Lock()
	defer s.putMu.Unlock()
	seq, ok := s.put[id]
	delete(s.put, id)
	return seq, ok
}

var _ pii.KeyPutter = (*Store)(nil)

// Open creates the shard streams, or updates them to the configuration
// they need, finds the stream of the single-stream layout if there is
// one, starts the Store's eraser and queues the erasure of every key that
// was destroyed but not erased (by a process that stopped before its
// eraser got to it). Close the Store when done with it.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = DefaultSubjectPrefix
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.shards == 0 {
		cfg.shards = Shards
	}
	if !validStreamName(cfg.Stream) {
		return nil, fmt.Errorf("keys: invalid stream name %q", cfg.Stream)
	}
	for tok := range strings.SplitSeq(cfg.SubjectPrefix, ".") {
		if !validToken(tok) {
			return nil, fmt.Errorf("keys: invalid subject prefix %q", cfg.SubjectPrefix)
		}
	}
	if cfg.Replicas < 1 {
		return nil, fmt.Errorf("keys: invalid replicas %d", cfg.Replicas)
	}
	if cfg.shards < 1 || cfg.shards > 100 {
		return nil, fmt.Errorf("keys: invalid shard count %d", cfg.shards)
	}
	s := &Store{js: js, boxes: reply.New(js.Conn()), log: cfg.Logger, sync: cfg.Sync, put: make(map[string]uint64)}
	if cfg.single {
		p, err := ensurePart(ctx, js, cfg, cfg.Stream, cfg.SubjectPrefix)
		if err != nil {
			return nil, err
		}
		s.shards = []*part{p}
	} else {
		for i := range cfg.shards {
			p, err := ensurePart(ctx, js, cfg, ShardStream(cfg.Stream, i), ShardPrefix(cfg.SubjectPrefix, i))
			if err != nil {
				return nil, err
			}
			s.shards = append(s.shards, p)
		}
		st, err := js.Stream(ctx, cfg.Stream)
		switch {
		case err == nil:
			s.legacy = &part{stream: st, name: cfg.Stream, prefix: cfg.SubjectPrefix}
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return nil, fmt.Errorf("keys: stream %s: %w", cfg.Stream, err)
		}
	}
	s.er = newEraser(s, cfg.paused)
	for _, p := range s.parts() {
		if err := s.finishErasures(ctx, p); err != nil {
			s.er.abort()
			return nil, err
		}
	}
	return s, nil
}

// ShardStream returns the name of shard i of the key streams named
// stream ([Config.Stream]).
func ShardStream(stream string, i int) string {
	return fmt.Sprintf("%s_%02d", stream, i)
}

// ShardPrefix returns the subject prefix, before "<account>.<user>", of
// shard i of the key streams with subject prefix prefix
// ([Config.SubjectPrefix]).
func ShardPrefix(prefix string, i int) string {
	return fmt.Sprintf("%s.%02d", prefix, i)
}

// ensurePart creates or updates the key stream name with the subjects
// prefix.*.*.
func ensurePart(ctx context.Context, js jetstream.JetStream, cfg Config, name, prefix string) (*part, error) {
	scfg := jetstream.StreamConfig{
		Name:        name,
		Description: "Data keys of sealed personal data; a destroyed key is erased.",
		Subjects:    []string{prefix + ".*.*"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Retention:   jetstream.LimitsPolicy,
		MaxMsgs:     -1,
		MaxBytes:    -1,
		// A subject holds a key and its tombstone at most; a third message
		// is refused, never evicting the key (eviction does not erase, see
		// the package documentation). The limit makes the server choose
		// 4 MB blocks instead of 8 MB; the expectation header, not the
		// limit, keeps the first key.
		MaxMsgsPerSubject:    2,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		// Deletes must stay allowed (erasure is a delete); purges, which
		// would leave the bytes on disk, are refused.
		DenyPurge: true,
		// Compressed blocks would make every erasure compress its block
		// and every load decompress it.
		Compression: jetstream.NoCompression,
	}
	if cfg.stream != nil {
		cfg.stream(&scfg)
	}
	st, err := storejs.EnsureStream(ctx, js, scfg)
	if err != nil {
		return nil, fmt.Errorf("keys: create stream %s: %w", name, err)
	}
	return &part{stream: st, name: name, prefix: prefix}, nil
}

// parts returns the streams of s: the shards, then the stream of the
// single-stream layout if s reads one.
func (s *Store) parts() []*part {
	if s.legacy == nil {
		return s.shards
	}
	return append(slices.Clip(s.shards), s.legacy)
}

// Flush waits until every erasure queued so far, by Destroy or by Open, is
// done and, with [Config.Sync], synced: once it returns nil, the keys
// destroyed before the call are in no file of the server, and a power loss
// cannot bring them back (the server fsyncs the rewritten block file but
// not the directory it renames it in; Config.Sync does). It returns ctx's
// error when ctx ends first, the error of Config.Sync, and the errors of
// erasures given up since the last Flush (a tombstone naming a message of
// another subject, say), which the log reports too.
func (s *Store) Flush(ctx context.Context) error {
	return s.er.flush(ctx)
}

// Close finishes and syncs the queued erasures, as Flush does, and stops
// the eraser. When ctx ends first, it stops the eraser anyway and returns
// ctx's error: the keys left read as destroyed, and the next Open queues
// their erasure again. After Close, Get and Put still work and Destroy
// erases (and syncs) before it returns. Closing twice is not an error.
func (s *Store) Close(ctx context.Context) error {
	err := s.er.close(ctx)
	s.boxes.Close()
	return err
}

// StreamOf returns the name of the stream that holds, or would hold, the
// key of id: its shard, or the stream of the single-stream layout when
// that holds a message for id.
func (s *Store) StreamOf(ctx context.Context, id string) (string, error) {
	p, _, _, err := s.locate(ctx, id)
	if err != nil {
		return "", err
	}
	return p.name, nil
}

// shard returns the shard stream of the key of account and user.
func (s *Store) shard(account, user string) *part {
	if len(s.shards) == 1 {
		return s.shards[0]
	}
	h := fnv.New32a()
	h.Write([]byte(account))
	h.Write([]byte{'.'})
	h.Write([]byte(user))
	return s.shards[h.Sum32()%uint32(len(s.shards))]
}

// locate returns the stream that holds the key of id, the key's subject
// there and the last message of that subject (nil when there is none). A
// key id lives in the stream of the single-stream layout when that stream
// holds a message for it, which then stays (nothing writes a subject of
// that stream anew, and its tombstones stay); else in its shard.
func (s *Store) locate(ctx context.Context, id string) (*part, string, *jetstream.RawStreamMsg, error) {
	account, user, err := splitID(id)
	if err != nil {
		return nil, "", nil, err
	}
	p := s.shard(account, user)
	subj := p.subject(account, user)
	last, err := p.last(ctx, subj)
	if err != nil || last != nil || s.legacy == nil {
		return p, subj, last, err
	}
	lsubj := s.legacy.subject(account, user)
	llast, err := s.legacyLast(ctx, lsubj)
	if err != nil || llast == nil {
		return p, subj, nil, err
	}
	return s.legacy, lsubj, llast, nil
}

// legacyLast returns the last message on subj in the stream of the
// single-stream layout; none when an operator deleted that stream.
func (s *Store) legacyLast(ctx context.Context, subj string) (*jetstream.RawStreamMsg, error) {
	msg, err := s.legacy.last(ctx, subj)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	return msg, err
}

// Put stores key under id unless id already has a key, which stays: the
// server accepts only the first key message of a subject. It returns
// pii.ErrErased when id was destroyed. Putting again after a lost
// acknowledgement is safe. With Config.Sync it returns nil only once the
// key stored under id is on disk.
func (s *Store) Put(ctx context.Context, id string, key []byte) error {
	_, err := s.PutNew(ctx, id, key)
	return err
}

// PutNew is Put that also reports whether this call stored key: true only
// when the server accepted its message as the subject's first, false
// (with a nil error) when the subject already held a key, which stays.
func (s *Store) PutNew(ctx context.Context, id string, key []byte) (bool, error) {
	account, user, err := splitID(id)
	if err != nil {
		return false, fmt.Errorf("put key %s: %w", id, err)
	}
	if len(key) != pii.KeySize {
		return false, fmt.Errorf("put key %s: %w: %d bytes, want %d", id, ErrInvalidKey, len(key), pii.KeySize)
	}
	if s.legacy != nil {
		// A key or tombstone stored in the single-stream layout stays the
		// id's: the first key wins, and a destroyed id stays destroyed.
		last, err := s.legacyLast(ctx, s.legacy.subject(account, user))
		if err != nil {
			return false, fmt.Errorf("put key %s: %w", id, err)
		}
		if last != nil {
			return false, s.existing(ctx, id, last)
		}
	}
	p := s.shard(account, user)
	subj := p.subject(account, user)
	for range maxAttempts {
		seq, err := s.publish(ctx, p, subj, key, 0, nil)
		if err == nil {
			// The subject held nothing: this key is its first message.
			s.remember(id, seq)
			return true, s.synced(ctx, "put key", id)
		}
		if !isWrongLastSeq(err) {
			return false, fmt.Errorf("put key %s: %w", id, err)
		}
		// The subject has a message already: a key (first one wins, keep
		// it) or a tombstone.
		last, err := p.last(ctx, subj)
		if err != nil {
			return false, fmt.Errorf("put key %s: %w", id, err)
		}
		if last == nil {
			continue // gone again in between; try once more
		}
		return false, s.existing(ctx, id, last)
	}
	return false, fmt.Errorf("put key %s: subject keeps changing", id)
}

// existing ends a Put of id that found last on its subject.
func (s *Store) existing(ctx context.Context, id string, last *jetstream.RawStreamMsg) error {
	if isTombstone(last) {
		return fmt.Errorf("put key %s: %w", id, pii.ErrErased)
	}
	// Another writer's key, which may not be on disk yet.
	return s.synced(ctx, "put key", id)
}

// Get returns the key stored under id, pii.ErrErased when it was destroyed
// or pii.ErrNoKey when none was stored.
func (s *Store) Get(ctx context.Context, id string) ([]byte, error) {
	_, _, last, err := s.locate(ctx, id)
	switch {
	case err != nil:
		return nil, fmt.Errorf("get key %s: %w", id, err)
	case last == nil:
		return nil, fmt.Errorf("get key %s: %w", id, pii.ErrNoKey)
	case isTombstone(last):
		return nil, fmt.Errorf("get key %s: %w", id, pii.ErrErased)
	}
	return last.Data, nil
}

// Destroy marks id destroyed, so that Get returns pii.ErrErased and Put
// refuses it from now on in every process, and queues the erasure of the
// key's bytes from the server's files; [Store.Flush] waits for it.
// Destroying twice, or an id without a key, is not an error; a second
// Destroy queues again an erasure the first one left undone. With
// Config.Sync it returns nil only once the tombstone is on disk. A key
// stored in the single-stream layout gets its tombstone and erasure there.
func (s *Store) Destroy(ctx context.Context, id string) error {
	putSeq, put := s.takePut(id)
	for range maxAttempts {
		var p *part
		var subj string
		var last *jetstream.RawStreamMsg
		var err error
		var keySeq uint64
		if put {
			// This Store stored the key at putSeq, in its shard: expect
			// it there rather than read it (see Store.put).
			put = false
			account, user, err := splitID(id)
			if err != nil {
				return fmt.Errorf("destroy key %s: %w", id, err)
			}
			p = s.shard(account, user)
			subj, keySeq = p.subject(account, user), putSeq
		} else if p, subj, last, err = s.locate(ctx, id); err != nil {
			return fmt.Errorf("destroy key %s: %w", id, err)
		}
		if last != nil && isTombstone(last) {
			seq, err := destroyedSeq(last)
			if err != nil {
				return fmt.Errorf("destroy key %s: %w", id, err)
			}
			if seq != 0 {
				// Erased already, most likely; the eraser looks.
				if err := s.er.enqueue(ctx, erasure{p: p, subject: subj, seq: seq, check: true}); err != nil {
					return fmt.Errorf("destroy key %s: %w", id, err)
				}
			}
			// Another writer's tombstone, which may not be on disk yet.
			return s.synced(ctx, "destroy key", id)
		}
		if last != nil {
			keySeq = last.Sequence
		}
		_, err = s.publish(ctx, p, subj, nil, keySeq, nats.Header{TombstoneHeader: {strconv.FormatUint(keySeq, 10)}})
		if isWrongLastSeq(err) {
			continue // a Put or another Destroy got in first: look again
		}
		if err != nil {
			return fmt.Errorf("destroy key %s: %w", id, err)
		}
		// The tombstone lasts before the erasure is queued: an erasure
		// that reached the disk without its tombstone would leave a
		// subject whose key reads as missing rather than destroyed.
		if err := s.synced(ctx, "destroy key", id); err != nil {
			return err
		}
		if keySeq != 0 {
			// The expectation held: keySeq is the key of subj.
			if err := s.er.enqueue(ctx, erasure{p: p, subject: subj, seq: keySeq}); err != nil {
				return fmt.Errorf("destroy key %s: %w", id, err)
			}
		}
		s.log.DebugContext(ctx, "data key destroyed", "id", id, "stream", p.name)
		return nil
	}
	return fmt.Errorf("destroy key %s: subject keeps changing", id)
}

// publish writes data with headers hdr (nil: none) on subj of p's
// stream, expecting the last message on subj to be at lastSeq (0: none),
// and returns the sequence it was stored at,
// as the JetStream client's PublishMsg with WithExpectStream(p.name) and
// WithExpectLastSequencePerSubject(lastSeq) does, with the same errors
// and the client's default timeout when ctx has no deadline, but waiting
// on a reply box of the Store's and reading the acknowledgement without
// encoding/json (reply.Boxes.Publish).
func (s *Store) publish(ctx context.Context, p *part, subj string, data []byte, lastSeq uint64, hdr nats.Header) (uint64, error) {
	if hdr == nil {
		hdr = make(nats.Header, 2)
	}
	hdr[jetstream.ExpectedStreamHeader] = []string{p.name}
	hdr[jetstream.ExpectedLastSubjSeqHeader] = []string{strconv.FormatUint(lastSeq, 10)}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.js.Options().DefaultTimeout)
		defer cancel()
	}
	seq, _, err := s.boxes.Publish(ctx, &nats.Msg{Subject: subj, Header: hdr, Data: data})
	return seq, err
}

// synced waits, when the Store was given a Sync, until the writes the
// server acknowledged so far are on disk.
func (s *Store) synced(ctx context.Context, op, id string) error {
	if s.sync == nil {
		return nil
	}
	if err := s.sync(ctx); err != nil {
		return fmt.Errorf("%s %s: %w", op, id, err)
	}
	return nil
}

// finishErasures queues the erasure of the keys of p whose tombstone was
// written but whose erasure did not happen: the subjects that still hold
// two messages. A subject holds one or two messages, so there are such
// subjects only when the stream holds more messages than subjects, which
// one stream info request without details tells; usually there are none.
// Otherwise it finds them in the message counts per subject of one stream
// info request with subject details (paged by the client every 100,000
// subjects), and reads only the subjects found.
func (s *Store) finishErasures(ctx context.Context, p *part) error {
	info, err := p.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("keys: stream %s: %w", p.name, err)
	}
	if info.State.Msgs <= uint64(info.State.NumSubjects) {
		return nil
	}
	info, err = p.stream.Info(ctx, jetstream.WithSubjectFilter(p.prefix+".*.*"))
	if err != nil {
		return fmt.Errorf("keys: stream %s: %w", p.name, err)
	}
	for subj, n := range info.State.Subjects {
		if n < 2 {
			continue
		}
		last, err := p.last(ctx, subj)
		if err != nil {
			return fmt.Errorf("keys: finish erasure on %s: %w", subj, err)
		}
		if last == nil || !isTombstone(last) {
			s.log.WarnContext(ctx, "key subject holds several messages but no tombstone", "subject", subj, "messages", n)
			continue
		}
		seq, err := destroyedSeq(last)
		if err != nil {
			return fmt.Errorf("keys: finish erasure on %s: %w", subj, err)
		}
		if seq == 0 {
			continue
		}
		if err := s.er.enqueue(ctx, erasure{p: p, subject: subj, seq: seq, check: true}); err != nil {
			return fmt.Errorf("keys: finish erasure on %s: %w", subj, err)
		}
		s.log.InfoContext(ctx, "queued the erasure of a destroyed data key", "subject", subj, "stream", p.name)
	}
	return nil
}

// destroyedSeq returns the sequence of the key that tombstone destroys, 0
// when there was none.
func destroyedSeq(tombstone *jetstream.RawStreamMsg) (uint64, error) {
	seq, err := strconv.ParseUint(tombstone.Header.Get(TombstoneHeader), 10, 64)
	if err != nil || seq >= tombstone.Sequence {
		return 0, fmt.Errorf("%w: tombstone %d has header %s %q", ErrCorrupt, tombstone.Sequence,
			TombstoneHeader, tombstone.Header.Get(TombstoneHeader))
	}
	return seq, nil
}

// eraseChecked erases the key e names after checking that it is still
// there and on e's subject, which a tombstone read back from the stream
// must show before its header is trusted.
func (s *Store) eraseChecked(ctx context.Context, e erasure) error {
	msg, err := e.p.stream.GetMsg(ctx, e.seq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil // erased already
	case err != nil:
		return fmt.Errorf("read key %d: %w", e.seq, err)
	case msg.Subject != e.subject:
		return fmt.Errorf("%w: tombstone on %s names message %d on %s", ErrCorrupt,
			e.subject, e.seq, msg.Subject)
	}
	return e.p.erase(ctx, e.seq)
}

// erase deletes the message seq with erasure: the server overwrites its
// record with random bytes and rewrites the block file (filestore
// EraseMsg). A message that is gone already is not an error.
func (p *part) erase(ctx context.Context, seq uint64) error {
	err := p.stream.SecureDeleteMsg(ctx, seq)
	if err == nil {
		return nil
	}
	// The server answers "no message found" for a sequence removed by a
	// racing Destroy; the delete API reports it only as text, so look.
	if _, gerr := p.stream.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
		return nil
	}
	return fmt.Errorf("erase key %d: %w", seq, err)
}

// last returns the last message on subj, nil when there is none, checking
// that it is a key or a tombstone.
func (p *part) last(ctx context.Context, subj string) (*jetstream.RawStreamMsg, error) {
	msg, err := p.stream.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !isTombstone(msg) && len(msg.Data) != pii.KeySize {
		return nil, fmt.Errorf("%w: message %d on %s has %d bytes and no %s header",
			ErrCorrupt, msg.Sequence, subj, len(msg.Data), TombstoneHeader)
	}
	return msg, nil
}

func isTombstone(msg *jetstream.RawStreamMsg) bool {
	return msg.Header != nil && len(msg.Header.Values(TombstoneHeader)) > 0
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// splitID returns the account and user of key id, refusing ids that are
// not "<account>.<user>" with valid ids.
func splitID(id string) (account, user string, err error) {
	account, user, ok := strings.Cut(id, ".")
	if !ok || !validAccount(account) || !validUser(user) {
		return "", "", fmt.Errorf("%w %q: want <account>.<user>, account [a-z0-9][a-z0-9_-]{0,62}, user [A-Za-z0-9][A-Za-z0-9_-]{0,63}",
			ErrInvalidID, id)
	}
	return account, user, nil
}

// validAccount reports whether a matches [a-z0-9][a-z0-9_-]{0,62}.
func validAccount(a string) bool {
	if len(a) < 1 || len(a) > 63 {
		return false
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// validUser reports whether u matches [A-Za-z0-9][A-Za-z0-9_-]{0,63}.
func validUser(u string) bool {
	if len(u) < 1 || len(u) > 64 {
		return false
	}
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// validToken reports whether t is a literal subject token: not empty, no
// wildcard, separator, whitespace or control character.
func validToken(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case c <= ' ', c == 0x7f, c == '.', c == '*', c == '>':
			return false
		}
	}
	return true
}

// validStreamName reports whether n can name a stream: a literal token
// without path separators.
func validStreamName(n string) bool {
	return validToken(n) && !strings.ContainsAny(n, `/\`)
}
