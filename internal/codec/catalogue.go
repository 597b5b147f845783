package codec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/flatjson"
	"github.com/licenseledger/ledger/internal/pii"
)

// The event catalogue: one registration per event type of its stored form
// (events.go), from which the codec encodes and decodes every type the
// same way, and which the rest of the service reads through [Lookup] and
// [Events] for type names, schema versions, sealed fields and subjects.

// Kind is the JSON form of a member of a stored payload.
type Kind uint8

// The kinds of payload members.
const (
	// KindString is a JSON string.
	KindString Kind = iota + 1
	// KindInt is a JSON integer.
	KindInt
	// KindTime is a JSON string holding an RFC 3339 time in UTC.
	KindTime
)

// String returns the kind's name as docs/events.md shows it.
func (k Kind) String() string {
	switch k {
	case KindString:
		return "string"
	case KindInt:
		return "integer"
	case KindTime:
		return "time"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Field describes one member of the stored payload of an event type.
type Field struct {
	// Name is the member's name in the stored payload.
	Name string
	// Kind is the member's JSON form.
	Kind Kind
	// Sealed names the personal data the member holds sealed with the
	// subject's data key ("name", "email", "reason"); the name is bound
	// into the ciphertext. It is "" for a member stored in clear.
	Sealed string
	// Subject marks the member holding the id of the user the event is
	// about: the event's subject, whose key seals its personal data.
	Subject bool
	// OmitEmpty leaves the member out of the payload when it is empty.
	OmitEmpty bool
	// Doc says what the member holds.
	Doc string
}

// Upcast turns the stored payload of version From of an event type into
// version From+1.
type Upcast struct {
	From int
	// Doc says what changed from version From to the next.
	Doc string
	// Added names the optional member version From+1 added, Renamed the
	// member renamed (old and new names), when the upcast is one of
	// these; a description of the older version's payload (its JSON
	// Schema) is derived from them.
	Added   string
	Renamed [2]string
	Apply   func(data []byte) ([]byte, error)
}

// EventInfo is the registered stored form of one event type.
type EventInfo struct {
	// Type is the event's type name on the wire and in NATS subjects.
	Type string
	// Version is the schema version the codec writes.
	Version int
	// Category is the kind of stream the event is appended to.
	Category eventstore.Category
	// Doc says what the event records.
	Doc string
	// Fields are the members of the payload, in the order they are
	// written.
	Fields []Field
	// Upcasts turn each older version into the next, oldest first.
	Upcasts []Upcast
}

// Sealed returns the names of the personal data the event type holds
// sealed, in payload order.
func (i EventInfo) Sealed() []string {
	var s []string
	for _, f := range i.Fields {
		if f.Sealed != "" {
			s = append(s, f.Sealed)
		}
	}
	return s
}

// SubjectMember returns the name of the payload member holding the user
// the event is about, "" when the event is about the account.
func (i EventInfo) SubjectMember() string {
	for _, f := range i.Fields {
		if f.Subject {
			return f.Name
		}
	}
	return ""
}

// NATSSubject returns the NATS subject an event of this type of account is
// published on: "<category>.<account>.<type>".
func (i EventInfo) NATSSubject(account string) string {
	return string(i.Category) + "." + account + "." + i.Type
}

// Lookup returns the registration of event type typ.
func Lookup(typ string) (EventInfo, bool) {
	r, ok := registry[typ]
	if !ok {
		return EventInfo{}, false
	}
	return r.describe(), true
}

// Events returns the registration of every event type, in the order of
// registration.
func Events() []EventInfo {
	out := make([]EventInfo, len(ordered))
	for i, r := range ordered {
		out[i] = r.describe()
	}
	return out
}

// Erase returns e with the personal data its registration seals blanked,
// as it decodes once its subject's key is destroyed, and whether there was
// any to blank. An event of a type not registered comes back as it is.
func Erase(e ledger.Event) (ledger.Event, bool) {
	r, ok := registry[e.EventType()]
	if !ok || len(r.sealed) == 0 {
		return e, false
	}
	p, ok := r.ptr(e)
	if !ok {
		return e, false
	}
	erased := false
	for _, i := range r.sealed {
		if s := r.fields[i].str(p); *s != "" {
			*s, erased = "", true
		}
	}
	if !erased {
		return e, false
	}
	return r.event(p), true
}

// Versions holds the current schema version of every registered event
// type.
var Versions = map[string]int{}

var (
	registry = map[string]*registered{}
	ordered  []*registered
)

// spec is the registration of event type E: its stored form and, for each
// payload member, where its value is in E.
type spec[E ledger.Event] struct {
	version  int
	category eventstore.Category
	doc      string
	fields   []field[E]
	upcasts  []Upcast
}

// field is a payload member of event type E with its value's place in E:
// exactly one of str, num and tm is set, by kind.
type field[E any] struct {
	Field
	interned bool
	str      func(*E) *string
	num      func(*E) *int
	tm       func(*E) *time.Time
}

// text is a string member.
func text[E any](name, doc string, at func(*E) *string) field[E] {
	return field[E]{Field: Field{Name: name, Kind: KindString, Doc: doc}, str: at}
}

// sealed is a string member holding the personal data named data, sealed.
func sealed[E any](name, data, doc string, at func(*E) *string) field[E] {
	return field[E]{Field: Field{Name: name, Kind: KindString, Sealed: data, Doc: doc}, str: at}
}

// integer is an integer member.
func integer[E any](name, doc string, at func(*E) *int) field[E] {
	return field[E]{Field: Field{Name: name, Kind: KindInt, Doc: doc}, num: at}
}

// instant is a time member, written in UTC.
func instant[E any](name, doc string, at func(*E) *time.Time) field[E] {
	return field[E]{Field: Field{Name: name, Kind: KindTime, Doc: doc}, tm: at}
}

// subject marks f as the id of the user the event is about.
func (f field[E]) subject() field[E] { f.Subject, f.interned = true, true; return f }

// repeated marks f as a value many events share (an id, a role, a kind):
// decoding takes it from a cache rather than allocating it each time.
func (f field[E]) repeated() field[E] { f.interned = true; return f }

// omitEmpty leaves f out of the payload when it is empty.
func (f field[E]) omitEmpty() field[E] { f.OmitEmpty = true; return f }

// register adds event type E to the catalogue. It panics on a registration
// the codec could not honour: it runs at start-up and a test covers it.
func register[E ledger.Event](s spec[E]) {
	var zero E
	typ := zero.EventType()
	r, err := newRegistered(typ, s)
	if err != nil {
		panic(fmt.Sprintf("codec: register %s: %v", typ, err))
	}
	if _, dup := registry[typ]; dup {
		panic(fmt.Sprintf("codec: %s registered twice", typ))
	}
	registry[typ] = r
	ordered = append(ordered, r)
	Versions[typ] = s.version
}

// registered is a validated registration ready to encode and decode. The
// codec drives it without knowing the event's Go type: the event is held
// as an any holding a *E, which its members' accessors take.
type registered struct {
	info    EventInfo
	fields  []member
	names   []string     // member names, in field order, for flatjson.Scan
	wire    reflect.Type // the payload as a struct, for the general JSON codec
	subject int          // index of the subject member, -1 for none
	sealed  []int        // indexes of the sealed members

	alloc func() any                     // a new *E
	event func(any) ledger.Event         // the E a *E points to
	ptr   func(ledger.Event) (any, bool) // a *E to a copy of an E
}

// member is a payload member with the accessor of its value in the *E an
// any holds.
type member struct {
	Field
	interned bool
	str      func(any) *string
	num      func(any) *int
	tm       func(any) *time.Time
}

func newRegistered[E ledger.Event](typ string, s spec[E]) (*registered, error) {
	r := &registered{
		info:    EventInfo{Type: typ, Version: s.version, Category: s.category, Doc: s.doc, Upcasts: slices.Clone(s.upcasts)},
		subject: -1,
		alloc:   func() any { return new(E) },
		event:   boxer[E](),
		ptr: func(ev ledger.Event) (any, bool) {
			e, ok := ev.(E)
			return &e, ok
		},
	}
	switch {
	case s.version < 1:
		return nil, fmt.Errorf("schema version %d, want 1 or more", s.version)
	case s.category != eventstore.Ledger && s.category != eventstore.Activity:
		return nil, fmt.Errorf("unknown stream category %q", s.category)
	case len(s.fields) == 0 || len(s.fields) >= maxMembers:
		return nil, fmt.Errorf("%d payload members, want 1 to %d", len(s.fields), maxMembers-1)
	}
	for i, u := range s.upcasts {
		if u.From != i+1 || u.Apply == nil {
			return nil, fmt.Errorf("upcast %d is from version %d, want %d", i, u.From, i+1)
		}
	}
	if len(s.upcasts) != s.version-1 {
		return nil, fmt.Errorf("%d upcasts for version %d, want one from each older version", len(s.upcasts), s.version)
	}
	var sf []reflect.StructField
	for i, f := range s.fields {
		if f.Name == "" || slices.Contains(r.names, f.Name) {
			return nil, fmt.Errorf("member %d: empty or repeated name %q", i, f.Name)
		}
		m := member{Field: f.Field, interned: f.interned}
		var t reflect.Type
		switch {
		case f.Kind == KindString && f.str != nil:
			t = reflect.TypeFor[string]()
			at := f.str
			m.str = func(p any) *string { return at(p.(*E)) }
		case f.Kind == KindInt && f.num != nil && f.Sealed == "" && !f.Subject:
			t = reflect.TypeFor[int]()
			at := f.num
			m.num = func(p any) *int { return at(p.(*E)) }
		case f.Kind == KindTime && f.tm != nil && f.Sealed == "" && !f.Subject:
			t = reflect.TypeFor[time.Time]()
			at := f.tm
			m.tm = func(p any) *time.Time { return at(p.(*E)) }
		default:
			return nil, fmt.Errorf("member %q: kind %v without its accessor", f.Name, f.Kind)
		}
		if f.Subject {
			if r.subject >= 0 {
				return nil, fmt.Errorf("member %q: a second subject", f.Name)
			}
			if f.Sealed != "" {
				return nil, fmt.Errorf("member %q: the subject cannot be sealed", f.Name)
			}
			r.subject = i
		}
		if f.Sealed != "" {
			r.sealed = append(r.sealed, i)
		}
		tag := f.Name
		if f.OmitEmpty {
			tag += ",omitempty"
		}
		sf = append(sf, reflect.StructField{Name: fmt.Sprintf("M%d", i), Type: t, Tag: reflect.StructTag(`json:"` + tag + `"`)})
		r.names = append(r.names, f.Name)
		r.fields = append(r.fields, m)
		r.info.Fields = append(r.info.Fields, f.Field)
	}
	if len(r.sealed) > 0 && r.subject < 0 {
		return nil, errors.New("sealed members without a subject whose key seals them")
	}
	r.wire = reflect.StructOf(sf)
	return r, nil
}

func (r *registered) describe() EventInfo {
	i := r.info
	i.Fields, i.Upcasts = slices.Clone(i.Fields), slices.Clone(i.Upcasts)
	return i
}

// boxer returns the function that turns a *E into the ledger.Event
// holding the E it points to. Converting *p to an interface would copy
// the E into a new allocation; decoding has just allocated p for this
// event alone, so the interface takes p itself as its data word, as the
// conversion would take the copy. The E is never written after. Only for
// an E held by pointer in an interface (any event: it has a time and more),
// else it converts.
func boxer[E ledger.Event]() func(any) ledger.Event {
	var zero E
	if t := reflect.TypeFor[E](); t.Kind() != reflect.Struct || t.Size() <= unsafe.Sizeof(uintptr(0)) {
		return func(p any) ledger.Event { return *p.(*E) }
	}
	var iface ledger.Event = zero
	itab := (*[2]unsafe.Pointer)(unsafe.Pointer(&iface))[0]
	return func(p any) ledger.Event {
		var e ledger.Event
		w := (*[2]unsafe.Pointer)(unsafe.Pointer(&e))
		w[0], w[1] = itab, unsafe.Pointer(p.(*E))
		return e
	}
}

// upcast turns a payload of version from into the current version.
func (r *registered) upcast(from int, data []byte) ([]byte, error) {
	if from < 1 {
		return nil, fmt.Errorf("no upcast from version %d: %w", from, ErrMalformed)
	}
	for _, u := range r.info.Upcasts[from-1:] {
		var err error
		if data, err = u.Apply(data); err != nil {
			return nil, fmt.Errorf("upcast from version %d: %w: %w", u.From, ErrMalformed, err)
		}
	}
	return data, nil
}

// encode writes the payload of e, sealing its personal data under the key
// of its subject, and returns the subject.
func (r *registered) encode(ctx context.Context, c *Codec, account string, e ledger.Event) ([]byte, string, error) {
	p, ok := r.ptr(e)
	if !ok {
		return nil, "", fmt.Errorf("%T: %w", e, ErrUnknownType)
	}
	var subject, id string
	if r.subject >= 0 {
		subject = *r.fields[r.subject].str(p)
		id = pii.KeyID(account, subject)
	}
	// The string members as stored: sealed ones sealed, once.
	var strs [maxMembers]string
	for i := range r.fields {
		f := &r.fields[i]
		if f.Kind != KindString {
			continue
		}
		s := *f.str(p)
		if f.Sealed != "" {
			var err error
			if s, err = c.keys.Seal(ctx, id, f.Sealed, s); err != nil {
				return nil, "", err
			}
		}
		strs[i] = s
	}
	if data, ok := r.appendPayload(make([]byte, 0, 256), p, &strs); ok {
		return data, subject, nil
	}
	data, err := r.marshalPayload(p, &strs)
	return data, subject, err
}

// marshalPayload encodes the payload of the event p points to, with strs
// as its string members, through the general JSON encoder.
func (r *registered) marshalPayload(p any, strs *[maxMembers]string) ([]byte, error) {
	w := reflect.New(r.wire).Elem()
	for i := range r.fields {
		f := &r.fields[i]
		switch f.Kind {
		case KindString:
			w.Field(i).SetString(strs[i])
		case KindInt:
			w.Field(i).SetInt(int64(*f.num(p)))
		case KindTime:
			w.Field(i).Set(reflect.ValueOf(f.tm(p).UTC()))
		}
	}
	return json.Marshal(w.Addr().Interface(), json.Deterministic(true))
}

// appendPayload appends to b what marshalPayload returns, byte for byte,
// when every name and string is printable ASCII without quotes or
// backslashes and every time within years 0-9999, as the service's
// events are; false otherwise (escapes, errors: marshalPayload's part).
func (r *registered) appendPayload(b []byte, p any, strs *[maxMembers]string) ([]byte, bool) {
	b = append(b, '{')
	first := true
	name := func(n string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, n...)
		b = append(b, `":`...)
	}
	for i := range r.fields {
		f := &r.fields[i]
		if !plainJSON(f.Name) {
			return nil, false
		}
		switch f.Kind {
		case KindString:
			s := strs[i]
			if f.OmitEmpty && s == "" {
				continue
			}
			if !plainJSON(s) {
				return nil, false
			}
			name(f.Name)
			b = append(b, '"')
			b = append(b, s...)
			b = append(b, '"')
		case KindInt:
			name(f.Name)
			b = strconv.AppendInt(b, int64(*f.num(p)), 10)
		case KindTime:
			t := f.tm(p).UTC()
			if y := t.Year(); y < 0 || y > 9999 {
				return nil, false
			}
			name(f.Name)
			b = append(b, '"')
			b = t.AppendFormat(b, time.RFC3339Nano)
			b = append(b, '"')
		default:
			return nil, false
		}
	}
	return append(b, '}'), true
}

// decode decodes a payload at the current version. The strings of meta
// that scanMeta found (ms) are made along with those of the payload, in
// one allocation.
func (c *Codec) decode(ctx context.Context, r *registered, meta *Metadata, ms *metaStrings, data []byte) (ledger.Event, bool, error) {
	p := r.alloc()
	var seal [maxMembers]string // the sealed members' ciphertexts
	if !r.scan(data, p, &seal, meta, ms) {
		// The fast path gave up: the strings of meta are set before the
		// general decoder runs, which decides.
		ms.set(meta)
		p, seal = r.alloc(), [maxMembers]string{}
		if err := r.unmarshal(data, p, &seal); err != nil {
			return nil, false, err
		}
	}
	if len(r.sealed) == 0 {
		return r.event(p), false, nil
	}
	id := pii.KeyID(meta.Account, *r.fields[r.subject].str(p))
	var erased bool
	var errs error
	for _, i := range r.sealed {
		f := &r.fields[i]
		s, err := c.open(ctx, id, f.Sealed, seal[i], &erased)
		if err != nil {
			errs = errors.Join(errs, err)
			continue
		}
		*f.str(p) = s
	}
	if errs != nil {
		return nil, false, errs
	}
	return r.event(p), erased, nil
}

// scan is the fast path of decode (see flat.go) into p, a *E: it reports
// false when the general decoder must decide, having set no string of
// meta.
func (r *registered) scan(data []byte, p any, seal *[maxMembers]string, meta *Metadata, ms *metaStrings) bool {
	var v [maxMembers][]byte
	var k [maxMembers]flatjson.Kind
	n := len(r.names)
	if !flatjson.Scan(data, r.names, v[:n], k[:n]) {
		return false
	}
	// Strings not interned are made in one allocation with those of meta.
	var dst [maxMembers]*string
	var src [maxMembers][]byte
	nd := 0
	for i := range r.fields {
		f := &r.fields[i]
		if k[i] == flatjson.Absent && !f.OmitEmpty {
			return false // a required member is missing: the general decoder says which
		}
		switch f.Kind {
		case KindString:
			switch {
			case k[i] == flatjson.Int:
				return false
			case f.Sealed != "":
				dst[nd], src[nd] = &seal[i], v[i]
				nd++
			case f.interned:
				*f.str(p) = interned(v[i])
			default:
				dst[nd], src[nd] = f.str(p), v[i]
				nd++
			}
		case KindInt:
			x, ok := intOf(v[i], k[i])
			if !ok {
				return false
			}
			*f.num(p) = x
		case KindTime:
			t, ok := timeOf(v[i], k[i])
			if !ok {
				return false
			}
			*f.tm(p) = t
		}
	}
	ms.setWith(meta, dst[:nd], src[:nd])
	return true
}

// decoded is a payload as either path of decode leaves it, before opening.
type decoded struct {
	Event  ledger.Event
	Sealed [maxMembers]string
}

// bothPaths decodes data with the fast path (fast is nil when it gave up)
// and with the general decoder, for the tests that they agree.
func (r *registered) bothPaths(data []byte, meta *Metadata, ms *metaStrings) (fast, general *decoded, err error) {
	var f, g decoded
	p := r.alloc()
	if r.scan(data, p, &f.Sealed, meta, ms) {
		f.Event = r.event(p)
		fast = &f
	}
	q := r.alloc()
	if err := r.unmarshal(data, q, &g.Sealed); err != nil {
		return fast, nil, err
	}
	g.Event = r.event(q)
	return fast, &g, nil
}

// unmarshal is the general path of decode into p, a *E: the JSON decoder,
// which reports the precise error. A stored payload of a version this
// service reads is exactly what the codec writes: one JSON object with
// each member of the registration once, of its kind, not null, and only
// those marked omitEmpty may be absent. Anything else is malformed: a
// missing member would fold as a blank one, a member the registration does
// not know was not written at this version (a newer form comes with a
// newer version, ErrNewerVersion), and a repeated one or trailing data is
// ambiguous.
func (r *registered) unmarshal(data []byte, p any, seal *[maxMembers]string) error {
	v := reflect.New(r.wire)
	if err := json.Unmarshal(data, v.Interface(), json.RejectUnknownMembers(true)); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !isObject(data) {
		return fmt.Errorf("%w: payload is not a JSON object", ErrMalformed)
	}
	if err := r.checkMembers(data); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	w := v.Elem()
	for i := range r.fields {
		f := &r.fields[i]
		switch f.Kind {
		case KindString:
			if f.Sealed != "" {
				seal[i] = w.Field(i).String()
			} else {
				*f.str(p) = w.Field(i).String()
			}
		case KindInt:
			*f.num(p) = int(w.Field(i).Int())
		case KindTime:
			*f.tm(p) = w.Field(i).Interface().(time.Time)
		}
	}
	return nil
}

// checkMembers checks what the JSON decoder lets through in data, a JSON
// object it accepted: every member the registration requires is present
// and none is null (which the decoder takes as the zero value).
func (r *registered) checkMembers(data []byte) error {
	d := jsontext.NewDecoder(bytes.NewReader(data))
	if _, err := d.ReadToken(); err != nil { // the object's '{'
		return err
	}
	var seen uint32
	for d.PeekKind() == '"' {
		tok, err := d.ReadToken()
		if err != nil {
			return err
		}
		name := tok.String() // before the next read voids tok
		v, err := d.ReadValue()
		if err != nil {
			return err
		}
		i := slices.Index(r.names, name)
		switch {
		case i < 0:
			return fmt.Errorf("unknown member %q", name)
		case v.Kind() == 'n':
			return fmt.Errorf("member %q is null", name)
		}
		seen |= 1 << i
	}
	var missing []string
	for i, f := range r.fields {
		if !f.OmitEmpty && seen&(1<<i) == 0 {
			missing = append(missing, strconv.Quote(f.Name))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s payload lacks member %s", r.info.Type, strings.Join(missing, ", "))
	}
	return nil
}

// addedMember is an upcast from version from to a version that added the
// optional member name: an older payload is taken as it is, without it.
func addedMember(from int, name string) Upcast {
	return Upcast{From: from, Doc: fmt.Sprintf("optional member %q added", name), Added: name, Apply: addedFunc(name)}
}

// renameMember is an upcast from version from that renames the member old
// to new. A payload that already has new was not written at the old
// version: it is malformed.
func renameMember(from int, old, new string) Upcast {
	return Upcast{From: from, Doc: fmt.Sprintf("member %q renamed %q", old, new), Renamed: [2]string{old, new}, Apply: renameFunc(old, new)}
}
