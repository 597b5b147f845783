package accounts

import (
	"fmt"
	"slices"
	"strings"
)

// Loaded renders what the service holds of an account besides its state:
// the streams' chain heads and lengths, the last position, and the
// remembered idempotency keys with the events each answers with.
func Loaded(s *Service, account string) string {
	a := s.account(account)
	a.mu.Lock()
	defer a.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "loaded=%v version=%d ledger=%s activity=%d/%s position=%d\n",
		a.loaded, a.state.Version, a.ledgerHead, a.activityLen, a.activityHead, a.lastPosition)
	keys := make([]string, 0, a.keys.len())
	for k, v := range a.keys.byKey {
		line := fmt.Sprintf("  key %s at %s position %d:", k, v.at.UTC().Format("2006-01-02T15:04:05"), v.result.Position)
		for _, d := range v.result.Events {
			line += fmt.Sprintf(" %s/%d %+v erased=%v", d.Record.ID, d.Record.Revision, d.Event, d.Erased)
		}
		keys = append(keys, line)
	}
	slices.Sort(keys)
	b.WriteString(strings.Join(keys, "\n"))
	return b.String()
}
