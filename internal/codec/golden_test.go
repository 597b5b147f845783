package codec_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden is the layout of testdata/<Type>.golden.json: the stored bytes of
// one event, data and metadata embedded verbatim.
type golden struct {
	ID       uuid.UUID      `json:"id"`
	Type     string         `json:"type"`
	Data     jsontext.Value `json:"data"`
	Metadata jsontext.Value `json:"metadata"`
}

func goldenBytes(p eventstore.Proposed) []byte {
	var b bytes.Buffer
	b.WriteString("{\n\t\"id\": \"" + p.ID.String() + "\",\n")
	b.WriteString("\t\"type\": \"" + p.Type + "\",\n")
	b.WriteString("\t\"data\": " + string(p.Data) + ",\n")
	b.WriteString("\t\"metadata\": " + string(p.Metadata) + "\n}\n")
	return b.Bytes()
}

// TestGolden pins the stored bytes of every event type: changing them
// breaks every store already written, so it must be deliberate (run with
// -update and review the diff). It also decodes what the files hold, so
// events stored by this version keep decoding.
func TestGolden(t *testing.T) {
	for _, info := range codec.Events() {
		typ := info.Type
		t.Run(typ, func(t *testing.T) {
			// A fresh deterministic keyring per type: the key and nonces,
			// hence the sealed fields, are the same on every run.
			c, _ := newCodec(t, user)
			e := sampleEvent(typ, user)
			p := encode(t, c, e, sampleMeta())
			got := goldenBytes(p)
			path := filepath.Join("testdata", typ+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("every registered event type has a golden file: %v (run go test ./internal/codec -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("stored bytes of %s changed:\n got %s\nwant %s", typ, got, want)
			}

			var g golden
			if err := json.Unmarshal(want, &g, json.RejectUnknownMembers(true)); err != nil {
				t.Fatalf("golden file: %v", err)
			}
			d, err := c.Decode(t.Context(), eventstore.Record{ID: g.ID, Type: g.Type, Data: g.Data, Metadata: g.Metadata})
			if err != nil {
				t.Fatalf("Decode golden %s: %v", typ, err)
			}
			if !reflect.DeepEqual(d.Event, e) {
				t.Errorf("golden decodes to %#v, want %#v", d.Event, e)
			}
			if want := wantMeta(e, sampleMeta()); !reflect.DeepEqual(d.Meta, want) {
				t.Errorf("golden metadata decodes to %+v, want %+v", d.Meta, want)
			}
		})
	}
}

// goldenPath returns the golden file of version v of event type typ: the
// current version's has no version in its name.
func goldenPath(typ string, v, current int) string {
	if v == current {
		return filepath.Join("testdata", typ+".golden.json")
	}
	return filepath.Join("testdata", fmt.Sprintf("%s.v%d.golden.json", typ, v))
}

// TestGoldenFilesMatchCatalogue checks that testdata holds a golden file
// for every version of every registered event type, and nothing else: an
// event type or an old version without its stored bytes pinned fails.
func TestGoldenFilesMatchCatalogue(t *testing.T) {
	want := map[string]bool{}
	for _, info := range codec.Events() {
		for v := 1; v <= info.Version; v++ {
			want[goldenPath(info.Type, v, info.Version)] = true
		}
	}
	have, err := filepath.Glob(filepath.Join("testdata", "*.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range have {
		if !want[p] {
			t.Errorf("%s is the golden file of no registered event type and version", p)
		}
		delete(want, p)
	}
	for p := range want {
		t.Errorf("%s is missing: every version of every registered event type has its golden file", p)
	}
}

// TestGoldenUpcasts decodes the golden file of every older version of
// every registered event type: each upcasts to the current version and
// decodes to the event of the current golden file, with the stored
// version in its metadata. The old files are written by hand, once, from
// bytes a former version of the service stored: they cannot be generated.
// addedSince blanks, in the sample event, the members a later version
// added: a payload of the older version decodes without them.
var addedSince = map[string]func(ledger.Event) ledger.Event{
	"UserAdded/v1": func(e ledger.Event) ledger.Event {
		u := e.(ledger.UserAdded)
		u.ExternalID = ""
		return u
	},
}

func TestGoldenUpcasts(t *testing.T) {
	for _, info := range codec.Events() {
		for v := 1; v < info.Version; v++ {
			t.Run(fmt.Sprintf("%s/v%d", info.Type, v), func(t *testing.T) {
				c, _ := newCodec(t, user)
				b, err := os.ReadFile(goldenPath(info.Type, v, info.Version))
				if err != nil {
					t.Fatal(err)
				}
				var g golden
				if err := json.Unmarshal(b, &g, json.RejectUnknownMembers(true)); err != nil {
					t.Fatalf("golden file: %v", err)
				}
				d, err := c.Decode(t.Context(), eventstore.Record{ID: g.ID, Type: g.Type, Data: g.Data, Metadata: g.Metadata})
				if err != nil {
					t.Fatalf("Decode version %d: %v", v, err)
				}
				e := sampleEvent(info.Type, user)
				if without, ok := addedSince[fmt.Sprintf("%s/v%d", info.Type, v)]; ok {
					e = without(e)
				}
				if !reflect.DeepEqual(d.Event, e) {
					t.Errorf("version %d decodes to %#v, want %#v", v, d.Event, e)
				}
				if d.Meta.SchemaVersion != v {
					t.Errorf("Meta.SchemaVersion = %d, want the stored %d", d.Meta.SchemaVersion, v)
				}
			})
		}
	}
}

// TestUpcastRefusesMemberOfLaterVersion: a UserAdded stored as version 1
// that carries the external id, a member only version 2 has, was not
// written by version 1: it is malformed, not read as version 2.
func TestUpcastRefusesMemberOfLaterVersion(t *testing.T) {
	c, _ := newCodec(t, user)
	b, err := os.ReadFile(goldenPath("UserAdded", 2, 2))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	meta := bytes.Replace(g.Metadata, []byte(`"schemaversion":2`), []byte(`"schemaversion":1`), 1)
	if bytes.Equal(meta, g.Metadata) {
		t.Fatal("control: the golden UserAdded is not stored as version 2")
	}
	_, err = c.Decode(t.Context(), eventstore.Record{ID: g.ID, Type: g.Type, Data: g.Data, Metadata: meta})
	if !errors.Is(err, codec.ErrMalformed) {
		t.Fatalf("version 1 with a version 2 member decoded: %v, want ErrMalformed", err)
	}
}
