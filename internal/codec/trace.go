package codec

import (
	"errors"
	"fmt"
)

// ErrInvalidTraceContext is returned by Encode for metadata whose
// traceparent or tracestate is not in the W3C Trace Context form.
var ErrInvalidTraceContext = errors.New("codec: invalid trace context")

// MaxTracestate is the longest tracestate kept, in bytes: the W3C Trace
// Context limit a vendor may rely on being propagated.
const MaxTracestate = 512

// ValidTraceparent reports whether s is a W3C traceparent of version 00:
// "00-" + 32 lower-case hex digits of a trace id, not all zero + "-" + 16
// of a parent span id, not all zero + "-" + 2 of flags.
func ValidTraceparent(s string) bool { return validTraceparent(s) }

// ValidTracestate reports whether s is a W3C tracestate of at most
// [MaxTracestate] bytes: list members key=value separated by commas (and
// optional spaces or tabs), at most 32, keys of lower-case letters, digits
// and _-*/@, values of printable ASCII other than ',' and '=' not ending
// with a space.
func ValidTracestate(s string) bool { return validTracestate(s) }

// checkTrace checks the trace context members of metadata: both empty, or
// a valid traceparent with an empty or valid tracestate.
func checkTrace[T string | []byte](parent, state T) error {
	switch {
	case len(parent) == 0 && len(state) == 0:
		return nil
	case len(parent) == 0:
		return fmt.Errorf("%w: tracestate without traceparent", ErrInvalidTraceContext)
	case !validTraceparent(parent):
		return fmt.Errorf("%w: traceparent is not a W3C traceparent of version 00", ErrInvalidTraceContext)
	case !validTracestate(state):
		return fmt.Errorf("%w: tracestate is not a W3C tracestate of at most %d bytes", ErrInvalidTraceContext, MaxTracestate)
	}
	return nil
}

// keptTrace returns the trace context of stored metadata as decoded: a
// traceparent not valid is dropped with its tracestate, a tracestate not
// valid is dropped (as W3C Trace Context says of received headers).
func keptTrace[T string | []byte](parent, state T) (T, T) {
	var none T
	if !validTraceparent(parent) {
		return none, none
	}
	if !validTracestate(state) {
		return parent, none
	}
	return parent, state
}

func validTraceparent[T string | []byte](s T) bool {
	const size = len("00-0123456789abcdef0123456789abcdef-0123456789abcdef-01")
	if len(s) != size || s[0] != '0' || s[1] != '0' || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	hex := func(from, to int) (nonZero, ok bool) {
		for i := from; i < to; i++ {
			c := s[i]
			switch {
			case c == '0':
			case '1' <= c && c <= '9', 'a' <= c && c <= 'f':
				nonZero = true
			default:
				return false, false
			}
		}
		return nonZero, true
	}
	trace, ok1 := hex(3, 35)
	span, ok2 := hex(36, 52)
	_, ok3 := hex(53, 55)
	return ok1 && ok2 && ok3 && trace && span
}

func validTracestate[T string | []byte](s T) bool {
	if len(s) > MaxTracestate {
		return false
	}
	members := 0
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] != ',' {
			continue
		}
		m := s[start:i]
		start = i + 1
		// Optional white space around each member.
		for len(m) > 0 && (m[0] == ' ' || m[0] == '\t') {
			m = m[1:]
		}
		for len(m) > 0 && (m[len(m)-1] == ' ' || m[len(m)-1] == '\t') {
			m = m[:len(m)-1]
		}
		if len(m) == 0 {
			continue // empty members are allowed and ignored
		}
		members++
		if members > 32 || !validListMember(m) {
			return false
		}
	}
	return true
}

func validListMember[T string | []byte](m T) bool {
	eq := -1
	for i := 0; i < len(m); i++ {
		if m[i] == '=' {
			eq = i
			break
		}
	}
	if eq < 1 || eq > 256 || len(m)-eq-1 < 1 || len(m)-eq-1 > 256 {
		return false
	}
	c := m[0]
	if ('a' > c || c > 'z') && ('0' > c || c > '9') {
		return false
	}
	for i := 1; i < eq; i++ {
		switch c := m[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '_', c == '-', c == '*', c == '/', c == '@':
		default:
			return false
		}
	}
	for i := eq + 1; i < len(m); i++ {
		if c := m[i]; c < 0x20 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return m[len(m)-1] != ' '
}
