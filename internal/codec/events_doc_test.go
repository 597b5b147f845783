package codec_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/contract"
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
	p("stream (`activity-<account>`). Stored events keep their stored form (the\n")
	p("hash chains cover those bytes); a publisher copies each of them, in the\n")
	p("store's order and whichever store is in use, to NATS as the envelope of\n")
	p("**contract v2** below.\n\n")
	p("## Published events: contract v2\n\n")
	p("Each event is a CloudEvents 1.0 event in structured mode (the body is the\n")
	p("JSON envelope, `Content-Type: application/cloudevents+json`, the event id\n")
	p("again as `Nats-Msg-Id`), as the CloudEvents NATS protocol binding 1.0.2\n")
	p("reads it. The AsyncAPI 3.0 document served at `/asyncapi.json` (no token;\n")
	p("a copy in [asyncapi.json](asyncapi.json)) describes the subjects, the\n")
	p("`LEDGER` stream, every message and the credential a consumer needs.\n\n")
	p("| Attribute | Value |\n|---|---|\n")
	p("| `type` | `dev.licenseledger.<noun>.<verb>.v<N>`: the stored type's last word is the verb, the words before it the noun (lower case, joined by `_`), `N` the event's schema version (table below) |\n")
	p("| `source` | `urn:licenseledger:account:<account>`: an absolute URI naming the account, the same whatever host serves the ledger |\n")
	p("| `subject` | the user the event is about; absent when the event is about the account |\n")
	p("| `time` | when the ledger recorded the event |\n")
	p("| `datacontenttype`, `data` | `application/json`; the stored payload described below, byte for byte (personal data stays sealed) |\n")
	p("| `dataschema` | `<public URL>/schemas/<type>.json`: the JSON Schema (2020-12) of `data`, served by licensed without a token (`--public-url`, default `http://<http-addr>`); checked in under [schemas/](schemas/) |\n")
	p("| extensions | `account`, `actorid`, `actorrole` (an id and a role, never a name), `correlationid`, `causationid`, `prevhash` (the chain hash of the previous event of the stream, for auditors), and `traceparent`/`tracestate` when the command had a W3C trace context |\n\n")
	p("Published messages never carry a client's idempotency key, the command\n")
	p("fingerprint, the schema version (the type names it) or the store's own\n")
	p("headers. Their only headers are `Content-Type`, `Nats-Msg-Id` and\n")
	p("`Ledger-Position`, the event's position in the store (growing, not dense:\n")
	p("the publisher's checkpoint; consumers may ignore it).\n\n")
	p("Where they are published:\n\n")
	p("- In the service's NATS account, the JetStream stream `EVENTS` holds\n")
	p("  `events.ledger.<account>.<EventType>`, `events.activity.<account>.ActivityRecorded`\n")
	p("  and the billing notifications `events.billing.<account>.CycleClosed`;\n")
	p("  webhooks deliver its messages' bodies.\n")
	p("- Downstream services connect with the downstream credential\n")
	p("  (`<data-dir>/downstream.nk`) and read the stream `LEDGER` of their\n")
	p("  account, a mirror of `EVENTS` without the `events.` prefix:\n")
	p("  `ledger.<account>.<EventType>` carries the license events only;\n")
	p("  activities are on `activity.<account>.ActivityRecorded` and billing\n")
	p("  notifications on `billing.<account>.CycleClosed`, not on `ledger.>`. Read\n")
	p("  it with durable or ephemeral consumers from any point, or subscribe to\n")
	p("  `ledger.>`, `activity.>`, `billing.>`: the mirror republishes each\n")
	p("  message it stores, with JetStream's republish headers (`Nats-Stream`,\n")
	p("  `Nats-Subject`, `Nats-Sequence`, `Nats-Time-Stamp`, `Nats-Last-Sequence`)\n")
	p("  and no reply subject. [examples/consumer](../examples/consumer) is a\n")
	p("  downstream service doing so.\n")
	p("- `GET /v1/accounts/{account}/events?format=cloudevents` exports the same\n")
	p("  envelopes as JSON Lines; without `format` it exports the stored form\n")
	p("  (metadata included), which audit verification needs.\n\n")
	p("### Migration from contract v1\n\n")
	p("Contract v1 published the stored envelope itself. What changed for\n")
	p("subscribers:\n\n")
	p("- `type` is the versioned name below instead of the bare stored name;\n")
	p("  subjects keep the stored name (`ledger.acme.UserDeactivated`).\n")
	p("- `source` is `urn:licenseledger:account:<account>` instead of the\n")
	p("  relative `/v1/accounts/<account>`.\n")
	p("- `dataschema` is new; `schemaversion`, `idempotencykey` and\n")
	p("  `commandfingerprint` are gone.\n")
	p("- The headers `Ledger-Revision`, `Ledger-Metadata`, `Nats-Expected-*` and\n")
	p("  reply inboxes no longer reach subscribers; `Ledger-Position` is new.\n")
	p("- Downstream `LEDGER` is now a mirror of `EVENTS` (it was a mirror of the\n")
	p("  store's stream): licensed replaces the old mirror on its first start, so\n")
	p("  durable consumers on it must be created again; they receive the whole\n")
	p("  history again, in contract v2. An external NATS server needs the\n")
	p("  accounts block `licensed nats-auth` prints now (docs/deploy.md).\n")
	p("- On its first start a data directory's stored events are all published\n")
	p("  into `EVENTS`, in order; later starts resume after the last one.\n\n")
	p("| Stored type and version | Published `type` (contract v2) | Subject downstream |\n|---|---|---|\n")
	for _, e := range events {
		for v := e.Version; v >= 1; v-- {
			p("| %s v%d | `%s` | `%s` |\n", e.Type, v, contract.TypeName(e.Type, v), e.NATSSubject("<account>"))
		}
	}
	p("| (billing notification, new) | `%s` | `billing.<account>.CycleClosed` |\n\n", contract.BillingEventType)
	p("## Stored events\n\n")
	p("The stored metadata holds `time`, `subject`, `schemaversion`, `account`,\n")
	p("`actorid`, `actorrole`, `correlationid`, `causationid`, `idempotencykey`,\n")
	p("`commandfingerprint` and `prevhash`. `commandfingerprint`, with\n")
	p("`idempotencykey`, identifies the command given with the key without\n")
	p("holding its personal data: see package accounts. Neither is published.\n")
	p("`traceparent` and `tracestate`, present when the command came with a W3C\n")
	p("trace context, are published as the CloudEvents distributed tracing\n")
	p("extension: the trace of the request that caused the event.\n\n")
	p("Personal data is sealed (AES-256-GCM under the data key of the event's\n")
	p("user, base64 of nonce and ciphertext) and reads as blank once the user is\n")
	p("deleted. Times are RFC 3339 in UTC. A reader meeting a schema version newer\n")
	p("than it knows refuses the event; older versions are upcast as listed.\n\n")
	p("A payload holds each member listed for its version once, of its type and\n")
	p("not null; only members said to be absent in some case may be left out. A\n")
	p("stored payload with a member missing, null, repeated, of another type or\n")
	p("not listed (a newer form comes with a newer schema version), or with\n")
	p("anything after the object, is malformed: read models quarantine it.\n\n")
	p("| Event | Schema version | Published type | Subject downstream | Sealed |\n|---|---|---|---|---|\n")
	for _, e := range events {
		p("| [%s](#%s) | %d | `%s` | `%s` | %s |\n", e.Type, strings.ToLower(e.Type), e.Version, contract.TypeName(e.Type, e.Version), e.NATSSubject("<account>"), orDash(strings.Join(e.Sealed(), ", ")))
	}
	for _, e := range events {
		p("\n## %s\n\n%s\n\n", e.Type, e.Doc)
		p("- Schema version: %d; published type `%s`, data schema [%s.json](schemas/%s.json)\n", e.Version, contract.TypeName(e.Type, e.Version), contract.TypeName(e.Type, e.Version), contract.TypeName(e.Type, e.Version))
		p("- Stream: `%s-<account>`; NATS subject downstream: `%s`\n", e.Category, e.NATSSubject("<account>"))
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
