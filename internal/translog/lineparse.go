package translog

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
)

// lineParser decodes bundle lines with a streaming JSON decoder, member by
// member, without reflection: verifying a bundle decodes one line per
// record. It accepts what json.Unmarshal into a BundleLine accepts
// (unknown members ignored, null leaving a member zero) and rejects
// invalid JSON, duplicate names and anything after the line's object.
type lineParser struct {
	dec jsontext.Decoder
	in  bytes.Buffer
	str []byte // an unquoted string with escapes

	// The last stream name and type decoded, kept to spare a string per
	// line.
	stream, typ string
}

var errLineSyntax = errors.New("a bundle line is one JSON object")

// parse decodes line into bl. The base64 members Data, Metadata and Key
// are decoded into arena (which is grown and returned), Proof into proof:
// the caller owns both.
func (p *lineParser) parse(line []byte, bl *BundleLine, arena, proof []byte) ([]byte, []byte, error) {
	if a, pr, ok := p.parseFast(line, bl, arena, proof); ok {
		return a, pr, nil
	}
	*bl = BundleLine{}
	p.in = *bytes.NewBuffer(line) // read in place, never written
	p.dec.Reset(&p.in)
	if tok, err := p.dec.ReadToken(); err != nil {
		return arena, proof, err
	} else if tok.Kind() != '{' {
		return arena, proof, errLineSyntax
	}
	for p.dec.PeekKind() != '}' {
		name, err := p.dec.ReadValue()
		if err != nil {
			return arena, proof, err
		}
		nb, err := p.unquote(name)
		if err != nil {
			return arena, proof, err
		}
		// The name is read before the value: the value's read may reuse
		// the decoder's buffer, the name is kept in p.str or the line.
		field := memberOf(nb)
		v, err := p.dec.ReadValue()
		if err != nil {
			return arena, proof, err
		}
		if field == memberUnknown || v.Kind() == 'n' {
			continue
		}
		switch field {
		case memberLeaf, memberPosition, memberRevision:
			if v.Kind() != '0' {
				return arena, proof, fmt.Errorf("member %q: want a number, got %s", nb, v.Kind())
			}
			u, err := parseUint(v)
			if err == nil {
				err = setCount(bl, field, u)
			}
			if err != nil {
				return arena, proof, fmt.Errorf("member %q: %w", nb, err)
			}
			continue
		case memberUnreadable:
			switch v.Kind() {
			case 't':
				bl.Unreadable = true
			case 'f':
				bl.Unreadable = false
			default:
				return arena, proof, fmt.Errorf("member %q: want a boolean, got %s", nb, v.Kind())
			}
			continue
		}
		if v.Kind() != '"' {
			return arena, proof, fmt.Errorf("member %q: want a string, got %s", nb, v.Kind())
		}
		s, err := p.unquote(v)
		if err != nil {
			return arena, proof, err
		}
		if arena, proof, err = p.setString(bl, field, s, arena, proof); err != nil {
			return arena, proof, fmt.Errorf("member %q: %w", nb, err)
		}
	}
	if _, err := p.dec.ReadToken(); err != nil {
		return arena, proof, err
	}
	if _, err := p.dec.ReadToken(); !errors.Is(err, io.EOF) {
		return arena, proof, errLineSyntax
	}
	return arena, proof, nil
}

// setCount sets the count member field of bl.
func setCount(bl *BundleLine, field member, u uint64) error {
	switch field {
	case memberLeaf:
		if u > 1<<63-1 {
			return fmt.Errorf("%d overflows", u)
		}
		bl.Leaf = int64(u)
	case memberPosition:
		bl.Position = eventstore.Position(u)
	default:
		bl.Revision = u
	}
	return nil
}

// setString sets the string member field of bl from its content s: the
// proof decoded into proof, data, metadata and key decoded at the end of
// arena, the others copied (a line's stream and type shared with the line
// before when they are the same). It returns arena and proof as they are
// after.
func (p *lineParser) setString(bl *BundleLine, field member, s, arena, proof []byte) ([]byte, []byte, error) {
	var err error
	switch field {
	case memberKind:
		switch string(s) {
		case KindRecord:
			bl.Kind = KindRecord
		case KindKey:
			bl.Kind = KindKey
		case KindCheckpoint:
			bl.Kind = KindCheckpoint
		default:
			bl.Kind = string(s)
		}
	case memberFormat:
		bl.Format = string(s)
	case memberAccount:
		bl.Account = string(s)
	case memberCheckpoint:
		bl.Checkpoint = string(s)
	case memberUser:
		bl.User = string(s)
	case memberStream:
		if string(s) != p.stream {
			p.stream = string(s)
		}
		bl.Stream = p.stream
	case memberType:
		if string(s) != p.typ {
			p.typ = string(s)
		}
		bl.Type = p.typ
	case memberID:
		bl.ID, err = uuid.ParseBytes(s)
	case memberProof:
		if proof, err = base64.StdEncoding.AppendDecode(proof[:0], s); err == nil {
			bl.Proof = proof
		}
	case memberData, memberMetadata, memberKey:
		var b []byte
		if arena, b, err = decode64(arena, s); err != nil {
			break
		}
		switch field {
		case memberData:
			bl.Data = b
		case memberMetadata:
			bl.Metadata = b
		default:
			bl.Key = b
		}
	default:
		err = fmt.Errorf("member %d is not a string", field)
	}
	return arena, proof, err
}

// unquote returns the content of a JSON string, valid until the next
// call.
func (p *lineParser) unquote(v jsontext.Value) ([]byte, error) {
	if bytes.IndexByte(v, '\\') < 0 {
		return v[1 : len(v)-1], nil
	}
	var err error
	p.str, err = jsontext.AppendUnquote(p.str[:0], v)
	return p.str, err
}

// decode64 appends the standard base64 decoding of s to dst and returns
// dst and the decoded bytes (which alias dst; the slice is capped so that
// appending to it never writes over what follows).
func decode64(dst, s []byte) ([]byte, []byte, error) {
	start := len(dst)
	dst, err := base64.StdEncoding.AppendDecode(dst, s)
	if err != nil {
		return dst[:start], nil, err
	}
	return dst, dst[start:len(dst):len(dst)], nil
}

func parseUint(v []byte) (uint64, error) {
	if len(v) == 0 || len(v) > 20 {
		return 0, fmt.Errorf("%s is not a count", v)
	}
	var u uint64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%s is not a count", v)
		}
		d := uint64(c - '0')
		if u > (1<<64-1-d)/10 {
			return 0, fmt.Errorf("%s overflows", v)
		}
		u = u*10 + d
	}
	return u, nil
}

type member uint8

const (
	memberUnknown member = iota
	memberKind
	memberFormat
	memberAccount
	memberCheckpoint
	memberUser
	memberKey
	memberLeaf
	memberPosition
	memberStream
	memberRevision
	memberID
	memberType
	memberData
	memberMetadata
	memberUnreadable
	memberProof
)

// memberOf returns the member a name stands for; names match exactly, as
// the bundle writes them.
func memberOf(name []byte) member {
	switch string(name) {
	case "kind":
		return memberKind
	case "format":
		return memberFormat
	case "account":
		return memberAccount
	case "checkpoint":
		return memberCheckpoint
	case "user":
		return memberUser
	case "key":
		return memberKey
	case "leaf":
		return memberLeaf
	case "position":
		return memberPosition
	case "stream":
		return memberStream
	case "revision":
		return memberRevision
	case "id":
		return memberID
	case "type":
		return memberType
	case "data":
		return memberData
	case "metadata":
		return memberMetadata
	case "unreadable":
		return memberUnreadable
	case "proof":
		return memberProof
	}
	return memberUnknown
}

// parseFast decodes line into bl, as parse does, when it is written as a
// bundle's lines are: one object without whitespace (but the line's end),
// names without escapes and known, each once; strings of printable ASCII
// without escapes; counts of digits alone; true or false. It reports false
// for anything else (arena and proof then as they were), which the
// streaming decoder decodes or refuses.
func (p *lineParser) parseFast(line []byte, bl *BundleLine, arena, proof []byte) ([]byte, []byte, bool) {
	*bl = BundleLine{}
	start := len(arena)
	fail := func() ([]byte, []byte, bool) {
		*bl = BundleLine{}
		return arena[:start], proof, false
	}
	n := len(line)
	for n > 0 && (line[n-1] == '\n' || line[n-1] == '\r' || line[n-1] == ' ' || line[n-1] == '\t') {
		n--
	}
	if n < 2 || line[0] != '{' || line[n-1] != '}' {
		return fail()
	}
	line = line[:n]
	if n == 2 {
		return arena, proof, true
	}
	var seen uint32
	i := 1
	for {
		// A name: '"', no escape, '"', ':'.
		name, end := plainString(line, i)
		if end < 0 || end >= n || line[end] != ':' {
			return fail()
		}
		field := memberOf(name)
		if field == memberUnknown || seen&(1<<field) != 0 {
			return fail()
		}
		seen |= 1 << field
		i = end + 1
		switch field {
		case memberLeaf, memberPosition, memberRevision:
			j := i
			for j < n && line[j] >= '0' && line[j] <= '9' {
				j++
			}
			if j == i || (line[i] == '0' && j > i+1) {
				return fail()
			}
			u, err := parseUint(line[i:j])
			if err != nil || setCount(bl, field, u) != nil {
				return fail()
			}
			i = j
		case memberUnreadable:
			switch {
			case bytes.HasPrefix(line[i:], []byte("true")):
				bl.Unreadable, i = true, i+4
			case bytes.HasPrefix(line[i:], []byte("false")):
				i += 5
			default:
				return fail()
			}
		case memberData, memberMetadata, memberKey, memberProof:
			// Base64, which has no quote, escape or control character:
			// the decoder refuses any but line breaks, which it skips.
			if i >= n || line[i] != '"' {
				return fail()
			}
			k := bytes.IndexByte(line[i+1:], '"')
			if k < 0 {
				return fail()
			}
			s := line[i+1 : i+1+k]
			i += k + 2
			if bytes.IndexByte(s, '\r') >= 0 {
				return fail()
			}
			var err error
			if arena, proof, err = p.setString(bl, field, s, arena, proof); err != nil {
				return fail()
			}
		default:
			s, end := plainString(line, i)
			if end < 0 {
				return fail()
			}
			i = end
			var err error
			if arena, proof, err = p.setString(bl, field, s, arena, proof); err != nil {
				return fail()
			}
		}
		switch {
		case i < n-1 && line[i] == ',':
			i++
		case i == n-1: // the object's '}'
			return arena, proof, true
		default:
			return fail()
		}
	}
}

// plainString returns the content of the JSON string at b[i:] and the
// index after it, when it holds printable ASCII alone, no escape; -1
// otherwise.
func plainString(b []byte, i int) ([]byte, int) {
	if i >= len(b) || b[i] != '"' {
		return nil, -1
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i+1 : j], j + 1
		case c < 0x20 || c >= 0x80 || c == '\\':
			return nil, -1
		}
	}
	return nil, -1
}
