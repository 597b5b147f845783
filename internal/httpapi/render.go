package httpapi

import (
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/licenseledger/ledger/projections/seats"
)

// The answers every write gives (a user, an activity, an account's seats)
// are appended here member by member, the bytes json.Marshal would write
// with the options of mustJSON: strings quoted by jsontext.AppendQuote, the
// quoting json.Marshal itself does (invalid UTF-8 written as U+FFFD), times
// in RFC 3339 with nanoseconds as time.Time marshals. A time json.Marshal
// refuses (a year outside 0-9999, an offset of 24 hours or more) makes the
// answer go through json.Marshal, which then fails as before.
// TestAnswersAsJSON compares both.

// marshalAnswer returns v's JSON followed by a newline, as mustJSON does.
func marshalAnswer(v any) []byte {
	var (
		b  []byte
		ok bool
	)
	switch v := v.(type) {
	case seats.User:
		b, ok = appendUser(make([]byte, 0, 256), &v)
	case ActivityCreated:
		b, ok = appendActivityCreated(make([]byte, 0, 192), &v)
	case seats.Usage:
		b, ok = appendUsage(make([]byte, 0, 384), &v)
	}
	if !ok {
		return mustJSON(v)
	}
	return append(b, '\n')
}

func appendUser(b []byte, u *seats.User) ([]byte, bool) {
	ok := true
	b = appendName(b, '{', "id")
	b = appendString(b, u.ID)
	b = appendName(b, ',', "name")
	b = appendString(b, u.Name)
	b = appendName(b, ',', "email")
	b = appendString(b, u.Email)
	b = appendName(b, ',', "role")
	b = appendString(b, string(u.Role))
	b = appendName(b, ',', "status")
	b = appendString(b, string(u.Status))
	b = appendName(b, ',', "added_at")
	b = appendTime(b, u.AddedAt, &ok)
	b = appendName(b, ',', "changed_at")
	b = appendTime(b, u.ChangedAt, &ok)
	if u.ReassignedTo != "" {
		b = appendName(b, ',', "reassigned_to")
		b = appendString(b, u.ReassignedTo)
	}
	return append(b, '}'), ok
}

func appendActivityCreated(b []byte, a *ActivityCreated) ([]byte, bool) {
	ok := true
	b = appendName(b, '{', "id")
	b = appendString(b, a.ID)
	b = appendName(b, ',', "user_id")
	b = appendString(b, a.UserID)
	b = appendName(b, ',', "kind")
	b = appendString(b, a.Kind)
	b = appendName(b, ',', "ref")
	b = appendString(b, a.Ref)
	b = appendName(b, ',', "at")
	b = appendTime(b, a.At, &ok)
	return append(b, '}'), ok
}

func appendUsage(b []byte, u *seats.Usage) ([]byte, bool) {
	ok := true
	b = appendName(b, '{', "account")
	b = appendString(b, u.Account)
	b = appendName(b, ',', "name")
	b = appendString(b, u.Name)
	b = appendName(b, ',', "opened_at")
	b = appendTime(b, u.OpenedAt, &ok)
	b = appendName(b, ',', "at")
	b = appendTime(b, u.At, &ok)
	b = appendName(b, ',', "purchased")
	b = strconv.AppendInt(b, int64(u.Purchased), 10)
	b = appendName(b, ',', "seats")
	b = strconv.AppendInt(b, int64(u.Seats), 10)
	b = appendName(b, ',', "active")
	b = strconv.AppendInt(b, int64(u.Active), 10)
	b = appendName(b, ',', "deactivated")
	b = strconv.AppendInt(b, int64(u.Deactivated), 10)
	b = appendName(b, ',', "deleted")
	b = strconv.AppendInt(b, int64(u.Deleted), 10)
	b = appendName(b, ',', "available")
	b = strconv.AppendInt(b, int64(u.Available), 10)
	b = appendName(b, ',', "pending_reduction")
	b = strconv.AppendInt(b, int64(u.PendingReduction), 10)
	if !u.PendingReductionAt.IsZero() {
		b = appendName(b, ',', "pending_reduction_at")
		b = appendTime(b, u.PendingReductionAt, &ok)
	}
	b = appendName(b, ',', "peak_active")
	b = strconv.AppendInt(b, int64(u.PeakActive), 10)
	b = appendName(b, ',', "revision")
	b = strconv.AppendUint(b, u.Revision, 10)
	b = appendName(b, ',', "position")
	b = strconv.AppendUint(b, uint64(u.Position), 10)
	return append(b, '}'), ok
}

// appendName appends sep and a member name that needs no escaping, with
// its colon.
func appendName(b []byte, sep byte, name string) []byte {
	b = append(b, sep, '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

// appendString appends s quoted as json.Marshal quotes it; invalid UTF-8
// becomes U+FFFD, which mustJSON allows.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			b, _ = jsontext.AppendQuote(b, s)
			return b
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendTime appends t as json.Marshal does (RFC 3339 with nanoseconds)
// and clears ok when json.Marshal would refuse it.
func appendTime(b []byte, t time.Time, ok *bool) []byte {
	b = append(b, '"')
	n0 := len(b)
	b = t.AppendFormat(b, time.RFC3339Nano)
	switch s := b[n0:]; {
	case len(s) < len("2006-01-02T15:04:05Z") || s[len("9999")] != '-':
		*ok = false
	case s[len(s)-1] != 'Z':
		c := s[len(s)-len("Z07:00")]
		h := s[len(s)-len("07:00"):]
		if ('0' <= c && c <= '9') || int(h[0]-'0')*10+int(h[1]-'0') >= 24 {
			*ok = false
		}
	}
	return append(b, '"')
}
