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
	"github.com/licenseledger/ledger/projections/internal/chunk"
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

func (f Filter) match(a *account, e *entry) bool {
	return (f.User == "" || a.names[e.user] == f.User) &&
		(f.Actor == "" || a.names[e.actor] == f.Actor) &&
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
	entries              chunk.List[entry]
	ledgerHead, actvHead codec.Hash
	// names interns the ids and roles of actors and users: an account has
	// few, and entries without pointers cost the garbage collector nothing.
	names  []string
	nameIx map[string]uint32
	// idem holds the idempotency keys, by entry index: most events
	// (activities) have none.
	idem map[int]string
}

type entry struct {
	at                int64
	position          eventstore.Position
	revision          uint64
	actor, role, user uint32 // indexes into account.names
	action            uint8
	category          uint8
	eventID           uuid.UUID
	correlation       ulid.ULID
	hash              codec.Hash
}

func (a *account) intern(s string) uint32 {
	if i, ok := a.nameIx[s]; ok {
		return i
	}
	i := uint32(len(a.names))
	a.names = append(a.names, s)
	a.nameIx[s] = i
	return i
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
		a = &account{names: []string{""}, nameIx: map[string]uint32{"": 0}, idem: make(map[int]string)}
		p.accounts[id] = a
	}
	head := &a.ledgerHead
	if cat == 1 {
		head = &a.actvHead
	}
	*head = codec.RecordHash(*head, d.Record)
	if k := d.Meta.IdempotencyKey; k != "" {
		a.idem[a.entries.Len()] = k
	}
	a.entries.Append(entry{
		at:       d.Event.OccurredAt().UnixNano(),
		position: d.Record.Position, revision: d.Record.Revision,
		actor: a.intern(d.Meta.Actor.ID), role: a.intern(d.Meta.Actor.Role), user: a.intern(ledger.UserOf(d.Event)),
		action: action, category: cat,
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

func (a *account) view(id string, i int) Entry {
	e := a.entries.At(i)
	return Entry{
		Time: time.Unix(0, e.at).UTC(), ActorID: a.names[e.actor], ActorRole: a.names[e.role],
		Action: ledger.EventTypes[e.action], UserID: a.names[e.user],
		Stream:   eventstore.StreamID{Category: categories[e.category], Account: id}.String(),
		Revision: e.revision, Position: e.position, EventID: e.eventID, Hash: e.hash,
		IdempotencyKey: a.idem[i], CorrelationID: e.correlation,
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
	for i := range a.entries.Len() {
		if !f.match(a, a.entries.At(i)) {
			continue
		}
		out = append(out, a.view(account, i))
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
