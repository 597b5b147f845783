// Package codec turns ledger events into the bytes an event store keeps and
// back: a JSON payload per event type with an explicit schema version, and
// a flat JSON metadata object (recorded time, subject, actor, correlation
// and causation ids, idempotency key, hash of the previous event).
//
// # Personal data
//
// Names, emails and deactivation reasons are sealed with the user's data
// key ([pii.Keyring]) when encoding. Decoding opens them; when the key was
// destroyed they decode as blank and [Decoded.Erased] is set, while the
// event itself still decodes, folds and verifies.
//
// # Versions
//
// Each event type is registered once (events.go) with its stored form:
// payload members, sealed personal data, current schema version and the
// upcasts from older versions; [Lookup] and [Events] tell the rest of the
// service about it. Decoding an unknown type or a version newer than the
// current one fails with [ErrUnknownType] or [ErrNewerVersion]. Older
// versions are upcast to the current one before decoding.
package codec

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/flatjson"
	"github.com/licenseledger/ledger/internal/pii"
)

// ErrUnknownType is returned when decoding an event type the codec does
// not know.
var ErrUnknownType = errors.New("codec: unknown event type")

// ErrNewerVersion is returned when decoding an event written by a newer
// version of the service than this one.
var ErrNewerVersion = errors.New("codec: event schema version newer than supported")

// ErrMalformed is returned when stored bytes are not a valid event.
var ErrMalformed = errors.New("codec: malformed event")

// Actor is who gave a command: a principal id and its role, never a name.
type Actor struct {
	ID   string
	Role string
}

// Metadata is what the ledger records about every event besides its
// payload.
type Metadata struct {
	EventID uuid.UUID // the store's event id, not part of the metadata bytes
	Type    string    // the store's event type, not part of the metadata bytes
	// Time is when the service recorded the event.
	Time time.Time
	// Subject is the user the event is about, if any.
	Subject       string
	SchemaVersion int
	Account       string
	Actor         Actor
	CorrelationID ulid.ULID
	CausationID   ulid.ULID
	// Traceparent is the W3C trace context (version 00) the command was
	// given in, empty when it had none; Tracestate is the vendor state that
	// came with it. They are the CloudEvents distributed tracing extension
	// of the event: a publisher copies them onto the published envelope,
	// so that a consumer continues the trace of the request that caused
	// the event. See [ValidTraceparent] and [ValidTracestate]: decoding
	// reads a traceparent not in that form as none, and such a tracestate
	// as none, since a trace context is advice about the event, not a fact
	// of the ledger (a member of another kind than a string is malformed,
	// as for every member).
	Traceparent string
	Tracestate  string
	// IdempotencyKey is the key the client gave with the command, if any.
	IdempotencyKey string
	// CommandFingerprint identifies the command given with IdempotencyKey,
	// so that the service can tell a repeat of it from another command
	// under the same key. It holds no personal data in clear nor a plain
	// hash of it (see package accounts).
	CommandFingerprint string
	// PrevHash is the chain hash of the previous event of the same stream,
	// zero for the first.
	PrevHash Hash
}

// wireMeta is the stored form of Metadata: flat, lower-case names that are
// valid CloudEvents extension attribute names, so publishers can splice it
// into an envelope.
type wireMeta struct {
	Time           time.Time `json:"time"`
	Subject        string    `json:"subject,omitempty"`
	SchemaVersion  int       `json:"schemaversion"`
	Account        string    `json:"account"`
	ActorID        string    `json:"actorid"`
	ActorRole      string    `json:"actorrole"`
	CorrelationID  string    `json:"correlationid"`
	CausationID    string    `json:"causationid"`
	Traceparent    string    `json:"traceparent,omitempty"`
	Tracestate     string    `json:"tracestate,omitempty"`
	IdempotencyKey string    `json:"idempotencykey,omitempty"`
	Fingerprint    string    `json:"commandfingerprint,omitempty"`
	PrevHash       Hash      `json:"prevhash"`
	// With ids set, correlation and causation stand for CorrelationID and
	// CausationID, left empty: marshalMeta writes their text without
	// making strings of them (ULID text is always plain JSON).
	correlation, causation ulid.ULID
	ids                    bool
}

// Decoded is a stored event decoded: the domain event, its metadata and
// the record it came from.
type Decoded struct {
	Event  ledger.Event
	Meta   Metadata
	Record eventstore.Record
	// Erased is set when the event carried personal data whose key was
	// destroyed: those fields decoded as blank.
	Erased bool
}

// Codec encodes and decodes events, sealing and opening personal data with
// its keyring.
type Codec struct {
	keys *pii.Keyring
}

// New returns a Codec that seals and opens personal data with keys.
func New(keys *pii.Keyring) *Codec { return &Codec{keys: keys} }

// Keys returns the codec's keyring.
func (c *Codec) Keys() *pii.Keyring { return c.keys }

// Encode turns e into the bytes to append, with meta as its metadata. It
// seals personal fields under the key of the event's user, which must
// exist. meta.Type, SchemaVersion and Subject are set from e.
func (c *Codec) Encode(ctx context.Context, e ledger.Event, meta Metadata) (eventstore.Proposed, error) {
	s, ok := registry[e.EventType()]
	if !ok {
		return eventstore.Proposed{}, fmt.Errorf("encode %T: %w", e, ErrUnknownType)
	}
	data, subject, err := s.encode(ctx, c, meta.Account, e)
	if err != nil {
		return eventstore.Proposed{}, fmt.Errorf("encode %s: %w", e.EventType(), err)
	}
	if err := checkTrace(meta.Traceparent, meta.Tracestate); err != nil {
		return eventstore.Proposed{}, fmt.Errorf("encode %s metadata: %w", e.EventType(), err)
	}
	wm := wireMeta{
		Time:           meta.Time.UTC(),
		Subject:        subject,
		SchemaVersion:  s.info.Version,
		Account:        meta.Account,
		ActorID:        meta.Actor.ID,
		ActorRole:      meta.Actor.Role,
		correlation:    meta.CorrelationID,
		causation:      meta.CausationID,
		ids:            true,
		Traceparent:    meta.Traceparent,
		Tracestate:     meta.Tracestate,
		IdempotencyKey: meta.IdempotencyKey,
		Fingerprint:    meta.CommandFingerprint,
		PrevHash:       meta.PrevHash,
	}
	md, err := marshalMeta(&wm)
	if err != nil {
		return eventstore.Proposed{}, fmt.Errorf("encode %s metadata: %w", e.EventType(), err)
	}
	return eventstore.Proposed{ID: meta.EventID, Type: e.EventType(), Data: data, Metadata: md}, nil
}

// DecodeMetadata decodes the metadata of a record without its payload.
// Members it does not know are ignored: metadata is an open set of
// CloudEvents extension attributes, which a relay may add to.
func DecodeMetadata(r eventstore.Record) (Metadata, error) {
	if m, ms, ok := scanMeta(r.Metadata); ok {
		m.EventID, m.Type = r.ID, r.Type
		ms.set(&m)
		return m, nil
	}
	return unmarshalMeta(r)
}

// decodeMetadata is DecodeMetadata leaving the strings the fast path
// found to be made by the caller; ms is empty when it was not taken.
func decodeMetadata(r eventstore.Record) (m Metadata, ms metaStrings, err error) {
	m, ms, ok := scanMeta(r.Metadata)
	if ok {
		m.EventID, m.Type = r.ID, r.Type
		return m, ms, nil
	}
	m, err = unmarshalMeta(r)
	return m, metaStrings{}, err
}

// unmarshalMeta is DecodeMetadata with the general JSON decoder.
func unmarshalMeta(r eventstore.Record) (Metadata, error) {
	var wm wireMeta
	if err := json.Unmarshal(r.Metadata, &wm); err != nil {
		return Metadata{}, fmt.Errorf("decode %s %s metadata: %w: %w", r.Type, r.ID, ErrMalformed, err)
	}
	if !isObject(r.Metadata) {
		return Metadata{}, fmt.Errorf("decode %s %s metadata: %w: not a JSON object", r.Type, r.ID, ErrMalformed)
	}
	m := Metadata{
		EventID: r.ID, Type: r.Type, Time: wm.Time, Subject: wm.Subject,
		SchemaVersion: wm.SchemaVersion, Account: wm.Account,
		Actor:          Actor{ID: wm.ActorID, Role: wm.ActorRole},
		IdempotencyKey: wm.IdempotencyKey, CommandFingerprint: wm.Fingerprint, PrevHash: wm.PrevHash,
		Traceparent: wm.Traceparent, Tracestate: wm.Tracestate,
	}
	m.Traceparent, m.Tracestate = keptTrace(m.Traceparent, m.Tracestate)
	var err error
	if m.CorrelationID, err = parseULID(wm.CorrelationID); err != nil {
		return Metadata{}, fmt.Errorf("decode %s %s correlation id: %w: %w", r.Type, r.ID, ErrMalformed, err)
	}
	if m.CausationID, err = parseULID(wm.CausationID); err != nil {
		return Metadata{}, fmt.Errorf("decode %s %s causation id: %w: %w", r.Type, r.ID, ErrMalformed, err)
	}
	return m, nil
}

// metaNames are the members of wireMeta, in the order scanMeta uses.
var metaNames = []string{
	"time", "subject", "schemaversion", "account", "actorid", "actorrole",
	"correlationid", "causationid", "traceparent", "tracestate",
	"idempotencykey", "commandfingerprint", "prevhash",
}

// metaStrings are the strings of a Metadata that scanMeta found, to be
// made in one allocation with those of the payload.
type metaStrings struct {
	found                                                bool
	subject, account, actorID, actorRole, idempotencyKey []byte
	fingerprint                                          []byte
	traceparent, tracestate                              []byte
}

// setWith sets the strings in m and *dst[i] to string(src[i]), with at
// most one allocation for the strings not interned (see intern.go).
func (ms *metaStrings) setWith(m *Metadata, dst []*string, src [][]byte) {
	var d [maxMembers + 4]*string // the payload's and four of meta's
	var s [maxMembers + 4][]byte
	n := len(dst)
	for i := range dst { // not copy, which escape analysis takes as a leak
		d[i], s[i] = dst[i], src[i]
	}
	if ms.found {
		// Subjects, accounts and actors repeat from event to event:
		// interned. Idempotency keys do not.
		m.Subject, m.Account = interned(ms.subject), interned(ms.account)
		m.Actor.ID, m.Actor.Role = interned(ms.actorID), interned(ms.actorRole)
		d[n], s[n] = &m.IdempotencyKey, ms.idempotencyKey
		n++
		if len(ms.fingerprint) > 0 {
			d[n], s[n] = &m.CommandFingerprint, ms.fingerprint
			n++
		}
		if len(ms.traceparent) > 0 {
			d[n], s[n] = &m.Traceparent, ms.traceparent
			n++
		}
		if len(ms.tracestate) > 0 {
			d[n], s[n] = &m.Tracestate, ms.tracestate
			n++
		}
	}
	setStrings(d[:n], s[:n])
	ms.found = false
}

// set sets the strings in m.
func (ms *metaStrings) set(m *Metadata) { ms.setWith(m, nil, nil) }

// scanMeta is the fast path of DecodeMetadata (see flat.go). The strings
// it found are returned in ms, not set in m.
func scanMeta(data []byte) (m Metadata, ms metaStrings, ok bool) {
	var v [13][]byte
	var k [13]flatjson.Kind
	if !flatjson.Scan(data, metaNames, v[:], k[:]) {
		return Metadata{}, ms, false
	}
	if m.Time, ok = timeOf(v[0], k[0]); !ok {
		return Metadata{}, ms, false
	}
	if m.SchemaVersion, ok = intOf(v[2], k[2]); !ok {
		return Metadata{}, ms, false
	}
	if m.CorrelationID, ok = ulidOf(v[6], k[6]); !ok {
		return Metadata{}, ms, false
	}
	if m.CausationID, ok = ulidOf(v[7], k[7]); !ok {
		return Metadata{}, ms, false
	}
	switch k[12] {
	case flatjson.Absent:
	case flatjson.String:
		if m.PrevHash.UnmarshalText(v[12]) != nil {
			return Metadata{}, ms, false
		}
	default:
		return Metadata{}, ms, false
	}
	if !stringsOK(k[1], k[3], k[4], k[5], k[8], k[9], k[10], k[11]) {
		return Metadata{}, ms, false
	}
	v[8], v[9] = keptTrace(v[8], v[9])
	return m, metaStrings{true, v[1], v[3], v[4], v[5], v[10], v[11], v[8], v[9]}, true
}

// isObject reports whether data, valid JSON, is an object.
func isObject(data []byte) bool {
	i := flatjson.SkipSpace(data, 0)
	return i < len(data) && data[i] == '{'
}

func parseULID(s string) (ulid.ULID, error) {
	if s == "" || s == (ulid.ULID{}).String() {
		return ulid.ULID{}, nil
	}
	return ulid.ParseStrict(s)
}

// Decode turns a stored record back into its event and metadata, upcasting
// older schema versions and opening personal data.
func (c *Codec) Decode(ctx context.Context, r eventstore.Record) (Decoded, error) {
	meta, ms, err := decodeMetadata(r)
	if err != nil {
		return Decoded{}, err
	}
	s, ok := registry[r.Type]
	if !ok {
		return Decoded{}, fmt.Errorf("decode %q (event %s): %w", r.Type, r.ID, ErrUnknownType)
	}
	data := r.Data
	switch current := s.info.Version; {
	case meta.SchemaVersion > current:
		return Decoded{}, fmt.Errorf("decode %s version %d (event %s), this service reads up to version %d: %w",
			r.Type, meta.SchemaVersion, r.ID, current, ErrNewerVersion)
	case meta.SchemaVersion < current:
		if data, err = s.upcast(meta.SchemaVersion, data); err != nil {
			return Decoded{}, fmt.Errorf("decode %s version %d (event %s): %w", r.Type, meta.SchemaVersion, r.ID, err)
		}
	}
	e, erased, err := c.decode(ctx, s, &meta, &ms, data)
	if err != nil {
		return Decoded{}, fmt.Errorf("decode %s (event %s): %w", r.Type, r.ID, err)
	}
	return Decoded{Event: e, Meta: meta, Record: r, Erased: erased}, nil
}
