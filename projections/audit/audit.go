// Package audit is the audit-trail read model: every event of every
// account as an entry saying when it happened, who did it (principal id
// and role), what it was, which user it was about, where it is stored
// (stream, revision, global position, event id), its hash-chain link, and
// the idempotency key and correlation id it came with.
//
// Entries hold no name or email, only ids, so the trail is complete and
// readable after any user is deleted. The hash of an entry is its
// stream's chain link ([codec.RecordHash] over the record as stored): the
// link the stream's next event records as its previous hash, or, for a
// stream's last event (and any event whose successor records none), the
// link computed from the stored record. Package chain verifies a stream
// by recomputing every link from the stored bytes and reports the first
// that differs from what its events claim.
package audit

import (
	"bufio"
	"fmt"
	"io"
	"iter"
	"math"
	"slices"
	"sort"
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
	"github.com/licenseledger/ledger/projections/internal/intern"
	"github.com/licenseledger/ledger/projections/internal/snap"
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
	return (f.User == "" || a.names.String(e.user) == f.User) &&
		(f.Actor == "" || a.names.String(e.actor) == f.Actor) &&
		(f.Since.IsZero() || e.at >= f.Since.UnixNano()) &&
		(f.Until.IsZero() || e.at < f.Until.UnixNano())
}

// Projection is the audit read model of every account. It is safe for
// concurrent use; reads return copies.
type Projection struct {
	mu       sync.RWMutex
	accounts map[string]*account
	// entries holds the entries of every account in the order applied:
	// appending writes memory in sequence, where a list per account would
	// write a line of a different cold block for every event.
	entries  *chunk.List[entry]
	position eventstore.Position
}

type account struct {
	// ix holds the account's entries as indexes into all, in order.
	ix  chunk.List[uint32]
	all *chunk.List[entry]
	// ledger and actv are the ends of the account's two hash chains.
	ledger, actv tail
	// names interns the ids and roles of actors and users: an account has
	// few, and entries without pointers cost the garbage collector nothing.
	names intern.Table
	// lastActor and lastRole are the names of the last entry's actor and
	// role.
	lastActor, lastRole uint32
	// idem holds the idempotency keys with the index of their entry, in
	// entry order: most events (activities) have none, and appending to a
	// list costs less than inserting into a map.
	idem []idemKey
}

// tail is the end of one stream's hash chain. The link of the stream's
// last entry is not known until the next event arrives with it as its
// previous hash; until then the tail keeps what the link is computed
// from, so hashing every event (a third of a fold's time) is left to the
// rare reader of a stream's last entry.
type tail struct {
	// last is the index (in account.ix) of the stream's last entry, -1
	// when the stream has none.
	last int
	// pending says the last entry's hash is not set yet: it is computed
	// from prev and the record below.
	pending bool
	prev    codec.Hash
	id      uuid.UUID
	typ     string
	data    []byte
	meta    []byte
}

// link returns the hash-chain link of the stream's last entry (zero when
// it has none).
func (t *tail) link(a *account) codec.Hash {
	switch {
	case t.last < 0:
		return codec.Hash{}
	case t.pending:
		return codec.NextHash(t.prev, eventstore.Proposed{ID: t.id, Type: t.typ, Data: t.data, Metadata: t.meta})
	default:
		return a.at(t.last).hash
	}
}

// next settles the link of the stream's last entry, from the previous
// hash the arriving record claims or, when it claims none, from the
// kept record, and makes entry i (the arriving record's) the last.
func (t *tail) next(a *account, r *eventstore.Record, claimed codec.Hash, i int) {
	if t.pending {
		if claimed.IsZero() {
			claimed = t.link(a)
		}
		a.at(t.last).hash = claimed
		t.pending = false
	}
	t.prev = t.link(a)
	t.last, t.pending = i, true
	// Stores never modify the bytes of a record they returned: the tail
	// keeps them rather than a copy.
	t.id, t.typ, t.data, t.meta = r.ID, r.Type, r.Data, r.Metadata
}

// settled returns the tail of a stream restored from a snapshot, whose
// last entry i has its hash set.
func settled(i int) tail { return tail{last: i} }

// hashOf returns the hash of the account's entry i.
func (a *account) hashOf(i int) codec.Hash {
	for _, t := range []*tail{&a.ledger, &a.actv} {
		if t.pending && t.last == i {
			return t.link(a)
		}
	}
	return a.at(i).hash
}

type idemKey struct {
	entry int
	key   string
}

// idemOf returns the idempotency key of the account's entry i, "" when
// it has none.
func (a *account) idemOf(i int) string {
	if j, ok := slices.BinarySearchFunc(a.idem, i, func(k idemKey, i int) int { return k.entry - i }); ok {
		return a.idem[j].key
	}
	return ""
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

// actions are the event types in the catalogue's order of registration:
// an entry holds its type as an index into it, and snapshots store that
// index in the low four bits of a byte. Registrations are only ever
// appended, so the index of a type never changes and snapshots written
// before a type was added still restore; a sixteenth type needs a new
// snapshot format.
var actions, actionIndex = func() ([]string, map[string]uint8) {
	events := codec.Events()
	if len(events) > maxActions {
		panic(fmt.Sprintf("audit: %d event types, the snapshot format holds %d", len(events), maxActions))
	}
	names := make([]string, len(events))
	index := make(map[string]uint8, len(events))
	for i, e := range events {
		names[i], index[e.Type] = e.Type, uint8(i)
	}
	return names, index
}()

// maxActions is how many event types an entry's four bits can name.
const maxActions = 16

// actionOf returns the index in actions of the event type t.
func actionOf(t string) (uint8, bool) {
	i, ok := actionIndex[t]
	return i, ok
}

// internLast is intern remembering the last name it returned in *last:
// most events of an account come from the same actor with the same role.
func (a *account) internLast(s string, last *uint32) uint32 {
	if a.names.String(*last) == s {
		return *last
	}
	*last = a.intern(s)
	return *last
}

func newAccount(all *chunk.List[entry]) *account {
	a := &account{all: all, ledger: settled(-1), actv: settled(-1)}
	a.names.Index("") // name 0: no user
	return a
}

// at returns the account's entry i.
func (a *account) at(i int) *entry { return a.all.At(int(*a.ix.At(i))) }

// full reports whether all holds as many entries as an index can name.
func full(all *chunk.List[entry]) bool { return all.Len() >= math.MaxUint32 }

// append adds e as the account's next entry; all must not be full.
func (a *account) append(e entry) {
	a.ix.Append(uint32(a.all.Len()))
	a.all.Append(e)
}

func (a *account) intern(s string) uint32 {
	if s == "" {
		return 0
	}
	return a.names.Index(s)
}

var (
	categories = []eventstore.Category{eventstore.Ledger, eventstore.Activity}
)

var (
	_ projections.Projection  = (*Projection)(nil)
	_ projections.Snapshotter = (*Projection)(nil)
	_ projections.Batcher     = (*Projection)(nil)
)

// New returns an empty audit read model.
func New() *Projection {
	return &Projection{accounts: make(map[string]*account), entries: new(chunk.List[entry])}
}

// Name returns "audit".
func (p *Projection) Name() string { return "audit" }

// Apply records one event as an entry and advances its stream's chain.
func (p *Projection) Apply(d codec.Decoded) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.apply(&d)
}

// ApplyBatch folds events in order, as Apply would one by one, taking the
// lock once. It stops at the first event that cannot be applied and
// returns its error; the events before it are applied.
func (p *Projection) ApplyBatch(ds []codec.Decoded) error {
	return projections.ApplyLocked(&p.mu, ds, p.apply)
}

func (p *Projection) apply(d *codec.Decoded) error {
	action, ok := actionOf(d.Record.Type)
	if !ok {
		return fmt.Errorf("audit %q: %w", d.Record.Type, codec.ErrUnknownType)
	}
	if full(p.entries) {
		return fmt.Errorf("audit holds %d entries, the most it can", p.entries.Len())
	}
	id := projections.AccountOf(*d)
	var cat uint8
	if d.Record.Stream.Category == eventstore.Activity {
		cat = 1
	}
	a := p.accounts[id]
	if a == nil {
		a = newAccount(p.entries)
		p.accounts[id] = a
	}
	t := &a.ledger
	if cat == 1 {
		t = &a.actv
	}
	t.next(a, &d.Record, d.Meta.PrevHash, a.ix.Len())
	if k := d.Meta.IdempotencyKey; k != "" {
		a.idem = append(a.idem, idemKey{a.ix.Len(), k})
	}
	a.append(entry{
		at:       d.Event.OccurredAt().UnixNano(),
		position: d.Record.Position, revision: d.Record.Revision,
		actor: a.internLast(d.Meta.Actor.ID, &a.lastActor), role: a.internLast(d.Meta.Actor.Role, &a.lastRole),
		user:   a.intern(ledger.UserOf(d.Event)),
		action: action, category: cat,
		eventID: d.Record.ID, correlation: d.Meta.CorrelationID,
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
	e := a.at(i)
	return Entry{
		Time: time.Unix(0, e.at).UTC(), ActorID: a.names.String(e.actor), ActorRole: a.names.String(e.role),
		Action: actions[e.action], UserID: a.names.String(e.user),
		Stream:   eventstore.StreamID{Category: categories[e.category], Account: id}.String(),
		Revision: e.revision, Position: e.position, EventID: e.eventID, Hash: a.hashOf(i),
		IdempotencyKey: a.idemOf(i), CorrelationID: e.correlation,
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
	for i := range a.ix.Len() {
		if !f.match(a, a.at(i)) {
			continue
		}
		out = append(out, a.view(account, i))
		if f.Limit > 0 && len(out) == f.Limit {
			break
		}
	}
	return out, nil
}

// scanBatch is how many entries [Projection.Scan] examines per hold of
// the read lock: enough to amortise taking it, few enough that appliers
// never wait long behind a reader.
const scanBatch = 512

// Scan returns the entries of an account that f selects whose global
// position is after the position after (0: from the first), in global
// order, up to the account's last entry when Scan was called: entries
// applied while the iteration runs are left to a later scan from the last
// position seen. f.Limit is ignored; the caller stops when it has enough.
//
// Scan copies nothing up front. The iteration takes the read lock for
// short batches of entries and holds no lock while the caller handles
// what it yields, so a slow reader neither holds memory in proportion to
// the history nor delays the model's updates. It returns
// projections.ErrNotFound (wrapped) for an account without events.
func (p *Projection) Scan(account string, f Filter, after eventstore.Position) (iter.Seq[Entry], error) {
	p.mu.RLock()
	a := p.accounts[account]
	var end eventstore.Position
	if a != nil && a.ix.Len() > 0 {
		end = a.at(a.ix.Len() - 1).position
	}
	p.mu.RUnlock()
	if a == nil {
		return nil, fmt.Errorf("audit of account %q: %w", account, projections.ErrNotFound)
	}
	return func(yield func(Entry) bool) {
		buf := make([]Entry, 0, 64)
		for pos := after; pos < end; {
			buf, pos = p.scanBatch(account, f, pos, end, buf[:0])
			for _, e := range buf {
				if !yield(e) {
					return
				}
			}
			if pos == 0 {
				return
			}
		}
	}, nil
}

// scanBatch appends to buf the entries f selects among the next scanBatch
// entries of an account after position after and at or before end. It
// returns the position of the last entry examined, 0 when there is none
// left to examine.
func (p *Projection) scanBatch(account string, f Filter, after, end eventstore.Position, buf []Entry) ([]Entry, eventstore.Position) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	// The model may have been restored from a snapshot since the scan
	// began: the account is looked up again and resumed by position,
	// which every copy of the model agrees on.
	a := p.accounts[account]
	if a == nil {
		return buf, 0
	}
	n := a.ix.Len()
	i := sort.Search(n, func(i int) bool { return a.at(i).position > after })
	last := eventstore.Position(0)
	for stop := min(n, i+scanBatch); i < stop; i++ {
		e := a.at(i)
		if e.position > end {
			return buf, 0
		}
		if f.match(a, e) {
			buf = append(buf, a.view(account, i))
		}
		last = e.position
	}
	return buf, last
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
		return a.actv.link(a)
	default:
		return a.ledger.link(a)
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

// snapshotVersion is the format of Snapshot; Restore refuses any other.
const snapshotVersion = 1

// entrySize is the most bytes an entry takes in a snapshot: three varints
// of up to 10 bytes, three names of up to 5, a byte, the event id,
// correlation id and hash.
const entrySize = 3*10 + 3*5 + 1 + 16 + 16 + 32

// Snapshot returns the model's state in a compact binary form. Entries
// hold ids and roles only, never a name or an email.
func (p *Projection) Snapshot() ([]byte, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	ids := make([]string, 0, len(p.accounts))
	n := 0
	for id, a := range p.accounts {
		ids = append(ids, id)
		n += a.ix.Len()
	}
	sort.Strings(ids)
	w := snap.NewWriter("audit", snapshotVersion, n*(entrySize-20)+len(ids)*128)
	w.Uvarint(uint64(p.position))
	w.Uvarint(uint64(len(ids)))
	for _, id := range ids {
		a := p.accounts[id]
		w.String(id)
		lh, ah := a.ledger.link(a), a.actv.link(a)
		w.Fixed(lh[:])
		w.Fixed(ah[:])
		w.Uvarint(uint64(a.names.Len() - 1))
		for _, s := range a.names.Strings()[1:] {
			w.String(s)
		}
		w.Uvarint(uint64(len(a.idem)))
		for _, k := range a.idem {
			w.Uvarint(uint64(k.entry))
			w.String(k.key)
		}
		w.Uvarint(uint64(a.ix.Len()))
		var at int64
		var pos eventstore.Position
		for i := range a.ix.Len() {
			e := a.at(i)
			w.Grow(entrySize)
			w.Varint(e.at - at)
			w.Uvarint(uint64(e.position - pos))
			w.Uvarint(e.revision)
			w.Uvarint(uint64(e.actor))
			w.Uvarint(uint64(e.role))
			w.Uvarint(uint64(e.user))
			w.Byte(e.action | e.category<<4)
			w.Fixed(e.eventID[:])
			w.Fixed(e.correlation[:])
			h := a.hashOf(i)
			w.Fixed(h[:])
			at, pos = e.at, e.position
		}
	}
	return w.Bytes(), nil
}

// Restore replaces the model's state with a snapshot. It refuses, with an
// error wrapping projections.ErrSnapshotFormat, bytes that are not an
// audit snapshot of this format, and leaves the model as it was.
func (p *Projection) Restore(b []byte) error {
	r, err := snap.NewReader(b, "audit", snapshotVersion)
	if err != nil {
		return fmt.Errorf("audit restore: %w", err)
	}
	position := eventstore.Position(r.Uvarint())
	n := r.Count(1 + 64 + 3)
	accounts := make(map[string]*account, n)
	all := new(chunk.List[entry])
	for range n {
		id := r.String()
		a := newAccount(all)
		var heads [2]codec.Hash
		copy(heads[0][:], r.Fixed(len(heads[0])))
		copy(heads[1][:], r.Fixed(len(heads[1])))
		nn := r.Count(1)
		for range nn {
			a.intern(r.String())
		}
		if a.names.Len() != nn+1 {
			r.Fail("audit account %q: names repeated", id)
		}
		ni := r.Count(2)
		for range ni {
			i := r.Uvarint()
			k := r.String()
			if n := len(a.idem); i > math.MaxInt32 || n > 0 && int(i) <= a.idem[n-1].entry {
				r.Fail("audit account %q: idempotency key of entry %d out of order", id, i)
				break
			}
			a.idem = append(a.idem, idemKey{int(i), k})
		}
		ne := r.Count(1 + 6 + 16 + 16 + 32)
		var at int64
		var pos eventstore.Position
		names := uint64(a.names.Len())
		for range ne {
			var e entry
			e.at = at + r.Varint()
			e.position = pos + eventstore.Position(r.Uvarint())
			e.revision = r.Uvarint()
			actor, role, user := r.Uvarint(), r.Uvarint(), r.Uvarint()
			ac := r.Byte()
			copy(e.eventID[:], r.Fixed(16))
			copy(e.correlation[:], r.Fixed(16))
			copy(e.hash[:], r.Fixed(32))
			if actor >= names || role >= names || user >= names || int(ac&15) >= len(actions) || ac>>4 > 1 {
				r.Fail("audit account %q: entry %d out of range", id, a.ix.Len())
				break
			}
			e.actor, e.role, e.user, e.action, e.category = uint32(actor), uint32(role), uint32(user), ac&15, ac>>4
			if full(all) {
				r.Fail("more entries than an audit holds")
				break
			}
			if e.category == 1 {
				a.actv = settled(a.ix.Len())
			} else {
				a.ledger = settled(a.ix.Len())
			}
			a.append(e)
			at, pos = e.at, e.position
		}
		if n := len(a.idem); n > 0 && a.idem[n-1].entry >= a.ix.Len() {
			r.Fail("audit account %q: idempotency key of entry %d out of range", id, a.idem[n-1].entry)
		}
		if r.Err() == nil && (a.ledger.link(a) != heads[0] || a.actv.link(a) != heads[1]) {
			r.Fail("audit account %q: chain head differs from the hash of its stream's last entry", id)
		}
		if _, dup := accounts[id]; dup {
			r.Fail("audit account %q repeated", id)
		}
		accounts[id] = a
	}
	if err := r.End(); err != nil {
		return fmt.Errorf("audit restore: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accounts, p.entries, p.position = accounts, all, position
	return nil
}
