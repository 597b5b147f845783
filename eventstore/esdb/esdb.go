// Package esdb is the EventStoreDB / KurrentDB backend of the event store,
// built on EventStore-Client-Go/v4.
//
// # Streams
//
// Each [eventstore.StreamID] is one EventStoreDB stream named by
// StreamID.String(): "ledger-<account>" and "activity-<account>". Events are
// written with their own ids, content type application/json, Data as the
// event's data and Metadata as its user metadata, both byte for byte.
//
// # Global order
//
// [Store.ReadAll] and [Store.Subscribe] read $all through a server-side
// stream-name filter that keeps only this service's streams (prefixes
// "ledger-" and "activity-"), so system events and other applications'
// streams never reach the client. A record's Position is the event's commit
// position in $all. The client offers filters only on subscriptions, so
// ReadAll is a filtered catch-up subscription that stops at the last event
// $all held when the read began.
//
// Subscribe survives dropped connections: when the subscription fails it
// subscribes again from the last event it delivered, with a bounded backoff,
// until its context ends.
//
// Every method returns when its context ends, also while the client waits
// for a connection, which it does without looking at contexts, and a client
// that gave up is replaced; see package clients.
package esdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/esdb/internal/clients"
)

var _ eventstore.Store = (*Store)(nil)

// streamPrefixes are the stream-name prefixes of this service's streams, the
// server-side filter of ReadAll and Subscribe.
var streamPrefixes = []string{string(eventstore.Ledger) + "-", string(eventstore.Activity) + "-"}

// Resubscription backoff: doubled after each failed attempt, reset once a
// subscription delivers again.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// readCount is the count sent with whole-stream reads. The server takes
// counts as signed 64-bit numbers, as the .NET client's default shows.
const readCount = math.MaxInt64

// Store is an [eventstore.Store] on an EventStoreDB node or cluster. It is
// safe for concurrent use.
type Store struct {
	logger *slog.Logger
	pool   *clients.Pool

	mu     sync.Mutex
	closed bool
	subs   map[*int]context.CancelFunc // live Subscribe calls, cancelled by Close

	written *written
}

// Open connects to the node or cluster named by connString, an EventStoreDB
// connection string such as "esdb://localhost:2113?tls=false", and checks
// that $all can be read. The client logs through logger at debug level.
func Open(ctx context.Context, connString string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	conf, err := esdb.ParseConnectionString(connString)
	if err != nil {
		return nil, fmt.Errorf("esdb: parse connection string: %w", err)
	}
	clientLog := logger.With("component", "esdb-client")
	conf.Logger = func(level esdb.LogLevel, format string, args ...any) {
		// The client reports as errors what the adapter handles (dropped
		// subscriptions, cancelled calls); the adapter logs what matters.
		if clientLog.Enabled(context.Background(), slog.LevelDebug) {
			clientLog.Debug(fmt.Sprintf(format, args...), "level", level)
		}
	}
	s := &Store{logger: logger, subs: map[*int]context.CancelFunc{}, written: newWritten()}
	if s.pool, err = clients.New(*conf, eventstore.ErrClosed); err != nil {
		return nil, err
	}
	if _, _, err := s.head(ctx); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("esdb: open %s: %w", conf.Address, err)
	}
	return s, nil
}

// current returns the client to use, or ErrClosed.
func (s *Store) current() (*clients.Conn, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, eventstore.ErrClosed
	}
	return s.pool.Current()
}

// Close closes the connection and ends every subscription; later calls
// return [eventstore.ErrClosed].
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, cancel := range s.subs {
		cancel()
	}
	s.mu.Unlock()
	// A call still inside the client ends by its own context; the client
	// closes after the last one.
	s.pool.Close()
	return nil
}

// fail translates a client error into the store's terms, keeping the cause.
func (s *Store) fail(ctx context.Context, cn *clients.Conn, op string, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		if errors.Is(err, ctxErr) {
			return fmt.Errorf("esdb: %s: %w", op, err)
		}
		return fmt.Errorf("esdb: %s: %w (%w)", op, ctxErr, err)
	}
	if errors.Is(err, clients.ErrReplaced) {
		if _, cerr := s.current(); cerr != nil {
			return fmt.Errorf("esdb: %s: %w", op, cerr)
		}
		return fmt.Errorf("esdb: %s: %w", op, err)
	}
	var e *esdb.Error
	if errors.As(err, &e) {
		switch e.Code() {
		case esdb.ErrorCodeResourceNotFound:
			return fmt.Errorf("esdb: %s: %w (%w)", op, eventstore.ErrStreamNotFound, err)
		case esdb.ErrorCodeConnectionClosed:
			if _, cerr := s.current(); cerr != nil {
				return fmt.Errorf("esdb: %s: %w", op, cerr)
			}
			s.pool.Failed(cn, err)
		}
	}
	return fmt.Errorf("esdb: %s: %w", op, err)
}

func toExpected(e eventstore.ExpectedRevision) esdb.ExpectedRevision {
	if rev, ok := e.Revision(); ok {
		return esdb.Revision(rev)
	}
	if e.IsNoStream() {
		return esdb.NoStream{}
	}
	return esdb.Any{}
}

// Append writes events to stream if it is at expected; see
// [eventstore.Store.Append].
func (s *Store) Append(ctx context.Context, stream eventstore.StreamID, expected eventstore.ExpectedRevision, events ...eventstore.Proposed) (eventstore.AppendResult, error) {
	if _, err := s.current(); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("esdb: append to %s: %w", stream, err)
	}
	if res, ok := s.written.lookup(stream, events); ok {
		return res, nil
	}
	data := make([]esdb.EventData, len(events))
	for i, e := range events {
		data[i] = esdb.EventData{
			EventID:     e.ID,
			EventType:   e.Type,
			ContentType: esdb.ContentTypeJson,
			Data:        e.Data,
			Metadata:    e.Metadata,
		}
	}
	opts := esdb.AppendToStreamOptions{ExpectedRevision: toExpected(expected)}
	wr, cn, err := clients.Start(ctx, s.pool, func(c *esdb.Client) (*esdb.WriteResult, error) {
		return c.AppendToStream(ctx, stream.String(), opts, data...)
	})
	if err != nil {
		var e *esdb.Error
		if errors.As(err, &e) && e.Code() == esdb.ErrorCodeWrongExpectedVersion {
			return eventstore.AppendResult{}, fmt.Errorf("esdb: append to %s at %s: %w (%w)", stream, expected, eventstore.ErrConflict, err)
		}
		return eventstore.AppendResult{}, s.fail(ctx, cn, "append to "+stream.String(), err)
	}
	res := eventstore.AppendResult{NextRevision: wr.NextExpectedVersion, Position: eventstore.Position(wr.CommitPosition)}
	if wr.CommitPosition == 0 && len(events) > 0 {
		// A write the server recognised as a retry is answered without a
		// position; the stored events still have theirs.
		rec, err := s.readOne(ctx, stream, wr.NextExpectedVersion)
		if err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("esdb: append to %s: position of replayed write: %w", stream, err)
		}
		res.Position = rec.Position
	}
	s.written.add(stream, events, res)
	return res, nil
}

// readOne returns the event of stream at revision rev.
func (s *Store) readOne(ctx context.Context, stream eventstore.StreamID, rev uint64) (eventstore.Record, error) {
	rs, cn, err := clients.Open(ctx, s.pool, func(c *esdb.Client) (*esdb.ReadStream, error) {
		return c.ReadStream(ctx, stream.String(), esdb.ReadStreamOptions{From: esdb.Revision(rev)}, 1)
	})
	if err != nil {
		return eventstore.Record{}, s.fail(ctx, cn, "read "+stream.String(), err)
	}
	defer cn.Release()
	defer rs.Close()
	ev, err := clients.Recv(ctx, s.pool, cn, rs)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("esdb: read %s at %d: %w", stream, rev, eventstore.ErrStreamNotFound)
		}
		return eventstore.Record{}, s.fail(ctx, cn, "read "+stream.String(), err)
	}
	return toRecord(ev)
}

// ReadStream yields the events of stream from revision from; see
// [eventstore.Store.ReadStream].
func (s *Store) ReadStream(ctx context.Context, stream eventstore.StreamID, from uint64) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		op := "read " + stream.String()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel() // ends the read ahead
		rs, cn, err := clients.Open(ctx, s.pool, func(c *esdb.Client) (*esdb.ReadStream, error) {
			return c.ReadStream(ctx, stream.String(), esdb.ReadStreamOptions{From: esdb.Revision(from)}, readCount)
		})
		if err != nil {
			yield(eventstore.Record{}, s.fail(ctx, cn, op, err))
			return
		}
		events := clients.ReadAhead(ctx, cn, rs)
		for {
			var o clients.Outcome[*esdb.ResolvedEvent]
			select {
			case o = <-events:
			case <-ctx.Done():
				o.Err = context.Cause(ctx)
			}
			if errors.Is(o.Err, io.EOF) {
				return
			}
			if o.Err != nil {
				yield(eventstore.Record{}, s.fail(ctx, cn, op, o.Err))
				return
			}
			rec, err := toRecord(o.V)
			if !yield(rec, err) || stops(err) {
				return
			}
		}
	}
}

// head returns the position of the last event in $all, and false when $all
// is empty.
func (s *Store) head(ctx context.Context) (esdb.Position, bool, error) {
	rs, cn, err := clients.Open(ctx, s.pool, func(c *esdb.Client) (*esdb.ReadStream, error) {
		return c.ReadAll(ctx, esdb.ReadAllOptions{Direction: esdb.Backwards, From: esdb.End{}}, 1)
	})
	if err != nil {
		return esdb.Position{}, false, s.fail(ctx, cn, "read head of $all", err)
	}
	defer cn.Release()
	defer rs.Close()
	ev, err := clients.Recv(ctx, s.pool, cn, rs)
	if errors.Is(err, io.EOF) {
		return esdb.Position{}, false, nil
	}
	if err != nil {
		return esdb.Position{}, false, s.fail(ctx, cn, "read head of $all", err)
	}
	return ev.OriginalEvent().Position, true, nil
}

// LastPosition returns the commit position of the last event in $all, 0
// when $all is empty. $all also holds system events, so it may be above
// the last event of this service: it is a bound no position an append has
// returned exceeds.
func (s *Store) LastPosition(ctx context.Context) (eventstore.Position, error) {
	if _, err := s.current(); err != nil {
		return 0, fmt.Errorf("esdb: last position: %w", err)
	}
	head, ok, err := s.head(ctx)
	if err != nil || !ok {
		return 0, err
	}
	return eventstore.Position(head.Commit), nil
}

func subscribeOptions(from esdb.AllPosition) esdb.SubscribeToAllOptions {
	return esdb.SubscribeToAllOptions{
		From:   from,
		Filter: &esdb.SubscriptionFilter{Type: esdb.StreamFilterType, Prefixes: streamPrefixes},
	}
}

// allFrom is where a subscription starts to yield the events after p.
func allFrom(p eventstore.Position) esdb.AllPosition {
	if p == 0 {
		return esdb.Start{}
	}
	return esdb.Position{Commit: uint64(p), Prepare: uint64(p)}
}

func isAfter(a, b esdb.Position) bool {
	return a.Commit > b.Commit || a.Commit == b.Commit && a.Prepare > b.Prepare
}

// ReadAll yields this service's events after position after, up to the last
// event stored when the read began; see [eventstore.Store.ReadAll].
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		const op = "read $all"
		if _, err := s.current(); err != nil {
			yield(eventstore.Record{}, fmt.Errorf("esdb: %s: %w", op, err))
			return
		}
		head, ok, err := s.head(ctx)
		if err != nil {
			yield(eventstore.Record{}, err)
			return
		}
		if !ok || head.Commit <= uint64(after) {
			return
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		sub, cn, err := clients.Open(ctx, s.pool, func(c *esdb.Client) (*esdb.Subscription, error) {
			return c.SubscribeToAll(ctx, subscribeOptions(allFrom(after)))
		})
		if err != nil {
			yield(eventstore.Record{}, s.fail(ctx, cn, op, err))
			return
		}
		defer cn.Release()
		defer sub.Close()
		for {
			ev := sub.Recv()
			switch {
			case ev.EventAppeared != nil:
				pos := ev.EventAppeared.OriginalEvent().Position
				if isAfter(pos, head) {
					return
				}
				rec, err := toRecord(ev.EventAppeared)
				if !yield(rec, err) || stops(err) || pos == head {
					return
				}
			case ev.CheckPointReached != nil:
				if !isAfter(head, *ev.CheckPointReached) {
					return
				}
			case ev.CaughtUp != nil:
				return
			case ev.SubscriptionDropped != nil:
				yield(eventstore.Record{}, s.fail(ctx, cn, op, ev.SubscriptionDropped.Error))
				return
			}
		}
	}
}

// Subscribe yields this service's events after position after, then each
// new one, until ctx ends or the store closes; see
// [eventstore.Store.Subscribe]. A failed subscription is renewed from the
// last event delivered, so no event is lost or repeated.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		const op = "subscribe to $all"
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		key := new(int)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			yield(eventstore.Record{}, fmt.Errorf("esdb: %s: %w", op, eventstore.ErrClosed))
			return
		}
		s.subs[key] = cancel
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			delete(s.subs, key)
			s.mu.Unlock()
		}()

		from := allFrom(after)
		backoff := minBackoff
		for attempt := 1; ; attempt++ {
			delivered, next, cn, err := s.follow(ctx, from, yield)
			from = next
			if err == nil {
				return // the consumer stopped
			}
			if delivered {
				backoff, attempt = minBackoff, 1
			}
			s.pool.Failed(cn, err)
			if _, cerr := s.current(); cerr != nil {
				yield(eventstore.Record{}, fmt.Errorf("esdb: %s: %w", op, cerr))
				return
			}
			if ctx.Err() != nil {
				yield(eventstore.Record{}, fmt.Errorf("esdb: %s: %w", op, context.Cause(ctx)))
				return
			}
			if permanent(err) {
				yield(eventstore.Record{}, fmt.Errorf("esdb: %s: %w", op, err))
				return
			}
			s.logger.LogAttrs(ctx, slog.LevelWarn, "esdb subscription dropped, resubscribing",
				slog.Int("attempt", attempt), slog.Duration("backoff", backoff), slog.Any("error", err))
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// follow runs one subscription from from, yielding its events. It returns
// whether it delivered any, where to resume, the client it used, and why it
// ended; a nil error means the consumer stopped.
func (s *Store) follow(ctx context.Context, from esdb.AllPosition, yield func(eventstore.Record, error) bool) (bool, esdb.AllPosition, *clients.Conn, error) {
	sub, cn, err := clients.Open(ctx, s.pool, func(c *esdb.Client) (*esdb.Subscription, error) {
		return c.SubscribeToAll(ctx, subscribeOptions(from))
	})
	if err != nil {
		return false, from, cn, err
	}
	defer cn.Release()
	defer sub.Close()
	delivered := false
	for {
		ev := sub.Recv()
		switch {
		case ev.EventAppeared != nil:
			rec, err := toRecord(ev.EventAppeared)
			if !yield(rec, err) {
				return delivered, from, cn, nil
			}
			delivered = true
			from = ev.EventAppeared.OriginalEvent().Position
		case ev.SubscriptionDropped != nil:
			return delivered, from, cn, ev.SubscriptionDropped.Error
		}
	}
}

// permanent reports whether a subscription error will not go away by
// subscribing again.
func permanent(err error) bool {
	var e *esdb.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() {
	case esdb.ErrorCodeUnauthenticated, esdb.ErrorCodeAccessDenied, esdb.ErrorCodeUnsupportedFeature:
		return true
	}
	return false
}

// toRecord converts an event read from the server. An event of a stream
// whose name is not <category>-<account> (an empty account, say, which
// the store never writes to) yields an [eventstore.UnreadableError] and a
// record holding its position and store time: reads go on past it.
// Everything else the server holds in a ledger or activity stream is a
// record, whatever its data and metadata: whether it is an event of the
// stream is for its reader to verify.
func toRecord(ev *esdb.ResolvedEvent) (eventstore.Record, error) {
	e := ev.OriginalEvent()
	id, err := parseStream(e.StreamID)
	if err != nil {
		pos := eventstore.Position(e.Position.Commit)
		return eventstore.Record{Position: pos, Stored: e.CreatedDate},
			&eventstore.UnreadableError{Position: pos, Reason: "stream name is not <category>-<account>"}
	}
	return eventstore.Record{
		ID:       e.EventID,
		Stream:   id,
		Type:     e.EventType,
		Data:     e.Data,
		Metadata: e.UserMetadata,
		Revision: e.EventNumber,
		Position: eventstore.Position(e.Position.Commit),
		Stored:   e.CreatedDate,
	}, nil
}

// parseStream is the inverse of StreamID.String for this service's streams.
func parseStream(name string) (eventstore.StreamID, error) {
	for _, c := range []eventstore.Category{eventstore.Ledger, eventstore.Activity} {
		if acct, ok := strings.CutPrefix(name, string(c)+"-"); ok && acct != "" {
			return eventstore.StreamID{Category: c, Account: acct}, nil
		}
	}
	return eventstore.StreamID{}, fmt.Errorf("esdb: stream %q is not a ledger or activity stream", name)
}

// stops reports whether a read ends after yielding err: every error but
// one about a single unreadable record does.
func stops(err error) bool { return err != nil && !errors.Is(err, eventstore.ErrUnreadable) }
