// Package asof rebuilds an account as it was at an instant: its seats and
// its users with the status each had then. It reads the account's ledger
// stream and folds with the domain's [ledger.Evolve] only the events that
// happened at or before the instant.
//
// Personal data is shown as it can be read now, not as it was: a user
// deleted since the instant appears with the status they had then but a
// blank name and email, because their key is gone.
package asof

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/seats"
)

// ErrNotOpened is returned (wrapped) when the account did not exist yet at
// the instant asked for.
var ErrNotOpened = errors.New("asof: account not opened at that instant")

// State is an account as it was at an instant.
type State struct {
	// Usage is the seat usage at the instant: Seats is Seats(t), Revision
	// the ledger revision of the last event folded and Position its
	// global position.
	Usage seats.Usage `json:"usage"`
	// Users are the account's users at the instant, in the order added.
	Users []seats.User `json:"users"`
	// Events is the number of ledger events folded.
	Events int `json:"events"`
}

// At rebuilds account as it was at t. It returns ErrNotOpened when the
// account was opened after t, and the store's eventstore.ErrStreamNotFound
// when it never was (both wrapped).
//
// Event times of an account never go backwards (the domain holds them at
// the latest time seen), so reading stops at the first event after t.
func At(ctx context.Context, r projections.StreamReader, dec projections.Decoder, account string, t time.Time) (State, error) {
	var (
		s        ledger.State
		n        int
		rev      uint64
		position eventstore.Position
	)
	var link codec.Link // records off the stream's chain are skipped, as the read models skip them
	for rec, err := range r.ReadStream(ctx, eventstore.LedgerStream(account), 0) {
		if errors.Is(err, eventstore.ErrUnreadable) {
			continue
		}
		if err != nil {
			return State{}, fmt.Errorf("state of %s as of %s: %w", account, t.Format(time.RFC3339), err)
		}
		d, err := dec.Decode(ctx, rec)
		if err != nil && !codec.Unfoldable(err) {
			return State{}, fmt.Errorf("state of %s as of %s: %w", account, t.Format(time.RFC3339), err)
		}
		if link.Follow(rec, d, err) != nil {
			continue
		}
		if d.Event.OccurredAt().After(t) {
			break
		}
		s = ledger.Evolve(s, d.Event)
		n++
		rev, position = rec.Revision, rec.Position
	}
	if !s.Opened() {
		return State{}, fmt.Errorf("state of %s as of %s: %w", account, t.Format(time.RFC3339), ErrNotOpened)
	}
	u := seats.UsageOf(s, t)
	u.Revision, u.Position = rev, position
	return State{Usage: u, Users: seats.UsersOf(s, ""), Events: n}, nil
}
