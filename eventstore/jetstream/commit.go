package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/jetstream/internal/reply"
)

// Atomic batch headers (nats-server 2.12+; nats.go has no helper yet).
const (
	batchIDHeader     = "Nats-Batch-Id"
	batchSeqHeader    = "Nats-Batch-Sequence"
	batchCommitHeader = "Nats-Batch-Commit"
)

// batchTimeout bounds a coalesced batch, which no caller's context covers.
const batchTimeout = 10 * time.Second

// request is one append waiting to be coalesced into a batch.
type request struct {
	stream eventstore.StreamID
	msgs   []*nats.Msg
	done   chan result
}

type result struct {
	seq uint64 // sequence of the request's last message
	dup bool   // the server had the message already
	err error
}

// publish stores msgs, all or none, and returns the sequence of the last.
// Appends small enough are handed to the committers to share a batch with
// appends to other streams, unless the store syncs the server's files
// itself: then the appends share the sync instead.
func (s *Store) publish(ctx context.Context, stream eventstore.StreamID, msgs []*nats.Msg) (uint64, bool, error) {
	if err := ctx.Err(); err != nil {
		// Nothing sent (the select below could still pick the send).
		return 0, false, err
	}
	if s.syncer != nil || s.cfg.MaxBatch <= 1 || len(msgs) >= s.cfg.MaxBatch {
		return s.publishAlone(ctx, msgs)
	}
	r := &request{stream: stream, msgs: msgs, done: make(chan result, 1)}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return 0, false, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res.seq, res.dup, res.err
	case <-ctx.Done():
		// The batch may still be stored; a retry will find it.
		return 0, false, ctx.Err()
	}
}

// publishAlone stores msgs as one publish or one atomic batch.
func (s *Store) publishAlone(ctx context.Context, msgs []*nats.Msg) (uint64, bool, error) {
	if len(msgs) == 1 {
		return s.publishOne(ctx, msgs[0])
	}
	seq, err := s.publishBatch(ctx, msgs)
	return seq, false, err
}

// publishOne publishes m and returns the sequence the server stored it at
// and whether it was a duplicate, as the JetStream client's PublishMsg
// does, but waits for the answer on a reply box of the store's and reads
// the server's usual acknowledgement without the reflection of
// encoding/json (reply.Boxes.Publish).
func (s *Store) publishOne(ctx context.Context, m *nats.Msg) (uint64, bool, error) {
	return s.boxes.Publish(ctx, m)
}

// parseAck reads the server's usual acknowledgement (reply.ParseAck).
func parseAck(b []byte) (seq uint64, dup bool, ok bool) { return reply.ParseAck(b) }

// pubAck is the server's answer to a publish to a stream.
type pubAck = reply.PubAck

// batchAck is the server's answer to an atomic batch commit.
type batchAck struct {
	Error    *jetstream.APIError `json:"error,omitempty"`
	Stream   string              `json:"stream"`
	Sequence uint64              `json:"seq"`
	Batch    string              `json:"batch"`
	Count    int                 `json:"count"`
}

// publishBatch publishes msgs as one JetStream atomic batch: the server
// stages every message and stores them all, or none, when the last one
// carrying Nats-Batch-Commit arrives. It returns the last message's
// sequence; the batch's sequences are contiguous.
func (s *Store) publishBatch(ctx context.Context, msgs []*nats.Msg) (uint64, error) {
	last, err := s.stageBatch(msgs)
	if err != nil {
		return 0, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, batchTimeout)
		defer cancel()
	}
	resp, err := s.nc.RequestMsgWithContext(ctx, last)
	if err != nil {
		return 0, fmt.Errorf("commit batch: %w", err)
	}
	return batchAcked(resp.Data, len(msgs))
}

// stageBatch marks msgs as one atomic batch, the last one committing
// it, publishes all but the last and returns the last, for the caller to
// send with a reply subject. Staged messages are sent without one: the
// server then sends no per-message acknowledgement, only the commit's.
func (s *Store) stageBatch(msgs []*nats.Msg) (*nats.Msg, error) {
	id := nuid.Next()
	for i, m := range msgs {
		m.Header[batchIDHeader] = []string{id}
		m.Header[batchSeqHeader] = []string{strconv.Itoa(i + 1)}
	}
	last := msgs[len(msgs)-1]
	last.Header[batchCommitHeader] = []string{"1"}
	for _, m := range msgs[:len(msgs)-1] {
		if err := s.nc.PublishMsg(m); err != nil {
			return nil, fmt.Errorf("publish batch: %w", err)
		}
	}
	return last, nil
}

func stripBatchHeaders(msgs []*nats.Msg) {
	for _, m := range msgs {
		m.Header.Del(batchIDHeader)
		m.Header.Del(batchSeqHeader)
		m.Header.Del(batchCommitHeader)
	}
}

// openBatch is the coalesced batch the commit loop is filling. Its
// messages go to the server as the appends arrive, so that the server
// stages them while earlier batches commit; the commit is an end-of-batch
// marker sent once no append is waiting, or the batch is full.
type openBatch struct {
	id      string
	reqs    []*request
	streams map[eventstore.StreamID]bool
	n       int   // messages staged or held
	staged  bool  // the first request's messages are on their way
	err     error // staging failed: the batch will not commit
	subject string
}

// add takes r into the batch unless it cannot share it: another append to
// the same stream (its expectation depends on the first's outcome) or too
// many messages.
func (s *Store) add(b *openBatch, r *request) bool {
	if b.streams[r.stream] || b.n+len(r.msgs) > s.cfg.MaxBatch {
		return false
	}
	b.streams[r.stream] = true
	b.reqs = append(b.reqs, r)
	if len(b.reqs) == 1 {
		// A batch of one append is published alone, which costs the
		// server less than staging it: hold its messages until a second
		// append arrives.
		b.n = len(r.msgs)
		return true
	}
	if !b.staged {
		b.staged = true
		b.n = 0
		s.stage(b, b.reqs[0])
	}
	s.stage(b, r)
	return true
}

// stage sends r's messages to the server as part of batch b, without a
// reply subject: the server then acknowledges only the commit.
func (s *Store) stage(b *openBatch, r *request) {
	for _, m := range r.msgs {
		b.n++
		if b.err != nil {
			continue
		}
		m.Header[batchIDHeader] = []string{b.id}
		m.Header[batchSeqHeader] = []string{strconv.Itoa(b.n)}
		if err := s.nc.PublishMsg(m); err != nil {
			b.err = fmt.Errorf("stage batch: %w", err)
		}
		b.subject = m.Subject
	}
}

// commitLoop coalesces queued appends to distinct streams into atomic
// batches until the store closes. Up to Config.Committers batches commit at
// once while the next one fills.
func (s *Store) commitLoop() {
	defer s.workers.Done()
	slots := make(chan struct{}, s.cfg.Committers)
	var commits sync.WaitGroup
	defer commits.Wait()
	var carry []*request // appends left for the next batch
	for {
		b := &openBatch{id: nuid.Next(), streams: make(map[eventstore.StreamID]bool)}
		kept := carry[:0]
		for _, r := range carry {
			if !s.add(b, r) {
				kept = append(kept, r)
			}
		}
		carry = kept
		if len(b.reqs) == 0 {
			select {
			case r := <-s.reqs:
				s.add(b, r)
			case <-s.stop:
				return
			}
		}
		take := func(r *request) {
			if !s.add(b, r) {
				carry = append(carry, r)
			}
		}
	fill:
		for {
			// Take every append already waiting.
		drain:
			for b.n < s.cfg.MaxBatch && len(carry) < s.cfg.MaxBatch {
				select {
				case r := <-s.reqs:
					take(r)
				default:
					break drain
				}
			}
			if b.n >= s.cfg.MaxBatch || len(carry) >= s.cfg.MaxBatch {
				slots <- struct{}{}
				break fill
			}
			// Commit as soon as a commit may start; until then keep
			// filling.
			select {
			case slots <- struct{}{}:
				break fill
			case r := <-s.reqs:
				take(r)
			}
		}
		commits.Add(1)
		go func() {
			defer func() {
				<-slots
				commits.Done()
			}()
			s.commit(b)
		}()
	}
}

// commit ends batch b and answers each append in it. When the batch fails,
// one wrong expectation or duplicate among them is enough, each append is
// published on its own so each gets its own answer.
func (s *Store) commit(b *openBatch) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	if !b.staged {
		r := b.reqs[0]
		seq, dup, err := s.publishAlone(ctx, r.msgs)
		r.done <- result{seq: seq, dup: dup, err: err}
		return
	}
	err := b.err
	var last uint64
	if err == nil {
		last, err = s.commitStaged(ctx, b)
	}
	if err == nil {
		s.batches.Add(1)
		s.batched.Add(uint64(b.n))
		seq := last - uint64(b.n)
		for _, r := range b.reqs {
			seq += uint64(len(r.msgs))
			r.done <- result{seq: seq}
		}
		return
	}
	if !isConflict(err) && !isDuplicate(err) {
		s.log.Debug("coalesced batch failed, publishing its appends one by one", "appends", len(b.reqs), "err", err)
	}
	done := make(chan struct{}, len(b.reqs))
	for _, r := range b.reqs {
		stripBatchHeaders(r.msgs)
		go func() {
			seq, dup, err := s.publishAlone(ctx, r.msgs)
			r.done <- result{seq: seq, dup: dup, err: err}
			done <- struct{}{}
		}()
	}
	for range b.reqs {
		<-done
	}
}

// commitStaged sends the end-of-batch marker that commits the staged
// messages of b (the server stores no message for it) and returns the
// sequence of the last one stored.
func (s *Store) commitStaged(ctx context.Context, b *openBatch) (uint64, error) {
	eob := nats.NewMsg(b.subject)
	eob.Header[batchIDHeader] = []string{b.id}
	eob.Header[batchSeqHeader] = []string{strconv.Itoa(b.n + 1)}
	eob.Header[batchCommitHeader] = []string{"eob"}
	resp, err := s.nc.RequestMsgWithContext(ctx, eob)
	if err != nil {
		return 0, fmt.Errorf("commit batch: %w", err)
	}
	return batchAcked(resp.Data, b.n)
}

// batchAcked reads the server's answer to the commit of a batch of n
// messages.
func batchAcked(data []byte, n int) (uint64, error) {
	var ack batchAck
	if err := json.Unmarshal(data, &ack); err != nil {
		return 0, fmt.Errorf("commit batch: bad acknowledgement %q: %w", data, err)
	}
	if ack.Error != nil {
		return 0, fmt.Errorf("commit batch: %w", ack.Error)
	}
	if ack.Count != n || ack.Sequence < uint64(n) {
		return 0, fmt.Errorf("commit batch: acknowledged %d messages at %d, sent %d", ack.Count, ack.Sequence, n)
	}
	return ack.Sequence, nil
}
