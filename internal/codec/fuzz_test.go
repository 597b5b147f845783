package codec_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
)

// addGoldenSeeds adds the stored bytes of the golden files to f's corpus.
func addGoldenSeeds(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "*.golden.json"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		var g golden
		if err := json.Unmarshal(b, &g); err != nil {
			f.Fatal(err)
		}
		f.Add(g.Type, []byte(g.Data), []byte(g.Metadata))
	}
}

// FuzzDecode feeds arbitrary stored bytes to Decode: it never panics, and
// every error is one of the codec's or the keyring's.
func FuzzDecode(f *testing.F) {
	addGoldenSeeds(f)
	f.Add(ledger.TypeAccountOpened, []byte(`{"account":"a","licenses":3}`), []byte(validMeta(1)))
	f.Add(ledger.TypeSeatsPurchased, []byte(`{"count":-12,"at":"2025-03-14T09:26:53.5Z"}`), []byte(` {"schemaversion":1, "x":[1,{"y":null}]} `))
	f.Add("Nope", []byte(`{}`), []byte(`{"schemaversion":9}`))
	f.Add(ledger.TypeUserActivated, []byte("{\"user_id\":\"\\u00e9\"}"), []byte(`{"schemaversion":1,"time":"2025-03-14T09:26:53+01:00"}`))
	c, _ := newCodec(f, user)
	f.Fuzz(func(t *testing.T, typ string, data, metadata []byte) {
		r := eventstore.Record{Type: typ, Data: data, Metadata: metadata}
		d, err := c.Decode(context.Background(), r)
		if err != nil {
			if d.Event != nil {
				t.Errorf("event %#v returned with error %v", d.Event, err)
			}
			for _, known := range []error{codec.ErrMalformed, codec.ErrUnknownType, codec.ErrNewerVersion, pii.ErrTampered, pii.ErrNoKey, pii.ErrErased} {
				if errors.Is(err, known) {
					return
				}
			}
			t.Fatalf("Decode error matches no known error: %v", err)
		}
		if d.Event == nil || d.Event.EventType() != typ {
			t.Fatalf("Decode of %q gave %#v", typ, d.Event)
		}
		if d.Meta.SchemaVersion < 1 || d.Meta.SchemaVersion > codec.Versions[typ] {
			t.Errorf("decoded version %d of %s", d.Meta.SchemaVersion, typ)
		}
	})
}

// FuzzRoundTrip encodes events made of fuzzed strings and numbers and
// decodes them back unchanged.
func FuzzRoundTrip(f *testing.F) {
	f.Add("u-1", userName, userEmail, "contract ended", "doc-1", int64(5), int64(1710408413589793238))
	f.Add("", "", "", "", "", int64(0), int64(0))
	f.Add("ü\x00\"\\", "\u2028<>&", "a@b", "\t\n", "\x7f", int64(-1), int64(-62135596800000000))
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, id, name, email, reason, ref string, n, nanos int64) {
		for _, s := range []string{id, name, email, reason, ref} {
			if !utf8.ValidString(s) {
				t.Skip("JSON holds only valid UTF-8")
			}
		}
		when := time.Unix(0, nanos).UTC()
		c, _ := newCodec(t, id)
		events := []ledger.Event{
			ledger.UserAdded{UserID: id, Name: name, Email: email, Role: ledger.Role(ref), At: when},
			ledger.UserDeactivated{UserID: id, Reason: reason, At: when},
			ledger.ActivityRecorded{ActivityID: ref, UserID: id, Kind: name, Ref: reason, At: when},
			ledger.AccountOpened{Account: id, Name: name, Seats: int(n), At: when},
			ledger.SeatReductionScheduled{Count: int(n), EffectiveAt: when.Add(time.Hour), At: when},
		}
		meta := sampleMeta()
		meta.Account, meta.Actor.ID, meta.IdempotencyKey, meta.Time = account, ref, reason, when
		for _, e := range events {
			p, err := c.Encode(ctx, e, meta)
			if err != nil {
				t.Fatalf("Encode %T: %v", e, err)
			}
			d, err := c.Decode(ctx, record(p))
			if err != nil {
				t.Fatalf("Decode %T: %v\ndata %s\nmetadata %s", e, err, p.Data, p.Metadata)
			}
			if !reflect.DeepEqual(d.Event, e) {
				t.Errorf("got %#v, want %#v", d.Event, e)
			}
			if want := wantMeta(e, meta); !reflect.DeepEqual(d.Meta, want) {
				t.Errorf("metadata got %+v, want %+v", d.Meta, want)
			}
		}
	})
}
