// Package jetstream is the NATS JetStream backend of the event store.
//
// # Layout
//
// All events live in one JetStream stream (default "LEDGER") bound to the
// subjects ledger.> and activity.>. An event of account acme's ledger stream
// has subject ledger.acme.<EventType>; its activities have subject
// activity.acme.ActivityRecorded. Every message body is the event's
// CloudEvents 1.0 structured-mode envelope ([eventstore.CloudEvent]), with
// headers Nats-Msg-Id: the event id (server-side de-duplication), and
// Ledger-Revision: the event's revision in its stream. Sequenced appends
// (below), and an event whose id the server holds for another stream,
// qualify the message id with the stream: "<event id>@<stream>" (readers
// take the event id from the record's body, or strip the suffix). (Messages written
// by earlier versions also carry Content-Type:
// application/cloudevents+json, which no reader needs: 44 bytes an
// event. The published stream's messages carry it, as the contract
// says.) A [eventstore.Position] is the JetStream stream sequence.
//
// # Concurrency and atomicity
//
// An append on the way of most stores carries the JetStream per-subject
// expectation Nats-Expected-Last-Subject-Sequence for the filter
// "<category>.<account>.*": the server refuses it when another event of
// the stream was stored since the sequence the writer knows (error
// 10071, or 10164 on replicated streams), which the store reports as
// [eventstore.ErrConflict]. The store caches, per stream, the revision and
// sequence of its last event, and reloads them from the server on a miss
// or a conflict. Several events are appended as one JetStream atomic batch
// (stream AllowAtomicPublish): all are stored or none. The server checks
// that expectation by loading the last message on the filter's subjects,
// which for an account not written lately means loading (and, on a
// compressed stream, decompressing) the block that holds it.
//
// # Sequenced appends
//
// A store that publishes alone to a stream of one replica (the group sync
// of [Embedded], see [DurabilityFsync]) sequences its appends instead,
// unless [Config.PerSubjectChecks] is set: it checks each append against
// its own view of the stream's head, and has the server check that the
// view is current with expectations the server holds in memory, so that
// no append loads a block. The store predicts the stream's last sequence,
// counting its appends in flight; each append carries
// Nats-Expected-Last-Sequence, that prediction, and, when an append of
// the store is still in flight before it, Nats-Expected-Last-Msg-Id, the
// message id of that append's last event. Sequenced appends always
// qualify their message ids with their stream ("<event id>@<stream>"),
// so that id names one event of one stream. If the server stores an
// append, the message at the predicted sequence before it carries that
// id: it is that event of that stream, stored by an append of the store
// (a retry of one included) checked against the same view, under the
// same rule; by induction the stream is exactly what the store knows plus
// its chain of appends, so the append's check against its stream's head
// (the predicted head, when an append to the same stream is in flight)
// was right. The sequence alone could be met by another writer's message
// stored in place of a refused predecessor; a bare event id by any
// message another writer stores with that id, on any subject, in place of
// it. Appends are written to the connection in the order they take their
// place in the chain, and NATS keeps the order of one connection's
// publishes. An append that falls back to its stream's own expectation
// (below) qualifies its ids the same way, so a retry of it through the
// chain is still de-duplicated.
//
// Any write that is not one of the store's sequenced appends (another
// process, a duplicate that stored nothing, a publish whose answer was
// lost) makes the next sequenced append fail at the server (10071 or
// 10070). The store then waits for its appends in flight to end and
// resyncs: it reads the stream's last sequence and the messages stored
// since the last one it knows exact, each setting its stream's head (or
// dropping it, for a message the store did not write), and the refused
// appends check again; after a few such rounds an append is published
// with its stream's own expectation. An atomic batch is sent only when no
// append is in flight (the server refuses Nats-Expected-Last-Msg-Id in a
// batch and checks the last sequence on its first message only). Reads of
// a stream's head cache it only when it is exact as of the chain: the
// later by sequence of what is known, never one read before a resync.
// After a start or a resync the store knows the stream's last sequence,
// not its last message's id, which no append needs then: the next one
// goes with nothing in flight before it.
//
// Removing messages is not a write the chain sees: deleting the stream's
// last message (nats stream rmm) or purging by subject changes neither
// the stream's last sequence nor its last message id, so the next
// sequenced append is stored, at the revision its stream's head had,
// leaving a gap where the removed event was (the per-subject expectation
// refused it). Removing a message of the ledger breaks its stream's hash
// chain for every reader anyway: remove a record only once a later one
// is stored, and fold the read models again.
//
// The reader takes a message as one the store wrote by the expectation on
// an append's first message, either kind, and by the batch headers on
// the later ones.
//
// # Conditional appends
//
// [Store.AppendIf] appends to one stream of an account on condition that
// the account's other stream is at a given revision. Its first message
// expects the last event over both streams' subjects ("*.<account>.*") to
// be the later of the two heads, which the store knows as a pair: read
// together, or kept by appends checked that way. Once an account has such
// a pair, plain appends to its streams are checked the same way too (and
// published alone), so that the pair stays exact and the next conditional
// append needs no read; when the other stream moved they fall back to
// their own stream's expectation. Conditional appends are not offered on
// replicated streams (see [Store.AppendIf]). A store with sequenced
// appends checks the condition against its view of both heads and
// appends through the chain, which proves the view current: no pair, no
// wildcard expectation.
//
// # Group commit
//
// With fsync durability on a server of its own, [Embedded] runs the server
// without SyncAlways and commits in groups itself: appends are published
// one by one, concurrently (several events as one atomic batch), the
// server write()s each message to its block file before it acknowledges
// it, and Append then waits for the next sync round, which fsyncs the
// stream files written since the previous round. One round serves every
// append acknowledged before it started; appends acknowledged during a
// round wait for the next one. See [DurabilityFsync].
//
// On a server that syncs every write itself (SyncAlways: [StartServer], a
// cluster, an external server so configured) a store opened by [Connect]
// or [Open] coalesces concurrent appends to different streams into one
// atomic batch of up to [Config.MaxBatch] events, each stream keeping its
// own expectation, so that they share the server's fsync. One goroutine
// fills the open batch: it sends each append's messages to the server as
// soon as the append arrives, so the server stages them while earlier
// batches commit, and it ends the batch with an end-of-batch commit marker
// as soon as fewer than [Config.Committers] commits are in flight (or the
// batch is full). A batch of a single append is published on its own,
// which costs the server less. One wrong expectation rejects a whole
// batch, so when a coalesced batch fails every append in it is retried on
// its own and gets its own answer.
//
// The revision cache is filled by every append this process makes; an
// append to a stream the caller believes new ([eventstore.NoStream])
// expects no event without asking the server, so only a stream written
// elsewhere, or a conflict, costs a read of its last event.
//
// # Constructors
//
// [Embedded] starts nats-server in this process ([StartServer]) and opens
// the store over an in-process connection; [Connect] dials an external NATS
// server or cluster; [Open] works over a connection the caller owns. All
// three share the code above the connection.
package jetstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream/internal/reply"
)

var (
	_ eventstore.Store               = (*Store)(nil)
	_ eventstore.ConditionalAppender = (*Store)(nil)
)

// Header names the store writes on every message.
const (
	// RevisionHeader carries the event's revision in its stream.
	RevisionHeader = "Ledger-Revision"
	// MetadataHeader carries metadata that is an object without members
	// ("{}"), which the envelope cannot show, so that it reads back as
	// given.
	MetadataHeader = "Ledger-Metadata"
)

// Config configures a [Store]. The zero value is usable.
type Config struct {
	// Stream is the JetStream stream's name; default "LEDGER".
	Stream string
	// Replicas is the stream's replica count: 1 (default) on a single
	// server, 3 on a cluster.
	Replicas int
	// Duplicates is the server's de-duplication window for Nats-Msg-Id;
	// default 2 minutes. Retries with [eventstore.Exact] or
	// [eventstore.NoStream], and conditional appends, are recognised at
	// any age (the server checks their expectation first, and the store
	// then finds the events where the retry expected them); a retry with
	// [eventstore.Any] only within this window.
	//
	// The window also bounds what a restart costs: the server rebuilds its
	// table of message ids by reading every message stored within the
	// window before it accepts connections (about 2-3.5 us a message
	// here, so 2-3.5 s for 1,000,000 events written in the last two
	// minutes, 50 ms to recover the same stream once they are older).
	// Writers that never append with [eventstore.Any] lose nothing with
	// [ShortDuplicates]. The window the server applies at a start is the
	// one the stream was last opened with.
	Duplicates time.Duration
	// MaxBatch is the largest number of events the store coalesces from
	// concurrent appends into one atomic batch; default 1,000 (the server's
	// limit), 1 turns coalescing off. The server stages and checks a batch
	// message by message but syncs it once, so larger batches pay off on
	// a server with SyncAlways. A store opened by [Embedded] with fsync
	// durability never coalesces: it shares its own fsyncs instead.
	MaxBatch int
	// Compress has the server compress the stream's blocks with S2 once
	// they are full (the block being written stays as it is): 3.4-4.3
	// times fewer bytes on disk for the ledger's events; licensed sets it
	// by default (--compress all). It costs the CPU of compressing each
	// block once (in a goroutine of the server, about 1.5 us per event)
	// and of decompressing a whole block whenever a read needs a message
	// of it that the server has not cached: ReadAll's read of the block
	// files decompresses each block once (about 0.5 us per event more), a
	// read of one account's streams every block holding one of its
	// events, and an append checked against a per-subject expectation
	// (Nats-Expected-Last-Subject-Sequence) the block holding the
	// stream's last event. Changing it on an existing stream updates the
	// stream's configuration in place; blocks already written keep their
	// form (each block says whether it is compressed, and reads handle
	// both), and the server applies the change to the blocks it fills from
	// its next start on, once it loads the stream with the new setting.
	Compress bool
	// LargeBlocks keeps the server's own block size for the stream, 8 MB,
	// instead of the 4 MB the store sets by default. The server takes a
	// stream's block size from its limits when it loads the stream (it is
	// not part of the configuration): a per-subject message limit gives
	// 4 MB blocks, so the store sets one no subject can reach
	// ([UnreachablePerSubject]). Smaller blocks halve what the server loads
	// to check an append's per-account expectation when the account's last
	// event lies in a block it does not hold. Changing it on an existing
	// stream updates the configuration in place; the server writes blocks
	// of the new size from its next start on, and those already written
	// keep theirs.
	LargeBlocks bool
	// PerSubjectChecks has every append carry its stream's own
	// expectation (Nats-Expected-Last-Subject-Sequence), which the server
	// checks by loading the last message of the stream's subjects, even
	// on a store that could sequence its appends (see the package doc,
	// "Sequenced appends"). For comparisons and for stores that share the
	// stream with other writers all the time.
	PerSubjectChecks bool
	// Committers is the number of coalesced batches committing at once
	// while the next one fills; default 2.
	Committers int
	// Logger receives the store's logs; default slog.Default().
	Logger *slog.Logger
}

// ShortDuplicates is a de-duplication window for stores whose writers
// name the revision they expect on every append (the service's do): a
// restart right after a burst of writes then rereads at most the last
// second of them, not two minutes' worth, and no retry they make depends
// on the window (see [Config.Duplicates]).
const ShortDuplicates = time.Second

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = "LEDGER"
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Duplicates <= 0 {
		c.Duplicates = 2 * time.Minute
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 1000
	}
	if c.MaxBatch > 1000 {
		c.MaxBatch = 1000
	}
	if c.Committers <= 0 {
		c.Committers = 2
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// EnsureStream creates the stream cfg describes or updates it to cfg,
// except that it never lowers the stream's replica count: an operator who
// provisioned a stream with more replicas than cfg asks for keeps them.
// Such a stream, replicated, gets no direct gets, whatever cfg says for
// its fewer replicas: followers answer them, possibly without the last
// writes.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	st, err := js.Stream(ctx, cfg.Name)
	switch {
	case err == nil:
		if cur := st.CachedInfo().Config.Replicas; cur > cfg.Replicas {
			cfg.Replicas = cur
			if cur > 1 {
				cfg.AllowDirect = false
			}
		}
	case errors.Is(err, jetstream.ErrStreamNotFound):
	default:
		// Not knowing the stream's replicas, updating it could scale it
		// down: give up (callers retry what is transient).
		return nil, err
	}
	return js.CreateOrUpdateStream(ctx, cfg)
}

// StreamConfig returns the JetStream stream configuration the store creates
// or updates.
func StreamConfig(cfg Config) jetstream.StreamConfig {
	cfg.setDefaults()
	return jetstream.StreamConfig{
		Name:               cfg.Stream,
		Description:        "License ledger events (CloudEvents 1.0, structured mode)",
		Subjects:           []string{string(eventstore.Ledger) + ".>", string(eventstore.Activity) + ".>"},
		Retention:          jetstream.LimitsPolicy,
		Storage:            jetstream.FileStorage,
		Replicas:           cfg.Replicas,
		Duplicates:         cfg.Duplicates,
		AllowAtomicPublish: true,
		Compression:        compression(cfg.Compress),
		MaxMsgsPerSubject:  perSubject(cfg.LargeBlocks),
		// Reads for the revision cache must see the leader's state. On a
		// single replica the only server is the leader, so message gets go
		// the direct way (served on the reading connection's own server
		// goroutine, no JetStream API queue, no JSON): as exact and several
		// times cheaper. A replicated stream keeps them off, since followers
		// answer direct gets and may not have applied the last write. An
		// existing stream is updated to this setting on start.
		AllowDirect: cfg.Replicas == 1,
	}
}

// UnreachablePerSubject is the per-subject message limit the store sets on
// its stream for 4 MB blocks (see [Config.LargeBlocks]): the largest the
// server accepts. nats-server (v2.15.2, fileStore.storeRawMsg) removes a
// subject's oldest message only when the subject's count, the message
// being stored included, exceeds the limit, and at a start or a change of
// the limit (enforceMsgPerSubjectLimit) only for subjects whose count
// exceeds it: a count of messages in one stream cannot exceed
// math.MaxInt64, so no event is ever removed by it. The stream keeps
// discarding old messages (never refusing new ones on this limit: that
// takes DiscardNewPer, which the store does not set).
const UnreachablePerSubject = math.MaxInt64

// perSubject is the stream's per-subject limit: none (the server's 8 MB
// blocks) with large blocks, else the unreachable one (4 MB blocks).
func perSubject(largeBlocks bool) int64 {
	if largeBlocks {
		return 0
	}
	return UnreachablePerSubject
}

func compression(on bool) jetstream.StoreCompression {
	if on {
		return jetstream.S2Compression
	}
	return jetstream.NoCompression
}

// Store is the JetStream event store. It is safe for concurrent use.
type Store struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	log    *slog.Logger

	mu     sync.Mutex
	heads  map[eventstore.StreamID]head
	pairs  map[string]pair // by account; see pair
	closed bool
	// replicated is set when the stream has more than one replica: the
	// servers then check expectations before they order writes, and
	// conditional appends are refused (see AppendIf).
	replicated bool
	// streamsDir is the embedded server's directory of the account's
	// streams, "" on other servers: ReadAll reads the stream's files.
	streamsDir string

	reqs     chan *request
	boxes    *reply.Boxes // reply inboxes of single publishes
	stop     chan struct{}
	workers  sync.WaitGroup
	inflight sync.WaitGroup

	done chan struct{} // closed by Close: ends subscriptions

	ownConn bool
	srv     *server.Server

	// syncer fsyncs the embedded server's files before an append
	// returns; nil when the server syncs them itself, or does not.
	syncer *syncer
	// chain orders sequenced appends; nil when appends carry their
	// stream's own expectation (see the package doc).
	chain *chain

	// Coalesced batches committed and the events they held, for
	// benchmarks.
	batches, batched atomic.Uint64
	// fileReads counts the messages ReadAll read from the stream's files,
	// for tests.
	fileReads atomic.Uint64
}

// head is what the store knows of a stream's end: how many events it holds
// and the sequence and id of the last one.
type head struct {
	n      uint64
	seq    uint64
	lastID string
}

// Embedded starts nats-server in this process as scfg says, connects to it
// in-process and opens the store. Close stops the server and waits for it.
//
// With fsync durability on a server that is not clustered, the server runs
// without SyncAlways and the store fsyncs its files itself before Append
// returns (see [DurabilityFsync]).
//
// On a server that requires authentication (scfg.Auth) the connection
// must authenticate as the service's identity: pass its credential in
// copts (e.g. [CredentialOption]); in-process clients are not exempt.
func Embedded(ctx context.Context, scfg ServerConfig, cfg Config, copts ...nats.Option) (*Store, error) {
	opts, err := ServerOptions(scfg)
	if err != nil {
		return nil, err
	}
	group := groupSync(scfg)
	if group {
		opts.SyncAlways = false
	}
	srv, err := startServer(scfg, opts)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(srv.ClientURL(), append([]nats.Option{nats.InProcessServer(srv), nats.Name("ledger-store")}, copts...)...)
	if err != nil {
		StopServer(srv)
		return nil, fmt.Errorf("jetstream: connect to embedded server: %w", err)
	}
	streamsDir := filepath.Join(srv.JetStreamConfig().StoreDir, storeAccount(scfg), "streams")
	var y *syncer
	if group {
		y = newSyncer(streamsDir, cfg.logger(), scfg.Unsynced...)
	}
	s, err := open(ctx, nc, cfg, y)
	if err == nil && y != nil {
		// The stream's configuration, just written, lasts too.
		err = y.wait(ctx)
	}
	if err != nil {
		if s != nil {
			s.Close()
		} else if y != nil {
			y.close()
		}
		nc.Close()
		StopServer(srv)
		return nil, err
	}
	s.ownConn, s.srv = true, srv
	if scfg.Cluster.Name == "" {
		s.streamsDir = streamsDir
	}
	return s, nil
}

// Connect dials the NATS server or cluster at url (comma-separated URLs
// allowed) and opens the store. Close closes the connection.
func Connect(ctx context.Context, url string, cfg Config, opts ...nats.Option) (*Store, error) {
	opts = append([]nats.Option{nats.Name("ledger-store"), nats.MaxReconnects(-1)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("jetstream: connect to %s: %w", url, err)
	}
	s, err := Open(ctx, nc, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	s.ownConn = true
	return s, nil
}

// Open creates or updates the ledger stream over nc and returns the store.
// The caller keeps ownership of nc. While JetStream is not yet available (a
// cluster electing its leader) Open retries until ctx ends.
func Open(ctx context.Context, nc *nats.Conn, cfg Config) (*Store, error) {
	return open(ctx, nc, cfg, nil)
}

// logger returns the configured logger or the default one.
func (c *Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.Default()
	}
	return c.Logger
}

// open opens the store; with y, appends wait for y's sync rounds and are
// never coalesced.
func open(ctx context.Context, nc *nats.Conn, cfg Config, y *syncer) (*Store, error) {
	cfg.setDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	var stream jetstream.Stream
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		stream, err = EnsureStream(cctx, js, StreamConfig(cfg))
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			if y != nil {
				y.close()
			}
			return nil, fmt.Errorf("jetstream: create stream %s: %w", cfg.Stream, errors.Join(err, ctx.Err()))
		}
		if !transient(err) {
			if y != nil {
				y.close()
			}
			return nil, fmt.Errorf("jetstream: create stream %s: %w", cfg.Stream, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	s := &Store{
		cfg:    cfg,
		nc:     nc,
		js:     js,
		stream: stream,
		log:    cfg.Logger.With("stream", cfg.Stream),
		heads:  make(map[eventstore.StreamID]head),
		pairs:  make(map[string]pair),
		reqs:   make(chan *request, 4*cfg.MaxBatch*cfg.Committers),
		boxes:  reply.New(nc),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		syncer: y,
	}
	if info := stream.CachedInfo(); info != nil {
		s.replicated = info.Config.Replicas > 1
	}
	if y != nil && !s.replicated && !cfg.PerSubjectChecks {
		// Sequenced appends: the chain starts at the stream's end, not
		// knowing its last message's id.
		var last uint64
		if info := stream.CachedInfo(); info != nil {
			last = info.State.LastSeq
		}
		s.chain = newChain(last)
	}
	if cfg.MaxBatch > 1 && y == nil {
		s.workers.Add(1)
		go s.commitLoop()
	}
	return s, nil
}

// transient reports whether err may go away by itself: JetStream not ready
// yet, no leader, a timeout.
func transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code == 503 || apiErr.Code == 408 || apiErr.Code == 500
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, jetstream.ErrJetStreamNotEnabled) ||
		errors.Is(err, nats.ErrTimeout)
}

// Server returns the embedded server, or nil when the store was not opened
// by [Embedded].
func (s *Store) Server() *server.Server { return s.srv }

// Conn returns the store's NATS connection.
func (s *Store) Conn() *nats.Conn { return s.nc }

// Close stops accepting calls, waits for the appends in flight, and
// releases what the store owns: the connection it dialled and the server it
// started.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.done)
	s.inflight.Wait()
	close(s.stop)
	s.workers.Wait()
	s.boxes.Close()
	if s.syncer != nil {
		s.syncer.close()
	}
	if s.ownConn {
		if err := s.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			s.nc.Close()
		}
		for i := 0; i < 100 && !s.nc.IsClosed(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		s.nc.Close()
	}
	if s.srv != nil {
		StopServer(s.srv)
	}
	return nil
}

// enter registers a call in flight; it fails once the store is closed.
func (s *Store) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return eventstore.ErrClosed
	}
	s.inflight.Add(1)
	return nil
}

// filter returns the subject filter matching every event of stream.
func filter(stream eventstore.StreamID) string {
	return string(stream.Category) + "." + stream.Account + ".*"
}

// Subject returns the NATS subject of an event of type typ in stream:
// "<category>.<account>.<type>".
func Subject(stream eventstore.StreamID, typ string) string {
	return string(stream.Category) + "." + stream.Account + "." + typ
}

// Message returns the NATS message the store publishes for event e of
// stream at revision rev: its subject, its CloudEvents body and headers
// (Nats-Msg-Id, Ledger-Revision, and Ledger-Metadata for metadata
// without members). With qualify the message id is made unique
// to the stream ("<event id>@<stream>"), for an event id that the server
// already holds for another stream. Publishers of events kept in another
// store (the EventStoreDB relay) use it, so that subscribers get the same
// messages whichever store is in use.
func Message(stream eventstore.StreamID, e eventstore.Proposed, rev uint64, qualify bool) (*nats.Msg, error) {
	if err := checkStream(stream); err != nil {
		return nil, err
	}
	if !validToken(e.Type) {
		return nil, fmt.Errorf("jetstream: event type %q cannot be a subject token", e.Type)
	}
	body, err := eventstore.CloudEvent(stream, e)
	if err != nil {
		return nil, fmt.Errorf("jetstream: event %s: %w", e.ID, err)
	}
	return message(stream, e, body, rev, qualify), nil
}

func message(stream eventstore.StreamID, e eventstore.Proposed, body []byte, rev uint64, qualify bool) *nats.Msg {
	return newMessage(stream, e, body, rev, qualify, noExpectation, 0)
}

// expectation names the subjects over which a message expects the last
// message to be at a sequence: none, the stream's own (filter), or both
// streams of the account (accountFilter).
type expectation int

const (
	noExpectation expectation = iota
	streamExpectation
	accountExpectation
)

// storeMsg is a message the store writes with its header values, made in
// one allocation.
type storeMsg struct {
	msg  nats.Msg
	vals [5]string // message id, revision, metadata, expectation, its filter
}

// newMessage returns the message of event e of stream at revision rev
// (see Message) and, unless over is noExpectation, the expectation that
// the last message on the subjects over names is at sequence seq. The strings
// of its subject and headers are cut from one string, and the header
// values' slices from one array: four allocations for the message, its
// header map, that array and that string, whatever it holds.
func newMessage(stream eventstore.StreamID, e eventstore.Proposed, body []byte, rev uint64, qualify bool, over expectation, seq uint64) *nats.Msg {
	var buf [256]byte
	b := buf[:0]
	var id [36]byte
	eventstore.FormatUUID(&id, e.ID)
	b = append(b, id[:]...)
	if qualify { // "@<stream>", as stream.String() writes it
		b = append(b, '@')
		b = append(b, stream.Category...)
		b = append(b, '-')
		b = append(b, stream.Account...)
	}
	idEnd := len(b)
	b = strconv.AppendUint(b, rev, 10)
	revEnd := len(b)
	b = append(b, stream.Category...)
	b = append(b, '.')
	b = append(b, stream.Account...)
	b = append(b, '.')
	b = append(b, e.Type...)
	subjEnd := len(b)
	seqEnd, filterEnd := subjEnd, subjEnd
	if over != noExpectation {
		b = strconv.AppendUint(b, seq, 10)
		seqEnd = len(b)
		if over == accountExpectation { // accountFilter(stream.Account)
			b = append(b, '*')
		} else { // filter(stream)
			b = append(b, stream.Category...)
		}
		b = append(b, '.')
		b = append(b, stream.Account...)
		b = append(b, ".*"...)
		filterEnd = len(b)
	}
	all := string(b)
	m := new(storeMsg)
	// Header keys are written in their canonical form directly:
	// Header.Set would canonicalise each one again.
	hdr := make(nats.Header, 5)
	m.vals[0] = all[:idEnd]
	hdr[jetstream.MsgIDHeader] = m.vals[0:1:1]
	m.vals[1] = all[idEnd:revEnd]
	hdr[RevisionHeader] = m.vals[1:2:2]
	if len(e.Metadata) > 0 && emptyObject(e.Metadata) && !bytes.ContainsAny(e.Metadata, "\r\n") {
		m.vals[2] = string(e.Metadata)
		hdr[MetadataHeader] = m.vals[2:3:3]
	}
	if over != noExpectation {
		m.vals[3] = all[subjEnd:seqEnd]
		hdr[jetstream.ExpectedLastSubjSeqHeader] = m.vals[3:4:4]
		m.vals[4] = all[seqEnd:filterEnd]
		hdr[jetstream.ExpectedLastSubjSeqSubjHeader] = m.vals[4:5:5]
	}
	m.msg = nats.Msg{Subject: all[revEnd:subjEnd], Header: hdr, Data: body}
	return &m.msg
}

// lastID returns the event id of the last of msgs, which the store made:
// its message id without the stream a qualified one names.
func lastID(msgs []*nats.Msg) string {
	id := msgs[len(msgs)-1].Header[jetstream.MsgIDHeader][0]
	id, _, _ = strings.Cut(id, "@")
	return id
}

// validToken reports whether tok can be one token of a NATS subject.
func validToken(tok string) bool {
	if tok == "" {
		return false
	}
	for i := 0; i < len(tok); i++ {
		switch c := tok[i]; c {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return false
		default:
			if c < 0x20 || c == 0x7f {
				return false
			}
		}
	}
	return true
}

func checkStream(stream eventstore.StreamID) error {
	if stream.Category != eventstore.Ledger && stream.Category != eventstore.Activity {
		return fmt.Errorf("jetstream: unknown stream category %q", stream.Category)
	}
	if !validToken(stream.Account) {
		return fmt.Errorf("jetstream: account %q cannot be a subject token", stream.Account)
	}
	return nil
}

// streamOf parses a subject back into its stream.
func streamOf(subj string) (eventstore.StreamID, bool) {
	cat, rest, ok := strings.Cut(subj, ".")
	if !ok {
		return eventstore.StreamID{}, false
	}
	acct, _, ok := strings.Cut(rest, ".")
	if !ok {
		return eventstore.StreamID{}, false
	}
	return eventstore.StreamID{Category: eventstore.Category(cat), Account: acct}, true
}

// isConflict reports whether err is JetStream's wrong-last-sequence error:
// 10071 on a single replica, 10164 on replicated streams.
func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == 10071 || apiErr.ErrorCode == 10164)
}

// isDuplicate reports whether err says an atomic batch holds a message id
// already stored.
func isDuplicate(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == 10201
}

// written reports whether a message with headers h can be one the store
// wrote: the first message of every append carries the expectation that
// orders it after the stream's last event (Nats-Expected-Last-Subject-Sequence)
// or, for a sequenced append, after the whole stream's last message
// (Nats-Expected-Last-Sequence), and every later message of an
// append is a later message of its atomic batch. The server keeps these
// headers. A message with neither was published past the store, with no
// place in any stream's order: a foreign message, whatever revision it
// claims.
func written(h nats.Header) bool {
	if h.Get(jetstream.ExpectedLastSubjSeqHeader) != "" || sequencedHeader(h) {
		return true
	}
	n, err := strconv.Atoi(h.Get(batchSeqHeader))
	return err == nil && n >= 2 && h.Get(batchIDHeader) != ""
}

func revisionOf(h nats.Header) (uint64, error) {
	v := h.Get(RevisionHeader)
	rev, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("jetstream: bad %s header %q: %w", RevisionHeader, v, err)
	}
	return rev, nil
}

// cachedHead returns the cached head of stream.
func (s *Store) cachedHead(stream eventstore.StreamID) (head, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h, ok := s.heads[stream]
	return h, ok
}

// loadHead asks the server for the last event of stream and caches it.
func (s *Store) loadHead(ctx context.Context, stream eventstore.StreamID) (head, error) {
	return s.readHead(ctx, stream, false)
}

// readHead asks the server for the last message of stream and caches the
// head it gives: read from that message's headers, or counted with
// scanHead when recount is set or the message is not one the store wrote
// (a recount also forgets the account's cached pair of heads).
func (s *Store) readHead(ctx context.Context, stream eventstore.StreamID, recount bool) (head, error) {
	if s.chain != nil {
		// Sequenced appends check against the cache: it takes only
		// heads exact as of the chain (see settle).
		gen := s.chainGen()
		h, err := s.fetchHead(ctx, stream, recount)
		if err == nil {
			s.settle(gen, stream, h)
		}
		return h, err
	}
	h, err := s.fetchHead(ctx, stream, recount)
	if err != nil {
		return head{}, err
	}
	s.mu.Lock()
	s.heads[stream] = h
	if recount {
		delete(s.pairs, stream.Account)
	}
	s.mu.Unlock()
	return h, nil
}

// fetchHead is readHead without caching what it reads.
func (s *Store) fetchHead(ctx context.Context, stream eventstore.StreamID, recount bool) (head, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, filter(stream))
	var h head
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
	case err != nil:
		return head{}, fmt.Errorf("jetstream: last event of %s: %w", stream, err)
	default:
		if !recount {
			h, err = headOf(m)
		}
		if recount || err != nil {
			if h, err = s.scanHead(ctx, stream, m.Sequence); err != nil {
				return head{}, err
			}
		}
	}
	return h, nil
}

// scanHead reads the headers of stream's messages up to sequence last and
// returns its head as the store numbers events: each message the store
// wrote (see written) whose revision is the next one is the stream's next
// event; any other message (foreign, or a copy of an event published
// again) takes no revision. The head's sequence is last all the same:
// it is what the server compares an append's expectation with. Loading a
// head reads only the last message; this scan runs when that message is
// not the stream's next event, which only a foreign publish causes.
func (s *Store) scanHead(ctx context.Context, stream eventstore.StreamID, last uint64) (head, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter(stream)}, HeadersOnly: true}
	cons, err := s.js.OrderedConsumer(ctx, s.cfg.Stream, cfg)
	if err != nil {
		return head{}, fmt.Errorf("jetstream: scan %s: %w", stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(allBatch)) // headers only: small messages
	if err != nil {
		return head{}, fmt.Errorf("jetstream: scan %s: %w", stream, err)
	}
	defer it.Stop()
	h := head{seq: last}
	for {
		msg, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return head{}, fmt.Errorf("jetstream: scan %s: %w", stream, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return head{}, fmt.Errorf("jetstream: scan %s: %w", stream, err)
		}
		if seq := md.Sequence.Stream; seq > last {
			return h, nil
		}
		if rev, err := revisionOf(msg.Headers()); err == nil && rev == h.n && written(msg.Headers()) {
			h.n++
			h.lastID, _, _ = strings.Cut(msg.Headers().Get(jetstream.MsgIDHeader), "@")
		}
		if md.Sequence.Stream == last {
			return h, nil
		}
	}
}

// rescan counts the events of stream anew with scanHead and caches the
// head it finds. Appends call it when the caller knows of more events
// than the last message's revision says: that message is then a copy of
// an earlier event published again, not the stream's last event.
func (s *Store) rescan(ctx context.Context, stream eventstore.StreamID) (head, error) {
	return s.readHead(ctx, stream, true)
}

// behind reports whether a head of n events is behind what expected says
// the caller saw: events the caller read cannot have vanished, so the
// head was read from a message that is not the stream's last event.
func behind(expected eventstore.ExpectedRevision, n uint64) bool {
	rev, ok := expected.Revision()
	return ok && rev+1 > n
}

// headOf returns the head of the stream whose last event is m. It fails
// when m is not a message the store wrote.
func headOf(m *jetstream.RawStreamMsg) (head, error) {
	if !written(m.Header) {
		return head{}, fmt.Errorf("jetstream: message %d was not written by the store", m.Sequence)
	}
	rev, err := revisionOf(m.Header)
	if err != nil {
		return head{}, err
	}
	id, _, _ := strings.Cut(m.Header.Get(jetstream.MsgIDHeader), "@")
	return head{n: rev + 1, seq: m.Sequence, lastID: id}, nil
}

// advance caches next as the head of stream unless a later head is
// already known.
func (s *Store) advance(stream eventstore.StreamID, next head) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.heads[stream]; ok && cur.seq > next.seq {
		return
	}
	s.heads[stream] = next
}

func (s *Store) forget(stream eventstore.StreamID) {
	s.mu.Lock()
	delete(s.heads, stream)
	delete(s.pairs, stream.Account)
	s.mu.Unlock()
}

// Append implements [eventstore.Store.Append]. On a store with group sync
// (see [DurabilityFsync]) it returns a result only once the events are on
// disk, whether this call stored them or found them stored by an earlier
// one.
func (s *Store) Append(ctx context.Context, stream eventstore.StreamID, expected eventstore.ExpectedRevision, events ...eventstore.Proposed) (eventstore.AppendResult, error) {
	if err := s.enter(); err != nil {
		return eventstore.AppendResult{}, err
	}
	defer s.inflight.Done()
	var res eventstore.AppendResult
	var err error
	if s.chain != nil {
		if err = checkStream(stream); err == nil {
			res, err = s.appendSequenced(ctx, stream, expected, nil, events)
		}
	} else {
		res, err = s.append(ctx, stream, expected, events, false)
	}
	if err != nil || s.syncer == nil {
		return res, err
	}
	if err := s.syncer.wait(ctx); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("jetstream: append to %s: %w", stream, err)
	}
	return res, nil
}

// Sync returns once everything the embedded server acknowledged before
// the call, on any stream of its account, is on disk: the ledger stream,
// and the key stream and token bucket of the keys and tokens packages when
// they use the same server. It waits for a sync round that starts after
// the call. On a store that does not sync the server's files itself
// (interval durability, a server that syncs every write, an external
// server) it returns nil at once: writes are then as durable as the
// server makes them. Writers other than Append call it after their
// acknowledgement to keep the promise of [DurabilityFsync].
func (s *Store) Sync(ctx context.Context) error {
	if s.syncer == nil {
		return nil
	}
	if err := s.enter(); err != nil {
		return err
	}
	defer s.inflight.Done()
	if err := s.syncer.wait(ctx); err != nil {
		return fmt.Errorf("jetstream: sync: %w", err)
	}
	return nil
}

// append appends events to stream with the stream's own expectation.
// With qualify the message ids are qualified from the start (see Message),
// as sequenced appends write them.
func (s *Store) append(ctx context.Context, stream eventstore.StreamID, expected eventstore.ExpectedRevision, events []eventstore.Proposed, qualify bool) (eventstore.AppendResult, error) {
	if err := checkStream(stream); err != nil {
		return eventstore.AppendResult{}, err
	}
	bodies, err := encode(stream, events)
	if err != nil {
		return eventstore.AppendResult{}, err
	}

	if res, done, err := s.appendPaired(ctx, stream, expected, events, bodies, qualify); done {
		return res, err
	}

	h, cached := s.cachedHead(stream)
	if !cached && expected.IsNoStream() {
		// A new stream, as far as the caller knows: expect no event on
		// its subjects rather than ask the server first. If the caller
		// is wrong the server refuses and the head is loaded below.
		cached = true
	}
	fresh := false
	// qualify makes the message ids unique to the stream, for events whose
	// ids the server already holds in another stream.
	var serverErr error // the server's refusal, kept as the cause of a conflict
	rescanned := false  // whether the head was counted anew (see behind)
	for attempt := 0; ; attempt++ {
		if !cached {
			var err error
			if h, err = s.loadHead(ctx, stream); err != nil {
				return eventstore.AppendResult{}, err
			}
			cached, fresh = true, true
		}
		if !expected.Matches(h.n) {
			if !fresh {
				cached = false
				continue
			}
			if behind(expected, h.n) && !rescanned {
				rescanned = true
				if h, err = s.rescan(ctx, stream); err != nil {
					return eventstore.AppendResult{}, err
				}
				continue
			}
			if res, ok, err := s.findOwn(ctx, stream, expected, h, events); err != nil || ok {
				return res, err
			}
			if serverErr != nil {
				return eventstore.AppendResult{}, fmt.Errorf("jetstream: append to %s at %s (stream holds %d events): %w (%w)",
					stream, expected, h.n, eventstore.ErrConflict, serverErr)
			}
			return eventstore.AppendResult{}, fmt.Errorf("jetstream: append to %s at %s (stream holds %d events): %w",
				stream, expected, h.n, eventstore.ErrConflict)
		}
		msgs := messages(stream, events, bodies, h.n, streamExpectation, h.seq, qualify)

		seq, dup, err := s.publish(ctx, stream, msgs)
		switch {
		case err == nil && dup:
			if res, done, err := s.storedBefore(ctx, stream, events, seq, qualify, attempt); done {
				return res, err
			}
			qualify, cached = true, false
			continue
		case err == nil:
			_, res := s.stored(stream, h, msgs, seq)
			return res, nil
		case isConflict(err), isDuplicate(err):
			// Our head was stale, another writer won, or this retries an
			// append that was stored: reload the head and decide again at
			// the top of the loop.
			if attempt >= 5 {
				s.forget(stream)
				return eventstore.AppendResult{}, fmt.Errorf("jetstream: append to %s at %s: %w (%w)", stream, expected, eventstore.ErrConflict, err)
			}
			nh, err2 := s.loadHead(ctx, stream)
			if err2 != nil {
				return eventstore.AppendResult{}, err2
			}
			h, cached, fresh, serverErr = nh, true, true, err
			if isDuplicate(err) {
				if res, done, err3 := s.afterDuplicate(ctx, stream, expected, h, events, qualify, err); done {
					return res, err3
				}
				qualify = true
			}
			continue
		default:
			return eventstore.AppendResult{}, fmt.Errorf("jetstream: append to %s: %w", stream, err)
		}
	}
}

// pair is what the store knows of both streams of one account at once:
// the heads of its ledger and its activity stream as they were together at
// one moment, the store of the later of their last events (sequence last()).
// No event of either stream lies between them unseen, so the expectation
// "the last event over both streams' subjects ([accountFilter]) is at
// last()" proves both heads current: it is how [Store.AppendIf] checks its
// condition. A pair comes from [Store.loadPair] or from an append checked
// that way, never from an append checked on one stream only, which says
// nothing about the other.
type pair struct{ ledger, activity head }

func (p pair) of(c eventstore.Category) head {
	if c == eventstore.Ledger {
		return p.ledger
	}
	return p.activity
}

func (p *pair) set(c eventstore.Category, h head) {
	if c == eventstore.Ledger {
		p.ledger = h
	} else {
		p.activity = h
	}
}

// last returns the sequence of the later of the two streams' last events,
// 0 when both are empty.
func (p pair) last() uint64 { return max(p.ledger.seq, p.activity.seq) }

// accountFilter returns the subject filter matching the events of both
// streams of account, and nothing else: the stream's subjects are
// "ledger.>" and "activity.>", and every event's subject has three tokens.
func accountFilter(account string) string { return "*." + account + ".*" }

func (s *Store) cachedPair(account string) (pair, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pairs[account]
	return p, ok
}

// keepPair caches p for account unless a later pair is cached. Both are
// exact at their moment; the later one saves a conflict.
func (s *Store) keepPair(account string, p pair) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.pairs[account]; ok && cur.last() > p.last() {
		return
	}
	s.pairs[account] = p
}

func (s *Store) dropPair(account string) {
	s.mu.Lock()
	delete(s.pairs, account)
	s.mu.Unlock()
}

// loadPair reads the heads of both streams of account as one pair and
// caches it: the last event over both streams, then the last event of the
// other stream, which is earlier unless a writer got in between (then it
// reads again).
func (s *Store) loadPair(ctx context.Context, account string) (pair, error) {
	for range 10 {
		var p pair
		m, err := s.stream.GetLastMsgForSubject(ctx, accountFilter(account))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			s.keepPair(account, p)
			return p, nil
		}
		if err != nil {
			return pair{}, fmt.Errorf("jetstream: last event of account %s: %w", account, err)
		}
		at, ok := streamOf(m.Subject)
		if !ok || at.Account != account {
			return pair{}, fmt.Errorf("jetstream: last event of account %s has subject %q", account, m.Subject)
		}
		h, err := headOf(m)
		if err != nil {
			// Not a message the store wrote: count that stream's events.
			if h, err = s.scanHead(ctx, at, m.Sequence); err != nil {
				return pair{}, err
			}
		}
		other := eventstore.StreamID{Category: eventstore.Activity, Account: account}
		if at.Category == eventstore.Activity {
			other.Category = eventstore.Ledger
		}
		o, err := s.loadHead(ctx, other)
		if err != nil {
			return pair{}, err
		}
		if o.seq > h.seq {
			continue // the other stream moved in between
		}
		s.advance(at, h)
		p.set(at.Category, h)
		p.set(other.Category, o)
		s.keepPair(account, p)
		return p, nil
	}
	return pair{}, fmt.Errorf("jetstream: last events of account %s: they keep moving: %w", account, eventstore.ErrConflict)
}

// rescanPair counts the events of both streams of account anew (see
// rescan) and caches them as a pair. A write between the two scans makes
// the pair stale, which the server's check of the next append catches.
func (s *Store) rescanPair(ctx context.Context, account string) (pair, error) {
	var p pair
	for _, c := range []eventstore.Category{eventstore.Ledger, eventstore.Activity} {
		h, err := s.rescan(ctx, eventstore.StreamID{Category: c, Account: account})
		if err != nil {
			return pair{}, err
		}
		p.set(c, h)
	}
	s.keepPair(account, p)
	return p, nil
}

// messages returns the messages of events appended to stream at revision
// n, the first carrying the expectation that the last event on the
// subjects over names is at seq.
func messages(stream eventstore.StreamID, events []eventstore.Proposed, bodies [][]byte, n uint64, over expectation, seq uint64, qualify bool) []*nats.Msg {
	msgs := make([]*nats.Msg, len(events))
	for i, e := range events {
		if i == 0 {
			msgs[i] = newMessage(stream, e, bodies[i], n, qualify, over, seq)
		} else {
			msgs[i] = message(stream, e, bodies[i], n+uint64(i), qualify)
		}
	}
	return msgs
}

// appendPaired appends to stream, when the store holds a pair for its
// account that matches expected, with the expectation of the pair rather
// than of stream alone, so that the pair stays exact and the next
// [Store.AppendIf] on the account needs no read. It reports done false,
// having stored nothing, when there is no such pair or the other stream
// moved too: the caller then appends with the stream's own expectation.
// It publishes alone, never in a coalesced batch, where the server does
// not check a wildcard expectation against the batch's earlier messages.
func (s *Store) appendPaired(ctx context.Context, stream eventstore.StreamID, expected eventstore.ExpectedRevision, events []eventstore.Proposed, bodies [][]byte, qualify bool) (eventstore.AppendResult, bool, error) {
	p, ok := s.cachedPair(stream.Account)
	if !ok {
		return eventstore.AppendResult{}, false, nil
	}
	h := p.of(stream.Category)
	if !expected.Matches(h.n) {
		return eventstore.AppendResult{}, false, nil
	}
	if err := ctx.Err(); err != nil {
		return eventstore.AppendResult{}, true, err
	}
	msgs := messages(stream, events, bodies, h.n, accountExpectation, p.last(), qualify)
	seq, dup, err := s.publishAlone(ctx, msgs)
	switch {
	case err == nil && !dup:
		next, res := s.stored(stream, h, msgs, seq)
		p.set(stream.Category, next)
		s.keepPair(stream.Account, p)
		return res, true, nil
	case err == nil, isConflict(err), isDuplicate(err):
		// Moved, or stored before: the stream's own path sorts it out.
		s.dropPair(stream.Account)
		return eventstore.AppendResult{}, false, nil
	default:
		return eventstore.AppendResult{}, true, fmt.Errorf("jetstream: append to %s: %w", stream, err)
	}
}

// AppendIf implements [eventstore.ConditionalAppender] for the two streams
// of one account: the first event carries the expectation that the last
// event over both streams' subjects ("*.<account>.*") is the later of the
// two heads the store knows as a pair, so the server stores the events
// only if neither stream moved; it answers error 10071 otherwise, reported
// as [eventstore.ErrConflict] after the store read both heads again and
// found expected or cond false. The server checks the expectation under
// the stream's lock, in the order it stores messages, so the check is
// exact. Conditional appends are published alone, never coalesced.
//
// It refuses, with an error matching [errors.ErrUnsupported], a condition
// on a stream of another account, and any condition on a replicated
// stream: there the leader checks expectations before it proposes a
// write, and tracks the writes in flight by the literal filter they name,
// so a ledger append in flight under "ledger.<account>.*" is not seen by a
// check under "*.<account>.*".
func (s *Store) AppendIf(ctx context.Context, stream eventstore.StreamID, expected eventstore.ExpectedRevision, cond eventstore.Condition, events ...eventstore.Proposed) (eventstore.AppendResult, error) {
	if err := s.enter(); err != nil {
		return eventstore.AppendResult{}, err
	}
	defer s.inflight.Done()
	if err := checkStream(stream); err != nil {
		return eventstore.AppendResult{}, err
	}
	if err := checkStream(cond.Stream); err != nil {
		return eventstore.AppendResult{}, err
	}
	switch {
	case cond.Stream == stream:
		return eventstore.AppendResult{}, fmt.Errorf("jetstream: append to %s if %s: %w", stream, cond, eventstore.ErrSelfCondition)
	case cond.Stream.Account != stream.Account:
		return eventstore.AppendResult{}, fmt.Errorf("jetstream: append to %s if %s: streams of two accounts: %w", stream, cond, errors.ErrUnsupported)
	case s.replicated:
		return eventstore.AppendResult{}, fmt.Errorf("jetstream: append to %s if %s: replicated stream: %w", stream, cond, errors.ErrUnsupported)
	}
	var res eventstore.AppendResult
	var err error
	if s.chain != nil {
		res, err = s.appendSequenced(ctx, stream, expected, &cond, events)
	} else {
		res, err = s.appendIf(ctx, stream, expected, cond, events, false)
	}
	if err != nil || s.syncer == nil {
		return res, err
	}
	if err := s.syncer.wait(ctx); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("jetstream: append to %s: %w", stream, err)
	}
	return res, nil
}

// appendIf is AppendIf's path without sequenced appends; qualify as for
// append.
func (s *Store) appendIf(ctx context.Context, stream eventstore.StreamID, expected eventstore.ExpectedRevision, cond eventstore.Condition, events []eventstore.Proposed, qualify bool) (eventstore.AppendResult, error) {
	bodies, err := encode(stream, events)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	account := stream.Account
	p, cached := s.cachedPair(account)
	fresh, rescanned := false, false
	var serverErr error // the server's refusal, kept as the cause of a conflict
	for attempt := 0; ; attempt++ {
		if !cached {
			if p, err = s.loadPair(ctx, account); err != nil {
				return eventstore.AppendResult{}, err
			}
			cached, fresh = true, true
		}
		h, ch := p.of(stream.Category), p.of(cond.Stream.Category)
		if !expected.Matches(h.n) || !cond.Expected.Matches(ch.n) {
			if !fresh {
				cached = false
				continue
			}
			if (behind(expected, h.n) || behind(cond.Expected, ch.n)) && !rescanned {
				rescanned = true
				if p, err = s.rescanPair(ctx, account); err != nil {
					return eventstore.AppendResult{}, err
				}
				continue
			}
			// A retry of an append stored before: its first result.
			if res, ok, err := s.findOwn(ctx, stream, expected, h, events); err != nil || ok {
				return res, err
			}
			return eventstore.AppendResult{}, errors.Join(fmt.Errorf("jetstream: append to %s at %s if %s (streams hold %d and %d events): %w",
				stream, expected, cond, h.n, ch.n, eventstore.ErrConflict), serverErr)
		}
		if err := ctx.Err(); err != nil {
			return eventstore.AppendResult{}, err
		}
		msgs := messages(stream, events, bodies, h.n, accountExpectation, p.last(), qualify)
		seq, dup, err := s.publishAlone(ctx, msgs)
		switch {
		case err == nil && dup:
			if res, done, err := s.storedBefore(ctx, stream, events, seq, qualify, attempt); done {
				return res, err
			}
			qualify, cached = true, false
		case err == nil:
			next, res := s.stored(stream, h, msgs, seq)
			p.set(stream.Category, next)
			s.keepPair(account, p)
			return res, nil
		case isConflict(err), isDuplicate(err):
			s.dropPair(account)
			if attempt >= 5 {
				return eventstore.AppendResult{}, fmt.Errorf("jetstream: append to %s at %s if %s: %w (%w)", stream, expected, cond, eventstore.ErrConflict, err)
			}
			if p, err = s.loadPair(ctx, account); err != nil {
				return eventstore.AppendResult{}, err
			}
			cached, fresh, serverErr = true, true, err
			if isDuplicate(serverErr) {
				if res, done, err := s.afterDuplicate(ctx, stream, expected, p.of(stream.Category), events, qualify, serverErr); done {
					return res, err
				}
				qualify = true
			}
		default:
			return eventstore.AppendResult{}, fmt.Errorf("jetstream: append to %s: %w", stream, err)
		}
	}
}

// stored caches the head of stream after msgs, the messages of an append,
// were stored at seq on top of h, and returns that head and the append's result.
func (s *Store) stored(stream eventstore.StreamID, h head, msgs []*nats.Msg, seq uint64) (head, eventstore.AppendResult) {
	next := head{n: h.n + uint64(len(msgs)), seq: seq, lastID: lastID(msgs)}
	s.advance(stream, next)
	return next, eventstore.AppendResult{NextRevision: next.n - 1, Position: eventstore.Position(seq)}
}

// storedBefore answers a publish the server took for a message it stored
// before, at seq, within the de-duplication window: with the first
// append's result when that was stored in stream, or with an error when
// the message ids were qualified already or the attempts are used up
// (done true). Otherwise (done false) the caller qualifies the ids and
// tries again.
func (s *Store) storedBefore(ctx context.Context, stream eventstore.StreamID, events []eventstore.Proposed, seq uint64, qualify bool, attempt int) (eventstore.AppendResult, bool, error) {
	s.forget(stream)
	res, same, err := s.resultAt(ctx, stream, seq)
	if err != nil || same {
		return res, true, err
	}
	if qualify || attempt >= 5 {
		return eventstore.AppendResult{}, true, fmt.Errorf("jetstream: append to %s: event %s is stored in another stream", stream, events[0].ID)
	}
	return eventstore.AppendResult{}, false, nil
}

// afterDuplicate answers an append the server refused, with serverErr,
// because some of its event ids are stored already, h being stream's head
// read since: with the first result when this retries an append stored at
// the expected revision, or with a conflict when an id is stored in stream
// at another place or the ids were qualified already (done true).
// Otherwise (done false) the ids are only in other streams: the caller
// qualifies them and tries again.
func (s *Store) afterDuplicate(ctx context.Context, stream eventstore.StreamID, expected eventstore.ExpectedRevision, h head, events []eventstore.Proposed, qualify bool, serverErr error) (eventstore.AppendResult, bool, error) {
	if res, ok, err := s.findOwn(ctx, stream, expected, h, events); err != nil || ok {
		return res, true, err
	}
	inStream, err := s.holdsAny(ctx, stream, events)
	if err != nil {
		return eventstore.AppendResult{}, true, err
	}
	if inStream || qualify {
		return eventstore.AppendResult{}, true, fmt.Errorf("jetstream: append to %s at %s: events stored at another place: %w (%w)", stream, expected, eventstore.ErrConflict, serverErr)
	}
	return eventstore.AppendResult{}, false, nil
}

// encode checks events and returns their CloudEvents bodies.
func encode(stream eventstore.StreamID, events []eventstore.Proposed) ([][]byte, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("jetstream: append to %s: no events", stream)
	}
	if len(events) > 1000 {
		return nil, fmt.Errorf("jetstream: append to %s: %d events, at most 1000 at once", stream, len(events))
	}
	bodies := make([][]byte, len(events))
	for i, e := range events {
		if !validToken(e.Type) {
			return nil, fmt.Errorf("jetstream: event type %q cannot be a subject token", e.Type)
		}
		b, err := eventstore.CloudEvent(stream, e)
		if err != nil {
			return nil, fmt.Errorf("jetstream: append to %s: %w", stream, err)
		}
		bodies[i] = b
	}
	return bodies, nil
}

// resultAt returns the append result of the event stored at seq, and
// whether it belongs to stream.
func (s *Store) resultAt(ctx context.Context, stream eventstore.StreamID, seq uint64) (eventstore.AppendResult, bool, error) {
	m, err := s.stream.GetMsg(ctx, seq)
	if err != nil {
		return eventstore.AppendResult{}, false, fmt.Errorf("jetstream: event at %d of %s: %w", seq, stream, err)
	}
	if got, ok := streamOf(m.Subject); !ok || got != stream {
		return eventstore.AppendResult{}, false, nil
	}
	rev, err := revisionOf(m.Header)
	if err != nil {
		return eventstore.AppendResult{}, false, err
	}
	return eventstore.AppendResult{NextRevision: rev, Position: eventstore.Position(seq)}, true, nil
}

// holdsAny reports whether stream holds any of events.
func (s *Store) holdsAny(ctx context.Context, stream eventstore.StreamID, events []eventstore.Proposed) (bool, error) {
	for rec, err := range s.ReadStream(ctx, stream, 0) {
		if errors.Is(err, eventstore.ErrStreamNotFound) {
			return false, nil
		}
		if errors.Is(err, eventstore.ErrUnreadable) {
			continue // not an event of the stream
		}
		if err != nil {
			return false, err
		}
		for _, e := range events {
			if rec.ID == e.ID {
				return true, nil
			}
		}
	}
	return false, nil
}

// emptyObject reports whether md, a valid JSON object, has no member.
func emptyObject(md []byte) bool {
	for _, c := range md[1 : len(md)-1] {
		switch c {
		case ' ', '\t', '\r', '\n':
		default:
			return false
		}
	}
	return true
}

// findOwn looks for events already stored in stream, in order, at the
// place expected puts them (anywhere for Any): the retry of an append whose
// acknowledgement was lost. The server checks expectations before it
// de-duplicates, so such a retry otherwise looks like a conflict.
func (s *Store) findOwn(ctx context.Context, stream eventstore.StreamID, expected eventstore.ExpectedRevision, h head, events []eventstore.Proposed) (eventstore.AppendResult, bool, error) {
	k := uint64(len(events))
	var start uint64 // revision the first event would have
	switch {
	case expected.IsNoStream():
		start = 0
	case expected.IsAny():
		start = 0
	default:
		r, _ := expected.Revision()
		start = r + 1
	}
	if h.n < start+k {
		return eventstore.AppendResult{}, false, nil
	}
	// The usual case: the retry comes right after its lost acknowledgement.
	if h.lastID == events[k-1].ID.String() && (expected.IsAny() || h.n == start+k) {
		return eventstore.AppendResult{NextRevision: h.n - 1, Position: eventstore.Position(h.seq)}, true, nil
	}
	if expected.IsAny() {
		// Anywhere in the stream: read it all.
		i := uint64(0)
		for rec, err := range s.ReadStream(ctx, stream, 0) {
			if errors.Is(err, eventstore.ErrUnreadable) {
				continue // not an event of the stream
			}
			if err != nil {
				return eventstore.AppendResult{}, false, err
			}
			switch {
			case rec.ID == events[i].ID:
				i++
				if i == k {
					return eventstore.AppendResult{NextRevision: rec.Revision, Position: rec.Position}, true, nil
				}
			case i > 0:
				return eventstore.AppendResult{}, false, nil
			}
		}
		return eventstore.AppendResult{}, false, nil
	}
	// Others appended since: look where ours would be.
	seq, err := s.seek(ctx, stream, h, start)
	if err != nil {
		return eventstore.AppendResult{}, false, err
	}
	f := filter(stream)
	for i := range k {
		m, err := s.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(f))
		if err != nil {
			return eventstore.AppendResult{}, false, fmt.Errorf("jetstream: read %s: %w", stream, err)
		}
		id, _, _ := strings.Cut(m.Header.Get(jetstream.MsgIDHeader), "@")
		if id != events[i].ID.String() {
			return eventstore.AppendResult{}, false, nil
		}
		if i == k-1 {
			rev, err := revisionOf(m.Header)
			if err != nil {
				return eventstore.AppendResult{}, false, err
			}
			return eventstore.AppendResult{NextRevision: rev, Position: eventstore.Position(m.Sequence)}, true, nil
		}
		seq = m.Sequence + 1
	}
	return eventstore.AppendResult{}, false, nil
}

// seek returns the sequence of the event of stream with revision rev, which
// must be below h.n, by bisecting the sequences up to h.seq: JetStream
// indexes subjects, not revisions, and both grow together.
func (s *Store) seek(ctx context.Context, stream eventstore.StreamID, h head, rev uint64) (uint64, error) {
	if rev == h.n-1 {
		return h.seq, nil
	}
	f := filter(stream)
	lo, hi := uint64(1), h.seq
	for lo < hi {
		mid := lo + (hi-lo)/2
		m, err := s.stream.GetMsg(ctx, mid, jetstream.WithGetMsgSubject(f))
		if err != nil {
			return 0, fmt.Errorf("jetstream: seek %s to revision %d: %w", stream, rev, err)
		}
		r, err := revisionOf(m.Header)
		if err != nil {
			// A foreign message without a revision: read from the start
			// of the range instead, the reader skips what comes before.
			return lo, nil
		}
		switch {
		case r == rev:
			return m.Sequence, nil
		case r > rev:
			hi = mid
		default:
			lo = m.Sequence + 1
		}
	}
	return lo, nil
}
