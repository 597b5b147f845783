// Package chain verifies the hash chain of a stream: each event's metadata
// names the link of the event before it, and each link is SHA-256 over the
// previous link and the event as stored ([codec.RecordHash]). Verifying
// recomputes every link from the stored bytes and compares it with what the
// next event claims, so changing any stored byte of an event, sealed
// personal data included, breaks the link after it. Destroying a user's
// key changes no stored byte and breaks nothing.
//
// The last event of a stream has no successor to vouch for it: a report
// gives the head link, which an auditor compares with one recorded
// elsewhere (a previous report, a published checkpoint).
package chain

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections"
)

// Report is the outcome of verifying a stream.
type Report struct {
	Stream string `json:"stream"`
	// OK is true when every link matched.
	OK bool `json:"ok"`
	// Checked is the number of events read and linked, up to and including
	// the first broken link.
	Checked int `json:"checked"`
	// Head is the recomputed link of the last event checked.
	Head codec.Hash `json:"head"`
	// Broken is the first broken link, nil when OK.
	Broken *Break `json:"broken,omitempty"`
	// Skipped are the records read that are not part of the chain: ones
	// the store cannot read, and copies or foreign records whose revision
	// is not the stream's next. Verification goes on past them, but the
	// report is not OK.
	Skipped []Skipped `json:"skipped,omitempty"`
}

// Skipped is a record of a stream that is not part of its chain.
type Skipped struct {
	Position eventstore.Position `json:"position"`
	// Revision is the revision the record carries, if it carries one.
	Revision *uint64 `json:"revision,omitempty"`
	Reason   string  `json:"reason"`
}

// Break is a broken link: the event at Revision does not name, as the link
// before it, the link recomputed from the stored events before it. The
// event at Revision-1 (or an earlier one) was altered, or this event's
// metadata was.
type Break struct {
	Stream   string    `json:"stream"`
	Revision uint64    `json:"revision"`
	EventID  uuid.UUID `json:"event_id"`
	// Expected is the link recomputed from the stored events before this
	// one; Found is the link this event's metadata names.
	Expected codec.Hash `json:"expected"`
	Found    codec.Hash `json:"found"`
	// Reason is set when the event's metadata could not be read at all.
	Reason string `json:"reason,omitempty"`
}

// Error describes the break.
func (b *Break) Error() string {
	if b.Reason != "" {
		return fmt.Sprintf("chain of %s broken at revision %d (event %s): %s", b.Stream, b.Revision, b.EventID, b.Reason)
	}
	return fmt.Sprintf("chain of %s broken at revision %d (event %s): expected previous link %s, found %s",
		b.Stream, b.Revision, b.EventID, b.Expected, b.Found)
}

// Verify reads stream from its first event and checks every link. A broken
// chain is a Report with OK false, not an error; errors are failures to
// read (eventstore.ErrStreamNotFound, wrapped, for an empty stream).
// Records that are not part of the chain (see [Report].Skipped) are
// listed and verification goes on without them, as the read models skip
// them (codec.Link).
func Verify(ctx context.Context, r projections.StreamReader, stream eventstore.StreamID) (Report, error) {
	rep := Report{Stream: stream.String()}
	var prev codec.Hash
	next := uint64(0)
	for rec, err := range r.ReadStream(ctx, stream, 0) {
		if errors.Is(err, eventstore.ErrUnreadable) {
			rep.Skipped = append(rep.Skipped, Skipped{Position: rec.Position, Reason: codec.Reason(err)})
			continue
		}
		if err != nil {
			return Report{}, fmt.Errorf("verify %s: %w", stream, err)
		}
		if rec.Revision != next {
			rev := rec.Revision
			rep.Skipped = append(rep.Skipped, Skipped{Position: rec.Position, Revision: &rev, Reason: codec.Reason(codec.ErrOutOfOrder)})
			continue
		}
		rep.Checked++
		brk := &Break{Stream: rep.Stream, Revision: rec.Revision, EventID: rec.ID, Expected: prev}
		meta, err := codec.DecodeMetadata(rec)
		switch {
		case err != nil:
			brk.Reason = err.Error()
		case meta.PrevHash != prev:
			brk.Found = meta.PrevHash
		default:
			brk = nil
		}
		if brk != nil {
			rep.Broken, rep.Head = brk, prev
			return rep, nil
		}
		prev = codec.RecordHash(prev, rec)
		next++
	}
	rep.OK, rep.Head = len(rep.Skipped) == 0, prev
	if rep.Checked == 0 && len(rep.Skipped) > 0 {
		// Only records that are not the stream's: it holds no event.
		return Report{}, fmt.Errorf("verify %s: %w", stream, eventstore.ErrStreamNotFound)
	}
	return rep, nil
}
