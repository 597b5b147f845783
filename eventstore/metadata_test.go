package eventstore_test

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/licenseledger/ledger/eventstore"
)

// metadataCases are metadata the service writes and ones it does not,
// each of which metadataMembers must treat as the JSON decoder does.
var metadataCases = []string{
	`{}`, `{"a":1}`, `{"time":"2026-01-05T09:00:00Z","subject":"u1","schemaversion":1,"account":"acme","actorid":"admin-1","actorrole":"admin","correlationid":"01HZY3K6V1M000000000000000","causationid":"01HZY3K6V1M000000000000000","prevhash":"abc"}`,
	`{"a":true,"b":false,"c":-0.5e+10,"d":0,"e":"é"}`, `{"a":"x","a":"y"}`, `{"id":"x"}`, `{"data":1}`, `{"A":1}`,
	`{"a b":1}`, `{"a":null}`, `{"a":{}}`, `{"a":[]}`, `{"a":01}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":-}`,
	`{"a":tru}`, `{"a":"x\"y"}`, `{"a":"x\u0041"}`, `{"\u0061":1}`, `{"a":"` + "\x01" + `"}`, `{"a":"` + "\xff" + `"}`,
	`{ "a":1}`, `{"a" :1}`, `{"a":1 }`, `{"a":1,}`, `{,}`, `{"a":1}{`, `{"a"}`, `{"a":}`, `{""":1}`, `{"":1}`,
	`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"n":14,"o":15,"p":16,"q":17}`,
}

// TestMetadataMembersAsTheDecoder checks that metadataMembers, which reads
// plain metadata without the JSON decoder, gives the decoder's answer for
// every case and for random variations of them.
func TestMetadataMembersAsTheDecoder(t *testing.T) {
	inputs := append([]string(nil), metadataCases...)
	rng := rand.New(rand.NewPCG(1, 15))
	const alphabet = `{}":,.-+eE019azAZ tfrulns\` + "\x01\xc3\xa9\xff"
	for range 50000 {
		b := []byte(metadataCases[rng.IntN(len(metadataCases))])
		for range 1 + rng.IntN(3) {
			i := rng.IntN(len(b))
			switch rng.IntN(3) {
			case 0:
				b[i] = alphabet[rng.IntN(len(alphabet))]
			case 1:
				b = append(b[:i], b[i+1:]...)
			default:
				b = append(b[:i], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[i:]...)...)
			}
			if len(b) == 0 {
				break
			}
		}
		inputs = append(inputs, string(b))
	}
	for _, in := range inputs {
		md := []byte(in)
		got, gotErr := eventstore.MetadataMembers(md)
		if len(md) == 0 || md[0] != '{' || md[len(md)-1] != '}' {
			continue // refused before either reading
		}
		want, wantErr := eventstore.DecodeMetadataMembers(md)
		if (gotErr == nil) != (wantErr == nil) || !bytes.Equal(got, want) || (got == nil) != (want == nil) {
			t.Errorf("metadata %q: %q, %v; the decoder gives %q, %v", in, got, gotErr, want, wantErr)
		}
	}
}

// BenchmarkMetadataMembers checks the metadata of one event as the
// service writes it, beside the JSON decoder's check.
//
//	go test -run '^$' -bench MetadataMembers -count 3 ./eventstore/
func BenchmarkMetadataMembers(b *testing.B) {
	md := []byte(metadataCases[2])
	b.Run("plain", func(b *testing.B) {
		for b.Loop() {
			if _, err := eventstore.MetadataMembers(md); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decoder", func(b *testing.B) {
		for b.Loop() {
			if _, err := eventstore.DecodeMetadataMembers(md); err != nil {
				b.Fatal(err)
			}
		}
	})
}
