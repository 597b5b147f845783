package codec_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
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
	for _, typ := range ledger.EventTypes {
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
				t.Fatalf("%v (run go test -update to create it)", err)
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
