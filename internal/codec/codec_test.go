package codec_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
)

const (
	account = "acme"
	user    = "u-1"
	other   = "u-2"

	userName  = "Augusta Zoë Lovelace"
	userEmail = "augusta.lovelace@example.com"
)

var (
	at       = time.Date(2025, 3, 14, 9, 26, 53, 589793238, time.UTC)
	nextYear = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// sampleEvent returns an event of type typ about user (for user events)
// with every field set.
func sampleEvent(typ, user string) ledger.Event {
	switch typ {
	case ledger.TypeAccountOpened:
		return ledger.AccountOpened{Account: account, Name: "Acme Corp", Seats: 5, At: at}
	case ledger.TypeSeatsPurchased:
		return ledger.SeatsPurchased{Count: 3, At: at}
	case ledger.TypeSeatReductionScheduled:
		return ledger.SeatReductionScheduled{Count: 2, EffectiveAt: nextYear, At: at}
	case ledger.TypeUserAdded:
		return ledger.UserAdded{UserID: user, Name: userName, Email: userEmail, Role: ledger.RoleAdmin, ExternalID: "00u-ada", At: at}
	case ledger.TypeUserDeactivated:
		return ledger.UserDeactivated{UserID: user, Reason: "on leave until May", At: at}
	case ledger.TypeUserActivated:
		return ledger.UserActivated{UserID: user, At: at}
	case ledger.TypeUserDeleted:
		return ledger.UserDeleted{UserID: user, ReassignTo: "u-9", At: at}
	case ledger.TypeActivityRecorded:
		return ledger.ActivityRecorded{ActivityID: "act-42", UserID: user, Kind: "document.signed", Ref: "doc-7", At: at}
	case ledger.TypeUserProfileUpdated:
		return ledger.UserProfileUpdated{UserID: user, Name: "Ada King", Email: "ada.king@example.com", ExternalID: "00u-ada-king", At: at}
	case ledger.TypeUserRoleChanged:
		return ledger.UserRoleChanged{UserID: user, Role: ledger.RoleMember, At: at}
	}
	panic("no sample for event type " + typ)
}

// sampleMeta returns metadata with every field set.
func sampleMeta() codec.Metadata {
	var prev codec.Hash
	for i := range prev {
		prev[i] = byte(i * 7)
	}
	return codec.Metadata{
		EventID:        uuid.MustParse("3f1c2a9e-5b7d-4e8f-9a01-23456789abcd"),
		Time:           at.Add(time.Millisecond),
		Account:        account,
		Actor:          codec.Actor{ID: "p-admin-1", Role: "admin"},
		CorrelationID:  ulid.MustParse("01JPAZ0G7QWM8V3H2K5N6R9T1X"),
		CausationID:    ulid.MustParse("01JPAZ0G7QWM8V3H2K5N6R9T1Y"),
		IdempotencyKey: "idem-7c1e",
		PrevHash:       prev,
	}
}

// fixedRand returns a deterministic random source for keys and nonces, so
// that stored bytes are reproducible.
func fixedRand() *mrand.ChaCha8 {
	return mrand.NewChaCha8([32]byte([]byte("license-ledger codec test seed!!")))
}

// newCodec returns a codec over a fresh memory key store holding keys for
// the given users of account.
func newCodec(t testing.TB, users ...string) (*codec.Codec, *pii.MemoryKeys) {
	t.Helper()
	store := pii.NewMemoryKeys()
	keys := pii.NewKeyring(store, fixedRand())
	for _, u := range users {
		if err := keys.Create(context.Background(), pii.KeyID(account, u)); err != nil {
			t.Fatal(err)
		}
	}
	return codec.New(keys), store
}

func encode(t testing.TB, c *codec.Codec, e ledger.Event, meta codec.Metadata) eventstore.Proposed {
	t.Helper()
	p, err := c.Encode(context.Background(), e, meta)
	if err != nil {
		t.Fatalf("Encode(%T): %v", e, err)
	}
	return p
}

func record(p eventstore.Proposed) eventstore.Record {
	return eventstore.Record{
		ID: p.ID, Type: p.Type, Data: p.Data, Metadata: p.Metadata,
		Stream: eventstore.LedgerStream(account), Revision: 4, Position: 17, Stored: at,
	}
}

// wantMeta is what decoding meta, encoded with e, gives back.
func wantMeta(e ledger.Event, meta codec.Metadata) codec.Metadata {
	meta.Type = e.EventType()
	meta.SchemaVersion = codec.Versions[e.EventType()]
	meta.Subject = ledger.UserOf(e)
	meta.Time = meta.Time.UTC()
	return meta
}

func TestVersionsCoverCatalogue(t *testing.T) {
	for _, typ := range ledger.EventTypes {
		if v := codec.Versions[typ]; v < 1 {
			t.Errorf("Versions[%s] = %d", typ, v)
		}
	}
	if len(codec.Versions) != len(ledger.EventTypes) {
		t.Errorf("Versions has %d types, the catalogue %d", len(codec.Versions), len(ledger.EventTypes))
	}
}

func TestRoundTrip(t *testing.T) {
	c, _ := newCodec(t, user)
	metas := map[string]codec.Metadata{
		"full metadata": sampleMeta(),
		"minimal metadata": {
			EventID: uuid.MustParse("00000000-0000-4000-8000-000000000001"),
			Time:    at, Account: account, Actor: codec.Actor{ID: "system", Role: "system"},
		},
		"local time zone": func() codec.Metadata {
			m := sampleMeta()
			m.Time = m.Time.In(time.FixedZone("CET", 3600))
			return m
		}(),
	}
	for _, typ := range ledger.EventTypes {
		for name, meta := range metas {
			t.Run(typ+"/"+name, func(t *testing.T) {
				e := sampleEvent(typ, user)
				p := encode(t, c, e, meta)
				if p.ID != meta.EventID || p.Type != typ {
					t.Errorf("Encode gave id %s type %s, want %s %s", p.ID, p.Type, meta.EventID, typ)
				}
				r := record(p)
				d, err := c.Decode(t.Context(), r)
				if err != nil {
					t.Fatalf("Decode: %v", err)
				}
				if !reflect.DeepEqual(d.Event, e) {
					t.Errorf("event:\n got %#v\nwant %#v", d.Event, e)
				}
				if want := wantMeta(e, meta); !reflect.DeepEqual(d.Meta, want) {
					t.Errorf("metadata:\n got %+v\nwant %+v", d.Meta, want)
				}
				if !reflect.DeepEqual(d.Record, r) {
					t.Errorf("record not kept: %+v", d.Record)
				}
				if d.Erased {
					t.Error("Erased set with the key present")
				}
				m, err := codec.DecodeMetadata(r)
				if err != nil || !reflect.DeepEqual(m, d.Meta) {
					t.Errorf("DecodeMetadata = %+v, %v; want %+v", m, err, d.Meta)
				}
			})
		}
	}
}

// Times in other zones are stored in UTC and decode as the same instant.
func TestRoundTripNormalizesTime(t *testing.T) {
	c, _ := newCodec(t, user)
	zone := time.FixedZone("X", -7*3600)
	e := ledger.SeatReductionScheduled{Count: 1, EffectiveAt: nextYear.In(zone), At: at.In(zone)}
	d, err := c.Decode(t.Context(), record(encode(t, c, e, sampleMeta())))
	if err != nil {
		t.Fatal(err)
	}
	want := ledger.SeatReductionScheduled{Count: 1, EffectiveAt: nextYear, At: at}
	if !reflect.DeepEqual(d.Event, want) {
		t.Errorf("got %#v, want %#v", d.Event, want)
	}
}

func TestEncodeWithoutKey(t *testing.T) {
	c, _ := newCodec(t) // no user key
	for _, e := range []ledger.Event{sampleEvent(ledger.TypeUserAdded, user), sampleEvent(ledger.TypeUserDeactivated, user)} {
		if _, err := c.Encode(t.Context(), e, sampleMeta()); !errors.Is(err, pii.ErrNoKey) {
			t.Errorf("Encode(%T) without a key = %v, want ErrNoKey", e, err)
		}
	}
}

// validMeta returns stored metadata of an event of version v.
func validMeta(v int) string {
	return fmt.Sprintf(`{"time":"2025-03-14T09:26:53Z","schemaversion":%d,"account":"acme","actorid":"p-1","actorrole":"admin",`+
		`"correlationid":"01JPAZ0G7QWM8V3H2K5N6R9T1X","causationid":"01JPAZ0G7QWM8V3H2K5N6R9T1X",`+
		`"prevhash":"0000000000000000000000000000000000000000000000000000000000000000"}`, v)
}

func TestDecodeErrors(t *testing.T) {
	c, _ := newCodec(t, user)
	good := encode(t, c, sampleEvent(ledger.TypeUserAdded, user), sampleMeta())
	seats := `{"account":"acme","name":"Acme","seats":3,"at":"2025-03-14T09:26:53Z"}`
	meta := validMeta(1)
	tests := []struct {
		name           string
		typ            string
		data, metadata string
		want           error
	}{
		{"unknown type", "UserRenamed", `{}`, meta, codec.ErrUnknownType},
		{"empty type", "", `{}`, meta, codec.ErrUnknownType},
		{"newer version", ledger.TypeSeatsPurchased, `{"count":1,"at":"2025-03-14T09:26:53Z"}`, validMeta(2), codec.ErrNewerVersion},
		{"much newer version", ledger.TypeAccountOpened, seats, validMeta(99), codec.ErrNewerVersion},
		{"version 0", ledger.TypeSeatsPurchased, `{"count":1}`, validMeta(0), codec.ErrMalformed},
		{"negative version", ledger.TypeSeatsPurchased, `{"count":1}`, validMeta(-3), codec.ErrMalformed},
		{"data not JSON", ledger.TypeSeatsPurchased, `{"count":`, meta, codec.ErrMalformed},
		{"data empty", ledger.TypeSeatsPurchased, ``, meta, codec.ErrMalformed},
		{"data null", ledger.TypeSeatsPurchased, `null`, meta, codec.ErrMalformed},
		{"data array", ledger.TypeSeatsPurchased, `[1]`, meta, codec.ErrMalformed},
		{"data trailing bytes", ledger.TypeSeatsPurchased, `{"count":1} {}`, meta, codec.ErrMalformed},
		{"data unknown member", ledger.TypeSeatsPurchased, `{"count":1,"price":9}`, meta, codec.ErrMalformed},
		{"data member differs in case", ledger.TypeSeatsPurchased, `{"Count":1}`, meta, codec.ErrMalformed},
		{"data duplicate member", ledger.TypeSeatsPurchased, `{"count":1,"count":2}`, meta, codec.ErrMalformed},
		{"data wrong type", ledger.TypeSeatsPurchased, `{"count":"1"}`, meta, codec.ErrMalformed},
		{"data fraction", ledger.TypeSeatsPurchased, `{"count":1.5}`, meta, codec.ErrMalformed},
		{"data bad time", ledger.TypeUserActivated, `{"user_id":"u-1","at":"yesterday"}`, meta, codec.ErrMalformed},
		{"data invalid UTF-8", ledger.TypeUserActivated, "{\"user_id\":\"u-\xff\"}", meta, codec.ErrMalformed},
		{"unknown member of old version", ledger.TypeAccountOpened, `{"account":"a","licenses":3,"extra":1}`, validMeta(1), codec.ErrMalformed},
		{"old version null", ledger.TypeAccountOpened, `null`, validMeta(1), codec.ErrMalformed},
		{"old version both names", ledger.TypeAccountOpened, `{"licenses":3,"seats":4}`, validMeta(1), codec.ErrMalformed},
		{"metadata not JSON", ledger.TypeSeatsPurchased, `{}`, `{"time":`, codec.ErrMalformed},
		{"metadata empty", ledger.TypeSeatsPurchased, `{}`, ``, codec.ErrMalformed},
		{"metadata array", ledger.TypeSeatsPurchased, `{}`, `[]`, codec.ErrMalformed},
		{"metadata bad correlation id", ledger.TypeSeatsPurchased, `{}`, strings.Replace(meta, "01JPAZ0G7QWM8V3H2K5N6R9T1X", "not-a-ulid", 1), codec.ErrMalformed},
		{"metadata bad time", ledger.TypeSeatsPurchased, `{}`, strings.Replace(meta, "2025-03-14T09:26:53Z", "14/03/2025", 1), codec.ErrMalformed},
		{"metadata bad hash", ledger.TypeSeatsPurchased, `{}`, strings.Replace(meta, `"00000000`, `"zz000000`, 1), codec.ErrMalformed},
		{"metadata short hash", ledger.TypeSeatsPurchased, `{}`, strings.Replace(meta, `"00000000`, `"`, 1), codec.ErrMalformed},
		{"metadata version as string", ledger.TypeSeatsPurchased, `{}`, strings.Replace(meta, `"schemaversion":1`, `"schemaversion":"1"`, 1), codec.ErrMalformed},
		{"metadata duplicate member", ledger.TypeSeatsPurchased, `{}`, strings.Replace(meta, `{"time"`, `{"account":"evil","time"`, 1), codec.ErrMalformed},
		{"sealed name not base64", ledger.TypeUserAdded, strings.Replace(string(good.Data), `"name_sealed":"`, `"name_sealed":"!`, 1), string(good.Metadata), pii.ErrTampered},
		{"sealed name moved to email", ledger.TypeUserAdded, swapSealed(string(good.Data)), string(good.Metadata), pii.ErrTampered},
		{"user without key", ledger.TypeUserAdded, strings.Replace(string(good.Data), `"user_id":"u-1"`, `"user_id":"u-3"`, 1), string(good.Metadata), pii.ErrNoKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := eventstore.Record{ID: uuid.MustParse("3f1c2a9e-5b7d-4e8f-9a01-23456789abcd"), Type: tt.typ, Data: []byte(tt.data), Metadata: []byte(tt.metadata)}
			d, err := c.Decode(t.Context(), r)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %+v, %v; want %v", d, err, tt.want)
			}
			if d.Event != nil {
				t.Errorf("Decode returned event %#v with an error", d.Event)
			}
			if !strings.Contains(err.Error(), r.ID.String()) {
				t.Errorf("error %q does not name the event id", err)
			}
		})
	}
}

// swapSealed swaps the sealed name and email of a stored UserAdded payload.
func swapSealed(data string) string {
	get := func(member string) string {
		i := strings.Index(data, `"`+member+`":"`) + len(member) + 4
		return data[i : i+strings.IndexByte(data[i:], '"')]
	}
	name, email := get("name_sealed"), get("email_sealed")
	data = strings.Replace(data, name, "NAME", 1)
	data = strings.Replace(data, email, name, 1)
	return strings.Replace(data, "NAME", email, 1)
}

func TestDecodeNewerVersionMessage(t *testing.T) {
	c, _ := newCodec(t)
	r := eventstore.Record{Type: ledger.TypeAccountOpened, Data: []byte(`{}`), Metadata: []byte(validMeta(7))}
	_, err := c.Decode(t.Context(), r)
	if !errors.Is(err, codec.ErrNewerVersion) {
		t.Fatalf("Decode = %v, want ErrNewerVersion", err)
	}
	for _, want := range []string{"AccountOpened", "version 7", "version 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// Members a relay or a newer writer adds to the metadata are ignored:
// metadata is an open set of CloudEvents extension attributes.
func TestDecodeIgnoresExtraMetadata(t *testing.T) {
	c, _ := newCodec(t)
	e := sampleEvent(ledger.TypeSeatsPurchased, "")
	p := encode(t, c, e, sampleMeta())
	p.Metadata = append([]byte(`{"traceparent":"00-abc-01","retries":2,"sampled":true,`), p.Metadata[1:]...)
	d, err := c.Decode(t.Context(), record(p))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if want := wantMeta(e, sampleMeta()); !reflect.DeepEqual(d.Meta, want) {
		t.Errorf("metadata:\n got %+v\nwant %+v", d.Meta, want)
	}
}

// Stored version 1 of AccountOpened called the seats "licenses".
func TestUpcastAccountOpenedV1(t *testing.T) {
	c, _ := newCodec(t)
	tests := []struct {
		name, data string
		want       ledger.AccountOpened
	}{
		{"licenses", `{"account":"acme","name":"Acme Corp","licenses":3,"at":"2025-03-14T09:26:53.589793238Z"}`,
			ledger.AccountOpened{Account: "acme", Name: "Acme Corp", Seats: 3, At: at}},
		{"member order and spacing", ` { "at" : "2025-03-14T09:26:53.589793238Z", "licenses" : 12 , "name":"" , "account":"acme" } `,
			ledger.AccountOpened{Account: "acme", Seats: 12, At: at}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := eventstore.Record{Type: ledger.TypeAccountOpened, Data: []byte(tt.data), Metadata: []byte(validMeta(1))}
			d, err := c.Decode(t.Context(), r)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(d.Event, tt.want) {
				t.Errorf("got %#v, want %#v", d.Event, tt.want)
			}
			if d.Meta.SchemaVersion != 1 {
				t.Errorf("Meta.SchemaVersion = %d, want the stored 1", d.Meta.SchemaVersion)
			}
		})
	}
	// Version 1 knew no "seats": a stored v1 payload with it is malformed.
	r := eventstore.Record{Type: ledger.TypeAccountOpened, Data: []byte(`{"account":"acme","seats":3}`), Metadata: []byte(validMeta(1))}
	if _, err := c.Decode(t.Context(), r); !errors.Is(err, codec.ErrMalformed) {
		t.Errorf("v1 payload with seats: Decode = %v, want ErrMalformed", err)
	}
}

func TestErasure(t *testing.T) {
	ctx := t.Context()
	c, store := newCodec(t, user, other)
	type stored struct {
		r      eventstore.Record
		want   ledger.Event // after user's key is destroyed
		erased bool
	}
	var all []stored
	for _, u := range []string{user, other} {
		mine := u == user
		add := func(e, want ledger.Event, erased bool) {
			if !mine {
				want, erased = e, false
			}
			all = append(all, stored{record(encode(t, c, e, sampleMeta())), want, erased})
		}
		added := sampleEvent(ledger.TypeUserAdded, u).(ledger.UserAdded)
		blank := added
		blank.Name, blank.Email, blank.ExternalID = "", "", ""
		add(added, blank, true)
		add(sampleEvent(ledger.TypeUserDeactivated, u), ledger.UserDeactivated{UserID: u, At: at}, true)
		noReason := ledger.UserDeactivated{UserID: u, At: at}
		add(noReason, noReason, false) // nothing sealed, nothing erased
		add(sampleEvent(ledger.TypeUserProfileUpdated, u), ledger.UserProfileUpdated{UserID: u, At: at}, true)
		onlyName := ledger.UserProfileUpdated{UserID: u, Name: "Ada King", At: at}
		add(onlyName, ledger.UserProfileUpdated{UserID: u, At: at}, true)
		add(sampleEvent(ledger.TypeUserRoleChanged, u), sampleEvent(ledger.TypeUserRoleChanged, u), false)
		for _, typ := range []string{ledger.TypeUserActivated, ledger.TypeActivityRecorded, ledger.TypeUserDeleted} {
			e := sampleEvent(typ, u)
			add(e, e, false)
		}
	}
	if err := c.Keys().Destroy(ctx, pii.KeyID(account, user)); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, c *codec.Codec) {
		for _, s := range all {
			d, err := c.Decode(ctx, s.r)
			if err != nil {
				t.Fatalf("Decode %s after erasure: %v", s.r.Type, err)
			}
			if !reflect.DeepEqual(d.Event, s.want) {
				t.Errorf("%s: got %#v, want %#v", s.r.Type, d.Event, s.want)
			}
			if d.Erased != s.erased {
				t.Errorf("%s: Erased = %v, want %v", s.r.Type, d.Erased, s.erased)
			}
			if want := ledger.UserOf(s.want); d.Meta.Subject != want {
				t.Errorf("%s: subject %q, want %q", s.r.Type, d.Meta.Subject, want)
			}
		}
	}
	t.Run("same codec", func(t *testing.T) { check(t, c) })
	t.Run("fresh keyring", func(t *testing.T) { check(t, codec.New(pii.NewKeyring(store, rand.Reader))) })
	t.Run("hash chain unchanged", func(t *testing.T) {
		// Erasure changes no stored byte, so links computed before still hold.
		var before, after codec.Hash
		for _, s := range all {
			before = codec.RecordHash(before, s.r)
		}
		for _, s := range all {
			if _, err := c.Decode(ctx, s.r); err != nil {
				t.Fatal(err)
			}
			after = codec.RecordHash(after, s.r)
		}
		if before != after || before.IsZero() {
			t.Errorf("chain %s, then %s", before, after)
		}
	})
}

// TestEraseAgreesWithDecode: Erase blanks what a decode after the
// subject's key is destroyed blanks, for every registered type.
func TestEraseAgreesWithDecode(t *testing.T) {
	ctx := t.Context()
	for _, info := range codec.Events() {
		t.Run(info.Type, func(t *testing.T) {
			c, _ := newCodec(t, user)
			e := sampleEvent(info.Type, user)
			r := record(encode(t, c, e, sampleMeta()))
			if err := c.Keys().Destroy(ctx, pii.KeyID(account, user)); err != nil {
				t.Fatal(err)
			}
			d, err := c.Decode(ctx, r)
			if err != nil {
				t.Fatal(err)
			}
			got, erased := codec.Erase(e)
			if !reflect.DeepEqual(got, d.Event) || erased != d.Erased {
				t.Errorf("Erase = %#v, %v; decode after erasure = %#v, %v", got, erased, d.Event, d.Erased)
			}
			if erased != (len(info.Sealed()) > 0) {
				t.Errorf("Erase of a sample with sealed members %v: erased %v", info.Sealed(), erased)
			}
			if again, erased := codec.Erase(got); erased || !reflect.DeepEqual(again, got) {
				t.Errorf("Erase of an erased event erased again: %#v", again)
			}
		})
	}
}
