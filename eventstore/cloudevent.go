package eventstore

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"

	"github.com/licenseledger/ledger/internal/flatjson"
)

// CloudEventContentType is the Content-Type of a message whose body is a
// CloudEvents 1.0 event in structured mode, JSON format.
const CloudEventContentType = "application/cloudevents+json"

// ErrInvalidCloudEvent is returned by [CloudEvent] when an event cannot be
// written as a CloudEvent, and by [ParseCloudEvent] when bytes are not one.
var ErrInvalidCloudEvent = errors.New("eventstore: invalid cloudevent")

// coreAttributes are the envelope members CloudEvent writes itself; event
// metadata may not carry them.
var coreAttributes = map[string]bool{
	"specversion":     true,
	"id":              true,
	"source":          true,
	"type":            true,
	"datacontenttype": true,
	"data":            true,
}

// CloudEventSource returns the CloudEvents source of the events of an
// account: "/v1/accounts/<account>".
func CloudEventSource(account string) string { return "/v1/accounts/" + account }

// CloudEvent returns the CloudEvents 1.0 structured-mode JSON envelope of an
// event of stream:
//
//	{"specversion":"1.0","id":"<id>","source":"/v1/accounts/<account>","type":"<type>",
//	 "datacontenttype":"application/json",<members of p.Metadata>,"data":<p.Data>}
//
// The members of p.Metadata are spliced in byte for byte (whitespace
// included) and p.Data follows "data": byte for byte, so [ParseCloudEvent]
// gives both back exactly; the ledger's hash chain is computed over those
// bytes. Metadata must be empty or a JSON object written without surrounding
// whitespace, whose member names are lower-case alphanumeric CloudEvents
// attribute names other than the core ones CloudEvent writes (specversion,
// id, source, type, datacontenttype, data) and whose values are strings,
// numbers or booleans. Metadata without members ({} included) is written as
// no extension attribute and parses back as nil. Data must be empty or a
// JSON value; empty Data is written without a "data" member and parses back
// as nil. Every refusal wraps [ErrInvalidCloudEvent].
func CloudEvent(stream StreamID, p Proposed) ([]byte, error) {
	if p.Type == "" {
		return nil, fmt.Errorf("%w: event %s has no type", ErrInvalidCloudEvent, p.ID)
	}
	if len(p.Data) > 0 && !jsontext.Value(p.Data).IsValid() {
		return nil, fmt.Errorf("%w: data of event %s is not JSON", ErrInvalidCloudEvent, p.ID)
	}
	inner, err := metadataMembers(p.Metadata)
	if err != nil {
		return nil, fmt.Errorf("%w: metadata of event %s: %w", ErrInvalidCloudEvent, p.ID, err)
	}
	b := make([]byte, 0, 160+len(stream.Account)+len(p.Type)+len(inner)+len(p.Data))
	b = append(b, `{"specversion":"1.0","id":"`...)
	var id [36]byte
	FormatUUID(&id, p.ID)
	b = append(b, id[:]...)
	b = append(b, `","source":`...)
	if b, err = jsontext.AppendQuote(b, CloudEventSource(stream.Account)); err != nil {
		return nil, fmt.Errorf("%w: account %q is not UTF-8", ErrInvalidCloudEvent, stream.Account)
	}
	b = append(b, `,"type":`...)
	if b, err = jsontext.AppendQuote(b, p.Type); err != nil {
		return nil, fmt.Errorf("%w: type %q is not UTF-8", ErrInvalidCloudEvent, p.Type)
	}
	b = append(b, `,"datacontenttype":"application/json"`...)
	if len(inner) > 0 {
		b = append(b, ',')
		b = append(b, inner...)
	}
	if len(p.Data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, p.Data...)
	}
	b = append(b, '}')
	return b, nil
}

// FormatUUID writes id into dst in its canonical text form, lower-case
// hexadecimal in groups of 8-4-4-4-12 as id.String returns it, without
// allocating: the CloudEvent id and the JetStream message id of an event.
func FormatUUID(dst *[36]byte, id uuid.UUID) {
	const hexdigits = "0123456789abcdef"
	j := 0
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j] = hexdigits[c>>4]
		dst[j+1] = hexdigits[c&0xf]
		j += 2
	}
}

// metadataMembers checks metadata and returns the bytes between its braces,
// or nil when it has no member.
func metadataMembers(md []byte) ([]byte, error) {
	if len(md) == 0 {
		return nil, nil
	}
	if md[0] != '{' || md[len(md)-1] != '}' {
		return nil, errors.New("not a JSON object starting with '{' and ending with '}'")
	}
	if members, ok := plainMetadata(md); ok {
		if members == 0 {
			return nil, nil
		}
		return md[1 : len(md)-1], nil
	}
	return decodeMetadataMembers(md)
}

// plainMetadata reads metadata as the service writes it, an object
// without whitespace whose member names are distinct attribute names
// other than the core ones, without escapes, and whose values are strings
// without escapes or control characters, numbers, or booleans, and
// returns how many members it has. ok is false for anything else, which
// the JSON decoder then checks (decodeMetadataMembers): plainMetadata
// accepts only metadata the decoder accepts, at a fraction of its cost.
func plainMetadata(md []byte) (members int, ok bool) {
	var names [16][]byte // the names seen, to refuse duplicates
	i := 1               // after '{'
	end := len(md) - 1
	if i == end {
		return 0, true
	}
	for {
		// "name":
		if i >= end || md[i] != '"' {
			return 0, false
		}
		j := i + 1
		for j < end && ('a' <= md[j] && md[j] <= 'z' || '0' <= md[j] && md[j] <= '9') {
			j++
		}
		if j == i+1 || j+1 >= end || md[j] != '"' || md[j+1] != ':' {
			return 0, false
		}
		name := md[i+1 : j]
		if coreAttributes[string(name)] || members == len(names) {
			return 0, false
		}
		for _, n := range names[:members] {
			if bytes.Equal(n, name) {
				return 0, false
			}
		}
		names[members] = name
		members++
		i = j + 2
		// the value
		if i >= end {
			return 0, false
		}
		switch c := md[i]; {
		case c == '"':
			j = i + 1
			for j < end && md[j] != '"' && md[j] != '\\' && md[j] >= 0x20 {
				j++
			}
			if j >= end || md[j] != '"' || !utf8.Valid(md[i+1:j]) {
				return 0, false
			}
			i = j + 1
		case c == 't' && bytes.HasPrefix(md[i:end], []byte("true")):
			i += 4
		case c == 'f' && bytes.HasPrefix(md[i:end], []byte("false")):
			i += 5
		case c == '-' || '0' <= c && c <= '9':
			n := jsonNumber(md[i:end])
			if n == 0 {
				return 0, false
			}
			i += n
		default:
			return 0, false
		}
		if i == end {
			return members, true
		}
		if md[i] != ',' {
			return 0, false
		}
		i++
	}
}

// jsonNumber returns the length of the JSON number b starts with, 0 when
// it starts with none.
func jsonNumber(b []byte) int {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
	default:
		return 0
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		if i == d {
			return 0
		}
	}
	return i
}

// decodeMetadataMembers is metadataMembers through the JSON decoder, for
// metadata plainMetadata does not read.
func decodeMetadataMembers(md []byte) ([]byte, error) {
	dec := jsontext.NewDecoder(bytes.NewReader(md))
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	members := 0
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, err
		}
		name := tok.String()
		if !attributeName(name) {
			return nil, fmt.Errorf("member %q is not a lower-case alphanumeric attribute name", name)
		}
		if coreAttributes[name] {
			return nil, fmt.Errorf("member %q is a CloudEvents core attribute", name)
		}
		switch k := dec.PeekKind(); k {
		case '"', '0', 't', 'f':
		default:
			return nil, fmt.Errorf("member %q: value of kind %v is not a string, number or boolean", name, k)
		}
		if err := dec.SkipValue(); err != nil {
			return nil, err
		}
		members++
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	if _, err := dec.ReadToken(); err == nil {
		return nil, errors.New("trailing data after the object")
	}
	if dec.InputOffset() != int64(len(md)) {
		return nil, errors.New("trailing data after the object")
	}
	if members == 0 {
		return nil, nil
	}
	return md[1 : len(md)-1], nil
}

// attributeName reports whether name is a valid CloudEvents attribute name.
func attributeName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// ParsedCloudEvent holds what [ParseCloudEvent] reads from an envelope: the
// fields that do not depend on the stream the event is stored in.
type ParsedCloudEvent struct {
	ID     uuid.UUID
	Source string
	Type   string
	// Data is the "data" member's value as it appears in the envelope, nil
	// when there is none. It shares memory with the parsed bytes.
	Data []byte
	// Metadata is "{" + the extension members (time and subject included) +
	// "}", byte for byte as [CloudEvent] was given it, nil when there is none.
	Metadata []byte
}

// Proposed returns the event as it was proposed to a store.
func (e ParsedCloudEvent) Proposed() Proposed {
	return Proposed{ID: e.ID, Type: e.Type, Data: e.Data, Metadata: e.Metadata}
}

var decoderPool = sync.Pool{New: func() any { return new(parseState) }}

// parseState is pooled: a Decoder reading a *bytes.Buffer uses the
// buffer's bytes in place instead of copying them.
type parseState struct {
	buf bytes.Buffer
	dec jsontext.Decoder
}

// ParseCloudEvent reads a CloudEvents 1.0 structured-mode JSON envelope. For
// envelopes written by [CloudEvent] it returns Data and Metadata byte for
// byte as they were given. Extension members of envelopes from other
// producers are gathered into Metadata in their order; when they are not
// contiguous their surrounding whitespace may differ. Errors wrap
// [ErrInvalidCloudEvent].
func ParseCloudEvent(b []byte) (ParsedCloudEvent, error) {
	if e, ok := parseOwnLayout(b, nil); ok {
		return e, nil
	}
	ps := decoderPool.Get().(*parseState)
	defer func() {
		ps.buf = bytes.Buffer{}
		ps.dec.Reset(&ps.buf)
		decoderPool.Put(ps)
	}()
	ps.buf = *bytes.NewBuffer(b) //nolint:govet // bytes.Buffer holds no lock
	ps.dec.Reset(&ps.buf, jsontext.AllowDuplicateNames(true))
	e, err := parseCloudEvent(&ps.dec, b)
	if err != nil {
		return ParsedCloudEvent{}, fmt.Errorf("%w: %w", ErrInvalidCloudEvent, err)
	}
	return e, nil
}

func parseCloudEvent(dec *jsontext.Decoder, b []byte) (ParsedCloudEvent, error) {
	var e ParsedCloudEvent
	tok, err := dec.ReadToken()
	if err != nil {
		return e, err
	}
	if tok.Kind() != '{' {
		return e, errors.New("not a JSON object")
	}
	var (
		start      = int(dec.InputOffset()) // just after the separator before the member
		mdFirst    = -1                     // span of contiguous extension members
		mdLast     = -1
		mdSpans    [][2]int // every extension member span, when not contiguous
		contiguous = true
		seen       uint8
	)
	const (
		seenSpec = 1 << iota
		seenID
		seenSource
		seenType
	)
	for dec.PeekKind() != '}' {
		// Reading the name as a raw value avoids allocating a string.
		rawName, err := dec.ReadValue()
		if err != nil {
			return e, err
		}
		name := rawName[1 : len(rawName)-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			if name, err = jsontext.AppendUnquote(nil, rawName); err != nil {
				return e, err
			}
		}
		colon := flatjson.SkipSpace(b, int(dec.InputOffset()))
		if colon >= len(b) || b[colon] != ':' {
			return e, fmt.Errorf("member %q: missing ':'", name)
		}
		val, err := dec.ReadValue()
		if err != nil {
			return e, err
		}
		sep := flatjson.SkipSpace(b, int(dec.InputOffset()))
		if sep >= len(b) || (b[sep] != ',' && b[sep] != '}') {
			return e, fmt.Errorf("member %q: missing ',' or '}'", name)
		}
		switch string(name) {
		case "specversion":
			if val.Kind() != '"' || string(val) != `"1.0"` {
				return e, fmt.Errorf("specversion %s is not \"1.0\"", val)
			}
			seen |= seenSpec
		case "id":
			if val.Kind() != '"' {
				return e, fmt.Errorf("id %s is not a string", val)
			}
			if e.ID, err = uuid.ParseBytes(val[1 : len(val)-1]); err != nil {
				return e, fmt.Errorf("id: %w", err)
			}
			seen |= seenID
		case "source":
			if e.Source, err = stringValue(val); err != nil || e.Source == "" {
				return e, fmt.Errorf("source: %v", err)
			}
			seen |= seenSource
		case "type":
			if e.Type, err = stringValue(val); err != nil || e.Type == "" {
				return e, fmt.Errorf("type: %v", err)
			}
			seen |= seenType
		case "datacontenttype":
		case "data":
			e.Data = b[colon+1 : sep]
		default:
			switch {
			case mdFirst < 0:
				mdFirst = start
			case mdLast+1 != start:
				contiguous = false
			}
			mdLast = sep
			mdSpans = append(mdSpans, [2]int{start, sep})
		}
		start = sep + 1
	}
	if _, err := dec.ReadToken(); err != nil {
		return e, err
	}
	if end := flatjson.SkipSpace(b, int(dec.InputOffset())); end != len(b) {
		return e, errors.New("trailing data after the envelope")
	}
	if seen != seenSpec|seenID|seenSource|seenType {
		return e, errors.New("missing one of specversion, id, source, type")
	}
	switch {
	case mdFirst < 0:
	case contiguous:
		md := make([]byte, 0, mdLast-mdFirst+2)
		md = append(md, '{')
		md = append(md, b[mdFirst:mdLast]...)
		e.Metadata = append(md, '}')
	default:
		md := []byte{'{'}
		for i, s := range mdSpans {
			if i > 0 {
				md = append(md, ',')
			}
			md = append(md, b[s[0]:s[1]]...)
		}
		e.Metadata = append(md, '}')
	}
	return e, nil
}

// parseOwnLayout reads an envelope laid out exactly as [CloudEvent] writes
// it, without scanning the data member: replay reads every stored event
// through here, and the full parse validates bytes that were validated
// when they were written. Anything else reports false and takes the full
// parse. A raw `,"data":` cannot occur inside the metadata members: they
// are flat, and a quote inside a JSON string is escaped.
//
// With a parser p, the source and the type are p's copies of them, and
// Data and Metadata are copied out of b, together in one allocation.
func parseOwnLayout(b []byte, p *CloudEventParser) (e ParsedCloudEvent, ok bool) {
	const (
		head     = `{"specversion":"1.0","id":"`
		afterID  = `","source":"`
		afterSrc = `","type":"`
		afterTyp = `","datacontenttype":"application/json"`
		dataName = `,"data":`
	)
	if len(b) < len(head)+36+len(afterID) || string(b[:len(head)]) != head || b[len(b)-1] != '}' {
		return e, false
	}
	i := len(head)
	id, err := uuid.ParseBytes(b[i : i+36])
	if err != nil {
		return e, false
	}
	i += 36
	src, i, ok := plainString(b, i, afterID, p)
	if !ok {
		return e, false
	}
	typ, i, ok := plainString(b, i, afterSrc, p)
	if !ok || typ == "" {
		return e, false
	}
	if !bytes.HasPrefix(b[i:], []byte(afterTyp)) {
		return e, false
	}
	rest := b[i+len(afterTyp) : len(b)-1] // between datacontenttype and the closing brace
	e = ParsedCloudEvent{ID: id, Source: src, Type: typ}
	if len(rest) == 0 {
		return e, true
	}
	if rest[0] != ',' {
		return e, false
	}
	members := rest
	if d := bytes.Index(rest, []byte(dataName)); d >= 0 {
		members, e.Data = rest[:d], rest[d+len(dataName):]
		if len(e.Data) == 0 {
			return e, false
		}
	}
	if len(members) > 0 && (len(members) < 2 || members[1] != '"' && members[1] != ' ') {
		return e, false
	}
	var md []byte
	if p != nil {
		// Data, then Metadata, in one allocation.
		buf := make([]byte, len(e.Data), len(e.Data)+len(members)+1)
		copy(buf, e.Data)
		if e.Data != nil {
			e.Data = buf[:len(e.Data):len(e.Data)]
		}
		md = buf[len(buf):]
	}
	if len(members) > 0 {
		if md == nil {
			md = make([]byte, 0, len(members)+1)
		}
		md = append(md, '{')
		md = append(md, members[1:]...)
		e.Metadata = append(md, '}')
	}
	return e, true
}

// CloudEventParser parses the envelopes of a long read, as
// [ParseCloudEvent] does, with what the read repeats made once: it keeps
// the sources and types it returned and returns them again, and copies
// an envelope's data and metadata out of it in one allocation. A parser
// is for one goroutine; its zero value is ready.
type CloudEventParser struct {
	strs map[string]string
	// The last two strings returned (a run of one stream's events
	// repeats its source and often its type), looked at before strs.
	last [2]string
}

// maxParserStrings bounds the strings a CloudEventParser keeps: a read of
// many distinct sources starts its set over.
const maxParserStrings = 4096

// Parse is [ParseCloudEvent] for an envelope b that the caller will reuse:
// Data and Metadata never share memory with b.
func (p *CloudEventParser) Parse(b []byte) (ParsedCloudEvent, error) {
	if e, ok := parseOwnLayout(b, p); ok {
		return e, nil
	}
	return ParseCloudEvent(bytes.Clone(b))
}

// str returns string(b), the same string for the same bytes.
func (p *CloudEventParser) str(b []byte) string {
	for _, s := range p.last {
		if s == string(b) {
			return s
		}
	}
	s := p.lookup(b)
	p.last[0], p.last[1] = p.last[1], s
	return s
}

// lookup returns string(b) out of p.strs, or adds it.
func (p *CloudEventParser) lookup(b []byte) string {
	if s, ok := p.strs[string(b)]; ok {
		return s
	}
	if p.strs == nil || len(p.strs) >= maxParserStrings {
		p.strs = make(map[string]string)
	}
	s := string(b)
	p.strs[s] = s
	return s
}

// plainString expects prefix at b[i:], then a JSON string body without
// escapes up to the next quote; it returns the body and the index of that
// quote.
func plainString(b []byte, i int, prefix string, p *CloudEventParser) (string, int, bool) {
	if !bytes.HasPrefix(b[i:], []byte(prefix)) {
		return "", 0, false
	}
	i += len(prefix)
	end := bytes.IndexByte(b[i:], '"')
	if end < 0 || bytes.IndexByte(b[i:i+end], '\\') >= 0 {
		return "", 0, false
	}
	if p != nil {
		return p.str(b[i : i+end]), i + end, true
	}
	return string(b[i : i+end]), i + end, true
}

func stringValue(v jsontext.Value) (string, error) {
	if v.Kind() != '"' {
		return "", fmt.Errorf("%s is not a string", v)
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1]), nil
	}
	s, err := jsontext.AppendUnquote(nil, v)
	return string(s), err
}
