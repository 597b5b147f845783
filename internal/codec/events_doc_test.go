package codec_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/codec"
)

// eventsDoc is docs/events.md, relative to this package.
var eventsDoc = filepath.Join("..", "..", "docs", "events.md")

// TestEventsDoc checks that docs/events.md is what the catalogue says.
// Regenerate it with
//
//	go test ./internal/codec -run TestEventsDoc -update
//
// or go generate ./internal/codec.
func TestEventsDoc(t *testing.T) {
	got := renderEventsDoc(codec.Events())
	if *update {
		if err := os.WriteFile(eventsDoc, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(eventsDoc)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/codec -run TestEventsDoc -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("docs/events.md is out of date with the event catalogue: run go test ./internal/codec -run TestEventsDoc -update and review the diff")
	}
}

// The document names every registered event type, member and sealed
// field, so a registration the document does not show fails above.
func TestEventsDocShowsRegistrations(t *testing.T) {
	doc := string(renderEventsDoc(codec.Events()))
	for _, info := range codec.Events() {
		for _, want := range []string{"## " + info.Type + "\n", fmt.Sprintf("Schema version: %d", info.Version), "`" + info.NATSSubject("<account>") + "`"} {
			if !strings.Contains(doc, want) {
				t.Errorf("%s: the document lacks %q", info.Type, want)
			}
		}
		for _, f := range info.Fields {
			row := "| `" + f.Name + "` | " + f.Kind.String() + " | "
			if f.Sealed != "" {
				row += "yes, the " + f.Sealed
			}
			if !strings.Contains(doc, row) {
				t.Errorf("%s: the document lacks the row of %s: %q", info.Type, f.Name, row)
			}
		}
	}
}

// renderEventsDoc writes docs/events.md from the registrations.
func renderEventsDoc(events []codec.EventInfo) []byte {
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("<!-- Generated from the event catalogue, internal/codec/events.go. Do not edit:\n")
	p("     go test ./internal/codec -run TestEventsDoc -update -->\n\n")
	p("# Events\n\n")
	p("Every change to an account is one of these events, appended to the\n")
	p("account's ledger stream (`ledger-<account>`) or, for activities, its activity\n")
	p("stream (`activity-<account>`). On NATS each is published on the subject\n")
	p("given below as a CloudEvents 1.0 event in structured mode: `type` is the\n")
	p("event type, `subject` the user the event is about (when there is one),\n")
	p("`data` the payload described here and the ledger's metadata (`time`,\n")
	p("`schemaversion`, `account`, `actorid`, `actorrole`, `correlationid`,\n")
	p("`causationid`, `idempotencykey`, `commandfingerprint`, `prevhash`) extension\n")
	p("attributes. `commandfingerprint`, with `idempotencykey`, identifies the command\n")
	p("given with the key without holding its personal data: see package accounts.\n\n")
	p("Personal data is sealed (AES-256-GCM under the data key of the event's\n")
	p("user, base64 of nonce and ciphertext) and reads as blank once the user is\n")
	p("deleted. Times are RFC 3339 in UTC. A reader meeting a schema version newer\n")
	p("than it knows refuses the event; older versions are upcast as listed.\n\n")
	p("A payload holds each member listed for its version once, of its type and\n")
	p("not null; only members said to be absent in some case may be left out. A\n")
	p("stored payload with a member missing, null, repeated, of another type or\n")
	p("not listed (a newer form comes with a newer schema version), or with\n")
	p("anything after the object, is malformed: read models quarantine it.\n\n")
	p("| Event | Schema version | Subject | Sealed |\n|---|---|---|---|\n")
	for _, e := range events {
		p("| [%s](#%s) | %d | `%s` | %s |\n", e.Type, strings.ToLower(e.Type), e.Version, e.NATSSubject("<account>"), orDash(strings.Join(e.Sealed(), ", ")))
	}
	for _, e := range events {
		p("\n## %s\n\n%s\n\n", e.Type, e.Doc)
		p("- Schema version: %d\n", e.Version)
		p("- Stream: `%s-<account>`; NATS subject: `%s`\n", e.Category, e.NATSSubject("<account>"))
		if m := e.SubjectMember(); m != "" {
			p("- CloudEvents `subject`: the user in `%s`, whose data key seals the event's personal data\n", m)
		} else {
			p("- CloudEvents `subject`: none, the event is about the account\n")
		}
		if s := e.Sealed(); len(s) > 0 {
			p("- Personal data, sealed: %s\n", strings.Join(s, ", "))
		} else {
			p("- Personal data: none\n")
		}
		p("\n| Member | Type | Sealed | Description |\n|---|---|---|---|\n")
		for _, f := range e.Fields {
			sealed := ""
			if f.Sealed != "" {
				sealed = "yes, the " + f.Sealed
			}
			doc := f.Doc
			if f.OmitEmpty {
				doc += " (left out when empty)"
			}
			p("| `%s` | %s | %s | %s |\n", f.Name, f.Kind, sealed, doc)
		}
		if len(e.Upcasts) > 0 {
			p("\nOlder versions, upcast when read:\n\n")
			for _, u := range e.Upcasts {
				p("- %d to %d: %s\n", u.From, u.From+1, u.Doc)
			}
		}
	}
	b.WriteString(cycleClosedDoc)
	return b.Bytes()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
