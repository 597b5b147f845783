// Package relay is the publisher of the ledger's contract with other
// services: it copies every event of the event store, whichever store it
// is (JetStream, embedded or external, EventStoreDB, the in-memory store),
// in the store's global order, into the published JetStream stream
// [contract.Stream] ("EVENTS"), as the envelope of contract v2.
//
// # Messages
//
// An event of account acme's ledger stream goes to subject
// events.ledger.acme.<EventType>, an activity to
// events.activity.acme.ActivityRecorded ([contract.Subject]), in a stream
// bound to events.> (file storage, a de-duplication window), which the
// billing notifications (events.billing.>) share. The body is the event's
// CloudEvents 1.0 structured-mode envelope of contract v2
// ([contract.Envelope]): a versioned type, no idempotency key. The headers
// are Content-Type application/cloudevents+json, Nats-Msg-Id the event id,
// and [PositionHeader], the event's position in the store (the relay's
// checkpoint, documented in the AsyncAPI document). The expectation header
// Nats-Expected-Last-Sequence or Nats-Expected-Last-Msg-Id orders the
// publishes; the stream keeps it,
// but the mirror downstream services read drops it (JetStream removes
// Nats-Expected-* headers from mirrored messages), and webhooks send the
// body only.
//
// # Checkpoint
//
// The relay keeps no checkpoint of its own: the position of the last event
// relayed is the [PositionHeader] of the last event message of the target
// stream (the last on events.ledger.> or events.activity.>), read back
// when Run starts and after every failure. A message and its checkpoint
// are therefore written by one publish: there is no window in which one
// is stored without the other, whatever the store, however long the relay
// was down, and no separate key/value write per event. A data directory
// whose events were never published (a store older than the published
// stream) is published from its first event on the first start.
//
// # Order and exactly once
//
// Publishes are pipelined (up to Config.MaxInFlight unacknowledged). The
// first of a pass carries Nats-Expected-Last-Sequence, the stream's last
// sequence, and each later one Nats-Expected-Last-Msg-Id, the id of the
// message published before it. The server stores a message only right
// after its predecessor, so a publish that fails (a timeout, a lost
// connection, a server restart, another publisher's message stored first)
// makes every later one in flight fail too: no gap and no reordering can
// reach the stream. After any failure the
// relay waits for the publishes in flight, reads the checkpoint back from
// the stream and resumes from there. A second relay running on the same
// stream (another process of the service) cannot interleave either: its
// publishes fail the same expectation, and it resumes after what the other
// one stored. A billing notification published between two events fails
// the expectation of the next event the same way; the relay resumes at
// once after it.
//
// The Nats-Msg-Id de-duplication is the second line: a message re-sent
// within the stream's duplicate window (default 2 minutes) is dropped by
// the server even without the expectation.
//
// # Records that are not the ledger's events
//
// Only events of the ledger reach subscribers. The relay verifies every
// record against its stream's hash chain as the read models do
// ([codec.Link], on the record's metadata alone: the relay holds no data
// key) and skips, without publishing, a record that is not an event of its
// stream: one the store cannot read ([eventstore.ErrUnreadable]), one whose
// revision is out of its stream's order, one whose metadata cannot be read
// or does not name the previous event's link (a forged or altered copy),
// and one that cannot be written as a message (its type or account is not
// a subject token). Such a record was written to the store by something
// other than the service; relaying it would hand subscribers an event the
// ledger does not hold, or let a forged copy pass for one. An event that
// chains but whose type or data this version cannot read is relayed: it is
// the ledger's, from a newer writer perhaps. Each skipped record is logged
// once and counted ([Status.Skipped]); the read models quarantine the same
// records. The chain of a stream is rebuilt from the store, by reading the
// stream up to the first record a pass meets, when the pass did not see the
// stream from its first event.
package relay

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
	storejs "github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/telemetry"
)

// PositionHeader carries, on every published event, the event's position
// in the store's global order: the relay's checkpoint. Positions only
// grow; they need not be dense.
const PositionHeader = "Ledger-Position"

// ErrNoCheckpoint is returned by Run when the target stream has held
// messages but its last one is gone (deleted or purged), so where to resume
// is unknown. Relaying everything again would duplicate what subscribers
// saw, so the relay stops.
var ErrNoCheckpoint = errors.New("relay: checkpoint lost")

// ErrForeignMessage is returned by Run when the last event message of the
// target stream was not written by a relay (it has no [PositionHeader]):
// something else publishes on the events' subjects.
var ErrForeignMessage = errors.New("relay: target stream holds a message not written by a relay")

// ErrUnpublishable is wrapped by the reason the relay logs for a record
// that cannot be written as a message (its type or account cannot be a
// subject token, or its data or metadata is not what a CloudEvent needs).
// The service never writes such an event, so the relay skips it as a
// record that is not the ledger's.
var ErrUnpublishable = errors.New("relay: event cannot be published")

// Config configures a [Relay].
type Config struct {
	// Source is the store whose global order is relayed. Required.
	Source eventstore.Store
	// JS is the JetStream client the relay publishes with. Required.
	JS jetstream.JetStream
	// Stream is the JetStream stream's name; default [contract.Stream].
	Stream string
	// BaseURL is the service's public URL, which the envelopes' dataschema
	// starts with; default [contract.DefaultBaseURL].
	BaseURL string
	// Replicas is the stream's replica count; default 1.
	Replicas int
	// Duplicates is the stream's de-duplication window; default 2 minutes.
	Duplicates time.Duration
	// Compress has the server compress the stream's blocks with S2 once
	// they are full (see the store's Config.Compress). Its readers
	// (consumers, the downstream mirror) read it in order, so each block
	// is decompressed once per pass; a get of a message in a block not
	// cached decompresses the whole block (8 MB).
	Compress bool
	// MaxInFlight is the largest number of publishes awaiting their
	// acknowledgement; default 256. 1 publishes one event at a time.
	MaxInFlight int
	// AckTimeout bounds the wait for one acknowledgement; default 10 s.
	AckTimeout time.Duration
	// RequestTimeout bounds each request to the server when a pass
	// starts (the stream's creation or update, the reads of its
	// checkpoint) whatever time the caller's context leaves: a request
	// whose answer is lost fails the pass, which Run logs and retries.
	// Default 5 s, the JetStream client's own bound for a context
	// without a deadline.
	RequestTimeout time.Duration
	// Head, when set, returns the position of the last event in the
	// source store, for [Relay.Lag].
	Head func(ctx context.Context) (eventstore.Position, error)
	// OnPublished, when set, is called once for every event the server
	// acknowledged, in order, with its position; a counter of published
	// events. It must not block.
	OnPublished func(eventstore.Position)
	// Logger receives the relay's logs; default slog.Default(). Events'
	// contents are never logged.
	Logger *slog.Logger
	// Feed, when set, gives the relay the records another reader of the
	// store reads (the read models' runner, which must offer it every
	// record it reads), so that the relay reads from the store only what
	// the feed lacks instead of following it a second time. Nil: the
	// relay subscribes to Source.
	Feed *eventstore.Feed
	// Tracer, when enabled, makes a producer span ("publish EVENTS") of
	// every publish, from the publish to its acknowledgement, continuing
	// the trace the event's metadata records (the request that caused
	// it), so that a write is one trace from the HTTP request to the
	// publish. Nil: no span.
	Tracer *telemetry.Tracer
}

// Relay publishes a store's events to JetStream. Use [New], then [Relay.Run].
type Relay struct {
	cfg    Config
	log    *slog.Logger
	stream jetstream.Stream

	received  atomic.Uint64 // position of the last event read from the store
	relayed   atomic.Uint64 // position of the last event stored in the stream or skipped
	published atomic.Uint64 // events acknowledged
	resyncs   atomic.Uint64 // checkpoint reloads after a failure
	skipped   atomic.Uint64 // records skipped as not the ledger's
	lastSkip  atomic.Uint64 // position of the last record skipped, so each is counted once

	mu      sync.Mutex
	qualify map[eventstore.Position]bool // events whose id another event took
}

// New checks cfg and returns a relay. It does not touch the network.
func New(cfg Config) (*Relay, error) {
	if cfg.Source == nil || cfg.JS == nil {
		return nil, errors.New("relay: Config.Source and Config.JS are required")
	}
	if cfg.Stream == "" {
		cfg.Stream = contract.Stream
	}
	if cfg.Duplicates <= 0 {
		cfg.Duplicates = 2 * time.Minute
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 256
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 10 * time.Second
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Relay{cfg: cfg, log: cfg.Logger.With("component", "relay", "stream", cfg.Stream), qualify: map[eventstore.Position]bool{}}, nil
}

// StreamConfig returns the configuration of the target stream: bound to
// every subject of the published contract (events.>), on file, with a
// de-duplication window.
func (r *Relay) StreamConfig() jetstream.StreamConfig {
	replicas := max(r.cfg.Replicas, 1)
	return jetstream.StreamConfig{
		Name:        r.cfg.Stream,
		Description: "License ledger published events, contract v2 (CloudEvents 1.0, structured mode)",
		Subjects:    []string{contract.SubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  r.cfg.Duplicates,
		AllowDirect: replicas == 1,
		Compression: compression(r.cfg.Compress),
	}
}

// Status is what a relay has done so far.
type Status struct {
	// Received is the position of the last event read from the store.
	Received eventstore.Position
	// Relayed is the position of the last record done with: its event
	// stored in the stream, or the record skipped.
	Relayed eventstore.Position
	// Published counts the events acknowledged since New.
	Published uint64
	// Resyncs counts the checkpoint reloads after failures.
	Resyncs uint64
	// Skipped counts the records skipped since New because they are not
	// events of the ledger (see the package documentation), each once.
	Skipped uint64
}

// Status returns the relay's counters. It is safe to call at any time.
func (r *Relay) Status() Status {
	return Status{
		Received:  eventstore.Position(r.received.Load()),
		Relayed:   eventstore.Position(r.relayed.Load()),
		Published: r.published.Load(),
		Resyncs:   r.resyncs.Load(),
		Skipped:   r.skipped.Load(),
	}
}

// Lag is how far the stream is behind the store.
type Lag struct {
	// Head is the store's last position (Config.Head), or the last one the
	// relay read when no Head is configured.
	Head eventstore.Position
	// Relayed is the position of the last event stored in the stream.
	Relayed eventstore.Position
	// Behind is Head - Relayed, in the store's position units (events for
	// the memory and JetStream stores, log bytes for EventStoreDB).
	Behind uint64
}

// Lag returns how far the stream is behind the store.
func (r *Relay) Lag(ctx context.Context) (Lag, error) {
	st := r.Status()
	head := st.Received
	if r.cfg.Head != nil {
		h, err := r.cfg.Head(ctx)
		if err != nil {
			return Lag{}, fmt.Errorf("relay: head of the store: %w", err)
		}
		head = h
	}
	l := Lag{Head: head, Relayed: st.Relayed}
	if head > st.Relayed {
		l.Behind = uint64(head - st.Relayed)
	}
	return l, nil
}

// permanentError marks failures that retrying cannot cure.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Run relays until ctx ends, then returns nil. Call it from one goroutine
// at a time; Status and Lag may be called meanwhile. It waits for each
// acknowledgement at most Config.AckTimeout; give JS a publish-async
// timeout (jetstream.WithPublishAsyncTimeout) no longer than that so the
// client forgets unanswered publishes too. Run returns an error only
// for failures that retrying cannot cure ([ErrNoCheckpoint],
// [ErrForeignMessage], a closed store); a record that is not an event of
// the ledger is skipped, not a failure. Other failures
// (NATS or the store unavailable) are logged and retried from the
// checkpoint with a bounded backoff.
func (r *Relay) Run(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for {
		before := r.published.Load()
		err := r.pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var perm permanentError
		if errors.As(err, &perm) || errors.Is(err, eventstore.ErrClosed) {
			return err
		}
		if r.published.Load() > before {
			backoff = 50 * time.Millisecond
		}
		r.resyncs.Add(1)
		level := slog.LevelWarn
		if interleaved(err) {
			// A billing notification, or another process's publisher,
			// wrote to the stream: expected, resumed after it.
			level = slog.LevelDebug
		}
		r.log.LogAttrs(ctx, level, "relay interrupted, resuming from the stream's checkpoint",
			slog.Duration("backoff", backoff), slog.Any("error", err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// errCodeWrongLastMsgID is JetStream's refusal of a publish whose
// Nats-Expected-Last-Msg-Id is not the stream's last message's.
const errCodeWrongLastMsgID = 10070

// interleaved reports whether err is the stream's refusal of a publish
// whose expected last sequence or message id another message took: 10071
// or 10070 on a single replica, 10164 on replicated streams.
func interleaved(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant || apiErr.ErrorCode == errCodeWrongLastMsgID)
}

// checkpoint is where the stream ends: the sequence of its last message
// and the source position that message carries.
type checkpoint struct {
	seq uint64
	pos eventstore.Position
}

// EnsureStream creates the target stream or updates it to the store's
// configuration, as Run does first. Call it before subscribers may look
// for the stream, so that none finds it missing while Run starts.
func (r *Relay) EnsureStream(ctx context.Context) error { return r.ensureStream(ctx) }

// ensureStream creates the target stream or updates it to the store's
// configuration.
func (r *Relay) ensureStream(ctx context.Context) error {
	if r.stream != nil {
		return nil
	}
	ctx, cancel := r.request(ctx)
	defer cancel()
	st, err := storejs.EnsureStream(ctx, r.cfg.JS, r.StreamConfig())
	if err != nil {
		return fmt.Errorf("relay: create stream %s: %w", r.cfg.Stream, err)
	}
	r.stream = st
	return nil
}

// eventFilters are the subjects of the target stream the relay publishes
// on; others (billing notifications) publish on the rest of events.>.
var eventFilters = []string{
	contract.SubjectPrefix + string(eventstore.Ledger) + ".>",
	contract.SubjectPrefix + string(eventstore.Activity) + ".>",
}

// readCheckpoint reads the checkpoint back from the last event message of
// the stream; seq is the stream's last sequence, which the next publish
// expects.
func (r *Relay) readCheckpoint(ctx context.Context) (checkpoint, error) {
	rctx, cancel := r.request(ctx)
	info, err := r.stream.Info(rctx)
	cancel()
	if err != nil {
		return checkpoint{}, fmt.Errorf("relay: stream info: %w", err)
	}
	last := info.State.LastSeq
	if last == 0 {
		return checkpoint{}, nil
	}
	var m *jetstream.RawStreamMsg
	for _, f := range eventFilters {
		// The last message on a filter: a removed message is skipped, the
		// relay goes on from the last one the stream still holds. Removed
		// events are published again once the server's de-duplication
		// window no longer holds their ids (until then their publishes
		// are duplicates and the relay retries).
		rctx, cancel := r.request(ctx)
		fm, err := r.stream.GetLastMsgForSubject(rctx, f)
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return checkpoint{}, fmt.Errorf("relay: last message of %s on %s: %w", r.cfg.Stream, f, err)
		}
		if m == nil || fm.Sequence > m.Sequence {
			m = fm
		}
	}
	if m == nil {
		// No event yet: billing notifications only, or every event gone.
		return checkpoint{seq: last}, nil
	}
	v := m.Header.Get(PositionHeader)
	pos, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return checkpoint{}, permanentError{fmt.Errorf("%w: message %d on %s has %s %q", ErrForeignMessage, m.Sequence, m.Subject, PositionHeader, v)}
	}
	return checkpoint{seq: last, pos: eventstore.Position(pos)}, nil
}

// inflight is one publish awaiting its acknowledgement, or a record
// skipped (fut nil), which is done with once the publishes before it are.
type inflight struct {
	fut  jetstream.PubAckFuture
	rec  eventstore.Record
	seq  uint64         // the sequence the message must get
	span telemetry.Span // the publish's, ended at its acknowledgement
}

// request returns ctx bounded by Config.RequestTimeout, for one request to
// the server (or the two of ensuring the stream): a request whose answer
// is lost then fails, rather than holding the relay until ctx ends, which
// for a caller's context with a deadline the JetStream client does not
// bound itself.
func (r *Relay) request(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, r.cfg.RequestTimeout)
}

// pass relays from the stream's checkpoint until ctx ends or something
// fails; it returns why it stopped after every publish in flight was
// answered (or timed out).
func (r *Relay) pass(ctx context.Context) error {
	if err := r.ensureStream(ctx); err != nil {
		return err
	}
	cp, err := r.readCheckpoint(ctx)
	if err != nil {
		return err
	}
	r.relayed.Store(uint64(cp.pos))
	r.received.Store(uint64(cp.pos))
	r.log.LogAttrs(ctx, slog.LevelDebug, "relaying", slog.Uint64("after", uint64(cp.pos)), slog.Uint64("last_seq", cp.seq))

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	window := make(chan inflight, r.cfg.MaxInFlight)
	slots := make(chan struct{}, r.cfg.MaxInFlight)
	ackerDone := make(chan struct{})
	go func() {
		defer close(ackerDone)
		r.ack(ctx, cancel, window, slots)
	}()

	chains := newChains(r.cfg.Source)
	produce := func() error {
		defer close(window)
		next := cp.seq
		prevID := "" // the message id of this pass's last publish
		for rec, err := range r.follow(ctx, cp.pos) {
			if err != nil && !errors.Is(err, eventstore.ErrUnreadable) {
				return fmt.Errorf("relay: read the store after %d: %w", r.received.Load(), err)
			}
			var msg *nats.Msg
			if err == nil {
				if err = chains.verify(ctx, rec); err != nil && !codec.Unfoldable(err) {
					return fmt.Errorf("relay: verify the event at %d: %w", rec.Position, err)
				}
			}
			if err == nil {
				msg, err = r.message(rec, next, prevID)
			}
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
			if err != nil {
				r.skip(ctx, rec, err)
				r.received.Store(uint64(rec.Position))
				window <- inflight{rec: rec}
				continue
			}
			var span telemetry.Span
			if r.cfg.Tracer.Enabled() {
				span = r.publishSpan(ctx, rec, msg.Subject)
			}
			fut, err := r.cfg.JS.PublishMsgAsync(msg)
			if err != nil {
				span.End(err)
				<-slots
				return fmt.Errorf("relay: publish event at %d: %w", rec.Position, err)
			}
			next++
			prevID = msg.Header.Get(jetstream.MsgIDHeader)
			r.received.Store(uint64(rec.Position))
			window <- inflight{fut: fut, rec: rec, seq: next, span: span}
		}
		return context.Cause(ctx)
	}
	perr := produce()
	<-ackerDone
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause // the acker's failure came first
	}
	return perr
}

// follow yields every event of the source after position after, then each
// new one, in the store's order: through the feed when there is one.
func (r *Relay) follow(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	if r.cfg.Feed != nil {
		return r.cfg.Feed.Records(ctx, r.cfg.Source, after)
	}
	return r.cfg.Source.Subscribe(ctx, after)
}

// ack waits for the acknowledgements in order, advancing the relayed
// position. On the first failure it cancels the pass with the cause and
// keeps waiting for the rest, within one AckTimeout, so that no publish of
// this pass is still in flight when the next pass reads the checkpoint.
func (r *Relay) ack(ctx context.Context, cancel context.CancelCauseFunc, window <-chan inflight, slots <-chan struct{}) {
	failed := false
	var drainBy <-chan time.Time
	// One timer for every acknowledgement awaited, reset for each.
	wait := time.NewTimer(r.cfg.AckTimeout)
	defer wait.Stop()
	for f := range window {
		if f.fut == nil { // a record skipped: done with, after those before it
			<-slots
			if !failed {
				r.relayed.Store(uint64(f.rec.Position))
			}
			continue
		}
		if ctx.Err() != nil && drainBy == nil {
			drainBy = time.After(r.cfg.AckTimeout)
		}
		timeout := drainBy
		if timeout == nil {
			wait.Reset(r.cfg.AckTimeout)
			timeout = wait.C
		}
		var err error
		failure := "error" // the kind of failure, for the publish's span
		select {
		case ack := <-f.fut.Ok():
			switch {
			case ack.Duplicate:
				err, failure = r.duplicate(f, ack), "duplicate"
			case ack.Sequence != f.seq:
				err, failure = fmt.Errorf("relay: event at %d stored at sequence %d, want %d", f.rec.Position, ack.Sequence, f.seq), "sequence"
			}
		case err = <-f.fut.Err():
			err = fmt.Errorf("relay: publish event at %d: %w", f.rec.Position, err)
		case <-timeout:
			err, failure = fmt.Errorf("relay: no acknowledgement for the event at %d within %s", f.rec.Position, r.cfg.AckTimeout), "timeout"
		}
		if err != nil {
			f.span.Fail(failure)
		}
		f.span.End(err)
		<-slots
		if failed {
			continue
		}
		if err != nil {
			failed = true
			cancel(err)
			continue
		}
		r.relayed.Store(uint64(f.rec.Position))
		r.published.Add(1)
		if r.cfg.OnPublished != nil {
			r.cfg.OnPublished(f.rec.Position)
		}
	}
}

// publishSpan starts the span of publishing rec on subject, child of the
// trace context rec's metadata records, if any.
func (r *Relay) publishSpan(ctx context.Context, rec eventstore.Record, subject string) telemetry.Span {
	var traceparent, tracestate string
	if m, err := codec.DecodeMetadata(rec); err == nil {
		traceparent, tracestate = m.Traceparent, m.Tracestate
	}
	_, span := r.cfg.Tracer.StartProducer(ctx, traceparent, tracestate, "publish "+r.cfg.Stream,
		telemetry.String("messaging.system", "nats"),
		telemetry.String("messaging.operation.type", "send"),
		telemetry.String("messaging.destination.name", subject),
		telemetry.String("messaging.message.id", rec.ID.String()),
		telemetry.String("ledger.event_type", rec.Type),
		telemetry.Int64("ledger.position", int64(rec.Position)))
	return span
}

// duplicate handles an acknowledgement saying the server already holds the
// message id: the checkpoint was behind (resume from the stream), or
// another event with the same id was relayed before, in which case this
// one is published again under an id qualified by its stream, as the
// JetStream store does.
func (r *Relay) duplicate(f inflight, ack *jetstream.PubAck) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.AckTimeout)
	defer cancel()
	m, err := r.stream.GetMsg(ctx, ack.Sequence)
	if err == nil && m.Header.Get(PositionHeader) != strconv.FormatUint(uint64(f.rec.Position), 10) {
		r.mu.Lock()
		r.qualify[f.rec.Position] = true
		r.mu.Unlock()
	}
	return fmt.Errorf("relay: event at %d already stored at sequence %d", f.rec.Position, ack.Sequence)
}

// message returns the published message of rec, expecting the stream to
// end with the message whose id is prevID, or, for the first publish of a
// pass (prevID empty), at sequence last. The id, unlike the sequence,
// cannot be matched by another publisher's message taking the slot a
// failed publish left: a billing notification stored where an event's
// publish failed makes every later publish of the pass fail too.
func (r *Relay) message(rec eventstore.Record, last uint64, prevID string) (*nats.Msg, error) {
	r.mu.Lock()
	qualify := r.qualify[rec.Position]
	r.mu.Unlock()
	body, err := contract.Envelope(rec, r.cfg.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("%w: event at %d: %w", ErrUnpublishable, rec.Position, err)
	}
	id := rec.ID.String()
	if qualify {
		// Another event took this id first: de-duplication would drop
		// this one.
		id += "@" + rec.Stream.String()
	}
	h := nats.Header{
		"Content-Type":        []string{contract.ContentType},
		jetstream.MsgIDHeader: []string{id},
		PositionHeader:        []string{strconv.FormatUint(uint64(rec.Position), 10)},
	}
	if prevID != "" {
		h[jetstream.ExpectedLastMsgIDHeader] = []string{prevID}
	} else {
		h[jetstream.ExpectedLastSeqHeader] = []string{strconv.FormatUint(last, 10)}
	}
	return &nats.Msg{Subject: contract.Subject(rec.Stream, rec.Type), Data: body, Header: h}, nil
}

// Subject returns the subject in the published stream of an event of type
// typ in stream.
func Subject(stream eventstore.StreamID, typ string) string { return contract.Subject(stream, typ) }

// skip logs and counts a record that is not an event of the ledger, once:
// a pass that resumes from an earlier checkpoint meets it again.
func (r *Relay) skip(ctx context.Context, rec eventstore.Record, why error) {
	for {
		last := r.lastSkip.Load()
		if uint64(rec.Position) <= last && last != 0 {
			return
		}
		if r.lastSkip.CompareAndSwap(last, uint64(rec.Position)) {
			break
		}
	}
	r.skipped.Add(1)
	attrs := []slog.Attr{slog.Uint64("position", uint64(rec.Position)), slog.String("reason", reason(why))}
	if rec.Stream.Account != "" {
		attrs = append(attrs, slog.String("event_stream", rec.Stream.String()), slog.Uint64("revision", rec.Revision))
	}
	r.log.LogAttrs(ctx, slog.LevelWarn, "record skipped, not relayed: not an event of the ledger", attrs...)
}

// reason says why a record was skipped without quoting it.
func reason(err error) string {
	if errors.Is(err, ErrUnpublishable) {
		return "type or account cannot be a subject token, or not a CloudEvent"
	}
	return codec.Reason(err)
}

// chains are the hash chains of the streams one pass meets, verified as
// the read models verify them ([codec.Link]), on the records' metadata.
type chains struct {
	src   eventstore.Store
	links map[eventstore.StreamID]*codec.Link
}

func newChains(src eventstore.Store) *chains {
	return &chains{src: src, links: map[eventstore.StreamID]*codec.Link{}}
}

// verify moves rec's stream's chain past rec and returns nil when rec is
// the stream's next event, or an error for which codec.Unfoldable holds
// when it is not. Other errors (reading the stream failed) say nothing of
// rec.
func (c *chains) verify(ctx context.Context, rec eventstore.Record) error {
	l, ok := c.links[rec.Stream]
	if !ok {
		var err error
		if l, err = c.rebuild(ctx, rec.Stream, rec.Revision); err != nil {
			return err
		}
		c.links[rec.Stream] = l
	}
	return follow(l, rec)
}

// follow moves l past rec as codec.Link says, reading rec's metadata only.
func follow(l *codec.Link, rec eventstore.Record) error {
	meta, err := codec.DecodeMetadata(rec)
	if err != nil {
		return l.Follow(rec, codec.Decoded{}, err)
	}
	return l.Follow(rec, codec.Decoded{Meta: meta}, nil)
}

// rebuild returns the chain of stream before revision rev, read from the
// store.
func (c *chains) rebuild(ctx context.Context, stream eventstore.StreamID, rev uint64) (*codec.Link, error) {
	l := &codec.Link{}
	if rev == 0 {
		return l, nil
	}
	for rec, err := range c.src.ReadStream(ctx, stream, 0) {
		if errors.Is(err, eventstore.ErrUnreadable) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("relay: chain of %s: %w", stream, err)
		}
		if rec.Revision >= rev {
			break
		}
		_ = follow(l, rec)
	}
	return l, nil
}

func compression(on bool) jetstream.StoreCompression {
	if on {
		return jetstream.S2Compression
	}
	return jetstream.NoCompression
}
