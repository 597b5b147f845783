package contract

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
)

// JSONSchemaDialect is the JSON Schema version of the data schemas.
const JSONSchemaDialect = "https://json-schema.org/draft/2020-12/schema"

// Schema is the JSON Schema (2020-12) of the data of one published event
// type and version.
type Schema struct {
	// Type is the published type ([TypeName]).
	Type string
	// Stored and Version are the stored type and schema version.
	Stored  string
	Version int
	// Category is the kind of stream the event is stored in, which names
	// its subject.
	Category eventstore.Category
	// Doc says what the event records.
	Doc string
	// Subject is the payload member holding the user the event is about,
	// "" when it is about the account.
	Subject string
	// JSON is the schema document, indented, ending with a newline.
	JSON []byte
}

var schemas = sync.OnceValues(buildSchemas)

// Schemas returns the schema of every version of every event type of the
// catalogue ([codec.Events]), current versions first in catalogue order,
// then older ones. It fails when an older version's payload cannot be
// derived from its upcast (see [codec.Upcast]).
func Schemas() ([]Schema, error) { return schemas() }

// billingSchema is the JSON Schema of the billing notification's data,
// written by hand (it is no stored event of the catalogue); docs/schemas
// holds the same bytes.
//
//go:embed billing_schema.json
var billingSchema []byte

// BillingSchema returns the JSON Schema of the data of the billing
// notification ([BillingEventType]).
func BillingSchema() []byte { return billingSchema }

// SchemaJSON returns the schema document of published type typ: an event
// type and version of the catalogue, or [BillingEventType].
func SchemaJSON(typ string) ([]byte, bool) {
	if typ == BillingEventType {
		return billingSchema, true
	}
	all, err := schemas()
	if err != nil {
		return nil, false
	}
	for _, s := range all {
		if s.Type == typ {
			return s.JSON, true
		}
	}
	return nil, false
}

func buildSchemas() ([]Schema, error) {
	var current, older []Schema
	for _, info := range codec.Events() {
		fields := slices.Clone(info.Fields)
		for v := info.Version; v >= 1; v-- {
			s, err := schemaOf(info, v, fields)
			if err != nil {
				return nil, err
			}
			if v == info.Version {
				current = append(current, s)
			} else {
				older = append(older, s)
			}
			if v == 1 {
				break
			}
			// The fields of version v-1: undo the upcast from v-1.
			i := slices.IndexFunc(info.Upcasts, func(u codec.Upcast) bool { return u.From == v-1 })
			if i < 0 {
				return nil, fmt.Errorf("contract: %s version %d has no upcast to version %d", info.Type, v-1, v)
			}
			if fields, err = undo(info.Upcasts[i], fields); err != nil {
				return nil, fmt.Errorf("contract: %s version %d: %w", info.Type, v-1, err)
			}
		}
	}
	return append(current, older...), nil
}

// undo returns the payload members before upcast u.
func undo(u codec.Upcast, fields []codec.Field) ([]codec.Field, error) {
	switch {
	case u.Added != "":
		i := slices.IndexFunc(fields, func(f codec.Field) bool { return f.Name == u.Added })
		if i < 0 {
			return nil, fmt.Errorf("member %q added by the upcast is not in the next version", u.Added)
		}
		return slices.Delete(slices.Clone(fields), i, i+1), nil
	case u.Renamed[1] != "":
		i := slices.IndexFunc(fields, func(f codec.Field) bool { return f.Name == u.Renamed[1] })
		if i < 0 {
			return nil, fmt.Errorf("member %q renamed by the upcast is not in the next version", u.Renamed[1])
		}
		out := slices.Clone(fields)
		out[i].Name = u.Renamed[0]
		return out, nil
	}
	return nil, fmt.Errorf("upcast %q says neither what it added nor what it renamed", u.Doc)
}

// schemaOf writes the schema of version v of info, whose payload has
// fields.
func schemaOf(info codec.EventInfo, v int, fields []codec.Field) (Schema, error) {
	typ := TypeName(info.Type, v)
	var props bytes.Buffer
	props.WriteString("{")
	var required []string
	subject := ""
	for i, f := range fields {
		p := map[string]any{"description": f.Doc}
		switch f.Kind {
		case codec.KindString:
			p["type"] = "string"
		case codec.KindInt:
			p["type"] = "integer"
		case codec.KindTime:
			p["type"], p["format"] = "string", "date-time"
		default:
			return Schema{}, fmt.Errorf("contract: %s member %s: kind %v", info.Type, f.Name, f.Kind)
		}
		if f.Sealed != "" {
			p["contentEncoding"] = "base64"
			p["description"] = f.Doc + "; personal data, sealed (AES-256-GCM) under the user's data key, which only the ledger holds: unreadable once the user is deleted"
		}
		if f.Subject {
			subject = f.Name
		}
		if !f.OmitEmpty {
			required = append(required, f.Name)
		}
		b, err := json.Marshal(p)
		if err != nil {
			return Schema{}, err
		}
		if i > 0 {
			props.WriteString(",")
		}
		name, _ := json.Marshal(f.Name)
		props.Write(name)
		props.WriteString(":")
		props.Write(b)
	}
	props.WriteString("}")
	doc := struct {
		Schema      string          `json:"$schema"`
		ID          string          `json:"$id"`
		Title       string          `json:"title"`
		Description string          `json:"description"`
		Type        string          `json:"type"`
		Properties  json.RawMessage `json:"properties"`
		Required    []string        `json:"required"`
		Additional  bool            `json:"additionalProperties"`
	}{
		Schema: JSONSchemaDialect, ID: SchemaID(typ), Title: typ,
		Description: fmt.Sprintf("The data of %s (version %d of the ledger's stored event %s). %s", typ, v, info.Type, info.Doc),
		Type:        "object", Properties: props.Bytes(), Required: required,
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return Schema{}, err
	}
	return Schema{Type: typ, Stored: info.Type, Version: v, Category: info.Category, Doc: info.Doc, Subject: subject, JSON: append(b, '\n')}, nil
}

// SchemaID is the $id of the schema of published type typ: a URN that
// names it whatever host serves it.
func SchemaID(typ string) string { return "urn:licenseledger:schema:" + typ }
