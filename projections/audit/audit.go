// Package audit is the audit-trail read model: every event of every
// account as an entry saying when it happened, who did it (principal id
// and role), what it was, which user it was about, where it is stored
// (stream, revision, global position, event id), its hash-chain link, and
// the idempotency key and correlation id it came with.
//
// Entries hold no name or email, only ids, so the trail is complete and
// readable after any user is deleted. The hash of an entry is the chain
// link computed with [codec.RecordHash] over the record as stored,
// chained per stream; package chain verifies a stream against the links
// its events claim.
package audit

import (
	"bufio"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections"
)

// Entry is one event of the audit trail.
type Entry struct {
	// Time is when the event happened.
	Time      time.Time `json:"time"`
	ActorID   string    `json:"actor_id"`
	ActorRole string    `json:"actor_role"`
	// Action is the event type, e.g. "UserDeleted".
	Action string `json:"action"`
	// UserID is the user the event is about, if any.
	UserID   string              `json:"user_id,omitempty"`
	Stream   string              `json:"stream"`
	Revision uint64              `json:"revision"`
	Position eventstore.Position `json:"position"`
	EventID  uuid.UUID           `json:"event_id"`
	// Hash is the event's hash-chain link in its stream.
	Hash           codec.Hash `json:"hash"`
	IdempotencyKey string     `json:"idempotency_key,omitempty"`
	CorrelationID  ulid.ULID  `json:"correlation_id"`
}

// Filter selects entries. Zero fields select everything.
type Filter struct {
	// User keeps the entries about this user.
	User string
	// Actor keeps the entries of this principal.
	Actor string
	// Since and Until keep the entries with Since <= Time < Until.
	Since, Until time.Time
	// Limit caps the number of entries returned (0: no cap).
	Limit int
}

func (f Filter) match(e *entry) bool {
	return (f.User == "" || e.userID == f.User) &&
		(f.Actor == "" || e.actorID == f.Actor) &&
		(f.Since.IsZero() || e.at >= f.Since.UnixNano()) &&
		(f.Until.IsZero() || e.at < f.Until.UnixNano())
}

// Projection is the audit read model of every account. It is safe for
// concurrent use; reads return copies.
type Projection struct {
	mu       sync.RWMutex
	accounts map[string]*account
	position eventstore.Position
}

type account struct {
	entries              []entry
	ledgerHead, actvHead codec.Hash
}

type entry struct {
	at                         int64
	position                   eventstore.Position
	revision                   uint64
	actorID, actorRole, userID string
	idemKey                    string
	action                     uint8
	category                   uint8
	eventID                    uuid.UUID
	correlation                ulid.ULID
	hash                       codec.Hash
}

var (
	actionIndex = func() map[string]uint8 {
		m := make(map[string]uint8, len(ledger.EventTypes))
		for i, t := range ledger.EventTypes {
			m[t] = uint8(i)
		}
		return m
	}()
	categories = []eventstore.Category{eventstore.Ledger, eventstore.Activity}
)

var _ projections.Projection = (*Projection)(nil)

// New returns an empty audit read model.
func New() *Projection { return &Projection{accounts: make(map[string]*account)} }

// Name returns "audit".
func (p *Projection) Name() string { return "audit" }

// Apply records one event as an entry and advances its stream's chain.
func (p *Projection) Apply(d codec.Decoded) error {
	action, ok := actionIndex[d.Record.Type]
	if !ok {
		return fmt.Errorf("audit %q: %w", d.Record.Type, codec.ErrUnknownType)
	}
	id := projections.AccountOf(d)
	var cat uint8
	if d.Record.Stream.Category == eventstore.Activity {
		cat = 1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	a := p.accounts[id]
	if a == nil {
		a = &account{}
		p.accounts[id] = a
	}
	head := &a.ledgerHead
	if cat == 1 {
		head = &a.actvHead
	}
	*head = codec.RecordHash(*head, d.Record)
	a.entries = append(a.entries, entry{
		at:       d.Event.OccurredAt().UnixNano(),
		position: d.Record.Position, revision: d.Record.Revision,
		actorID: d.Meta.Actor.ID, actorRole: d.Meta.Actor.Role, userID: ledger.UserOf(d.Event),
		idemKey: d.Meta.IdempotencyKey, action: action, category: cat,
		eventID: d.Record.ID, correlation: d.Meta.CorrelationID, hash: *head,
	})
	p.position = d.Record.Position
	return nil
}

// Position returns the global position of the last event applied.
func (p *Projection) Position() eventstore.Position {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.position
}

func (e *entry) view(account string) Entry {
	return Entry{
		Time: time.Unix(0, e.at).UTC(), ActorID: e.actorID, ActorRole: e.actorRole,
		Action: ledger.EventTypes[e.action], UserID: e.userID,
		Stream:   eventstore.StreamID{Category: categories[e.category], Account: account}.String(),
		Revision: e.revision, Position: e.position, EventID: e.eventID, Hash: e.hash,
		IdempotencyKey: e.idemKey, CorrelationID: e.correlation,
	}
}

// Entries returns the entries of an account that f selects, in global
// order. It returns projections.ErrNotFound (wrapped) for an account
// without events.
func (p *Projection) Entries(account string, f Filter) ([]Entry, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	a := p.accounts[account]
	if a == nil {
		return nil, fmt.Errorf("audit of account %q: %w", account, projections.ErrNotFound)
	}
	var out []Entry
	for i := range a.entries {
		e := &a.entries[i]
		if !f.match(e) {
			continue
		}
		out = append(out, e.view(account))
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out, nil
}

// Head returns the hash-chain link of the last event applied of a stream,
// zero when none was.
func (p *Projection) Head(stream eventstore.StreamID) codec.Hash {
	p.mu.RLock()
	defer p.mu.RUnlock()
	a := p.accounts[stream.Account]
	switch {
	case a == nil:
		return codec.Hash{}
	case stream.Category == eventstore.Activity:
		return a.actvHead
	default:
		return a.ledgerHead
	}
}

// Export writes the entries of an account that f selects to w as JSON
// Lines. The entries are copied first, so no lock is held while writing.
func (p *Projection) Export(w io.Writer, account string, f Filter) error {
	entries, err := p.Entries(account, f)
	if err != nil {
		return err
	}
	return WriteJSONL(w, entries)
}

// WriteJSONL writes entries to w as JSON Lines: one JSON object per line.
func WriteJSONL(w io.Writer, entries []Entry) error {
	bw := bufio.NewWriter(w)
	for i := range entries {
		if err := json.MarshalWrite(bw, &entries[i], json.Deterministic(true)); err != nil {
			return fmt.Errorf("write audit entry %d: %w", i, err)
		}
		if err := bw.WriteByte('\n'); err != nil {
			return fmt.Errorf("write audit entry %d: %w", i, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write audit entries: %w", err)
	}
	return nil
}
