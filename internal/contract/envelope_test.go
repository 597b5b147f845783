package contract_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/contract"
)

// goldenRecord is a golden file of the codec (internal/codec/testdata): the
// stored bytes of one event type and version.
type goldenRecord struct {
	Path     string
	Category eventstore.Category
	Record   eventstore.Record
}

func goldenRecords(t *testing.T) []goldenRecord {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("..", "codec", "testdata", "*.golden.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("golden files: %v (%d)", err, len(paths))
	}
	var out []goldenRecord
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var g struct {
			ID       uuid.UUID       `json:"id"`
			Type     string          `json:"type"`
			Data     json.RawMessage `json:"data"`
			Metadata json.RawMessage `json:"metadata"`
		}
		if err := json.Unmarshal(b, &g); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		info, ok := codec.Lookup(g.Type)
		if !ok {
			t.Fatalf("%s: type %s not in the catalogue", p, g.Type)
		}
		out = append(out, goldenRecord{Path: p, Category: info.Category, Record: eventstore.Record{
			ID: g.ID, Type: g.Type, Data: g.Data, Metadata: g.Metadata,
			Stream: eventstore.StreamID{Category: info.Category, Account: "acme"},
		}})
	}
	return out
}

// TestEnvelopeOfGoldenEvents builds the published envelope of every golden
// event, reads it with the CloudEvents SDK and checks the attributes of
// contract v2: the versioned reverse-DNS type, the account's URN as
// source, the user as subject, the schema's URL, the data byte for byte,
// and none of the client's idempotency key or command fingerprint.
func TestEnvelopeOfGoldenEvents(t *testing.T) {
	for _, g := range goldenRecords(t) {
		t.Run(filepath.Base(g.Path), func(t *testing.T) {
			var meta struct {
				SchemaVersion int    `json:"schemaversion"`
				Subject       string `json:"subject"`
				Time          string `json:"time"`
				Idem          string `json:"idempotencykey"`
			}
			if err := json.Unmarshal(g.Record.Metadata, &meta); err != nil {
				t.Fatal(err)
			}
			if meta.Idem == "" {
				t.Fatal("the golden event should carry an idempotency key for this test to mean anything")
			}
			b, err := contract.Envelope(g.Record, "https://ledger.example.com")
			if err != nil {
				t.Fatal(err)
			}
			var ev cloudevents.Event
			if err := json.Unmarshal(b, &ev); err != nil {
				t.Fatalf("the CloudEvents SDK cannot read %s: %v", b, err)
			}
			if err := ev.Validate(); err != nil {
				t.Fatalf("invalid CloudEvent: %v", err)
			}
			wantType := contract.TypeName(g.Record.Type, meta.SchemaVersion)
			if !strings.HasPrefix(wantType, "dev.licenseledger.") || !strings.HasSuffix(wantType, ".v"+string(rune('0'+meta.SchemaVersion))) {
				t.Errorf("type name %q", wantType)
			}
			checks := []struct{ name, got, want string }{
				{"id", ev.ID(), g.Record.ID.String()},
				{"type", ev.Type(), wantType},
				{"source", ev.Source(), "urn:licenseledger:account:acme"},
				{"subject", ev.Subject(), meta.Subject},
				{"dataschema", ev.DataSchema(), "https://ledger.example.com/schemas/" + wantType + ".json"},
				{"datacontenttype", ev.DataContentType(), "application/json"},
				{"data", string(ev.Data()), string(g.Record.Data)},
				{"account", str(ev.Extensions()["account"]), "acme"},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
				}
			}
			if ev.Time().IsZero() || ev.Time().Format("2006-01-02T15:04:05.999999999Z07:00") != meta.Time {
				t.Errorf("time = %v, want %s", ev.Time(), meta.Time)
			}
			for _, name := range []string{"idempotencykey", "commandfingerprint", "schemaversion"} {
				if _, ok := ev.Extensions()[name]; ok {
					t.Errorf("extension %s published", name)
				}
			}
			if strings.Contains(string(b), meta.Idem) {
				t.Errorf("the idempotency key %q is in the envelope %s", meta.Idem, b)
			}
			for _, name := range []string{"actorid", "actorrole", "correlationid", "causationid", "prevhash"} {
				if _, ok := ev.Extensions()[name]; !ok {
					t.Errorf("extension %s missing", name)
				}
			}
		})
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// TestTypeNames fixes the published type of every event type of the
// catalogue: a rename here is a change of the contract.
func TestTypeNames(t *testing.T) {
	want := map[string]string{
		"AccountOpened":          "dev.licenseledger.account.opened.v2",
		"SeatsPurchased":         "dev.licenseledger.seats.purchased.v1",
		"SeatReductionScheduled": "dev.licenseledger.seat_reduction.scheduled.v1",
		"UserAdded":              "dev.licenseledger.user.added.v2",
		"UserDeactivated":        "dev.licenseledger.user.deactivated.v1",
		"UserActivated":          "dev.licenseledger.user.activated.v1",
		"UserDeleted":            "dev.licenseledger.user.deleted.v1",
		"ActivityRecorded":       "dev.licenseledger.activity.recorded.v1",
		"UserProfileUpdated":     "dev.licenseledger.user_profile.updated.v1",
		"UserRoleChanged":        "dev.licenseledger.user_role.changed.v1",
	}
	for _, info := range codec.Events() {
		w, ok := want[info.Type]
		if !ok {
			t.Errorf("event type %s has no published type fixed in this test", info.Type)
			continue
		}
		if got := contract.TypeName(info.Type, info.Version); got != w {
			t.Errorf("TypeName(%s, %d) = %q, want %q", info.Type, info.Version, got, w)
		}
	}
}

// TestEnvelopeRefusals checks that records that are not events of the
// ledger are refused, not published as broken JSON.
func TestEnvelopeRefusals(t *testing.T) {
	good := goldenRecords(t)[0].Record
	cases := map[string]func(r *eventstore.Record){
		"no type":              func(r *eventstore.Record) { r.Type = "" },
		"type with a dot":      func(r *eventstore.Record) { r.Type = "User.Added" },
		"account with space":   func(r *eventstore.Record) { r.Stream.Account = "a b" },
		"data not JSON":        func(r *eventstore.Record) { r.Data = []byte(`{"a":`) },
		"metadata not object":  func(r *eventstore.Record) { r.Metadata = []byte(`[1]`) },
		"metadata nested":      func(r *eventstore.Record) { r.Metadata = []byte(`{"schemaversion":1,"x":{"y":1}}`) },
		"metadata bad string":  func(r *eventstore.Record) { r.Metadata = []byte(`{"schemaversion":1,"actorid":"a\q"}`) },
		"metadata trailing":    func(r *eventstore.Record) { r.Metadata = []byte(`{"schemaversion":1} x`) },
		"no schema version":    func(r *eventstore.Record) { r.Metadata = []byte(`{"time":"2025-03-14T09:26:53Z"}`) },
		"number leading zero":  func(r *eventstore.Record) { r.Metadata = []byte(`{"schemaversion":01}`) },
		"number without digit": func(r *eventstore.Record) { r.Metadata = []byte(`{"schemaversion":1,"x":-}`) },
		"number bad exponent":  func(r *eventstore.Record) { r.Metadata = []byte(`{"schemaversion":1,"x":1e}`) },
	}
	for name, mutate := range cases {
		r := good
		mutate(&r)
		if b, err := contract.Envelope(r, ""); !errors.Is(err, contract.ErrNotPublishable) {
			t.Errorf("%s: Envelope = %s, %v; want ErrNotPublishable", name, b, err)
		}
	}
	b, err := contract.Envelope(good, "")
	if err != nil || !json.Valid(b) {
		t.Fatalf("good record: %s, %v", b, err)
	}
}

// FuzzEnvelope checks that whatever the stored bytes, Envelope either
// refuses them or writes valid JSON that the CloudEvents SDK reads, with
// the record's id and no idempotency key.
func FuzzEnvelope(f *testing.F) {
	f.Add("UserAdded", []byte(`{"user_id":"u"}`), []byte(`{"schemaversion":2,"subject":"u","idempotencykey":"k","time":"2025-03-14T09:26:53Z"}`))
	f.Add("SeatsPurchased", []byte(`{"count":1}`), []byte(` { "schemaversion" : 1 , "actorid" : "a\u00e9\"" , "x" : -1.5e+3 , "t" : true } `))
	f.Add("X", []byte(``), []byte(`{"schemaversion":1,"prevhash":"\\"}`))
	f.Fuzz(func(t *testing.T, typ string, data, md []byte) {
		rec := eventstore.Record{ID: uuid.New(), Type: typ, Data: data, Metadata: md, Stream: eventstore.LedgerStream("acme")}
		b, err := contract.Envelope(rec, "https://h.example")
		if err != nil {
			if !errors.Is(err, contract.ErrNotPublishable) {
				t.Fatalf("error %v does not wrap ErrNotPublishable", err)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("invalid JSON: %s", b)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil || m["id"] != rec.ID.String() {
			t.Fatalf("envelope %s: %v", b, err)
		}
		if _, ok := m["idempotencykey"]; ok {
			t.Fatalf("idempotency key published: %s", b)
		}
	})
}
