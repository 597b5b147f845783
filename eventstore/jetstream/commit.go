package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/licenseledger/ledger/eventstore"
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
// appends to other streams.
func (s *Store) publish(ctx context.Context, stream eventstore.StreamID, msgs []*nats.Msg) (uint64, bool, error) {
	if s.cfg.MaxBatch <= 1 || len(msgs) >= s.cfg.MaxBatch {
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
		ack, err := s.js.PublishMsg(ctx, msgs[0])
		if err != nil {
			return 0, false, err
		}
		return ack.Sequence, ack.Duplicate, nil
	}
	seq, err := s.publishBatch(ctx, msgs)
	return seq, false, err
}

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
	id := nuid.Next()
	for i, m := range msgs {
		m.Header.Set(batchIDHeader, id)
		m.Header.Set(batchSeqHeader, strconv.Itoa(i+1))
	}
	last := msgs[len(msgs)-1]
	last.Header.Set(batchCommitHeader, "1")
	// Staged messages are sent without a reply subject: the server then
	// sends no per-message acknowledgement, only the commit's.
	for _, m := range msgs[:len(msgs)-1] {
		if err := s.nc.PublishMsg(m); err != nil {
			return 0, fmt.Errorf("publish batch: %w", err)
		}
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
	var ack batchAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("commit batch: bad acknowledgement %q: %w", resp.Data, err)
	}
	if ack.Error != nil {
		return 0, fmt.Errorf("commit batch: %w", ack.Error)
	}
	if ack.Count != len(msgs) || ack.Sequence < uint64(len(msgs)) {
		return 0, fmt.Errorf("commit batch: acknowledged %d messages at %d, sent %d", ack.Count, ack.Sequence, len(msgs))
	}
	return ack.Sequence, nil
}

func stripBatchHeaders(msgs []*nats.Msg) {
	for _, m := range msgs {
		m.Header.Del(batchIDHeader)
		m.Header.Del(batchSeqHeader)
		m.Header.Del(batchCommitHeader)
	}
}

// commitLoop coalesces queued appends to distinct streams into atomic
// batches until the store closes.
func (s *Store) commitLoop() {
	defer s.workers.Done()
	var carry []*request // appends left for the next batch
	for {
		var batch []*request
		streams := make(map[eventstore.StreamID]bool)
		n := 0
		take := func(r *request) bool {
			if streams[r.stream] || n+len(r.msgs) > s.cfg.MaxBatch {
				return false
			}
			streams[r.stream] = true
			n += len(r.msgs)
			batch = append(batch, r)
			return true
		}
		if len(carry) == 0 {
			select {
			case r := <-s.reqs:
				take(r)
			case <-s.stop:
				return
			}
		}
		kept := carry[:0]
		for _, r := range carry {
			if !take(r) {
				kept = append(kept, r)
			}
		}
		carry = kept
	drain:
		for n < s.cfg.MaxBatch {
			select {
			case r := <-s.reqs:
				if !take(r) {
					// Two appends to one stream cannot share a batch: the
					// second's expectation depends on the first.
					carry = append(carry, r)
					if len(carry) >= s.cfg.MaxBatch {
						break drain
					}
				}
			default:
				break drain
			}
		}
		s.commit(batch)
	}
}

// commit stores a coalesced batch and answers each append in it. When the
// batch fails, one wrong expectation or duplicate among them is enough, each
// append is published on its own so each gets its own answer.
func (s *Store) commit(batch []*request) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	if len(batch) == 1 {
		r := batch[0]
		seq, dup, err := s.publishAlone(ctx, r.msgs)
		r.done <- result{seq: seq, dup: dup, err: err}
		return
	}
	var all []*nats.Msg
	for _, r := range batch {
		all = append(all, r.msgs...)
	}
	last, err := s.publishBatch(ctx, all)
	if err == nil {
		seq := last - uint64(len(all))
		for _, r := range batch {
			seq += uint64(len(r.msgs))
			r.done <- result{seq: seq}
		}
		return
	}
	if !isConflict(err) && !isDuplicate(err) {
		s.log.Debug("coalesced batch failed, publishing its appends one by one", "appends", len(batch), "err", err)
	}
	done := make(chan struct{}, len(batch))
	for _, r := range batch {
		stripBatchHeaders(r.msgs)
		go func() {
			seq, dup, err := s.publishAlone(ctx, r.msgs)
			r.done <- result{seq: seq, dup: dup, err: err}
			done <- struct{}{}
		}()
	}
	for range batch {
		<-done
	}
}
