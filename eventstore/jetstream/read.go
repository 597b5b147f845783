package jetstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
)

// streamBatch is how many messages the ordered consumer of a ReadStream
// asks for at once; it asks for more when half of them have been read. It
// bounds what one read holds in memory, whatever the length of the
// stream: at most streamBatch messages (about 1 KB each for the ledger's
// events) delivered and not yet read, and no more in the server's
// outbound buffer for the read. Reads of one stream run per request (the
// raw history export reads an account's whole activity history), many at
// once; a batch of 1,000 held over a megabyte per read, and read a long
// stream for no less CPU per event (BenchmarkReadStream).
var streamBatch = 128

// allBatch is streamBatch for ReadAll and Subscribe (and the headers-only
// scan of a stream that holds a foreign message): the few long-lived
// readers of the whole log (read models, the relay), which replay it at
// start, keep the larger batch.
const allBatch = 1000

// ReadStream implements [eventstore.Store.ReadStream]. It reads the stream's
// subjects through an ordered consumer up to the event that was last when
// the read began. JetStream indexes subjects, not revisions: a read from a
// later revision first bisects the sequences to find it.
func (s *Store) ReadStream(ctx context.Context, stream eventstore.StreamID, from uint64) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		if err := s.open(); err != nil {
			yield(eventstore.Record{}, err)
			return
		}
		if err := checkStream(stream); err != nil {
			yield(eventstore.Record{}, err)
			return
		}
		h, err := s.loadHead(ctx, stream)
		if err != nil {
			yield(eventstore.Record{}, err)
			return
		}
		if h.n == 0 {
			yield(eventstore.Record{}, fmt.Errorf("jetstream: read %s: %w", stream, eventstore.ErrStreamNotFound))
			return
		}
		if from >= h.n {
			return
		}
		if h.n <= smallStream {
			s.walk(ctx, stream, h, from, yield)
			return
		}
		cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter(stream)}}
		if from > 0 {
			seq, err := s.seek(ctx, stream, h, from)
			if err != nil {
				yield(eventstore.Record{}, err)
				return
			}
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq
		}
		for again := true; again; {
			again = false
			first := true // no event of the stream read yet
			for rec, err := range s.consume(ctx, cfg, h.seq, streamBatch) {
				if err == nil && first && rec.Revision > from && cfg.OptStartSeq > 0 {
					// The seek landed past revision from: a foreign
					// copy of a later event misled the bisection. Read
					// the stream from its start instead.
					cfg.DeliverPolicy, cfg.OptStartSeq, again = jetstream.DeliverAllPolicy, 0, true
					break
				}
				if err == nil {
					first = false
				}
				if err == nil && rec.Revision < from {
					continue
				}
				if !yield(rec, err) || stops(err) {
					return
				}
			}
		}
	}
}

// smallStream is the size up to which ReadStream gets a stream's messages
// one by one rather than set up an ordered consumer, which costs more than
// a few gets.
const smallStream = 16

// walk yields the events of stream one message get at a time, up to head h.
func (s *Store) walk(ctx context.Context, stream eventstore.StreamID, h head, from uint64, yield func(eventstore.Record, error) bool) {
	f := filter(stream)
	reached := false // whether an event at from or later was read
	for seq := uint64(1); seq <= h.seq; seq++ {
		m, err := s.stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(f))
		if err != nil {
			yield(eventstore.Record{}, fmt.Errorf("jetstream: read %s: %w", stream, err))
			return
		}
		seq = m.Sequence
		if seq > h.seq {
			return
		}
		rec, err := record(m.Subject, m.Header, m.Data, seq, m.Time)
		switch {
		case err == nil && rec.Revision < from:
			continue
		case err != nil && from > 0 && !reached:
			continue // a foreign message among the revisions before from
		case err == nil:
			reached = true
		}
		if !yield(rec, err) || stops(err) {
			return
		}
	}
}

// ReadAll implements [eventstore.Store.ReadAll]. On an embedded server it
// reads the stream's block files when it safely can (see readFiles),
// otherwise, and from where they end, it reads with an ordered consumer
// over the whole stream.
func (s *Store) ReadAll(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		if err := s.open(); err != nil {
			yield(eventstore.Record{}, err)
			return
		}
		last, err := s.lastSequence(ctx)
		if err != nil {
			yield(eventstore.Record{}, fmt.Errorf("jetstream: read all: %w", err))
			return
		}
		if last <= uint64(after) {
			return
		}
		if last-uint64(after) >= minFileRead && s.filesReadable(ctx) {
			next, stopped := s.readFiles(ctx, uint64(after)+1, last, yield)
			if stopped || next == 0 {
				return
			}
			after = eventstore.Position(next - 1)
		}
		for rec, err := range s.consume(ctx, startAfter(after), last, allBatch) {
			if !yield(rec, err) || stops(err) {
				return
			}
		}
	}
}

// LastPosition returns the global position of the last event stored (the
// sequence of the stream's last message), 0 when the stream is empty.
// Like [Store.ReadAll] it asks with a message get, which the stream leader
// answers: no position an append has returned is ever above it.
func (s *Store) LastPosition(ctx context.Context) (eventstore.Position, error) {
	if err := s.open(); err != nil {
		return 0, err
	}
	last, err := s.lastSequence(ctx)
	if err != nil {
		return 0, fmt.Errorf("jetstream: last position: %w", err)
	}
	return eventstore.Position(last), nil
}

// lastSequence returns the sequence of the stream's last message, 0 when
// it holds none. A message get is isolated from atomic batch commits
// (stream info is not), so the sequence is never inside a batch.
//
// The server answers a get of the last message on ">" with the message at
// the stream's last sequence, and with not found when that message was
// removed (nats stream rmm, a secure delete): the sequence stays the
// stream's last though no message holds it. The get is then asked again
// on "*.>", which matches every subject of the stream (all have a
// category and more) and which the server answers with the last message
// it holds, at the cost of a look at every subject's index.
func (s *Store) lastSequence(ctx context.Context) (uint64, error) {
	m, err := s.stream.GetLastMsgForSubject(ctx, ">")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		m, err = s.stream.GetLastMsgForSubject(ctx, "*.>")
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return m.Sequence, nil
}

// Subscribe implements [eventstore.Store.Subscribe]. It ends with ctx's
// error when ctx ends and with [eventstore.ErrClosed] when the store closes.
func (s *Store) Subscribe(ctx context.Context, after eventstore.Position) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		if err := s.open(); err != nil {
			yield(eventstore.Record{}, err)
			return
		}
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-s.done:
				cancel()
			case <-sctx.Done():
			}
		}()
		for rec, err := range s.consume(sctx, startAfter(after), 0, allBatch) {
			// Close marks the store closed before it ends the
			// subscriptions and drains the connection, whose iterator
			// may fail before sctx is cancelled.
			if stops(err) && ctx.Err() == nil && (sctx.Err() != nil || s.open() != nil) {
				err = eventstore.ErrClosed
			}
			if !yield(rec, err) || stops(err) {
				return
			}
		}
	}
}

func (s *Store) open() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return eventstore.ErrClosed
	}
	return nil
}

func startAfter(after eventstore.Position) jetstream.OrderedConsumerConfig {
	if after == 0 {
		return jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	}
	return jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: uint64(after) + 1}
}

// consume yields the messages an ordered consumer delivers, up to sequence
// stopAt (0: forever, until ctx ends), asking for batch messages at once.
func (s *Store) consume(ctx context.Context, cfg jetstream.OrderedConsumerConfig, stopAt uint64, batch int) iter.Seq2[eventstore.Record, error] {
	return func(yield func(eventstore.Record, error) bool) {
		cons, err := s.js.OrderedConsumer(ctx, s.cfg.Stream, cfg)
		if err != nil {
			yield(eventstore.Record{}, fmt.Errorf("jetstream: ordered consumer: %w", err))
			return
		}
		it, err := cons.Messages(jetstream.PullMaxMessages(batch))
		if err != nil {
			yield(eventstore.Record{}, fmt.Errorf("jetstream: ordered consumer: %w", err))
			return
		}
		defer it.Stop()
		for {
			msg, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				if ctx.Err() != nil {
					err = ctx.Err()
				}
				yield(eventstore.Record{}, fmt.Errorf("jetstream: read: %w", err))
				return
			}
			md, err := msg.Metadata()
			if err != nil {
				yield(eventstore.Record{}, fmt.Errorf("jetstream: read: %w", err))
				return
			}
			seq := md.Sequence.Stream
			if stopAt > 0 && seq > stopAt {
				return
			}
			rec, err := record(msg.Subject(), msg.Headers(), msg.Data(), seq, md.Timestamp)
			if !yield(rec, err) || stops(err) {
				return
			}
			// Stop at the sequence that was last when the read began, never
			// on "nothing pending": on a cluster the consumer may sit on a
			// replica still catching up, whose pending count says nothing
			// of what the leader acknowledged.
			if stopAt > 0 && seq >= stopAt {
				return
			}
		}
	}
}

// record decodes a stored message. A message the store did not write in
// this form (a foreign publish) yields an [eventstore.UnreadableError]
// and a record holding its position, store time and, when its subject
// names one, its stream; the reason never quotes the message.
func record(subj string, h nats.Header, body []byte, seq uint64, stored time.Time) (eventstore.Record, error) {
	return decodeRecord(subj, storedHeadersOf(h), body, seq, stored)
}

// storedHeadersOf takes the values a stored message is read with out of
// its headers.
func storedHeadersOf(h nats.Header) storedHeaders {
	return storedHeaders{
		revision: h.Get(RevisionHeader),
		expected: expectedOf(h),
		batchSeq: h.Get(batchSeqHeader),
		batchID:  h.Get(batchIDHeader),
		metadata: h.Get(MetadataHeader),
	}
}

// storedHeaders are the values of the headers a stored message is read
// with ("" when absent).
type storedHeaders struct {
	revision, expected, batchSeq, batchID, metadata string
}

// written is [written] over storedHeaders.
func (h storedHeaders) written() bool {
	if h.expected != "" {
		return true
	}
	n, err := strconv.Atoi(h.batchSeq)
	return err == nil && n >= 2 && h.batchID != ""
}

// rawHeaders are storedHeaders as slices of the header block they were
// read from (nil when absent).
type rawHeaders struct {
	revision, expected, batchSeq, batchID, metadata []byte
}

// parts returns what the headers tell of the message, as decodeRecord
// reads them from storedHeaders, without copying them.
func (h *rawHeaders) parts() recordParts {
	var m recordParts
	m.revision, m.revisionOK = parseDecimal(h.revision)
	if len(h.expected) > 0 {
		m.written = true
	} else {
		var n uint64
		var ok bool
		if len(h.batchSeq) <= 18 {
			n, ok = parseDecimal(h.batchSeq)
		}
		if !ok && len(h.batchSeq) > 0 { // a sign, say: as storedHeaders.written reads it
			i, err := strconv.Atoi(string(h.batchSeq))
			n, ok = uint64(max(i, 0)), err == nil
		}
		m.written = ok && n >= 2 && len(h.batchID) > 0
	}
	if len(h.metadata) > 0 {
		m.metadata = string(h.metadata)
	}
	return m
}

// parseDecimal is strconv.ParseUint(string(b), 10, 64) without copying b.
func parseDecimal(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 18 {
		n, err := strconv.ParseUint(string(b), 10, 64)
		return n, err == nil
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// parseStoredHeaders reads the values record needs out of a message's
// header block ("NATS/1.0\r\n" then "Key: value\r\n" lines and an
// empty line) without building a [nats.Header], reading what
// [nats.DecodeHeadersMsg] and nats.Header.Get read: keys match exactly,
// the first value counts (empty or not), and a value loses the blanks
// before it, not those after it. Only the values it keeps are copied.
func parseStoredHeaders(b []byte) (rawHeaders, error) {
	var h rawHeaders
	var seen uint8 // the headers met so far, by bit
	line, rest, ok := bytes.Cut(b, crlf)
	if !ok || !bytes.HasPrefix(line, natsHeaderLine) {
		return h, errors.New("jetstream: malformed header block")
	}
	for {
		line, rest, ok = bytes.Cut(rest, crlf)
		if !ok {
			return h, errors.New("jetstream: malformed header block")
		}
		if len(line) == 0 {
			return h, nil
		}
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			return h, errors.New("jetstream: malformed header line")
		}
		var dst *[]byte
		var bit uint8
		switch string(line[:i]) { // no allocation: compared in place
		case RevisionHeader:
			dst, bit = &h.revision, 1
		case jetstream.ExpectedLastSubjSeqHeader, expectedLastSeqHeader:
			dst, bit = &h.expected, 2
		case batchSeqHeader:
			dst, bit = &h.batchSeq, 4
		case batchIDHeader:
			dst, bit = &h.batchID, 8
		case MetadataHeader:
			dst, bit = &h.metadata, 16
		default:
			continue
		}
		if seen&bit == 0 {
			seen |= bit
			*dst = bytes.TrimLeft(line[i+1:], " \t")
		}
	}
}

var (
	crlf           = []byte("\r\n")
	natsHeaderLine = []byte("NATS/1.0")
)

func decodeRecord(subj string, h storedHeaders, body []byte, seq uint64, stored time.Time) (eventstore.Record, error) {
	stream, ok := streamOf(subj)
	ok = ok && checkStream(stream) == nil
	rev, err := strconv.ParseUint(h.revision, 10, 64)
	return newRecord(recordParts{stream: stream, streamOK: ok, revision: rev, revisionOK: err == nil,
		written: h.written(), metadata: h.metadata}, body, nil, seq, stored)
}

// recordParts is what decodeRecord learns of a stored message from its
// subject and headers.
type recordParts struct {
	stream              eventstore.StreamID
	streamOK            bool // the subject names a stream
	revision            uint64
	revisionOK, written bool
	metadata            string // the metadata header
}

// newRecord is decodeRecord once the subject and the headers are read;
// with a parser p, the record's bytes are copied out of body (see
// eventstore.CloudEventParser).
func newRecord(m recordParts, body []byte, p *eventstore.CloudEventParser, seq uint64, stored time.Time) (eventstore.Record, error) {
	at := eventstore.Record{Position: eventstore.Position(seq), Stored: stored}
	unreadable := func(reason string) (eventstore.Record, error) {
		return at, &eventstore.UnreadableError{Position: at.Position, Stream: at.Stream, Reason: reason}
	}
	if !m.streamOK {
		return unreadable("subject is not <category>.<account>.<type>")
	}
	stream := m.stream
	at.Stream = stream
	rev := m.revision
	if !m.revisionOK {
		return unreadable("missing or malformed " + RevisionHeader + " header")
	}
	if !m.written {
		return unreadable("published without the expectation every append of the store carries")
	}
	var e eventstore.ParsedCloudEvent
	var err error
	if p != nil {
		e, err = p.Parse(body)
	} else {
		e, err = eventstore.ParseCloudEvent(body)
	}
	if err != nil {
		return unreadable("body is not a ledger CloudEvents envelope")
	}
	if e.Metadata == nil && m.metadata != "" {
		e.Metadata = []byte(m.metadata)
	}
	return eventstore.Record{
		ID:       e.ID,
		Stream:   stream,
		Type:     e.Type,
		Data:     e.Data,
		Metadata: e.Metadata,
		Revision: rev,
		Position: eventstore.Position(seq),
		Stored:   stored,
	}, nil
}

// stops reports whether a read ends after yielding err: every error but
// one about a single unreadable record does.
func stops(err error) bool { return err != nil && !errors.Is(err, eventstore.ErrUnreadable) }

// LastEvent returns the last event of stream with one message get, which
// the server answers from its index of subjects without reading the
// stream's other messages: what a reader that kept the rest of a stream
// (an account snapshot) needs to go on from. It returns an error matching
// [eventstore.ErrStreamNotFound] when the stream holds no message, and an
// [eventstore.UnreadableError] when its last message is not one the store
// wrote.
func (s *Store) LastEvent(ctx context.Context, stream eventstore.StreamID) (eventstore.Record, error) {
	if err := s.open(); err != nil {
		return eventstore.Record{}, err
	}
	if err := checkStream(stream); err != nil {
		return eventstore.Record{}, err
	}
	m, err := s.stream.GetLastMsgForSubject(ctx, filter(stream))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return eventstore.Record{}, fmt.Errorf("jetstream: last event of %s: %w", stream, eventstore.ErrStreamNotFound)
	}
	if err != nil {
		return eventstore.Record{}, fmt.Errorf("jetstream: last event of %s: %w", stream, err)
	}
	return record(m.Subject, m.Header, m.Data, m.Sequence, m.Time)
}
