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

func (c *Codec) decodePayload(ctx context.Context, account, typ string, data []byte) (e ledger.Event, erased bool, err error) {
	unmarshal := func(v any) error {
		if err := json.Unmarshal(data, v, json.RejectUnknownMembers(true)); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return nil
	}
	switch typ {
	case ledger.TypeAccountOpened:
		var p accountOpenedV2
		err = unmarshal(&p)
		e = ledger.AccountOpened{Account: p.Account, Name: p.Name, Seats: p.Seats, At: p.At}
	case ledger.TypeSeatsPurchased:
		var p seatsPurchasedV1
		err = unmarshal(&p)
		e = ledger.SeatsPurchased{Count: p.Count, At: p.At}
	case ledger.TypeSeatReductionScheduled:
		var p seatReductionScheduledV1
		err = unmarshal(&p)
		e = ledger.SeatReductionScheduled{Count: p.Count, EffectiveAt: p.EffectiveAt, At: p.At}
	case ledger.TypeUserAdded:
		var p userAddedV1
		if err = unmarshal(&p); err != nil {
			break
		}
		id := pii.KeyID(account, p.UserID)
		u := ledger.UserAdded{UserID: p.UserID, Role: p.Role, At: p.At}
		var e1, e2 error
		u.Name, e1 = c.open(ctx, id, fieldName, p.NameSealed, &erased)
		u.Email, e2 = c.open(ctx, id, fieldEmail, p.EmailSealed, &erased)
		e, err = u, errors.Join(e1, e2)
	case ledger.TypeUserDeactivated:
		var p userDeactivatedV1
		if err = unmarshal(&p); err != nil {
			break
		}
		d := ledger.UserDeactivated{UserID: p.UserID, At: p.At}
		d.Reason, err = c.open(ctx, pii.KeyID(account, p.UserID), fieldReason, p.ReasonSealed, &erased)
		e = d
	case ledger.TypeUserActivated:
		var p userActivatedV1
		err = unmarshal(&p)
		e = ledger.UserActivated{UserID: p.UserID, At: p.At}
	case ledger.TypeUserDeleted:
		var p userDeletedV1
		err = unmarshal(&p)
		e = ledger.UserDeleted{UserID: p.UserID, ReassignTo: p.ReassignTo, At: p.At}
	case ledger.TypeActivityRecorded:
		var p activityRecordedV1
		err = unmarshal(&p)
		e = ledger.ActivityRecorded{ActivityID: p.ActivityID, UserID: p.UserID, Kind: p.Kind, Ref: p.Ref, At: p.At}
	default:
		return nil, false, ErrUnknownType
	}
	if err != nil {
		return nil, false, err
	}
	return e, erased, nil
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
