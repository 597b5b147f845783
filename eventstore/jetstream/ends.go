package jetstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore"
)

var _ eventstore.EndConfirmer = (*Store)(nil)

// ConfirmEnds implements [eventstore.EndConfirmer] with what the server
// keeps in memory, never a read of the blocks that hold the account's
// events: the last message of a subject is only found in the block that
// holds it (loaded whole, up to 4 MB with its index, 8 MB with
// [Config.LargeBlocks], when a get or an append's expectation first
// touches it after a start), while the server's index of subjects counts
// each subject's messages. It asks
//
//   - stream info with the account's subjects as filter ("*.<account>.*"):
//     the stream's last sequence and each subject's count, from that
//     index; each stream's count must be its revisions, and the last
//     sequence at least after (a store behind the reader lost records);
//   - when the stream's last sequence is past after, the first message on
//     the account's subjects from after+1 (a message get), which the
//     server looks for in the blocks from after+1 on: the stream's last
//     ones, which writes and readers keep loaded. There must be none.
//
// Then each stream's last message is the last event the reader folded,
// at the position it gave, and the stream numbers as many revisions as the
// reader: nothing came after it, and a record it skipped past a stream's
// last event (a foreign message, a quarantined record) adds to the count.
// (A record skipped between two events it folded either took a revision,
// which the reader's count includes, or adds to the count too. An
// operator's removal of
// a folded message together with a foreign publish on the same stream
// before after would keep the count: the next append then states
// revisions the stream does not number that way. Removing messages from
// the ledger's stream breaks its chain for every reader anyway.)
//
// On true the store caches both heads, and the pair of them (not on a
// replicated stream, where conditional appends are not offered): the next
// append to either stream of the account expects the server's last
// message over both streams' subjects at the later of the two positions,
// with no read first. The server checks that expectation itself, so a
// head that turned stale in between costs a conflict and a read, as a
// stale cached head does.
func (s *Store) ConfirmEnds(ctx context.Context, account string, after eventstore.Position, ledger, activity eventstore.StreamEnd) (bool, error) {
	if err := s.open(); err != nil {
		return false, err
	}
	ls, as := eventstore.LedgerStream(account), eventstore.ActivityStream(account)
	if err := checkStream(ls); err != nil {
		return false, err
	}
	for _, e := range []eventstore.StreamEnd{ledger, activity} {
		if e.Position > after || (e.Revisions == 0) != (e.Position == 0) {
			return false, nil
		}
	}
	var gen uint64
	if s.chain != nil {
		gen = s.chainGen()
	}
	f := accountFilter(account)
	info, err := s.stream.Info(ctx, jetstream.WithSubjectFilter(f))
	if err != nil {
		return false, fmt.Errorf("jetstream: ends of account %s: %w", account, err)
	}
	var nl, na uint64
	for subj, n := range info.State.Subjects {
		at, ok := streamOf(subj)
		switch {
		case !ok || at.Account != account:
			// Matches the filter but names no stream of the account:
			// no record the store would read; not counted.
		case at.Category == eventstore.Ledger:
			nl += n
		case at.Category == eventstore.Activity:
			na += n
		}
	}
	if nl != ledger.Revisions || na != activity.Revisions || info.State.LastSeq < uint64(after) {
		return false, nil
	}
	if info.State.LastSeq > uint64(after) {
		_, err := s.stream.GetMsg(ctx, uint64(after)+1, jetstream.WithGetMsgSubject(f))
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return false, fmt.Errorf("jetstream: ends of account %s: %w", account, err)
		default:
			return false, nil // a message of the account after it
		}
	}
	lh := head{n: ledger.Revisions, seq: uint64(ledger.Position)}
	ah := head{n: activity.Revisions, seq: uint64(activity.Position)}
	if s.chain != nil {
		// Exact as of the chain unless it resynced since the info.
		s.settle(gen, ls, lh)
		s.settle(gen, as, ah)
		return true, nil
	}
	s.advance(ls, lh)
	s.advance(as, ah)
	if !s.replicated { // pairs serve conditional appends, not offered there
		s.keepPair(account, pair{ledger: lh, activity: ah})
	}
	return true, nil
}
