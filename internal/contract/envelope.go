package contract

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/flatjson"
)

// ContentType is the Content-Type of every published message: a
// CloudEvents 1.0 event in structured mode, JSON format.
const ContentType = "application/cloudevents+json"

// TypePrefix starts the CloudEvents type of every published event: a
// reverse-DNS name of the ledger.
const TypePrefix = "dev.licenseledger."

// SourcePrefix starts the CloudEvents source of every published event,
// which the account's id ends: an absolute URI (a URN) that names the
// account whatever host serves the ledger, so that it stays the same when
// the service moves.
const SourcePrefix = "urn:licenseledger:account:"

// SchemaPath is the path, under the service's public URL, where the JSON
// Schema of the data of published type typ (a [TypeName]) is served.
func SchemaPath(typ string) string { return "/schemas/" + typ + ".json" }

// DefaultBaseURL is the public URL of a service started with no flags,
// which [DataSchema] prefixes when given no other.
const DefaultBaseURL = "http://127.0.0.1:8080"

// ErrNotPublishable is returned, wrapped, by [Envelope] for a record that
// cannot be written as a published event: no type, an account or type
// that is not a subject token, data that is not JSON, metadata that is
// not a flat JSON object or has no schema version.
var ErrNotPublishable = errors.New("contract: record cannot be published")

// Source returns the CloudEvents source of the events of account:
// "urn:licenseledger:account:<account>".
func Source(account string) string { return SourcePrefix + account }

// DataSchema returns the URL of the JSON Schema of published type typ,
// served by the service whose public URL is baseURL (no trailing slash;
// [DefaultBaseURL] when empty).
func DataSchema(baseURL, typ string) string {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	return strings.TrimSuffix(baseURL, "/") + SchemaPath(typ)
}

type typeVersion struct {
	typ     string
	version int
}

var typeNames = struct {
	sync.RWMutex
	m map[typeVersion]string
}{m: map[typeVersion]string{}}

// TypeName returns the published CloudEvents type of an event stored with
// type stored and schema version version:
// "dev.licenseledger.<noun>.<verb>.v<version>", where the verb is the
// stored name's last word and the noun its words before, lower case,
// joined by "_". UserDeactivated version 1 is
// "dev.licenseledger.user.deactivated.v1", SeatReductionScheduled version
// 1 "dev.licenseledger.seat_reduction.scheduled.v1". A name of one word is
// its own noun and has no verb part.
func TypeName(stored string, version int) string {
	k := typeVersion{stored, version}
	typeNames.RLock()
	name, ok := typeNames.m[k]
	typeNames.RUnlock()
	if ok {
		return name
	}
	words := splitWords(stored)
	var b strings.Builder
	b.WriteString(TypePrefix)
	for i, w := range words {
		switch {
		case i == 0:
		case i == len(words)-1:
			b.WriteByte('.')
		default:
			b.WriteByte('_')
		}
		b.WriteString(strings.ToLower(w))
	}
	fmt.Fprintf(&b, ".v%d", version)
	name = b.String()
	typeNames.Lock()
	if len(typeNames.m) < 4096 { // bounded: types come from stored records
		typeNames.m[k] = name
	}
	typeNames.Unlock()
	return name
}

// splitWords splits a CamelCase name into its words.
func splitWords(s string) []string {
	var words []string
	start := 0
	for i, r := range s {
		if i > start && unicode.IsUpper(r) {
			words = append(words, s[start:i])
			start = i
		}
	}
	if start < len(s) {
		words = append(words, s[start:])
	}
	return words
}

// Extensions are the members of a stored event's metadata that the
// published envelope carries as CloudEvents extension attributes, besides
// time and subject which are core attributes: the account, the actor
// (principal id and role, never a name), the correlation and causation
// ids, the hash of the previous event of the stream (so that auditors can
// follow the chain), and the W3C trace context when the command had one
// (CloudEvents distributed tracing extension). Every other member stays
// out: the client's idempotency key and the command's fingerprint above
// all, and the schema version, which the type names.
var Extensions = []string{"account", "actorid", "actorrole", "correlationid", "causationid", "prevhash", "traceparent", "tracestate"}

// Envelope returns the published form of a stored record: its CloudEvents
// 1.0 structured-mode JSON envelope of contract v2,
//
//	{"specversion":"1.0","id":"<event id>","source":"urn:licenseledger:account:<account>",
//	 "type":"dev.licenseledger.<noun>.<verb>.v<N>","subject":"<user id>","time":"<recorded>",
//	 "datacontenttype":"application/json","dataschema":"<baseURL>/schemas/<type>.json",
//	 "account":…,"actorid":…,"actorrole":…,"correlationid":…,"causationid":…,"prevhash":…,
//	 "data":<the stored data>}
//
// subject is there when the event is about a user; the extensions are
// those of [Extensions] the metadata holds. The data is the stored data
// byte for byte: personal data stays sealed. baseURL is the service's
// public URL, for dataschema ([DataSchema]). Errors wrap
// [ErrNotPublishable].
func Envelope(rec eventstore.Record, baseURL string) ([]byte, error) {
	return AppendEnvelope(nil, rec, baseURL)
}

// AppendEnvelope appends the envelope [Envelope] returns to dst.
func AppendEnvelope(dst []byte, rec eventstore.Record, baseURL string) ([]byte, error) {
	if rec.Type == "" || !token(rec.Type) || !token(rec.Stream.Account) {
		return dst, fmt.Errorf("%w: event %s: type %q or account %q is not a subject token", ErrNotPublishable, rec.ID, rec.Type, rec.Stream.Account)
	}
	if len(rec.Data) > 0 && !jsontext.Value(rec.Data).IsValid() {
		return dst, fmt.Errorf("%w: data of event %s is not JSON", ErrNotPublishable, rec.ID)
	}
	var md flatMeta
	if err := md.scan(rec.Metadata); err != nil {
		return dst, fmt.Errorf("%w: metadata of event %s: %w", ErrNotPublishable, rec.ID, err)
	}
	if md.version <= 0 {
		return dst, fmt.Errorf("%w: metadata of event %s has no schema version", ErrNotPublishable, rec.ID)
	}
	typ := TypeName(rec.Type, md.version)
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	baseURL = strings.TrimSuffix(baseURL, "/")
	b := slices.Grow(dst, 300+len(rec.Data)+len(rec.Metadata)+len(rec.Stream.Account)+2*len(typ)+len(baseURL))
	b = append(b, `{"specversion":"1.0","id":"`...)
	b = appendUUID(b, rec.ID)
	b = append(b, `","source":"`...)
	b = append(b, SourcePrefix...)
	b = append(b, rec.Stream.Account...) // a subject token: nothing to escape
	b = append(b, `","type":"`...)
	b = append(b, typ...)
	b = append(b, '"')
	if md.subject != nil {
		b = append(b, `,"subject":`...)
		b = append(b, md.subject...)
	}
	if md.time != nil {
		b = append(b, `,"time":`...)
		b = append(b, md.time...)
	}
	b = append(b, `,"datacontenttype":"application/json","dataschema":`...)
	if plainURL(baseURL) {
		b = append(b, '"')
		b = append(b, baseURL...)
		b = append(b, "/schemas/"...)
		b = append(b, typ...) // letters, digits, '.' and '_'
		b = append(b, `.json"`...)
	} else {
		b, _ = jsontext.AppendQuote(b, DataSchema(baseURL, typ))
	}
	for i, v := range md.ext {
		if v == nil {
			continue
		}
		b = append(b, `,"`...)
		b = append(b, Extensions[i]...)
		b = append(b, `":`...)
		b = append(b, v...)
	}
	if len(rec.Data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, rec.Data...)
	}
	return append(b, '}'), nil
}

// token reports whether s can be one token of a NATS subject.
func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c <= ' ', c == '.', c == '*', c == '>', c >= 0x7f:
			return false
		}
	}
	return true
}

// flatMeta is what [Envelope] takes from stored metadata: raw JSON values.
type flatMeta struct {
	time, subject []byte
	version       int
	ext           [8][]byte // by index in Extensions
}

// scan reads a flat JSON object whose values are strings, numbers or
// booleans, keeping the members the envelope needs.
func (m *flatMeta) scan(b []byte) error {
	i := flatjson.SkipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errors.New("not a JSON object")
	}
	i = flatjson.SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		if flatjson.SkipSpace(b, i+1) != len(b) {
			return errors.New("trailing data after the object")
		}
		return nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return errors.New("member name expected")
		}
		end, err := stringEnd(b, i)
		if err != nil {
			return err
		}
		name := b[i+1 : end-1]
		i = flatjson.SkipSpace(b, end)
		if i >= len(b) || b[i] != ':' {
			return errors.New("':' expected")
		}
		i = flatjson.SkipSpace(b, i+1)
		vstart := i
		if i >= len(b) {
			return errors.New("value expected")
		}
		switch c := b[i]; {
		case c == '"':
			if i, err = stringEnd(b, i); err != nil {
				return err
			}
		case c == '-' || c >= '0' && c <= '9':
			if i = numberEnd(b, i); i < 0 {
				return fmt.Errorf("member %q: bad number", name)
			}
		case bytesHasPrefix(b[i:], "true"):
			i += 4
		case bytesHasPrefix(b[i:], "false"):
			i += 5
		default:
			return fmt.Errorf("member %q: value is not a string, number or boolean", name)
		}
		v := b[vstart:i]
		m.keep(string(name), v)
		i = flatjson.SkipSpace(b, i)
		if i >= len(b) {
			return errors.New("unterminated object")
		}
		if b[i] == '}' {
			if flatjson.SkipSpace(b, i+1) != len(b) {
				return errors.New("trailing data after the object")
			}
			return nil
		}
		if b[i] != ',' {
			return errors.New("',' or '}' expected")
		}
		i = flatjson.SkipSpace(b, i+1)
	}
}

// keep records member name's value v when the envelope carries it.
func (m *flatMeta) keep(name string, v []byte) {
	switch name {
	case "time":
		if v[0] == '"' {
			m.time = v
		}
		return
	case "subject":
		if v[0] == '"' && len(v) > 2 {
			m.subject = v
		}
		return
	case "schemaversion":
		n := 0
		for _, c := range v {
			if c < '0' || c > '9' || n > 1<<20 {
				return
			}
			n = n*10 + int(c-'0')
		}
		m.version = n
		return
	}
	for i, e := range Extensions {
		if e == name {
			m.ext[i] = v
			return
		}
	}
}

// stringEnd returns the index just after the JSON string starting at
// b[i], checking its escapes and refusing control characters.
func stringEnd(b []byte, i int) (int, error) {
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return j + 1, nil
		case c < ' ':
			return 0, errors.New("control character in a string")
		case c == '\\':
			if j+1 >= len(b) {
				return 0, errors.New("unterminated string")
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j++
			case 'u':
				if j+5 >= len(b) {
					return 0, errors.New("unterminated string")
				}
				for _, h := range b[j+2 : j+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return 0, errors.New("bad \\u escape")
					}
				}
				j += 5
			default:
				return 0, errors.New("bad escape")
			}
		}
	}
	return 0, errors.New("unterminated string")
}

func bytesHasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

// numberEnd returns the index just after the JSON number starting at
// b[i], or -1 when there is none.
func numberEnd(b []byte, i int) int {
	digits := func(i int) (int, bool) {
		j := i
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		return j, j > i
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	default:
		var ok bool
		if i, ok = digits(i); !ok {
			return -1
		}
	}
	if i < len(b) && b[i] == '.' {
		var ok bool
		if i, ok = digits(i + 1); !ok {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		var ok bool
		if i, ok = digits(i); !ok {
			return -1
		}
	}
	return i
}

// plainURL reports whether u can be written in a JSON string as it is.
func plainURL(u string) bool {
	for i := 0; i < len(u); i++ {
		if c := u[i]; c < ' ' || c == '"' || c == '\\' || c >= 0x7f {
			return false
		}
	}
	return true
}

// appendUUID appends id in its canonical text form.
func appendUUID(b []byte, id uuid.UUID) []byte {
	const hexdigits = "0123456789abcdef"
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexdigits[c>>4], hexdigits[c&0xf])
	}
	return b
}
