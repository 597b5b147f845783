package codec

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/internal/pii"
)

// The stored payloads, one struct per event type at its current version.
// Sealed fields hold base64 of nonce and AES-256-GCM ciphertext.

type accountOpenedV2 struct {
	Account string    `json:"account"`
	Name    string    `json:"name"`
	Seats   int       `json:"seats"`
	At      time.Time `json:"at"`
}

type seatsPurchasedV1 struct {
	Count int       `json:"count"`
	At    time.Time `json:"at"`
}

type seatReductionScheduledV1 struct {
	Count       int       `json:"count"`
	EffectiveAt time.Time `json:"effective_at"`
	At          time.Time `json:"at"`
}

type userAddedV1 struct {
	UserID      string      `json:"user_id"`
	NameSealed  string      `json:"name_sealed"`
	EmailSealed string      `json:"email_sealed"`
	Role        ledger.Role `json:"role"`
	At          time.Time   `json:"at"`
}

type userDeactivatedV1 struct {
	UserID       string    `json:"user_id"`
	ReasonSealed string    `json:"reason_sealed,omitempty"`
	At           time.Time `json:"at"`
}

type userActivatedV1 struct {
	UserID string    `json:"user_id"`
	At     time.Time `json:"at"`
}

type userDeletedV1 struct {
	UserID     string    `json:"user_id"`
	ReassignTo string    `json:"reassign_to,omitempty"`
	At         time.Time `json:"at"`
}

type activityRecordedV1 struct {
	ActivityID string    `json:"activity_id"`
	UserID     string    `json:"user_id"`
	Kind       string    `json:"kind"`
	Ref        string    `json:"ref"`
	At         time.Time `json:"at"`
}

// Names of sealed fields, bound into their ciphertext.
const (
	fieldName   = "name"
	fieldEmail  = "email"
	fieldReason = "reason"
)

func (c *Codec) encodePayload(ctx context.Context, account string, e ledger.Event) ([]byte, error) {
	var v any
	switch e := e.(type) {
	case ledger.AccountOpened:
		v = &accountOpenedV2{Account: e.Account, Name: e.Name, Seats: e.Seats, At: e.At.UTC()}
	case ledger.SeatsPurchased:
		v = &seatsPurchasedV1{Count: e.Count, At: e.At.UTC()}
	case ledger.SeatReductionScheduled:
		v = &seatReductionScheduledV1{Count: e.Count, EffectiveAt: e.EffectiveAt.UTC(), At: e.At.UTC()}
	case ledger.UserAdded:
		id := pii.KeyID(account, e.UserID)
		name, err := c.keys.Seal(ctx, id, fieldName, e.Name)
		if err != nil {
			return nil, err
		}
		email, err := c.keys.Seal(ctx, id, fieldEmail, e.Email)
		if err != nil {
			return nil, err
		}
		v = &userAddedV1{UserID: e.UserID, NameSealed: name, EmailSealed: email, Role: e.Role, At: e.At.UTC()}
	case ledger.UserDeactivated:
		reason, err := c.keys.Seal(ctx, pii.KeyID(account, e.UserID), fieldReason, e.Reason)
		if err != nil {
			return nil, err
		}
		v = &userDeactivatedV1{UserID: e.UserID, ReasonSealed: reason, At: e.At.UTC()}
	case ledger.UserActivated:
		v = &userActivatedV1{UserID: e.UserID, At: e.At.UTC()}
	case ledger.UserDeleted:
		v = &userDeletedV1{UserID: e.UserID, ReassignTo: e.ReassignTo, At: e.At.UTC()}
	case ledger.ActivityRecorded:
		v = &activityRecordedV1{ActivityID: e.ActivityID, UserID: e.UserID, Kind: e.Kind, Ref: e.Ref, At: e.At.UTC()}
	default:
		return nil, fmt.Errorf("%T: %w", e, ErrUnknownType)
	}
	return json.Marshal(v, json.Deterministic(true))
}

// decodePayload decodes the payload data of an event of type typ. The
// strings of meta that scanMeta found (ms) are made along with those of
// the payload, in one allocation.
func (c *Codec) decodePayload(ctx context.Context, meta *Metadata, ms *metaStrings, typ string, data []byte) (e ledger.Event, erased bool, err error) {
	// The payload's fast path scan sets the strings of meta with its own;
	// when it gives up they are set before the general decoder runs.
	switch typ {
	case ledger.TypeAccountOpened:
		var p accountOpenedV2
		if !p.scan(data, meta, ms) {
			ms.set(meta)
			if p, err = unmarshalPayload[accountOpenedV2](data); err != nil {
				return nil, false, err
			}
		}
		return ledger.AccountOpened{Account: p.Account, Name: p.Name, Seats: p.Seats, At: p.At}, false, nil
	case ledger.TypeSeatsPurchased:
		var p seatsPurchasedV1
		if !p.scan(data, meta, ms) {
			ms.set(meta)
			if p, err = unmarshalPayload[seatsPurchasedV1](data); err != nil {
				return nil, false, err
			}
		}
		return ledger.SeatsPurchased{Count: p.Count, At: p.At}, false, nil
	case ledger.TypeSeatReductionScheduled:
		var p seatReductionScheduledV1
		if !p.scan(data, meta, ms) {
			ms.set(meta)
			if p, err = unmarshalPayload[seatReductionScheduledV1](data); err != nil {
				return nil, false, err
			}
		}
		return ledger.SeatReductionScheduled{Count: p.Count, EffectiveAt: p.EffectiveAt, At: p.At}, false, nil
	case ledger.TypeUserAdded:
		var p userAddedV1
		if !p.scan(data, meta, ms) {
			ms.set(meta)
			if p, err = unmarshalPayload[userAddedV1](data); err != nil {
				return nil, false, err
			}
		}
		id := pii.KeyID(meta.Account, p.UserID)
		u := ledger.UserAdded{UserID: p.UserID, Role: p.Role, At: p.At}
		var e1, e2 error
		u.Name, e1 = c.open(ctx, id, fieldName, p.NameSealed, &erased)
		u.Email, e2 = c.open(ctx, id, fieldEmail, p.EmailSealed, &erased)
		if err := errors.Join(e1, e2); err != nil {
			return nil, false, err
		}
		return u, erased, nil
	case ledger.TypeUserDeactivated:
		var p userDeactivatedV1
		if !p.scan(data, meta, ms) {
			ms.set(meta)
			if p, err = unmarshalPayload[userDeactivatedV1](data); err != nil {
				return nil, false, err
			}
		}
		d := ledger.UserDeactivated{UserID: p.UserID, At: p.At}
		if d.Reason, err = c.open(ctx, pii.KeyID(meta.Account, p.UserID), fieldReason, p.ReasonSealed, &erased); err != nil {
			return nil, false, err
		}
		return d, erased, nil
	case ledger.TypeUserActivated:
		var p userActivatedV1
		if !p.scan(data, meta, ms) {
			ms.set(meta)
			if p, err = unmarshalPayload[userActivatedV1](data); err != nil {
				return nil, false, err
			}
		}
		return ledger.UserActivated{UserID: p.UserID, At: p.At}, false, nil
	case ledger.TypeUserDeleted:
		var p userDeletedV1
		if !p.scan(data, meta, ms) {
			ms.set(meta)
			if p, err = unmarshalPayload[userDeletedV1](data); err != nil {
				return nil, false, err
			}
		}
		return ledger.UserDeleted{UserID: p.UserID, ReassignTo: p.ReassignTo, At: p.At}, false, nil
	case ledger.TypeActivityRecorded:
		var p activityRecordedV1
		if !p.scan(data, meta, ms) {
			ms.set(meta)
			if p, err = unmarshalPayload[activityRecordedV1](data); err != nil {
				return nil, false, err
			}
		}
		return ledger.ActivityRecorded{ActivityID: p.ActivityID, UserID: p.UserID, Kind: p.Kind, Ref: p.Ref, At: p.At}, false, nil
	}
	return nil, false, ErrUnknownType
}

// unmarshalPayload decodes a stored payload with the general JSON decoder,
// which rejects members the payload type does not have. Decoding tries the
// payload's fast path scan (see flat.go) first; scan is a method called
// directly so that the payload stays on the stack.
func unmarshalPayload[P any](data []byte) (P, error) {
	var p P
	if err := json.Unmarshal(data, &p, json.RejectUnknownMembers(true)); err != nil {
		return p, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !isObject(data) {
		return p, fmt.Errorf("%w: payload is not a JSON object", ErrMalformed)
	}
	return p, nil
}

// The fast path scanners of the payloads, one per type. Each reports false
// when the general decoder must decide.

var accountOpenedNames = []string{"account", "name", "seats", "at"}

func (p *accountOpenedV2) scan(data []byte, m *Metadata, ms *metaStrings) (ok bool) {
	var v [4][]byte
	var k [4]valueKind
	if !scanFlat(data, accountOpenedNames, v[:], k[:]) || !stringsOK(k[0], k[1]) {
		return false
	}
	if p.Seats, ok = intOf(v[2], k[2]); !ok {
		return false
	}
	if p.At, ok = timeOf(v[3], k[3]); !ok {
		return false
	}
	ms.setWith(m, []*string{&p.Account, &p.Name}, [][]byte{v[0], v[1]})
	return true
}

var seatsPurchasedNames = []string{"count", "at"}

func (p *seatsPurchasedV1) scan(data []byte, m *Metadata, ms *metaStrings) (ok bool) {
	var v [2][]byte
	var k [2]valueKind
	if !scanFlat(data, seatsPurchasedNames, v[:], k[:]) {
		return false
	}
	if p.Count, ok = intOf(v[0], k[0]); !ok {
		return false
	}
	if p.At, ok = timeOf(v[1], k[1]); !ok {
		return false
	}
	ms.set(m)
	return true
}

var seatReductionScheduledNames = []string{"count", "effective_at", "at"}

func (p *seatReductionScheduledV1) scan(data []byte, m *Metadata, ms *metaStrings) (ok bool) {
	var v [3][]byte
	var k [3]valueKind
	if !scanFlat(data, seatReductionScheduledNames, v[:], k[:]) {
		return false
	}
	if p.Count, ok = intOf(v[0], k[0]); !ok {
		return false
	}
	if p.EffectiveAt, ok = timeOf(v[1], k[1]); !ok {
		return false
	}
	if p.At, ok = timeOf(v[2], k[2]); !ok {
		return false
	}
	ms.set(m)
	return true
}

var userAddedNames = []string{"user_id", "name_sealed", "email_sealed", "role", "at"}

func (p *userAddedV1) scan(data []byte, m *Metadata, ms *metaStrings) (ok bool) {
	var v [5][]byte
	var k [5]valueKind
	if !scanFlat(data, userAddedNames, v[:], k[:]) || !stringsOK(k[:4]...) {
		return false
	}
	if p.At, ok = timeOf(v[4], k[4]); !ok {
		return false
	}
	p.UserID, p.Role = interned(v[0]), ledger.Role(interned(v[3]))
	ms.setWith(m, []*string{&p.NameSealed, &p.EmailSealed}, [][]byte{v[1], v[2]})
	return true
}

var userDeactivatedNames = []string{"user_id", "reason_sealed", "at"}

func (p *userDeactivatedV1) scan(data []byte, m *Metadata, ms *metaStrings) (ok bool) {
	var v [3][]byte
	var k [3]valueKind
	if !scanFlat(data, userDeactivatedNames, v[:], k[:]) || !stringsOK(k[:2]...) {
		return false
	}
	if p.At, ok = timeOf(v[2], k[2]); !ok {
		return false
	}
	p.UserID = interned(v[0])
	ms.setWith(m, []*string{&p.ReasonSealed}, [][]byte{v[1]})
	return true
}

var userActivatedNames = []string{"user_id", "at"}

func (p *userActivatedV1) scan(data []byte, m *Metadata, ms *metaStrings) (ok bool) {
	var v [2][]byte
	var k [2]valueKind
	if !scanFlat(data, userActivatedNames, v[:], k[:]) || !stringsOK(k[0]) {
		return false
	}
	if p.At, ok = timeOf(v[1], k[1]); !ok {
		return false
	}
	p.UserID = interned(v[0])
	ms.set(m)
	return true
}

var userDeletedNames = []string{"user_id", "reassign_to", "at"}

func (p *userDeletedV1) scan(data []byte, m *Metadata, ms *metaStrings) (ok bool) {
	var v [3][]byte
	var k [3]valueKind
	if !scanFlat(data, userDeletedNames, v[:], k[:]) || !stringsOK(k[:2]...) {
		return false
	}
	if p.At, ok = timeOf(v[2], k[2]); !ok {
		return false
	}
	p.UserID, p.ReassignTo = interned(v[0]), interned(v[1])
	ms.set(m)
	return true
}

var activityRecordedNames = []string{"activity_id", "user_id", "kind", "ref", "at"}

func (p *activityRecordedV1) scan(data []byte, m *Metadata, ms *metaStrings) (ok bool) {
	var v [5][]byte
	var k [5]valueKind
	if !scanFlat(data, activityRecordedNames, v[:], k[:]) || !stringsOK(k[:4]...) {
		return false
	}
	if p.At, ok = timeOf(v[4], k[4]); !ok {
		return false
	}
	p.UserID, p.Kind = interned(v[1]), interned(v[2])
	ms.setWith(m, []*string{&p.ActivityID, &p.Ref}, [][]byte{v[0], v[3]})
	return true
}

// open opens a sealed field; a destroyed key yields "" and sets erased.
func (c *Codec) open(ctx context.Context, id, field, sealed string, erased *bool) (string, error) {
	s, err := c.keys.Open(ctx, id, field, sealed)
	if errors.Is(err, pii.ErrErased) {
		*erased = true
		return "", nil
	}
	return s, err
}
