package webhooks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go/jetstream"
)

// Outcomes of a delivery attempt.
const (
	OutcomeDelivered = "delivered" // the endpoint answered 2xx
	OutcomeFailed    = "failed"    // another answer or none: retried at next_attempt_at
	OutcomeGaveUp    = "gave_up"   // the last attempt failed: the endpoint is disabled
)

// Delivery is one attempt to deliver an event, as the delivery log keeps
// it.
type Delivery struct {
	// LogSequence orders the log; a page's next cursor stands after it.
	LogSequence uint64 `json:"log_sequence"`
	EventID     string `json:"event_id"`
	EventType   string `json:"event_type"`
	// Sequence is the event's sequence in the published stream: a replay
	// from it delivers it again.
	Sequence      uint64     `json:"sequence"`
	Attempt       int        `json:"attempt"`
	At            time.Time  `json:"at"`
	Outcome       string     `json:"outcome"`
	Status        int        `json:"status,omitempty"`
	Error         string     `json:"error,omitempty"`
	DurationMS    int64      `json:"duration_ms"`
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
}

func (s *Service) record(ctx context.Context, r record, d Delivery) {
	b, err := json.Marshal(d)
	if err == nil {
		// Not waited for: the log must not slow deliveries down. Entries
		// of an endpoint are published in order on one connection.
		_, err = s.cfg.JS.PublishAsync(s.logSubject(&r), b)
	}
	if err != nil && ctx.Err() == nil {
		s.log.Warn("webhook delivery log not written", "endpoint", r, "err", err)
	}
}

// Deliveries returns up to limit attempts of an endpoint of account
// logged after log sequence after, oldest first, and whether more follow.
func (s *Service) Deliveries(ctx context.Context, account, id string, after uint64, limit int) ([]Delivery, bool, error) {
	r, _, err := s.get(ctx, account, id)
	if err != nil {
		return nil, false, err
	}
	subj := s.logSubject(&r)
	out := []Delivery{}
	seq := after + 1
	for len(out) <= limit {
		m, err := s.logStream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return nil, false, fmt.Errorf("webhooks: read delivery log: %w", err)
		}
		var d Delivery
		if err := json.Unmarshal(m.Data, &d); err != nil {
			return nil, false, fmt.Errorf("webhooks: delivery log entry %d: %w", m.Sequence, err)
		}
		d.LogSequence = m.Sequence
		out = append(out, d)
		seq = m.Sequence + 1
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}
