package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Paging of the list answers (/accounts, /users, /activities, /audit,
// /events, /billing, /quarantine).
//
// A JSON list answer holds at most limit items (DefaultLimit when the
// request gives none, MaxLimit at most; a limit outside 1..MaxLimit is
// 400, not clamped, so that a client never takes a short page for the
// whole list), has_more, and next_cursor: the cursor that continues after
// the last item the answer examined. next_cursor is always given, also
// when has_more is false, so that a client can come back later for what
// was added since; a client walking a list loops while has_more is true.
//
// When has_more is true, a JSON list answer also holds next_link, and
// carries the same as an RFC 8288 header Link: <next_link>; rel="next":
// the path and query of the request for the next page (the request's own
// with cursor set to next_cursor). It is a reference relative to the
// API's origin. The last page has neither, so that a client following
// links stops there.
//
// A JSON Lines answer (the audit export and the raw events) is an export:
// it streams every selected item from its cursor on, unless the request
// gives a limit, written and flushed as it is produced. Its continuation
// cursor and whether more items follow are known only once the last line
// is written: they are sent as the HTTP trailers Ledger-Next-Cursor and
// Ledger-Has-More. An export that fails midway is cut without them (and
// without the end of its chunked body), so a client holding the trailer
// holds the whole selection.
//
// A cursor is opaque: base64url of a format byte, the kind of list, the
// position it stands for, a digest of the account and filters of the
// request that returned it, and a checksum. A cursor that does not decode,
// fails its checksum, or was returned for another list, account or
// filters is 400 invalid-cursor. A cursor is not a credential: it only
// says where to resume, every page is authorised on its own.

// Limits of list answers.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Trailers of JSON Lines answers.
const (
	HeaderNextCursor = "Ledger-Next-Cursor"
	HeaderHasMore    = "Ledger-Has-More"
)

// Kinds of cursors: a cursor of one list is refused by another.
const (
	cursorUsers      byte = 'u'
	cursorActivities byte = 'a'
	cursorAudit      byte = 'h'
	cursorEvents     byte = 'e'
	cursorAccounts   byte = 'c'
	cursorBilling    byte = 'b'
	cursorQuarantine byte = 'q'
)

const (
	cursorFormat   = 1
	cursorScopeLen = 8
	cursorSumLen   = 4
)

// cursorScope is what a cursor belongs to: the account and the filters
// of its list, as name=value pairs in a fixed order.
func cursorScope(account string, filters ...string) []byte {
	h := sha256.New()
	h.Write([]byte("ledger cursor scope\x00" + account))
	for _, f := range filters {
		h.Write([]byte{0})
		h.Write([]byte(f))
	}
	return h.Sum(nil)[:cursorScopeLen]
}

func cursorSum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:cursorSumLen]
}

// encodeCursor returns the cursor of a list of kind at the position vals.
func encodeCursor(kind byte, scope []byte, vals ...uint64) string {
	b := []byte{cursorFormat, kind}
	for _, v := range vals {
		b = binary.AppendUvarint(b, v)
	}
	b = append(b, scope...)
	b = append(b, cursorSum(b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// encodeKeyCursor returns the cursor of a list of kind ordered by a key
// (the accounts by id), standing after key.
func encodeKeyCursor(kind byte, scope []byte, key string) string {
	b := []byte{cursorFormat, kind}
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	b = append(b, scope...)
	b = append(b, cursorSum(b)...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeKeyCursor returns the key of a cursor of kind that belongs to
// scope. An empty cursor is the start of the list: "".
func decodeKeyCursor(s string, kind byte, scope []byte) (string, error) {
	if s == "" {
		return "", nil
	}
	body, err := cursorBody(s, kind, 1)
	if err != nil {
		return "", err
	}
	rest := body[2 : len(body)-cursorScopeLen]
	n, k := binary.Uvarint(rest)
	if k <= 0 || uint64(len(rest)-k) != n {
		return "", cursorProblem(cursorGarbled)
	}
	if !bytes.Equal(body[len(body)-cursorScopeLen:], scope) {
		return "", cursorProblem(cursorOtherScope)
	}
	return string(rest[k:]), nil
}

const (
	cursorGarbled    = "the cursor is not one this API returned (malformed or altered): give next_cursor as it was returned"
	cursorOtherScope = "the cursor belongs to another account or other filters: repeat the filters of the request that returned it"
)

// cursorBody decodes a cursor, checks its checksum, format and kind, and
// returns it without its checksum. min is the fewest bytes its values
// take.
func cursorBody(s string, kind byte, min int) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 2+min+cursorScopeLen+cursorSumLen {
		return nil, cursorProblem(cursorGarbled)
	}
	body, sum := b[:len(b)-cursorSumLen], b[len(b)-cursorSumLen:]
	if !bytes.Equal(cursorSum(body), sum) || body[0] != cursorFormat {
		return nil, cursorProblem(cursorGarbled)
	}
	if body[1] != kind {
		return nil, cursorProblem("the cursor was returned by another list: give it to the list that returned it")
	}
	return body, nil
}

func cursorProblem(detail string) error {
	return newProblem(ProblemInvalidCursor, http.StatusBadRequest, detail)
}

// decodeCursor returns the n values of a cursor of kind that belongs to
// scope. An empty cursor is the start of the list: n zeros.
func decodeCursor(s string, kind byte, scope []byte, n int) ([]uint64, error) {
	vals := make([]uint64, n)
	if s == "" {
		return vals, nil
	}
	const garbled = cursorGarbled
	body, err := cursorBody(s, kind, n)
	if err != nil {
		return nil, err
	}
	rest := body[2 : len(body)-cursorScopeLen]
	for i := range vals {
		v, k := binary.Uvarint(rest)
		if k <= 0 {
			return nil, cursorProblem(garbled)
		}
		vals[i], rest = v, rest[k:]
	}
	if len(rest) != 0 {
		return nil, cursorProblem(garbled)
	}
	if !bytes.Equal(body[len(body)-cursorScopeLen:], scope) {
		return nil, cursorProblem(cursorOtherScope)
	}
	return vals, nil
}

// nextLink returns the request for the page after the one answered, when
// more is true: the request's path and query with cursor set to next. The
// parameters a cursor replaces (after, of the activities) and waiting for
// a position (min_position) are left out. "" when no page follows.
func nextLink(r *http.Request, next string, more bool) string {
	if !more {
		return ""
	}
	q := r.URL.Query()
	q.Del("after")
	q.Del("min_position")
	q.Set("cursor", next)
	return r.URL.EscapedPath() + "?" + q.Encode()
}

// setNextLink sets the Link header of a page that others follow.
func setNextLink(h http.Header, link string) {
	if link != "" {
		h.Set("Link", "<"+link+`>; rel="next"`)
	}
}

// pageLimit reads the limit of a list request: def when not given, 400
// outside 1..MaxLimit.
func pageLimit(q url.Values, def int) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, badRequest("limit must be an integer from 1 to %d", MaxLimit)
	}
	return n, nil
}

// flushWriter flushes the response after the first line and then every
// flushEvery lines, so that a client reads an export as it is produced
// rather than when a buffer fills or the export ends.
type flushWriter struct {
	w     http.ResponseWriter
	lines int
}

const flushEvery = 64

func (f *flushWriter) Write(p []byte) (int, error) { return f.w.Write(p) }

// line records that a line was written and flushes when it is time. A
// writer that cannot flush still gets every line, only later.
func (f *flushWriter) line() error {
	f.lines++
	if f.lines == 1 || f.lines%flushEvery == 0 {
		if err := http.NewResponseController(f.w).Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return err
		}
	}
	return nil
}

// startExport sends the headers of a JSON Lines answer and announces its
// trailers.
func startExport(w http.ResponseWriter, filename string) {
	h := w.Header()
	h.Set("Content-Type", "application/jsonl")
	if filename != "" {
		h.Set("Content-Disposition", `attachment; filename="`+filename+`"`)
	}
	h.Set("Trailer", strings.Join([]string{HeaderNextCursor, HeaderHasMore}, ", "))
	w.WriteHeader(http.StatusOK)
}

// endExport sets the trailers of a JSON Lines answer written whole.
func endExport(w http.ResponseWriter, next string, more bool) {
	w.Header().Set(HeaderNextCursor, next)
	w.Header().Set(HeaderHasMore, strconv.FormatBool(more))
}

// ProblemInvalidCursor is the slug of a cursor that is malformed, altered,
// or not of the list, account or filters it is given to (400).
const ProblemInvalidCursor = "invalid-cursor"
