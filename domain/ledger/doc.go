// Package ledger is the license ledger of one customer account as pure
// domain logic: the commands a person or service can give, the events that
// record what happened, and the rules that decide one from the other.
//
// # Deciding and evolving
//
// [Decide] takes the current [State] and a command and returns the events
// the command causes, or a [*RuleError] naming the rule it broke. [Evolve]
// applies one event to a state. Folding an account's events with Evolve
// from the zero State rebuilds the account exactly; folding only the events
// recorded up to an instant rebuilds the account as it was then.
//
// # Purity
//
// The package does no I/O and reads no clock and no randomness: the time
// and every new id come in with the command. It knows personal data (names,
// emails, deactivation reasons) only in plaintext; sealing them for storage
// is the codec's work.
//
// # Seats
//
// Seats(t) is the seats at opening plus those purchased minus the
// reductions whose effective time is at or before t. A seat is available
// when the seats left after every pending reduction exceed the active
// users. Reductions take effect at the start of the next monthly billing
// cycle, counted from the account's opening day.
package ledger
