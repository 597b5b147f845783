package webhooks

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go/jetstream"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/licenseledger/ledger/internal/contract"
)

// newClient returns the HTTP client of deliveries: every connection
// checked by the guard, no proxy (a proxy would dial in its place), no
// redirect followed.
func (s *Service) newClient() *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: s.cfg.Guard.control}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		TLSClientConfig:       &tls.Config{RootCAs: s.cfg.RootCAs, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: s.cfg.Timeout,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Run delivers to every enabled endpoint until ctx ends: it follows the
// bucket of endpoints and keeps one worker per enabled endpoint, stopped
// when the endpoint is deleted, disabled or replayed (and started again
// for the new consumer).
func (s *Service) Run(ctx context.Context) error {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("webhooks: watch endpoints: %w", err)
	}
	defer func() { _ = w.Stop() }()
	type running struct {
		rev    uint64
		cancel context.CancelFunc
		done   chan struct{}
	}
	workers := make(map[string]*running)
	var wg sync.WaitGroup
	stop := func(key string) {
		if r := workers[key]; r != nil {
			r.cancel()
			<-r.done
			delete(workers, key)
			s.setPending(key, 0, true)
		}
	}
	defer func() {
		for k := range workers {
			workers[k].cancel()
		}
		wg.Wait()
	}()
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e0, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("webhooks: the watch of endpoints ended")
			}
			e = e0
		}
		if e == nil {
			continue // the bucket's current entries are all read
		}
		key := e.Key()
		if e.Operation() != jetstream.KeyValuePut {
			stop(key)
			continue
		}
		var r record
		if err := json.Unmarshal(e.Value(), &r); err != nil || r.key() != key {
			s.log.Warn("webhook endpoint unreadable: skipped", "key", key, "err", err)
			stop(key)
			continue
		}
		if cur := workers[key]; cur != nil && cur.rev == e.Revision() {
			continue
		}
		stop(key)
		if !r.Enabled {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		run := &running{rev: e.Revision(), cancel: cancel, done: make(chan struct{})}
		workers[key] = run
		wg.Go(func() {
			defer close(run.done)
			s.work(wctx, r)
		})
	}
}

// work delivers the messages of one endpoint's consumer, one at a time,
// until ctx ends.
func (s *Service) work(ctx context.Context, r record) {
	wait := time.Second
	warned := false
	for ctx.Err() == nil {
		cons, err := s.consumer(ctx, r)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !warned {
				s.log.Warn("webhook deliveries wait for their consumer", "endpoint", r, "err", err)
				warned = true
			}
			sleep(ctx, wait)
			wait = min(2*wait, 30*time.Second)
			continue
		}
		warned, wait = false, time.Second
		// One message per pull, the pull's wait bounded on the server's
		// side as on this one. A pull given up on (the worker stopping)
		// could still take a message: it is handed back at once.
		for ctx.Err() == nil {
			batch, err := cons.Fetch(1, jetstream.FetchMaxWait(pollWait))
			if err != nil {
				s.log.Debug("webhook fetch", "endpoint", r, "err", err)
				sleep(ctx, 100*time.Millisecond)
				break // the consumer may be gone: look it up again
			}
			var msg jetstream.Msg
			select {
			case m, ok := <-batch.Messages():
				if ok {
					msg = m
				}
			case <-ctx.Done():
				go handBack(batch.Messages())
				return
			}
			if msg != nil {
				s.handle(ctx, r, msg)
				continue
			}
			if err := batch.Error(); err != nil {
				if ctx.Err() == nil {
					s.log.Debug("webhook fetch", "endpoint", r, "err", err)
					sleep(ctx, 100*time.Millisecond)
				}
				break
			}
		}
	}
}

// pollWait is how long a pull for an endpoint's next message waits on
// the server: it bounds the pulls an idle endpoint costs.
const pollWait = 30 * time.Second

// handBack gives the messages of an abandoned pull back to the server,
// to be sent again at once.
func handBack(msgs <-chan jetstream.Msg) {
	for m := range msgs {
		_ = m.Nak()
	}
}

// consumer returns the endpoint's durable consumer, creating it if need
// be (every process creates the same one).
func (s *Service) consumer(ctx context.Context, r record) (jetstream.Consumer, error) {
	c, err := s.cfg.JS.Consumer(ctx, contract.Stream, r.consumer())
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	// Created only while the endpoint is still at this generation: a
	// replay or a deletion drops the consumer, which must not come back.
	cur, _, err := s.get(ctx, r.Account, r.ID)
	if err != nil {
		return nil, err
	}
	if cur.Gen != r.Gen || !cur.Enabled {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	cfg := jetstream.ConsumerConfig{
		Durable:        r.consumer(),
		Description:    "webhook deliveries of account " + r.Account,
		FilterSubjects: contract.AccountFilters(r.Account),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        s.cfg.AckWait,
		MaxAckPending:  1,
		MaxDeliver:     -1,
	}
	switch {
	case r.StartTime != nil:
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, r.StartTime
	case r.StartSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, r.StartSeq
	default:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	return s.cfg.JS.CreateConsumer(ctx, contract.Stream, cfg)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// envelope is what deliveries read of a published CloudEvent.
type envelope struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

// handle delivers one message: acknowledged once delivered, or when the
// endpoint does not want its type; retried later after a failure; and
// after the last failure, the endpoint is disabled with the message
// pending.
func (s *Service) handle(ctx context.Context, r record, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		s.log.Warn("webhook delivery: message without metadata", "endpoint", r, "err", err)
		return
	}
	s.setPending(r.key(), meta.NumPending+1, false)
	var env envelope
	if err := json.Unmarshal(msg.Data(), &env, json.RejectUnknownMembers(false)); err != nil || env.ID == "" {
		s.log.Warn("webhook delivery: message of the published stream is not a CloudEvent: skipped", "endpoint", r, "sequence", meta.Sequence.Stream)
		_ = msg.Term()
		return
	}
	if !r.wants(env.Type) {
		if err := msg.Ack(); err != nil {
			s.log.Debug("webhook ack", "endpoint", r, "err", err)
		}
		s.setPending(r.key(), meta.NumPending, false)
		return
	}
	attempt := int(meta.NumDelivered)
	start := s.cfg.Clock()
	status, derr := s.postInProgress(ctx, r, env.ID, msg)
	d := Delivery{
		EventID: env.ID, EventType: env.Type, Sequence: meta.Sequence.Stream, Attempt: attempt,
		At: start.UTC(), Status: status, DurationMS: time.Since(start).Milliseconds(),
	}
	if derr == nil {
		d.Outcome = OutcomeDelivered
		s.record(ctx, r, d)
		// A lost acknowledgement only makes the message come again, still
		// before any later one (one in flight).
		if err := msg.Ack(); err != nil {
			s.log.Warn("webhook delivery not acknowledged: it will be sent again", "endpoint", r, "sequence", meta.Sequence.Stream, "err", err)
			return
		}
		s.delivered.Add(1)
		s.setPending(r.key(), meta.NumPending, false)
		return
	}
	if ctx.Err() != nil {
		// Stopping: another process, or the next start, delivers it.
		_ = msg.Nak()
		return
	}
	s.failed.Add(1)
	d.Outcome, d.Error = OutcomeFailed, derr.Error()
	if attempt > len(s.cfg.Retries) {
		d.Outcome = OutcomeGaveUp
		s.record(ctx, r, d)
		reason := fmt.Sprintf("%d attempts to deliver event %s failed, the last: %s", attempt, env.ID, d.Error)
		// Disabling stops this worker (the bucket's update reaches Run)
		// while the update may still be answering: not on ctx.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := s.disable(dctx, r, meta.Sequence.Stream, reason)
		cancel()
		if err != nil {
			s.log.Warn("webhook endpoint not disabled: the delivery is tried again in a minute", "endpoint", r, "err", err)
			_ = msg.NakWithDelay(time.Minute)
			return
		}
		s.log.Warn("webhook endpoint disabled: every attempt of a delivery failed", "endpoint", r, "attempts", attempt)
		// The message stays pending on this consumer; enabling starts a
		// new one at it.
		<-ctx.Done()
		return
	}
	delay := s.cfg.Retries[attempt-1]
	delay += time.Duration(rand.Int64N(int64(delay)/5 + 1)) // up to 20 % more
	next := s.cfg.Clock().Add(delay).UTC()
	d.NextAttemptAt = &next
	s.record(ctx, r, d)
	if err := msg.NakWithDelay(delay); err != nil {
		s.log.Debug("webhook nak", "endpoint", r, "err", err)
	}
}

// postInProgress posts msg, telling the server every third of the ack
// wait that it is still being delivered.
func (s *Service) postInProgress(ctx context.Context, r record, id string, msg jetstream.Msg) (int, error) {
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(s.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return s.post(ctx, r, id, msg.Data())
}

// post sends one delivery and returns the status and nil on a 2xx answer.
func (s *Service) post(ctx context.Context, r record, id string, payload []byte) (int, error) {
	wh, err := standardwebhooks.NewWebhook(r.Secret)
	if err != nil {
		return 0, fmt.Errorf("the endpoint's secret is unusable: %w", err)
	}
	ts := s.cfg.Clock()
	sig, err := wh.Sign(id, ts, payload)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(payload))
	if err != nil {
		return 0, fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Content-Type", "application/cloudevents+json")
	req.Header.Set("User-Agent", "licenseledger-webhooks/1")
	req.Header.Set(standardwebhooks.HeaderWebhookID, id)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, describe(err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			return resp.StatusCode, fmt.Errorf("answered %d: redirects are not followed", resp.StatusCode)
		}
		return resp.StatusCode, fmt.Errorf("answered %d", resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// describe says why a request failed without the URL (which the log
// already names).
func describe(err error) error {
	switch {
	case errors.Is(err, ErrAddressRefused):
		return errors.New("refused: the host's address is not public")
	case errors.Is(err, context.DeadlineExceeded):
		return errors.New("no answer within the timeout")
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("no answer within the timeout")
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return fmt.Errorf("connection failed: %s", oe.Err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return errors.New("request failed: " + ue.Err.Error())
	}
	return errors.New("request failed")
}
