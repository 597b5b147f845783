// Package webhooks delivers the published events of an account to the
// HTTP endpoints its admins register, as the Standard Webhooks
// specification describes (https://www.standardwebhooks.com): each
// delivery is a POST of the published CloudEvent, as it is in the
// published stream, with the headers webhook-id (the event id, the same
// on every attempt), webhook-timestamp and webhook-signature
// ("v1,<base64 HMAC-SHA256>" under the endpoint's whsec_ secret).
//
// # Storage
//
// Endpoints live in the JetStream key/value bucket [DefaultBucket] of the
// service's NATS account, one key per endpoint (<account>.<id>), which
// every process of the service shares and which survives restarts; the
// signing secret is kept there, readable by the service's identity only,
// and never written to a log. The delivery log of every endpoint is the
// stream [DefaultLogStream] (one subject per endpoint, bounded in age and
// count).
//
// # Delivery
//
// Each endpoint has a durable pull consumer on the published stream
// (contract.Stream) filtered to its account, with one message in flight
// (MaxAckPending 1): deliveries to an endpoint are in the account's order,
// and two processes sharing NATS never deliver the same message at once.
// Every process runs a goroutine per enabled endpoint, so a slow endpoint
// holds up only itself; each request has its own timeout. A delivery is
// acknowledged only once the endpoint answered 2xx (at least once); a
// failure is retried with the delay of [DefaultRetries] (with up to 20 %
// jitter added) through a negative acknowledgement with delay, so the
// attempt count and the wait survive a restart. When every attempt failed
// (over more than three days by default), the endpoint is disabled and
// keeps its place: re-enabling it resumes delivery at the message that
// failed. A replay makes the endpoint's consumer start again from a
// stream sequence or an instant.
//
// # Addresses
//
// Endpoint URLs are https and reach public addresses only: checked at
// registration (after resolving the host) and on every connection a
// delivery opens (a net.Dialer Control hook sees the address dialled);
// redirects are not followed. [Guard.AllowPrivate] lifts both rules.
package webhooks

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/internal/contract"
)

// Defaults of [Config].
const (
	DefaultBucket    = "webhooks"
	DefaultLogStream = "WEBHOOK_DELIVERIES"
	DefaultTimeout   = 15 * time.Second
	DefaultAckWait   = 5 * time.Second
	// LogMaxAge and LogMaxPerEndpoint bound the delivery log.
	LogMaxAge         = 30 * 24 * time.Hour
	LogMaxPerEndpoint = 10_000
)

// DefaultRetries are the waits after each failed attempt, the schedule
// the Standard Webhooks specification recommends (5 s, 5 min, 30 min,
// 2 h, 5 h, 10 h, 10 h) followed by four attempts 12 hours apart: 12
// attempts over 75.6 hours (more with jitter), after which the endpoint is
// disabled.
var DefaultRetries = []time.Duration{
	5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour,
	12 * time.Hour, 12 * time.Hour, 12 * time.Hour, 12 * time.Hour,
}

// Errors of the service; the API maps them to problems.
var (
	ErrNotFound = errors.New("webhooks: no such endpoint")
	// ErrStreamMissing is a replay or a registration while the published
	// stream does not exist.
	ErrStreamMissing = errors.New("webhooks: the published stream does not exist")
)

// Config is what the service needs. JS is required.
type Config struct {
	// JS is JetStream in the service's NATS account.
	JS jetstream.JetStream
	// Replicas of the bucket and the delivery log stream (1 when 0).
	Replicas int
	// Guard is the address policy of endpoint URLs.
	Guard Guard
	// EventTypes are the published event types a filter may name; when
	// empty, any type of the form a.b.c is accepted.
	EventTypes []string
	// Retries are the waits after each failed attempt (DefaultRetries
	// when nil); once len(Retries)+1 attempts failed, the endpoint is
	// disabled.
	Retries []time.Duration
	// Timeout bounds each delivery request (DefaultTimeout when 0).
	Timeout time.Duration
	// AckWait is how long a message may go without news from the process
	// delivering it before another process takes it over (DefaultAckWait
	// when 0): a process sends news every third of it while a request
	// runs, so it bounds how long the death of a process holds up an
	// endpoint, not how long a request may take.
	AckWait time.Duration
	// RootCAs are the roots trusted in endpoints' TLS certificates; the
	// system's when nil.
	RootCAs *x509.CertPool
	// Bucket and LogStream name the storage (defaults when empty).
	Bucket, LogStream string
	Clock             func() time.Time
	Random            io.Reader
	Logger            *slog.Logger
}

// Endpoint is a registered webhook endpoint as the API shows it: never
// with its secret.
type Endpoint struct {
	ID          string    `json:"id"`
	Account     string    `json:"account"`
	URL         string    `json:"url"`
	EventTypes  []string  `json:"event_types"`
	Description string    `json:"description"`
	CreatedAt   time.Time `json:"created_at"`
	// Enabled is false once every attempt of a delivery failed; the
	// owner enables it again.
	Enabled        bool       `json:"enabled"`
	DisabledAt     *time.Time `json:"disabled_at,omitempty"`
	DisabledReason string     `json:"disabled_reason,omitempty"`
}

// record is an endpoint as stored: with its secret and where its
// consumer starts.
type record struct {
	Endpoint
	Secret string `json:"secret"`
	// Gen numbers the endpoint's consumers: a replay or an enabling after
	// a disabling starts a new one, named after it.
	Gen uint64 `json:"gen"`
	// StartSeq or StartTime is where consumer Gen starts in the published
	// stream.
	StartSeq  uint64     `json:"start_seq,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
	// ResumeSeq is the stream sequence of the message whose delivery
	// failed for good, where enabling resumes.
	ResumeSeq uint64 `json:"resume_seq,omitempty"`
}

// LogValue keeps the secret out of logs.
func (r record) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", r.ID), slog.String("account", r.Account))
}

func (r *record) key() string { return r.Account + "." + r.ID }

func (r *record) consumer() string { return fmt.Sprintf("webhook_%s_%d", r.ID, r.Gen) }

func (r *record) wants(eventType string) bool {
	return len(r.EventTypes) == 0 || slices.Contains(r.EventTypes, eventType)
}

// Registration is what registering an endpoint takes.
type Registration struct {
	URL         string   `json:"url"`
	EventTypes  []string `json:"event_types"`
	Description string   `json:"description"`
}

// Stats are the delivery counters of a process.
type Stats struct {
	Delivered, Failed uint64
	// Pending is how many messages the endpoints this process serves
	// have still to receive, as of each one's last delivery.
	Pending uint64
}

// Service registers endpoints and delivers to them.
type Service struct {
	cfg       Config
	log       *slog.Logger
	kv        jetstream.KeyValue
	logStream jetstream.Stream
	client    *http.Client

	delivered, failed atomic.Uint64
	mu                sync.Mutex
	pending           map[string]uint64 // by endpoint key
}

var typePattern = regexp.MustCompile(`^[a-z0-9]+(\.[a-z0-9_-]+)+$`)

// Open creates the bucket and the delivery log if they do not exist.
func Open(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.JS == nil {
		return nil, errors.New("webhooks: no JetStream")
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Retries == nil {
		cfg.Retries = DefaultRetries
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if cfg.LogStream == "" {
		cfg.LogStream = DefaultLogStream
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Random == nil {
		cfg.Random = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: cfg.Logger, pending: make(map[string]uint64)}
	kv, err := cfg.JS.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = cfg.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      cfg.Bucket,
			Description: "Webhook endpoints of the accounts, with their signing secrets.",
			History:     1, Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = cfg.JS.KeyValue(ctx, cfg.Bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("webhooks: bucket %s: %w", cfg.Bucket, err)
	}
	s.kv = kv
	s.logStream, err = cfg.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              cfg.LogStream,
		Description:       "Attempts to deliver events to webhook endpoints, one subject per endpoint.",
		Subjects:          []string{logSubjectPrefix(cfg.LogStream) + ">"},
		Storage:           jetstream.FileStorage,
		Replicas:          cfg.Replicas,
		MaxAge:            LogMaxAge,
		MaxMsgsPerSubject: LogMaxPerEndpoint,
		Discard:           jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("webhooks: delivery log stream %s: %w", cfg.LogStream, err)
	}
	s.client = s.newClient()
	return s, nil
}

func logSubjectPrefix(stream string) string { return "webhooks." + strings.ToLower(stream) + "." }

func (s *Service) logSubject(r *record) string {
	return logSubjectPrefix(s.cfg.LogStream) + r.Account + "." + r.ID
}

// Register checks reg and stores a new endpoint of account. It returns the
// endpoint and its secret, which is shown this once.
func (s *Service) Register(ctx context.Context, account string, reg Registration) (Endpoint, string, error) {
	return s.register(ctx, account, reg, s.cfg.Guard.CheckURL)
}

func (s *Service) register(ctx context.Context, account string, reg Registration, check func(context.Context, string) (*url.URL, error)) (Endpoint, string, error) {
	u, err := check(ctx, reg.URL)
	if err != nil {
		return Endpoint{}, "", err
	}
	types, err := s.checkTypes(reg.EventTypes)
	if err != nil {
		return Endpoint{}, "", err
	}
	if len(reg.Description) > 500 || !utf8.ValidString(reg.Description) {
		return Endpoint{}, "", refuse(RuleInvalid, "the description must be UTF-8 text of at most 500 bytes")
	}
	now := s.cfg.Clock().UTC()
	id, err := ulid.New(ulid.Timestamp(now), s.cfg.Random)
	if err != nil {
		return Endpoint{}, "", fmt.Errorf("webhooks: endpoint id: %w", err)
	}
	key := make([]byte, 32)
	if _, err := io.ReadFull(s.cfg.Random, key); err != nil {
		return Endpoint{}, "", fmt.Errorf("webhooks: secret: %w", err)
	}
	r := record{
		Endpoint: Endpoint{
			ID: "wh_" + strings.ToLower(id.String()), Account: account, URL: u.String(), EventTypes: types,
			Description: reg.Description, CreatedAt: now, Enabled: true,
		},
		Secret: "whsec_" + base64.StdEncoding.EncodeToString(key),
	}
	// Deliveries start after the last message published so far.
	if info, err := s.stream(ctx); err == nil {
		r.StartSeq = info.State.LastSeq + 1
	} else if errors.Is(err, ErrStreamMissing) {
		r.StartTime = &now
	} else {
		return Endpoint{}, "", err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return Endpoint{}, "", err
	}
	if _, err := s.kv.Create(ctx, r.key(), b); err != nil {
		return Endpoint{}, "", fmt.Errorf("webhooks: store endpoint: %w", err)
	}
	s.log.Info("webhook endpoint registered", "endpoint", r)
	return r.Endpoint, r.Secret, nil
}

func (s *Service) checkTypes(types []string) ([]string, error) {
	out := []string{}
	if len(types) > 100 {
		return nil, refuse(RuleInvalid, "event_types holds more than 100 types")
	}
	for _, t := range types {
		known := typePattern.MatchString(t)
		if len(s.cfg.EventTypes) > 0 {
			known = slices.Contains(s.cfg.EventTypes, t)
		}
		if !known {
			if len(t) > 100 {
				t = t[:100] + "..."
			}
			return nil, refuse(RuleEventTypeUnknown, "event type %q is not a published event type (they are listed in /asyncapi.json and docs/events.md, e.g. dev.licenseledger.user.deactivated.v1)", t)
		}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (s *Service) stream(ctx context.Context) (*jetstream.StreamInfo, error) {
	st, err := s.cfg.JS.Stream(ctx, contract.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, ErrStreamMissing
	}
	if err != nil {
		return nil, fmt.Errorf("webhooks: stream %s: %w", contract.Stream, err)
	}
	return st.Info(ctx)
}

// validID reports whether id can be an endpoint id (so that a key built
// from it names no other key).
func validID(id string) bool {
	if !strings.HasPrefix(id, "wh_") || len(id) != 3+26 {
		return false
	}
	for _, c := range id[3:] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}

func (s *Service) get(ctx context.Context, account, id string) (record, uint64, error) {
	if !validID(id) {
		return record{}, 0, ErrNotFound
	}
	e, err := s.kv.Get(ctx, account+"."+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return record{}, 0, ErrNotFound
	}
	if err != nil {
		return record{}, 0, fmt.Errorf("webhooks: read endpoint: %w", err)
	}
	var r record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return record{}, 0, fmt.Errorf("webhooks: endpoint %s: %w", id, err)
	}
	return r, e.Revision(), nil
}

// Get returns an endpoint of account.
func (s *Service) Get(ctx context.Context, account, id string) (Endpoint, error) {
	r, _, err := s.get(ctx, account, id)
	return r.Endpoint, err
}

// List returns up to limit endpoints of account with ids after after, in
// id order (which is the order of registration), and whether more follow.
func (s *Service) List(ctx context.Context, account, after string, limit int) ([]Endpoint, bool, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, account+".*")
	if err != nil {
		return nil, false, fmt.Errorf("webhooks: list endpoints: %w", err)
	}
	var ids []string
	for k := range lister.Keys() {
		if id := strings.TrimPrefix(k, account+"."); id > after {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	more := len(ids) > limit
	if more {
		ids = ids[:limit]
	}
	out := []Endpoint{}
	for _, id := range ids {
		r, _, err := s.get(ctx, account, id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, false, err
		}
		out = append(out, r.Endpoint)
	}
	return out, more, nil
}

// Delete removes an endpoint of account, its consumer and its delivery
// log.
func (s *Service) Delete(ctx context.Context, account, id string) error {
	r, rev, err := s.get(ctx, account, id)
	if err != nil {
		return err
	}
	if err := s.kv.Delete(ctx, r.key(), jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("webhooks: delete endpoint: %w", err)
	}
	s.dropConsumer(ctx, r)
	if err := s.logStream.Purge(ctx, jetstream.WithPurgeSubject(s.logSubject(&r))); err != nil {
		s.log.Warn("webhook delivery log not purged", "endpoint", r, "err", err)
	}
	s.log.Info("webhook endpoint deleted", "endpoint", r)
	return nil
}

func (s *Service) dropConsumer(ctx context.Context, r record) {
	err := s.cfg.JS.DeleteConsumer(ctx, contract.Stream, r.consumer())
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		s.log.Warn("webhook consumer not deleted", "endpoint", r, "err", err)
	}
}

// update applies change to an endpoint and stores it if the endpoint did
// not change meanwhile (retrying a few times if it did).
func (s *Service) update(ctx context.Context, account, id string, change func(*record) error) (record, record, error) {
	for range 5 {
		r, rev, err := s.get(ctx, account, id)
		if err != nil {
			return record{}, record{}, err
		}
		old := r
		old.EventTypes = slices.Clone(r.EventTypes)
		before, err := json.Marshal(r)
		if err != nil {
			return record{}, record{}, err
		}
		if err := change(&r); err != nil {
			return record{}, record{}, err
		}
		b, err := json.Marshal(r)
		if err != nil {
			return record{}, record{}, err
		}
		if bytes.Equal(b, before) {
			return old, r, nil // nothing to store: deliveries go on undisturbed
		}
		_, err = s.kv.Update(ctx, r.key(), b, rev)
		if err == nil {
			return old, r, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return record{}, record{}, fmt.Errorf("webhooks: update endpoint: %w", err)
		}
	}
	return record{}, record{}, errors.New("webhooks: the endpoint changes too often to update")
}

// Enable enables a disabled endpoint: its deliveries resume at the message
// whose delivery failed for good. Enabling an enabled endpoint changes
// nothing.
func (s *Service) Enable(ctx context.Context, account, id string) (Endpoint, error) {
	old, r, err := s.update(ctx, account, id, func(r *record) error {
		if r.Enabled {
			return nil
		}
		r.Enabled, r.DisabledAt, r.DisabledReason = true, nil, ""
		if r.ResumeSeq > 0 {
			r.Gen++
			r.StartSeq, r.StartTime, r.ResumeSeq = r.ResumeSeq, nil, 0
		}
		return nil
	})
	if err != nil {
		return Endpoint{}, err
	}
	if old.Gen != r.Gen {
		s.dropConsumer(ctx, old)
	}
	if !old.Enabled {
		s.log.Info("webhook endpoint enabled", "endpoint", r)
	}
	return r.Endpoint, nil
}

// From is where a replay starts: a sequence of the published stream (the
// sequence of the delivery log's entries) or an instant (the first message
// published at or after it). Exactly one is given.
type From struct {
	Sequence uint64     `json:"from_sequence,omitempty"`
	Time     *time.Time `json:"from_time,omitempty"`
}

// Replay makes the endpoint's deliveries start again at from: every
// message of the account from there on is delivered again, in order, and
// then the new ones. A disabled endpoint stays disabled (enable it to
// start).
func (s *Service) Replay(ctx context.Context, account, id string, from From) (Endpoint, error) {
	if (from.Sequence == 0) == (from.Time == nil) {
		return Endpoint{}, refuse(RuleInvalid, "a replay takes exactly one of from_sequence (a sequence of the delivery log, 1 or more) and from_time (RFC 3339)")
	}
	old, r, err := s.update(ctx, account, id, func(r *record) error {
		r.Gen++
		r.StartSeq, r.StartTime, r.ResumeSeq = from.Sequence, nil, 0
		if from.Time != nil {
			t := from.Time.UTC()
			r.StartTime = &t
		}
		return nil
	})
	if err != nil {
		return Endpoint{}, err
	}
	s.dropConsumer(ctx, old)
	s.log.Info("webhook endpoint replays", "endpoint", r, "from_sequence", from.Sequence)
	return r.Endpoint, nil
}

// disable disables the endpoint after a delivery failed for good, keeping
// the failed message's sequence to resume at.
func (s *Service) disable(ctx context.Context, r record, seq uint64, reason string) error {
	_, _, err := s.update(ctx, r.Account, r.ID, func(cur *record) error {
		if cur.Gen != r.Gen || !cur.Enabled {
			return nil // replayed or disabled meanwhile
		}
		now := s.cfg.Clock().UTC()
		cur.Enabled, cur.DisabledAt, cur.DisabledReason, cur.ResumeSeq = false, &now, reason, seq
		return nil
	})
	return err
}

// Stats returns the process's delivery counters.
func (s *Service) Stats() Stats {
	st := Stats{Delivered: s.delivered.Load(), Failed: s.failed.Load()}
	s.mu.Lock()
	for _, n := range s.pending {
		st.Pending += n
	}
	s.mu.Unlock()
	return st
}

func (s *Service) setPending(key string, n uint64, gone bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if gone {
		delete(s.pending, key)
		return
	}
	s.pending[key] = n
}
