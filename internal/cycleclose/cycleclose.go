// Package cycleclose publishes the CycleClosed notification: when an
// account's monthly billing cycle has ended, its final quantities, taken
// from the billing read model, are published once into the published
// stream ([contract.Stream]) on [contract.BillingSubject] as a CloudEvents
// 1.0 structured JSON envelope of type [Type].
//
// # When a cycle is closed
//
// A cycle of an account ([ledger.CycleStart]) is closed once the clock
// has passed its end by [Config.Grace] and the billing read model has
// applied every event the store held at that moment ([Config.Head],
// [Config.Progress]). Every event is timed by the service's clock when its
// command is decided and appended right after; the clock only moves
// forward. So an event timed before the cycle's end was decided before
// the closing pass, and, unless its command took longer than the grace
// to be appended or the deciding process's clock is behind the closing
// one's by more than the grace, it was stored before the pass read the
// store's head: the final quantities include it. No command is given a
// time by its client, so no event can be back-dated into a closed cycle;
// an event stored after a cycle closed is timed after its end and counts
// in a later cycle.
//
// # Once per account and cycle
//
// The notification's id (the CloudEvent id and Nats-Msg-Id) is a UUIDv5
// of the account and period: a retry and every process compute the same.
// Each account's notifications are published in cycle order on the
// account's billing subject, each one expecting the subject's last
// sequence to be the one the publisher read (JetStream's per-subject
// optimistic concurrency, as the event store appends): when two
// processes close the same cycle, the second publish is refused, the
// loser reads the subject again and finds the cycle published. A retry
// within the stream's de-duplication window is dropped by its id. So
// exactly one final is stored per account and cycle, whichever process
// computed it.
//
// Where an account stands is read from the last message on its subject
// (then kept in memory): every ended cycle after it is published, so an
// account with none gets every cycle since its opening, and cycles that
// ended while no process ran are published at the next start. The stream
// must therefore keep each account's last notification: one whose limits
// removed it would see those cycles published again.
//
// The message's headers are Content-Type (application/cloudevents+json),
// Nats-Msg-Id, and Nats-Expected-Last-Subject-Sequence, which JetStream
// checked and keeps on the copy in [contract.Stream]; the server drops
// Nats-Expected-* headers when it mirrors the stream downstream, and
// webhook deliveries send the body only.
package cycleclose

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/projections/billing"
)

// Type is the CloudEvents type of the notification.
const Type = contract.BillingEventType

// DataSchema returns the URL of the JSON Schema of the notification's
// data, served by licensed at baseURL (its public URL) like the events'
// schemas, and checked in as docs/schemas/<Type>.json.
func DataSchema(baseURL string) string { return contract.DataSchema(baseURL, Type) }

// Defaults of Config.
const (
	DefaultGrace    = 2 * time.Minute
	DefaultInterval = 30 * time.Second
)

// namespace is the UUIDv5 namespace of notification ids.
var namespace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://licenseledger.dev/billing/cycle-closed"))

// ID returns the stable id of the notification of account's cycle of
// period: the CloudEvent id and the Nats-Msg-Id.
func ID(account, period string) string {
	return uuid.NewSHA1(namespace, []byte(account+"\x00"+period)).String()
}

// Source returns the CloudEvents source of an account's notifications:
// the account's resource in the API.
func Source(account string) string { return contract.Source(account) }

// Billing is the billing read model; *billing.Projection is one.
type Billing interface {
	// Openings returns the opened accounts with their opening instants.
	Openings() []billing.Opening
	// Cycle returns an account's cycle starting in period, counted up to
	// now.
	Cycle(account, period string, now time.Time) (billing.Cycle, error)
}

// Head tells the position of the last event the store holds; the event
// stores implement it.
type Head interface {
	LastPosition(ctx context.Context) (eventstore.Position, error)
}

// Progress waits for the read models; the projection runner is one.
type Progress interface {
	// Wait returns when the read models have applied position p.
	Wait(ctx context.Context, p eventstore.Position) error
}

// Config is what a Notifier needs. JS, Billing, Head, Progress and Clock
// are required.
type Config struct {
	// JS publishes into [contract.Stream] and reads its billing subjects.
	JS       jetstream.JetStream
	Billing  Billing
	Head     Head
	Progress Progress
	// Clock is the service's clock.
	Clock func() time.Time
	// Grace is how long after a cycle's end it is closed
	// (DefaultGrace when 0): longer than a command takes from being
	// timed to being stored, plus the clock skew between processes.
	Grace time.Duration
	// Interval is how often Run looks for cycles to close (DefaultInterval
	// when 0).
	Interval time.Duration
	// Replicas of the stream when Run creates it (1 when 0).
	Replicas int
	// BaseURL is the service's public URL, which the notification's
	// dataschema starts with ([contract.DefaultBaseURL] when empty).
	BaseURL string
	Logger  *slog.Logger
	// OnPublished, when set, is called for each notification published.
	OnPublished func(account, period string)
}

// Notifier publishes CycleClosed notifications.
type Notifier struct {
	cfg Config
	mu  sync.Mutex // one pass at a time
	// last is, per account, the last notification known on its subject.
	last map[string]lastNotice
}

type lastNotice struct {
	seq   uint64 // stream sequence, 0 for none
	index int    // cycle index, -1 for none
}

// New returns a notifier.
func New(cfg Config) *Notifier {
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Notifier{cfg: cfg, last: map[string]lastNotice{}}
}

// Data is the data of a CycleClosed notification: the final quantities
// of an account's cycle, named as GET /v1/accounts/{account}/billing
// names them.
type Data struct {
	Account string `json:"account"`
	// Period is the month the cycle starts in, YYYY-MM.
	Period              string              `json:"period"`
	Index               int                 `json:"index"`
	Start               time.Time           `json:"start"`
	End                 time.Time           `json:"end"`
	CycleDays           float64             `json:"cycle_days"`
	SeatsBilled         int                 `json:"seats_billed"`
	Purchases           []billing.Purchase  `json:"purchases"`
	Reductions          []billing.Reduction `json:"reductions"`
	ScheduledReductions []billing.Reduction `json:"scheduled_reductions"`
	PeakActive          int                 `json:"peak_active"`
	ActiveUserDays      float64             `json:"active_user_days"`
	Totals              billing.Totals      `json:"totals"`
}

// Envelope is the published message body: a CloudEvents 1.0 structured
// JSON envelope.
type Envelope struct {
	SpecVersion     string    `json:"specversion"`
	ID              string    `json:"id"`
	Source          string    `json:"source"`
	Type            string    `json:"type"`
	Subject         string    `json:"subject"`
	Time            time.Time `json:"time"`
	DataContentType string    `json:"datacontenttype"`
	DataSchema      string    `json:"dataschema"`
	Data            Data      `json:"data"`
}

// Message returns the notification of a closed cycle: its body, the same
// bytes for the same cycle.
func Message(c billing.Cycle, baseURL string) ([]byte, error) {
	if c.InProgress {
		return nil, fmt.Errorf("cycle %s of %q is in progress: %w", c.Period, c.Account, errors.ErrUnsupported)
	}
	env := Envelope{
		SpecVersion: "1.0", ID: ID(c.Account, c.Period), Source: Source(c.Account), Type: Type,
		Subject: c.Period, Time: c.End.UTC(), DataContentType: "application/json", DataSchema: DataSchema(baseURL),
		Data: Data{
			Account: c.Account, Period: c.Period, Index: c.Index, Start: c.Start.UTC(), End: c.End.UTC(),
			CycleDays: c.CycleDays, SeatsBilled: c.SeatsBilled, Purchases: c.Purchases, Reductions: c.Reductions,
			ScheduledReductions: c.ScheduledReductions, PeakActive: c.PeakActive, ActiveUserDays: c.ActiveUserDays,
			Totals: c.Totals,
		},
	}
	return json.Marshal(env, json.Deterministic(true))
}

// EnsureStream creates [contract.Stream] with the subjects of the
// published contract when it does not exist; an existing stream is left
// as it is.
func EnsureStream(ctx context.Context, js jetstream.JetStream, replicas int) error {
	_, err := js.Stream(ctx, contract.Stream)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s: %w", contract.Stream, err)
	}
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name: contract.Stream, Subjects: []string{contract.SubjectPrefix + ">"},
		Storage: jetstream.FileStorage, Replicas: max(replicas, 1),
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return nil // created meanwhile by another process
	}
	if err != nil {
		return fmt.Errorf("create stream %s: %w", contract.Stream, err)
	}
	return nil
}

// Run ensures the stream exists and closes due cycles every Interval
// until ctx ends. A pass that fails is logged and tried again at the next
// interval.
func (n *Notifier) Run(ctx context.Context) error {
	t := time.NewTicker(n.cfg.Interval)
	defer t.Stop()
	for {
		if err := EnsureStream(ctx, n.cfg.JS, n.cfg.Replicas); err != nil {
			n.cfg.Logger.Warn("billing notifications: stream not ready", "err", err)
		} else if _, err := n.CloseDue(ctx); err != nil && ctx.Err() == nil {
			n.cfg.Logger.Warn("billing notifications: pass failed, retried later", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// CloseDue publishes the notification of every cycle that ended at least
// Grace before now and has none yet, in cycle order per account, once the
// billing read model has applied everything the store holds. It returns
// how many this call published (others may have been published by
// another process meanwhile). An account whose notification cannot be
// published does not stop the others: the errors are returned together
// and its cycles are tried again at the next pass.
func (n *Notifier) CloseDue(ctx context.Context) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.cfg.Clock().UTC()
	cutoff := now.Add(-n.cfg.Grace)
	head, err := n.cfg.Head.LastPosition(ctx)
	if err != nil {
		return 0, fmt.Errorf("store's last position: %w", err)
	}
	if err := n.cfg.Progress.Wait(ctx, head); err != nil {
		return 0, fmt.Errorf("billing read model at position %d: %w", head, err)
	}
	published := 0
	var errs []error
	for _, o := range n.cfg.Billing.Openings() {
		// The last cycle whose end (the next one's start) is at or before
		// the cutoff.
		last := ledger.CycleIndex(o.OpenedAt, cutoff) - 1
		if last < 0 {
			continue
		}
		if l, ok := n.last[o.Account]; ok && l.index >= last {
			continue
		}
		k, err := n.closeAccount(ctx, o, last, now)
		published += k
		if err != nil {
			if ctx.Err() != nil {
				return published, err
			}
			// One account's trouble (its subject unreadable, say) holds
			// up no other account.
			errs = append(errs, err)
		}
	}
	return published, errors.Join(errs...)
}

// closeAccount publishes account's notifications up to cycle last.
func (n *Notifier) closeAccount(ctx context.Context, o billing.Opening, last int, now time.Time) (int, error) {
	subject := contract.BillingSubject(o.Account)
	l, ok := n.last[o.Account]
	if !ok {
		var err error
		if l, err = n.readLast(ctx, subject); err != nil {
			return 0, err
		}
	}
	published := 0
	for l.index < last {
		k := l.index + 1
		period := ledger.CycleStart(o.OpenedAt, k).Format("2006-01")
		c, err := n.cfg.Billing.Cycle(o.Account, period, now)
		if err != nil {
			return published, fmt.Errorf("billing of %q for %s: %w", o.Account, period, err)
		}
		body, err := Message(c, n.cfg.BaseURL)
		if err != nil {
			return published, err
		}
		msg := nats.NewMsg(subject)
		msg.Header.Set("Content-Type", "application/cloudevents+json")
		msg.Data = body
		ack, err := n.cfg.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(ID(o.Account, period)),
			jetstream.WithExpectLastSequencePerSubject(l.seq))
		if isWrongLastSequence(err) || (err == nil && ack.Duplicate) {
			// Another process published on the subject meanwhile: read
			// where it stands and go on from there.
			if l, err = n.readLast(ctx, subject); err != nil {
				return published, err
			}
			n.last[o.Account] = l
			continue
		}
		if err != nil {
			return published, fmt.Errorf("publish %s of %q: %w", period, o.Account, err)
		}
		l = lastNotice{seq: ack.Sequence, index: k}
		n.last[o.Account] = l
		published++
		n.cfg.Logger.Info("billing cycle closed: notification published", "account", o.Account, "period", period,
			"seq", ack.Sequence)
		if n.cfg.OnPublished != nil {
			n.cfg.OnPublished(o.Account, period)
		}
	}
	n.last[o.Account] = l
	return published, nil
}

// readLast reads the last notification on an account's subject.
func (n *Notifier) readLast(ctx context.Context, subject string) (lastNotice, error) {
	s, err := n.cfg.JS.Stream(ctx, contract.Stream)
	if err != nil {
		return lastNotice{}, fmt.Errorf("stream %s: %w", contract.Stream, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return lastNotice{index: -1}, nil
	}
	if err != nil {
		return lastNotice{}, fmt.Errorf("last message on %s: %w", subject, err)
	}
	var env struct {
		Data struct {
			Index *int `json:"index"`
		} `json:"data"`
	}
	if err := json.Unmarshal(m.Data, &env, json.RejectUnknownMembers(false)); err != nil || env.Data.Index == nil {
		return lastNotice{}, fmt.Errorf("last message on %s (sequence %d) is not a CycleClosed notification: %v", subject, m.Sequence, err)
	}
	return lastNotice{seq: m.Sequence, index: *env.Data.Index}, nil
}

func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
