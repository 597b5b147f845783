package billing_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/projections/billing"
	"github.com/licenseledger/ledger/projections/internal/fixture"
)

// manyAccounts opens accounts acc00..acc<n-1> in a shuffled order, the
// even ones in January 2025 and the odd ones in March 2025, each with
// seats = its number + 1, and applies them one at a time or in one batch.
func manyAccounts(t *testing.T, n int, batch bool) *billing.Projection {
	t.Helper()
	l := fixture.New()
	order := make([]int, n)
	for i := range order {
		order[i] = (i * 7) % n // 7 is prime to the sizes used: a permutation
	}
	for _, i := range order {
		at := day(1, 5, 0)
		if i%2 == 1 {
			at = day(3, 5, 0)
		}
		id := fmt.Sprintf("acc%02d", i)
		if _, err := l.Do(t.Context(), id, fixture.Operator, ledger.OpenAccount{Account: id, Name: id, Seats: i + 1, At: at}); err != nil {
			t.Fatal(err)
		}
	}
	p := billing.New()
	if batch {
		if err := p.ApplyBatch(l.Live()); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, d := range l.Live() {
		if err := p.Apply(d); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestCyclesPage walks every account's cycle of a period page by page:
// each account with a cycle in the period once, in id order, with its
// quantities; accounts without one are skipped; more is false only on the
// last page.
func TestCyclesPage(t *testing.T) {
	for _, batch := range []bool{false, true} {
		t.Run(fmt.Sprintf("batch=%v", batch), func(t *testing.T) {
			p := manyAccounts(t, 23, batch)
			now := day(5, 1, 0)
			for _, tc := range []struct {
				period string
				want   []string
			}{
				{"2025-01", evens(23)},
				{"2025-02", evens(23)},
				{"2025-03", all(23)},
				{"2024-12", nil},
				{"2025-06", nil}, // after now
			} {
				for _, limit := range []int{1, 4, 23, 100} {
					var got []string
					after, pages := "", 0
					for {
						page, next, more, err := p.CyclesPage(tc.period, after, limit, now)
						if err != nil {
							t.Fatal(err)
						}
						pages++
						if len(page) > limit {
							t.Fatalf("%s limit %d: page of %d", tc.period, limit, len(page))
						}
						for _, c := range page {
							if c.Period != tc.period {
								t.Fatalf("cycle of period %s in a page of %s", c.Period, tc.period)
							}
							var n int
							fmt.Sscanf(c.Account, "acc%d", &n)
							if c.SeatsBilled != n+1 {
								t.Fatalf("%s: seats billed %d, want %d", c.Account, c.SeatsBilled, n+1)
							}
							got = append(got, c.Account)
						}
						if !more {
							break
						}
						if next == after || pages > 100 {
							t.Fatalf("paging does not advance: next %q after %q", next, after)
						}
						after = next
					}
					if !slices.Equal(got, tc.want) {
						t.Fatalf("%s limit %d: got %v, want %v", tc.period, limit, got, tc.want)
					}
					if want := (len(tc.want) + limit - 1) / limit; len(tc.want) > 0 && pages != want {
						t.Fatalf("%s limit %d: %d pages, want %d", tc.period, limit, pages, want)
					}
				}
			}
		})
	}
}

func TestCyclesPageBadPeriod(t *testing.T) {
	p := manyAccounts(t, 3, false)
	for _, bad := range []string{"", "2025-13", "2025-1", "25-01", "2025-01-01", "x"} {
		if _, _, _, err := p.CyclesPage(bad, "", 10, day(5, 1, 0)); !errors.Is(err, billing.ErrBadPeriod) {
			t.Errorf("period %q: %v, want ErrBadPeriod", bad, err)
		}
	}
}

// TestCyclesPageAfterRestore: a restored snapshot pages the same accounts
// in the same order, and its Openings agree.
func TestCyclesPageAfterRestore(t *testing.T) {
	p := manyAccounts(t, 9, false)
	b, err := p.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	q := billing.New()
	if err := q.Restore(b); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	a, _, _, _ := p.CyclesPage("2025-03", "", 100, now)
	c, _, _, _ := q.CyclesPage("2025-03", "", 100, now)
	if len(a) != 9 || len(c) != 9 {
		t.Fatalf("pages of %d and %d cycles, want 9", len(a), len(c))
	}
	for i := range a {
		if a[i].Account != c[i].Account || a[i].SeatsBilled != c[i].SeatsBilled {
			t.Fatalf("restored page differs at %d: %+v vs %+v", i, a[i], c[i])
		}
	}
	if !slices.Equal(p.Openings(), q.Openings()) || len(q.Openings()) != 9 {
		t.Fatalf("openings differ: %v vs %v", p.Openings(), q.Openings())
	}
}

func evens(n int) []string {
	var out []string
	for i := 0; i < n; i += 2 {
		out = append(out, fmt.Sprintf("acc%02d", i))
	}
	return out
}

func all(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("acc%02d", i))
	}
	return out
}
