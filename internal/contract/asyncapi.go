package contract

import (
	"encoding/json"
	"fmt"
	"sync"
)

// BillingEventType is the CloudEvents type of the billing notification
// published on [BillingSubject], and BillingSchemaFile the name of its
// data's JSON Schema under docs/schemas, served like the events' at
// [SchemaPath].
const (
	BillingEventType  = "dev.licenseledger.billing.cycle_closed.v1"
	BillingSchemaFile = BillingEventType + ".json"
)

// DownstreamStream is the JetStream stream, in the downstream NATS
// account, that downstream services consume: a mirror of [Stream] whose
// subjects lack the [SubjectPrefix].
const DownstreamStream = "LEDGER"

var asyncAPI = sync.OnceValues(buildAsyncAPI)

// AsyncAPI returns the AsyncAPI 3.0 document of the published events, as
// downstream services see them on NATS: the server, one channel per
// subject, one message per published type and version, whose data
// references its JSON Schema (relative URL schemas/<type>.json, beside
// the document), and the credential a consumer needs.
func AsyncAPI() ([]byte, error) { return asyncAPI() }

type obj = map[string]any

func buildAsyncAPI() ([]byte, error) {
	all, err := Schemas()
	if err != nil {
		return nil, err
	}
	channels, operations, messages := obj{}, obj{}, obj{}
	type published struct {
		typ, stored, doc, subjectMember string
		version                         int
		category                        string
		data                            obj
	}
	var pubs []published
	for _, s := range all {
		pubs = append(pubs, published{
			typ: s.Type, stored: s.Stored, doc: s.Doc, subjectMember: s.Subject, version: s.Version,
			category: string(s.Category), data: obj{"$ref": "schemas/" + s.Type + ".json"},
		})
	}
	pubs = append(pubs, published{
		typ: BillingEventType, stored: "CycleClosed", version: 1, category: "billing", subjectMember: "period",
		doc:  "An account's billing cycle closed: its final quantities for the cycle (seats billed, prorated additions, reductions, peak active users, active user-days), published once per account and cycle with a stable id.",
		data: obj{"$ref": "schemas/" + BillingSchemaFile},
	})
	for _, p := range pubs {
		chID := p.category + "." + p.stored
		ch, ok := channels[chID].(obj)
		if !ok {
			ch = obj{
				"address":     p.category + ".{account}." + p.stored,
				"title":       p.stored,
				"description": fmt.Sprintf("%s events of an account, in the ledger's order, on the downstream stream %s (JetStream, durable consumers from any point) and to plain subscriptions. %s", p.stored, DownstreamStream, p.doc),
				"parameters":  obj{"account": obj{"$ref": "#/components/parameters/account"}},
				"messages":    obj{},
				"servers":     []any{obj{"$ref": "#/servers/nats"}},
			}
			channels[chID] = ch
			operations["receive"+p.stored] = obj{
				"action":      "receive",
				"title":       "Receive " + p.stored,
				"summary":     fmt.Sprintf("Consume %s events from the stream %s (durable consumer, filter %s.*.%s) or subscribe to %s.*.%s.", p.stored, DownstreamStream, p.category, p.stored, p.category, p.stored),
				"channel":     obj{"$ref": "#/channels/" + chID},
				"messages":    []any{},
				"security":    []any{obj{"$ref": "#/components/securitySchemes/downstreamNkey"}},
				"description": "Acknowledge each message on a durable consumer: the ledger delivers every event once per consumer, in order.",
			}
		}
		ch["messages"].(obj)[p.typ] = obj{"$ref": "#/components/messages/" + p.typ}
		op := operations["receive"+p.stored].(obj)
		op["messages"] = append(op["messages"].([]any), obj{"$ref": "#/channels/" + chID + "/messages/" + p.typ})
		envelope := obj{
			"type":     "object",
			"required": []any{"specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "data"},
			"properties": obj{
				"specversion":     obj{"const": "1.0"},
				"id":              obj{"type": "string", "format": "uuid", "description": "the event id, also the Nats-Msg-Id header"},
				"source":          obj{"type": "string", "format": "uri", "description": "the account: " + SourcePrefix + "<account>"},
				"type":            obj{"const": p.typ},
				"time":            obj{"type": "string", "format": "date-time", "description": "when the ledger recorded the event"},
				"datacontenttype": obj{"const": "application/json"},
				"dataschema":      obj{"type": "string", "format": "uri", "description": schemaWhere(p.typ, p.category)},
				"account":         obj{"type": "string", "description": "the account's id"},
				"actorid":         obj{"type": "string", "description": "the principal who gave the command (an id, never a name)"},
				"actorrole":       obj{"type": "string", "description": "the principal's role"},
				"correlationid":   obj{"type": "string", "description": "ULID shared by the events of one request"},
				"causationid":     obj{"type": "string", "description": "ULID of what caused the event"},
				"prevhash":        obj{"type": "string", "description": "hex SHA-256 chain hash of the previous event of the account's stream (zero for the first): auditors follow the chain with it"},
				"traceparent":     obj{"type": "string", "description": "W3C trace context of the command, when it had one (CloudEvents distributed tracing extension)"},
				"tracestate":      obj{"type": "string", "description": "W3C trace state, with traceparent"},
				"data":            p.data,
			},
		}
		if p.subjectMember != "" {
			what := "the user the event is about (data." + p.subjectMember + ")"
			if p.category == "billing" {
				what = "the cycle's period, YYYY-MM (data.period)"
			}
			envelope["properties"].(obj)["subject"] = obj{"type": "string", "description": what}
			envelope["required"] = append(envelope["required"].([]any), "subject")
		}
		messages[p.typ] = obj{
			"name":        p.typ,
			"title":       fmt.Sprintf("%s version %d", p.stored, p.version),
			"summary":     p.doc,
			"contentType": ContentType,
			"headers":     obj{"$ref": "#/components/schemas/headers"},
			"payload":     envelope,
			"description": "A CloudEvents 1.0 event in structured mode (JSON), as the CloudEvents NATS protocol binding 1.0.2 reads it. It never carries a client's idempotency key or personal data in clear.",
		}
	}
	doc := obj{
		"asyncapi": "3.0.0",
		"id":       "urn:licenseledger:events",
		"info": obj{
			"title":   "License ledger events",
			"version": "2",
			"description": "Every event of the license ledger, published in the ledger's order for downstream services (contract v2, docs/events.md). " +
				"In the service's NATS account the publisher writes them to the JetStream stream " + Stream + " on events.ledger.<account>.<EventType>, events.activity.<account>.ActivityRecorded and events.billing.<account>.CycleClosed. " +
				"Downstream services connect with the downstream credential to the downstream account, where the stream " + DownstreamStream + " mirrors " + Stream + " without the events. prefix: " +
				"ledger.<account>.<EventType> carries the license events, activity.<account>.ActivityRecorded the activities (they are not on ledger.>), billing.<account>.CycleClosed the billing notifications. " +
				"Read " + DownstreamStream + " with durable or ephemeral JetStream consumers (from any point), or subscribe to the subjects: the mirror republishes every message it stores, with JetStream's republish headers (Nats-Stream, Nats-Subject, Nats-Sequence, Nats-Time-Stamp, Nats-Last-Sequence) and no reply subject.",
		},
		"defaultContentType": ContentType,
		"servers": obj{
			"nats": obj{
				"host":        "127.0.0.1:4222",
				"protocol":    "nats",
				"title":       "The NATS server of licensed",
				"description": "The embedded server listens on --nats-listen (default 127.0.0.1:4222); with --nats-url the external server or cluster. JetStream stream " + DownstreamStream + " in the downstream account.",
				"security":    []any{obj{"$ref": "#/components/securitySchemes/downstreamNkey"}},
			},
		},
		"channels":   channels,
		"operations": operations,
		"components": obj{
			"messages": messages,
			"parameters": obj{
				"account": obj{"description": "the account's id, [a-z0-9][a-z0-9_-]{0,62}"},
			},
			"schemas": obj{
				"headers": obj{
					"type":     "object",
					"required": []any{"Content-Type", "Nats-Msg-Id"},
					"properties": obj{
						"Content-Type":    obj{"const": ContentType},
						"Nats-Msg-Id":     obj{"type": "string", "description": "the event id (the envelope's id); JetStream de-duplicates on it"},
						"Ledger-Position": obj{"type": "string", "pattern": "^[0-9]+$", "description": "the event's position in the ledger's store, growing (not dense): the publisher's checkpoint; consumers may ignore it. Absent on billing notifications."},
					},
				},
			},
			"securitySchemes": obj{
				"downstreamNkey": obj{
					"type": "asymmetricEncryption",
					"description": "An NATS nkey user of the downstream account, subscribe-only: licensed writes its seed to <data-dir>/" + "downstream.nk" + " (mode 0600) on the first start; connect with it as an nkey seed (nats --nkey <data-dir>/downstream.nk, nats.NkeyOptionFromSeed). " +
						"It may read the stream " + DownstreamStream + " (consumers, acknowledgements) and subscribe to ledger.>, activity.>, billing.> and _INBOX.>, nothing else. With an external NATS server, the operator sets up the accounts as licensed nats-auth prints them.",
					"x-nkey-seed-file": "<data-dir>/downstream.nk",
				},
			},
		},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// schemaWhere says where the JSON Schema of a message's data is.
func schemaWhere(typ, category string) string {
	return "URL of the JSON Schema of data, served by licensed at /schemas/" + typ + ".json"
}
