package ledger

import "time"

// Billing cycles are monthly from the account's opening day, starting at
// midnight UTC. An account opened on the 31st starts its cycles on the last
// day of shorter months.

// CycleStart returns the start of billing cycle k of an account opened at
// opened; cycle 0 starts on the opening day.
func CycleStart(opened time.Time, k int) time.Time {
	opened = opened.UTC()
	y, m, d := opened.Date()
	first := time.Date(y, m+time.Month(k), 1, 0, 0, 0, 0, time.UTC)
	if last := daysIn(first); d > last {
		d = last
	}
	return first.AddDate(0, 0, d-1)
}

// CycleIndex returns the billing cycle that contains t (negative before the
// opening day).
func CycleIndex(opened, t time.Time) int {
	opened, t = opened.UTC(), t.UTC()
	k := (t.Year()-opened.Year())*12 + int(t.Month()) - int(opened.Month())
	for CycleStart(opened, k).After(t) {
		k--
	}
	for !CycleStart(opened, k+1).After(t) {
		k++
	}
	return k
}

// NextCycleStart returns the start of the first billing cycle after the one
// containing t: when a reduction scheduled at t takes effect.
func NextCycleStart(opened, t time.Time) time.Time {
	return CycleStart(opened, CycleIndex(opened, t)+1)
}

func daysIn(firstOfMonth time.Time) int {
	return firstOfMonth.AddDate(0, 1, -1).Day()
}
