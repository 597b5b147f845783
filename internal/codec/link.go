package codec

import (
	"context"
	"errors"
	"fmt"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/pii"
)

// ErrOutOfOrder is returned (wrapped) by [Codec.DecodeNext] for a record
// whose revision is not the next of its stream: a copy of an earlier event
// published again, or a record placed without the stream's expectation.
var ErrOutOfOrder = errors.New("codec: record out of its stream's order")

// ErrBrokenLink is returned (wrapped) by [Codec.DecodeNext] for a record at
// its stream's next revision whose previous hash is not the link of the
// stream's last event: a forged or altered record.
var ErrBrokenLink = errors.New("codec: previous hash does not match the stream's chain")

// Link is the end of one stream's hash chain as a reader has verified it:
// the revision the stream's next event must carry, and the chain link of
// the last event that verified (zero before the first).
//
// # What verifies
//
// A record follows a Link when its revision is Next and its metadata
// names Hash as the previous link. A record with another revision takes
// no place in the stream (the store numbers events the same way, so a
// foreign record does not shift the revisions of later events). A record
// at Next that does not name Hash, or whose metadata cannot be read, takes
// revision Next but not the chain's end: the stream's next event names the
// same link as this one should have. A record that chains but does not
// decode (an unknown type, a newer schema version) is the stream's: the
// chain moves past it, but its event cannot be folded.
type Link struct {
	Next uint64
	Hash Hash
}

// DecodeNext decodes r, the next record read of a stream whose verified
// end is *l, and moves *l past it as [Link] says. It returns an error
// wrapping [ErrOutOfOrder], [ErrBrokenLink], [ErrMalformed],
// [ErrUnknownType] or [ErrNewerVersion] for a record that cannot be folded;
// *l has then moved only as far as the record's place in the chain
// allows.
func (c *Codec) DecodeNext(ctx context.Context, l *Link, r eventstore.Record) (Decoded, error) {
	d, err := c.Decode(ctx, r)
	if err != nil && !Unfoldable(err) {
		return Decoded{}, err // a failure to read keys, say: the record may be fine
	}
	if err := l.Follow(r, d, err); err != nil {
		return Decoded{}, err
	}
	return d, nil
}

// Follow moves l past r, which [Codec.Decode] decoded as d with error
// decodeErr, as [Link] says, and returns why r cannot be folded: an error
// wrapping [ErrOutOfOrder], [ErrBrokenLink] or decodeErr. It returns nil
// when r verifies and decoded.
func (l *Link) Follow(r eventstore.Record, d Decoded, decodeErr error) error {
	if r.Revision != l.Next {
		return fmt.Errorf("%s revision %d where %d was expected: %w", r.Stream, r.Revision, l.Next, ErrOutOfOrder)
	}
	prev := d.Meta.PrevHash
	if decodeErr != nil {
		meta, err := DecodeMetadata(r)
		if err != nil {
			l.Next++
			return decodeErr
		}
		prev = meta.PrevHash
	}
	if prev != l.Hash {
		l.Next++
		return fmt.Errorf("%s revision %d: %w", r.Stream, r.Revision, ErrBrokenLink)
	}
	l.Next, l.Hash = l.Next+1, RecordHash(l.Hash, r)
	return decodeErr
}

// FollowHashed is [Link.Follow] for a record that decoded (decodeErr nil)
// and whose chain link was computed ahead, maybe on another goroutine:
// next must be RecordHash(d.Meta.PrevHash, r), which is the link Follow
// computes when r verifies. With a decodeErr it is Follow.
func (l *Link) FollowHashed(r eventstore.Record, d Decoded, decodeErr error, next Hash) error {
	if decodeErr != nil {
		return l.Follow(r, d, decodeErr)
	}
	if r.Revision != l.Next {
		return fmt.Errorf("%s revision %d where %d was expected: %w", r.Stream, r.Revision, l.Next, ErrOutOfOrder)
	}
	if d.Meta.PrevHash != l.Hash {
		l.Next++
		return fmt.Errorf("%s revision %d: %w", r.Stream, r.Revision, ErrBrokenLink)
	}
	l.Next, l.Hash = l.Next+1, next
	return nil
}

// Unfoldable reports whether err says that a record itself cannot be
// folded, whoever reads it and however often: it is unreadable, out of
// order, off the chain, malformed, of an unknown type or a newer version,
// or its sealed fields do not authenticate or have no key. Other errors
// (a key store that does not answer, a cancelled context) say nothing of
// the record.
func Unfoldable(err error) bool {
	for _, e := range []error{eventstore.ErrUnreadable, ErrOutOfOrder, ErrBrokenLink, ErrMalformed,
		ErrUnknownType, ErrNewerVersion, pii.ErrTampered, pii.ErrNoKey} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Reason returns a short reason for a record that cannot be read or
// folded, for logs and operators: it names the rule broken and never
// quotes the record.
func Reason(err error) string {
	var u *eventstore.UnreadableError
	switch {
	case errors.As(err, &u):
		return u.Reason
	case errors.Is(err, ErrOutOfOrder):
		return "revision out of its stream's order (a copy, or a record placed without the stream's expectation)"
	case errors.Is(err, ErrBrokenLink):
		return "previous hash does not match the stream's chain"
	case errors.Is(err, ErrUnknownType):
		return "unknown event type"
	case errors.Is(err, ErrNewerVersion):
		return "event schema version newer than supported"
	case errors.Is(err, ErrMalformed):
		return "malformed event"
	case errors.Is(err, pii.ErrTampered):
		return "sealed field does not authenticate"
	case errors.Is(err, pii.ErrNoKey):
		return "sealed field of a user without a data key"
	default:
		return "undecodable event"
	}
}
