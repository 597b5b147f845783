package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/internal/snap"
)

// MaxQuarantined is how many quarantined records the runner lists; it
// counts those beyond without listing them, so that a flood of foreign
// records cannot fill its memory.
const MaxQuarantined = 10_000

// quarantinePart is the name of the runner's own part of a snapshot: the
// verified end of every stream's chain and the quarantined records, at the
// snapshot's position.
const quarantinePart = "quarantine"

// quarantine is what the runner knows of the streams' chains. r.mu guards
// it.
type quarantine struct {
	links map[eventstore.StreamID]*codec.Link
	list  []projections.Quarantined
	count uint64 // quarantined, listed or not
}

func newQuarantine() quarantine {
	return quarantine{links: make(map[eventstore.StreamID]*codec.Link)}
}

// link returns the verified end of stream's chain, kept in q.
func (q *quarantine) link(stream eventstore.StreamID) *codec.Link {
	l, ok := q.links[stream]
	if !ok {
		l = new(codec.Link)
		q.links[stream] = l
	}
	return l
}

// admit verifies a batch of records against their streams' chains
// (codec.Link says what verifies): ds[i] is the i-th record decoded (its
// Record set even when it did not decode) and its[i] the rest of what
// was learnt of it. It moves the decoded events of those that verify, in
// order, to the front of ds and returns them, and returns the others as
// quarantined. r.mu is held.
func (r *Runner) admit(ds []codec.Decoded, its []item) ([]codec.Decoded, []projections.Quarantined) {
	var out []projections.Quarantined
	kept := 0
	// The events of a stream come in runs (one append of many events):
	// the last stream's link is kept at hand.
	var last eventstore.StreamID
	var l *codec.Link
	for i := range ds {
		d, it := &ds[i], &its[i]
		rec := &d.Record
		err := it.err
		if !errors.Is(err, eventstore.ErrUnreadable) {
			if l == nil || rec.Stream != last {
				last, l = rec.Stream, r.q.link(rec.Stream)
			}
			if it.hashed {
				err = l.FollowHashed(*rec, *d, err, it.next)
			} else {
				err = l.Follow(*rec, *d, err)
			}
		}
		if err == nil {
			if kept != i {
				ds[kept] = *d
			}
			kept++
			continue
		}
		q := projections.Quarantined{Position: rec.Position, Reason: codec.Reason(err), RecordedAt: rec.Stored.UTC()}
		if rec.Stream.Account != "" {
			q.Stream, q.Account = rec.Stream.String(), rec.Stream.Account
		}
		if !errors.Is(err, eventstore.ErrUnreadable) {
			rev := rec.Revision
			q.Revision = &rev
		}
		r.q.count++
		if len(r.q.list) < MaxQuarantined {
			r.q.list = append(r.q.list, q)
		}
		out = append(out, q)
	}
	return ds[:kept], out
}

// logQuarantined logs each record quarantined, once: where it is and why,
// never what it holds.
func (r *Runner) logQuarantined(qs []projections.Quarantined) {
	for _, q := range qs {
		attrs := []slog.Attr{slog.Uint64("position", uint64(q.Position)), slog.String("reason", q.Reason)}
		if q.Stream != "" {
			attrs = append(attrs, slog.String("stream", q.Stream))
		}
		if q.Revision != nil {
			attrs = append(attrs, slog.Uint64("revision", *q.Revision))
		}
		r.log.LogAttrs(context.Background(), slog.LevelWarn, "record quarantined: the read models skip it", attrs...)
	}
}

// Quarantined returns the records the read models skipped, in the store's
// order: those of account, or of every account (and those that name none)
// when account is empty, at positions after after; limit caps how many
// are returned (0: all). It lists at most MaxQuarantined records.
func (r *Runner) Quarantined(account string, after eventstore.Position, limit int) []projections.Quarantined {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []projections.Quarantined
	for _, q := range r.q.list {
		if q.Position <= after || account != "" && q.Account != account {
			continue
		}
		if limit > 0 && len(out) == limit {
			break
		}
		out = append(out, q)
	}
	return out
}

// QuarantinedCount returns how many records the read models skipped as
// quarantined, listed or not.
func (r *Runner) QuarantinedCount() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.q.count
}

// quarantineVersion is the format of the quarantine part of a snapshot.
const quarantineVersion = 1

// snapshotQuarantine returns the quarantine part of a snapshot. r.mu is
// held.
func (r *Runner) snapshotQuarantine() []byte {
	w := snap.NewWriter(quarantinePart, quarantineVersion, len(r.q.links)*64+len(r.q.list)*128)
	streams := slices.SortedFunc(maps.Keys(r.q.links), func(a, b eventstore.StreamID) int {
		if c := compare(string(a.Category), string(b.Category)); c != 0 {
			return c
		}
		return compare(a.Account, b.Account)
	})
	w.Uvarint(uint64(len(streams)))
	for _, s := range streams {
		l := *r.q.links[s]
		w.String(string(s.Category))
		w.String(s.Account)
		w.Uvarint(l.Next)
		w.Fixed(l.Hash[:])
	}
	w.Uvarint(r.q.count)
	w.Uvarint(uint64(len(r.q.list)))
	for _, q := range r.q.list {
		w.Uvarint(uint64(q.Position))
		w.String(q.Stream)
		w.String(q.Account)
		w.Bool(q.Revision != nil)
		if q.Revision != nil {
			w.Uvarint(*q.Revision)
		}
		w.String(q.Reason)
		w.Time(q.RecordedAt)
	}
	return w.Bytes()
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// restoreQuarantine reads the quarantine part of a snapshot.
func restoreQuarantine(b []byte) (quarantine, error) {
	rd, err := snap.NewReader(b, quarantinePart, quarantineVersion)
	if err != nil {
		return quarantine{}, fmt.Errorf("quarantine restore: %w", err)
	}
	q := newQuarantine()
	n := rd.Count(2 + 1 + 32)
	for range n {
		s := eventstore.StreamID{Category: eventstore.Category(rd.String()), Account: rd.String()}
		l := new(codec.Link)
		l.Next = rd.Uvarint()
		copy(l.Hash[:], rd.Fixed(len(l.Hash)))
		q.links[s] = l
	}
	q.count = rd.Uvarint()
	m := rd.Count(1 + 3 + 1 + 1)
	for range m {
		var e projections.Quarantined
		e.Position = eventstore.Position(rd.Uvarint())
		e.Stream, e.Account = rd.String(), rd.String()
		if rd.Bool() {
			rev := rd.Uvarint()
			e.Revision = &rev
		}
		e.Reason = rd.String()
		e.RecordedAt = rd.Time()
		q.list = append(q.list, e)
	}
	if err := rd.Err(); err != nil {
		return quarantine{}, fmt.Errorf("quarantine restore: %w", err)
	}
	if len(q.list) > MaxQuarantined || uint64(len(q.list)) > q.count {
		return quarantine{}, fmt.Errorf("quarantine restore: %d records listed of %d: %w", len(q.list), q.count, projections.ErrSnapshotFormat)
	}
	return q, nil
}
