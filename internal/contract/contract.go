// Package contract is the ledger's published contract with other services:
// the stream downstream services and webhook deliveries read, its subjects,
// and the CloudEvents envelope of every published message.
//
// Stored events keep their stored form; a publisher copies each of them, in
// store order, into the published stream as the envelope this package
// defines, without the store's internal headers or the clients'
// idempotency keys.
package contract

import "github.com/licenseledger/ledger/eventstore"

// Stream is the JetStream stream, in the service's account, that holds the
// published messages: every event of the ledger in the store's order, and
// the billing notifications. Webhook deliveries read it with one durable
// consumer per endpoint; downstream services read its mirror.
const Stream = "EVENTS"

// SubjectPrefix prefixes every subject of [Stream]. A downstream service
// sees the subjects without it: ledger.<account>.<EventType>,
// activity.<account>.ActivityRecorded, billing.<account>.CycleClosed.
const SubjectPrefix = "events."

// LedgerSubject is the subject in [Stream] of an event of an account's
// ledger stream.
func LedgerSubject(account, eventType string) string {
	return SubjectPrefix + "ledger." + account + "." + eventType
}

// ActivitySubject is the subject in [Stream] of an activity of an account.
func ActivitySubject(account string) string {
	return SubjectPrefix + "activity." + account + ".ActivityRecorded"
}

// BillingSubject is the subject in [Stream] of the notification that an
// account's billing cycle has closed.
func BillingSubject(account string) string {
	return SubjectPrefix + "billing." + account + ".CycleClosed"
}

// AccountFilters are the subject filters of [Stream] that select every
// published message of one account.
func AccountFilters(account string) []string {
	return []string{
		SubjectPrefix + "ledger." + account + ".>",
		SubjectPrefix + "activity." + account + ".>",
		SubjectPrefix + "billing." + account + ".>",
	}
}

// Subject returns the subject in [Stream] of a stored event of type
// storedType in stream: [LedgerSubject] for a ledger stream's event,
// events.activity.<account>.<type> for an activity stream's.
func Subject(stream eventstore.StreamID, storedType string) string {
	return SubjectPrefix + string(stream.Category) + "." + stream.Account + "." + storedType
}
