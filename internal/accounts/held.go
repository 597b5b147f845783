package accounts

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"sync"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections"
)

// ReadModel keeps every account's decision state as the service loads it
// from the account's streams: the ledger state, where each stream's hash
// chain ends, and which events may carry an idempotency key still within
// the window. It is a read model (projections.Projection, Batcher and
// Snapshotter, name "accounts") fed by the runner with the events that
// verified against their stream's chain, so it is persisted in the read
// models' snapshot, under the same erasure rule (a deleted user's name and
// email are blank in the state).
//
// A Service given one (Config.States) loads an account on its first
// command from it: it takes the state at the read model's position and
// reads from the store only the events after it (and the events from the
// first one that may carry a recent idempotency key, whose keys it
// remembers without folding them again), instead of reading both streams
// whole; and nothing at all when the store confirms that both streams end
// where the read model folded them (eventstore.EndConfirmer).
type ReadModel struct {
	clock  func() time.Time
	window time.Duration

	mu    sync.RWMutex
	accts map[string]*held
	// position is the position of the last event folded, of any account:
	// the runner feeds events in the store's global order, so it has
	// seen (folded or quarantined) every record up to it.
	position eventstore.Position
}

// held is what the read model keeps of one account.
type held struct {
	state            ledger.State
	ledger, activity heldStream
	lastPosition     eventstore.Position
}

// heldStream is the end of one stream as the read model folded it.
type heldStream struct {
	// next is the revision after the last event folded.
	next uint64
	// at is the position of the last event folded; 0 when unknown (a
	// snapshot of an earlier version) or when none was.
	at eventstore.Position
	// The chain link of the last event folded is hash when hashed, else
	// computed from prev (its previous link) and last (its record) when
	// asked for: folding does not hash every event a second time.
	hash   codec.Hash
	hashed bool
	prev   codec.Hash
	last   eventstore.Record
	// broken is set when an event named another previous link than the
	// end of the chain the read model knows: records it was not given
	// (quarantined) moved the chain, and only the stream itself tells
	// what the service makes of them. The account is then loaded from
	// its streams.
	broken bool
	// keyed lists, in revision order, the events with an idempotency key
	// that were within the window when folded (older ones are dropped
	// from the front).
	keyed []KeyedEvent
}

// KeyedEvent is an event that carries an idempotency key: its revision,
// its previous chain link (where a read that remembers its key starts
// verifying) and its command's time.
type KeyedEvent struct {
	Revision uint64
	Prev     codec.Hash
	At       time.Time
}

// head returns the chain link of the stream's last event folded.
func (s *heldStream) head() codec.Hash {
	if s.hashed || s.next == 0 {
		return s.hash
	}
	return codec.RecordHash(s.prev, s.last)
}

// NewReadModel returns an empty read model of the accounts' decision
// state. clock and window must be the service's (Config.Clock and
// Config.IdempotencyWindow, DefaultIdempotencyWindow when 0): they tell
// which idempotency keys may still be remembered.
func NewReadModel(clock func() time.Time, window time.Duration) *ReadModel {
	if window <= 0 {
		window = DefaultIdempotencyWindow
	}
	if clock == nil {
		clock = time.Now
	}
	return &ReadModel{clock: clock, window: window, accts: make(map[string]*held)}
}

// Name returns "accounts".
func (m *ReadModel) Name() string { return "accounts" }

// Apply folds one event that verified against its stream's chain.
func (m *ReadModel) Apply(d codec.Decoded) error {
	return m.ApplyBatch([]codec.Decoded{d})
}

// ApplyBatch folds ds in order, taking the lock once.
func (m *ReadModel) ApplyBatch(ds []codec.Decoded) error {
	now := m.clock()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range ds {
		m.apply(&ds[i], now)
	}
	return nil
}

func (m *ReadModel) apply(d *codec.Decoded, now time.Time) {
	id := d.Record.Stream
	if id.Account == "" || id.Category != eventstore.Ledger && id.Category != eventstore.Activity {
		return
	}
	h, ok := m.accts[id.Account]
	if !ok {
		h = &held{}
		m.accts[id.Account] = h
	}
	s := &h.ledger
	if id.Category == eventstore.Activity {
		s = &h.activity
	}
	if d.Record.Revision != s.next && d.Meta.PrevHash != s.head() {
		s.broken = true
	}
	s.next, s.prev, s.hashed = d.Record.Revision+1, d.Meta.PrevHash, false
	s.at = d.Record.Position
	s.last = eventstore.Record{ID: d.Record.ID, Type: d.Record.Type, Data: d.Record.Data, Metadata: d.Record.Metadata}
	h.state = ledger.Evolve(h.state, d.Event)
	if d.Record.Position > h.lastPosition {
		h.lastPosition = d.Record.Position
	}
	if d.Record.Position > m.position {
		m.position = d.Record.Position
	}
	if d.Meta.IdempotencyKey != "" && now.Sub(d.Meta.Time) < m.window {
		s.keyed = append(s.keyed, KeyedEvent{Revision: d.Record.Revision, Prev: d.Meta.PrevHash, At: d.Meta.Time})
	}
	s.keyed = m.pruneKeyed(s.keyed, now)
}

// pruneKeyed drops from the front the events whose command is older than
// the window at now. It stops at the first recent one: events after it
// stay listed even if older (a clock that went back), which only makes a
// load read more.
func (m *ReadModel) pruneKeyed(k []KeyedEvent, now time.Time) []KeyedEvent {
	i := 0
	for i < len(k) && now.Sub(k[i].At) >= m.window {
		i++
	}
	if i == 0 {
		return k
	}
	if i == len(k) {
		return nil
	}
	return append(k[:0:0], k[i:]...)
}

// heldLoad is an account's state as the read model holds it, ready for a
// service to continue from.
type heldLoad struct {
	state            ledger.State
	lastPosition     eventstore.Position
	ledger, activity heldEnd
	// seen is the read model's position: every record stored up to it
	// was seen by the runner that fed it (folded or quarantined).
	seen eventstore.Position
}

// heldEnd is where a service continues one stream: it reads from keys
// (verifying the chain from keys.Hash), remembers the idempotency keys of
// the events before fold, and folds from fold on.
type heldEnd struct {
	keys, fold codec.Link
	// end is where the stream ended as folded: fold.Next revisions, the
	// last at end.Position (0 when unknown).
	end eventstore.StreamEnd
}

// load returns a copy of account's state, ok false when the read model
// holds nothing of it or cannot stand for its streams.
func (m *ReadModel) load(account string) (heldLoad, bool) {
	now := m.clock()
	m.mu.RLock()
	defer m.mu.RUnlock()
	h, ok := m.accts[account]
	if !ok || h.ledger.broken || h.activity.broken {
		return heldLoad{}, false
	}
	end := func(s *heldStream) heldEnd {
		fold := codec.Link{Next: s.next, Hash: s.head()}
		keys := fold
		for _, k := range s.keyed {
			if now.Sub(k.At) < m.window {
				keys = codec.Link{Next: k.Revision, Hash: k.Prev}
				break
			}
		}
		return heldEnd{keys: keys, fold: fold, end: eventstore.StreamEnd{Revisions: s.next, Position: s.at}}
	}
	return heldLoad{state: h.state.Clone(), lastPosition: h.lastPosition, ledger: end(&h.ledger), activity: end(&h.activity),
		seen: m.position}, true
}

// snapshotVersion is the format of the read model's snapshot.
const snapshotVersion = 1

type heldSnapshot struct {
	Version  int
	Accounts map[string]heldAccountSnapshot
}

type heldAccountSnapshot struct {
	State            ledger.State
	Ledger, Activity heldStreamSnapshot
	LastPosition     uint64
}

type heldStreamSnapshot struct {
	Next   uint64
	Hash   codec.Hash
	Broken bool
	Keyed  []KeyedEvent
	// At is the position of the last event folded (absent, so 0, in
	// snapshots taken before it was kept: loads then read the stream).
	At uint64
}

// Snapshot returns the read model's state as bytes. Deleted users' names
// and emails are blank in it, as in the state.
func (m *ReadModel) Snapshot() ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	snap := heldSnapshot{Version: snapshotVersion, Accounts: make(map[string]heldAccountSnapshot, len(m.accts))}
	stream := func(s *heldStream) heldStreamSnapshot {
		if !s.hashed {
			// Hash once here, so that the snapshot and later loads need
			// not keep the last record.
			s.hash, s.hashed, s.last = s.head(), true, eventstore.Record{}
		}
		return heldStreamSnapshot{Next: s.next, Hash: s.hash, Broken: s.broken, Keyed: s.keyed, At: uint64(s.at)}
	}
	for id, h := range m.accts {
		snap.Accounts[id] = heldAccountSnapshot{State: h.state, Ledger: stream(&h.ledger), Activity: stream(&h.activity),
			LastPosition: uint64(h.lastPosition)}
	}
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(snap); err != nil {
		return nil, fmt.Errorf("accounts: snapshot: %w", err)
	}
	return b.Bytes(), nil
}

// Restore replaces the read model's state with one Snapshot returned.
func (m *ReadModel) Restore(b []byte) error {
	var snap heldSnapshot
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&snap); err != nil {
		return fmt.Errorf("%w: %w", projections.ErrSnapshotFormat, err)
	}
	if snap.Version != snapshotVersion {
		return fmt.Errorf("%w: format version %d", projections.ErrSnapshotFormat, snap.Version)
	}
	accts := make(map[string]*held, len(snap.Accounts))
	stream := func(s heldStreamSnapshot) heldStream {
		return heldStream{next: s.Next, hash: s.Hash, hashed: true, broken: s.Broken, keyed: s.Keyed, at: eventstore.Position(s.At)}
	}
	var position eventstore.Position
	for id, a := range snap.Accounts {
		position = max(position, eventstore.Position(a.LastPosition))
		st := a.State
		if st.Users == nil && st.Opened() {
			st.Users = make(map[string]ledger.User)
		}
		accts[id] = &held{state: st, ledger: stream(a.Ledger), activity: stream(a.Activity),
			lastPosition: eventstore.Position(a.LastPosition)}
	}
	m.mu.Lock()
	m.accts, m.position = accts, position
	m.mu.Unlock()
	return nil
}
