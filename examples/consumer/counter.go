package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"
)

// Counts is what the example keeps of one account: the seats bought and
// scheduled for removal, and its users by status.
type Counts struct {
	Purchased   int `json:"purchased"`
	Reductions  int `json:"reductions"`
	Active      int `json:"active"`
	Deactivated int `json:"deactivated"`
	Deleted     int `json:"deleted"`
}

// Available is the seats left once every scheduled reduction has taken
// effect, minus the active users: what the ledger answers as "available".
func (c Counts) Available() int { return c.Purchased - c.Reductions - c.Active }

// account is the state of one account: its counts and each user's status,
// which the next event about the user needs.
type account struct {
	Counts Counts            `json:"counts"`
	Users  map[string]string `json:"users"` // user id -> "active", "deactivated", "deleted"
}

// Counter folds the ledger's published events into seat counts per
// account. It is safe for concurrent use.
type Counter struct {
	mu       sync.Mutex
	accounts map[string]*account
	// Sequence is the stream sequence of the last message applied: a
	// message redelivered after a crash is not applied twice.
	sequence uint64
}

// NewCounter returns an empty counter.
func NewCounter() *Counter { return &Counter{accounts: map[string]*account{}} }

// The published types this example reads (contract v2, docs/events.md).
// Older versions of a type carry the same members the example reads,
// except AccountOpened version 1, which called the seats "licenses".
const (
	typeAccountOpenedV1   = "dev.licenseledger.account.opened.v1"
	typeAccountOpenedV2   = "dev.licenseledger.account.opened.v2"
	typeSeatsPurchased    = "dev.licenseledger.seats.purchased.v1"
	typeReductionSchedule = "dev.licenseledger.seat_reduction.scheduled.v1"
	typeUserAddedV1       = "dev.licenseledger.user.added.v1"
	typeUserAddedV2       = "dev.licenseledger.user.added.v2"
	typeUserDeactivated   = "dev.licenseledger.user.deactivated.v1"
	typeUserActivated     = "dev.licenseledger.user.activated.v1"
	typeUserDeleted       = "dev.licenseledger.user.deleted.v1"
)

// Apply folds one event, the message at stream sequence seq, into the
// counts. Events of types the example does not count (activities, profile
// and role changes, newer versions) are skipped. A message at or before
// the last sequence applied is ignored.
func (c *Counter) Apply(seq uint64, ev cloudevents.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq != 0 && seq <= c.sequence {
		return nil
	}
	acct, ok := ev.Extensions()["account"].(string)
	if !ok || acct == "" {
		return fmt.Errorf("event %s has no account", ev.ID())
	}
	a := c.accounts[acct]
	if a == nil {
		a = &account{Users: map[string]string{}}
		c.accounts[acct] = a
	}
	var data struct {
		Seats    int `json:"seats"`
		Licenses int `json:"licenses"`
		Count    int `json:"count"`
	}
	if len(ev.Data()) > 0 {
		if err := json.Unmarshal(ev.Data(), &data); err != nil {
			return fmt.Errorf("event %s: data: %w", ev.ID(), err)
		}
	}
	user := ev.Subject()
	switch ev.Type() {
	case typeAccountOpenedV1:
		a.Counts.Purchased += data.Licenses
	case typeAccountOpenedV2:
		a.Counts.Purchased += data.Seats
	case typeSeatsPurchased:
		a.Counts.Purchased += data.Count
	case typeReductionSchedule:
		a.Counts.Reductions += data.Count
	case typeUserAddedV1, typeUserAddedV2:
		a.move(user, "active")
	case typeUserDeactivated:
		a.move(user, "deactivated")
	case typeUserActivated:
		a.move(user, "active")
	case typeUserDeleted:
		a.move(user, "deleted")
	}
	if seq != 0 {
		c.sequence = seq
	}
	return nil
}

// move sets user's status, keeping the counts.
func (a *account) move(user, status string) {
	switch a.Users[user] {
	case "active":
		a.Counts.Active--
	case "deactivated":
		a.Counts.Deactivated--
	case "deleted":
		a.Counts.Deleted--
	}
	a.Users[user] = status
	switch status {
	case "active":
		a.Counts.Active++
	case "deactivated":
		a.Counts.Deactivated++
	case "deleted":
		a.Counts.Deleted++
	}
}

// Counts returns the counts of account.
func (c *Counter) Counts(account string) (Counts, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.accounts[account]
	if !ok {
		return Counts{}, false
	}
	return a.Counts, true
}

// Accounts returns the ids of the accounts seen, sorted.
func (c *Counter) Accounts() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.accounts))
	for id := range c.accounts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// state is the counter's saved form.
type state struct {
	Sequence uint64              `json:"sequence"`
	Accounts map[string]*account `json:"accounts"`
}

// MarshalJSON writes the counter's state.
func (c *Counter) MarshalJSON() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return json.Marshal(state{Sequence: c.sequence, Accounts: c.accounts})
}

// UnmarshalJSON reads a state MarshalJSON wrote.
func (c *Counter) UnmarshalJSON(b []byte) error {
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sequence, c.accounts = s.Sequence, s.Accounts
	if c.accounts == nil {
		c.accounts = map[string]*account{}
	}
	return nil
}
