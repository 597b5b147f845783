package ledger_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
)

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func TestCycleStart(t *testing.T) {
	jan31 := time.Date(2025, time.January, 31, 17, 45, 0, 0, time.UTC)
	leapJan31 := time.Date(2024, time.January, 31, 8, 0, 0, 0, time.UTC)
	feb29 := time.Date(2024, time.February, 29, 12, 0, 0, 0, time.UTC)
	nov15 := time.Date(2025, time.November, 15, 23, 59, 0, 0, time.UTC)
	mar30 := time.Date(2025, time.March, 30, 6, 0, 0, 0, time.UTC)
	// 01:30 on the 1st of March in UTC+2 is the 28th of February in UTC.
	east := time.Date(2025, time.March, 1, 1, 30, 0, 0, time.FixedZone("EET", 2*3600))
	for _, tc := range []struct {
		name   string
		opened time.Time
		k      int
		want   time.Time
	}{
		{"cycle 0 starts at midnight of the opening day", jan31, 0, day(2025, time.January, 31)},
		{"31st to the end of February", jan31, 1, day(2025, time.February, 28)},
		{"back to the 31st in March", jan31, 2, day(2025, time.March, 31)},
		{"30th in April", jan31, 3, day(2025, time.April, 30)},
		{"31st in a 31-day month", jan31, 6, day(2025, time.July, 31)},
		{"31st across the year", jan31, 11, day(2025, time.December, 31)},
		{"31st in the next January", jan31, 12, day(2026, time.January, 31)},
		{"leap February", leapJan31, 1, day(2024, time.February, 29)},
		{"opened on the 29th of February", feb29, 1, day(2024, time.March, 29)},
		{"29th of February to a common year", feb29, 12, day(2025, time.February, 28)},
		{"29th of February to the next leap year", feb29, 48, day(2028, time.February, 29)},
		{"30th in February", mar30, 11, day(2026, time.February, 28)},
		{"30th in a leap February", mar30, 35, day(2028, time.February, 29)},
		{"year boundary", nov15, 2, day(2026, time.January, 15)},
		{"many years on", nov15, 120, day(2035, time.November, 15)},
		{"before the opening", nov15, -1, day(2025, time.October, 15)},
		{"before the opening year", nov15, -11, day(2024, time.December, 15)},
		{"opening in another zone is counted in UTC", east, 0, day(2025, time.February, 28)},
		{"next cycle of an opening in another zone", east, 1, day(2025, time.March, 28)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ledger.CycleStart(tc.opened, tc.k)
			if !got.Equal(tc.want) || got.Location() != time.UTC {
				t.Errorf("CycleStart(%v, %d) = %v, want %v in UTC", tc.opened, tc.k, got, tc.want)
			}
		})
	}
}

func TestCycleIndexAndNextCycleStart(t *testing.T) {
	jan31 := time.Date(2025, time.January, 31, 17, 45, 0, 0, time.UTC)
	dec10 := time.Date(2025, time.December, 10, 10, 0, 0, 0, time.UTC)
	leap := time.Date(2024, time.January, 31, 8, 0, 0, 0, time.UTC)
	ns := time.Nanosecond
	for _, tc := range []struct {
		name   string
		opened time.Time
		t      time.Time
		index  int
		next   time.Time
	}{
		{"at the opening", jan31, jan31, 0, day(2025, time.February, 28)},
		{"earlier on the opening day", jan31, day(2025, time.January, 31), 0, day(2025, time.February, 28)},
		{"the day before the opening", jan31, day(2025, time.January, 31).Add(-ns), -1, day(2025, time.January, 31)},
		{"just before the end of February", jan31, day(2025, time.February, 28).Add(-ns), 0, day(2025, time.February, 28)},
		{"exactly at a cycle start", jan31, day(2025, time.February, 28), 1, day(2025, time.March, 31)},
		{"1st of March", jan31, day(2025, time.March, 1), 1, day(2025, time.March, 31)},
		{"30th of March", jan31, day(2025, time.March, 30).Add(23 * time.Hour), 1, day(2025, time.March, 31)},
		{"exactly at the 31st of March", jan31, day(2025, time.March, 31), 2, day(2025, time.April, 30)},
		{"leap year February", leap, day(2024, time.February, 28), 0, day(2024, time.February, 29)},
		{"leap day", leap, day(2024, time.February, 29), 1, day(2024, time.March, 31)},
		{"December to January", dec10, day(2025, time.December, 31), 0, day(2026, time.January, 10)},
		{"exactly at the January start", dec10, day(2026, time.January, 10), 1, day(2026, time.February, 10)},
		{"just before the January start", dec10, day(2026, time.January, 10).Add(-ns), 0, day(2026, time.January, 10)},
		{"years later", dec10, day(2030, time.June, 9), 53, day(2030, time.June, 10)},
		{"t in another zone", dec10, time.Date(2026, time.January, 10, 0, 30, 0, 0, paris), 0, day(2026, time.January, 10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ledger.CycleIndex(tc.opened, tc.t); got != tc.index {
				t.Errorf("CycleIndex = %d, want %d", got, tc.index)
			}
			if got := ledger.NextCycleStart(tc.opened, tc.t); !got.Equal(tc.next) {
				t.Errorf("NextCycleStart = %v, want %v", got, tc.next)
			}
		})
	}
}

// TestCyclesRandom checks, for random openings and instants, that the cycle
// containing t contains it, that cycles follow one another month by month,
// and that the next cycle start is after t.
func TestCyclesRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	base := day(2000, time.January, 1)
	span := int64(40 * 365 * 24 * time.Hour)
	for range 3000 {
		opened := base.Add(time.Duration(r.Int64N(span)))
		tt := opened.Add(time.Duration(r.Int64N(span/4) - span/40))
		k := ledger.CycleIndex(opened, tt)
		start, end := ledger.CycleStart(opened, k), ledger.CycleStart(opened, k+1)
		if start.After(tt) || !end.After(tt) {
			t.Fatalf("opened %v, t %v: cycle %d is [%v, %v)", opened, tt, k, start, end)
		}
		if next := ledger.NextCycleStart(opened, tt); !next.Equal(end) {
			t.Fatalf("opened %v, t %v: NextCycleStart %v, want %v", opened, tt, next, end)
		}
		if got := ledger.CycleIndex(opened, start); got != k {
			t.Fatalf("opened %v: CycleIndex at the start of cycle %d = %d", opened, k, got)
		}
		// One cycle is one calendar month on the opening day, or the month's
		// last day when the month is shorter.
		y, m, _ := start.Date()
		ny, nm, _ := end.Date()
		if (ny*12+int(nm))-(y*12+int(m)) != 1 {
			t.Fatalf("opened %v: cycle %d from %v to %v is not one month", opened, k, start, end)
		}
		od := opened.Day()
		for _, c := range []time.Time{start, end} {
			if last := day(c.Year(), c.Month()+1, 1).AddDate(0, 0, -1).Day(); c.Day() != min(od, last) {
				t.Fatalf("opened %v: cycle start %v not on day %d", opened, c, min(od, last))
			}
			if c.Hour() != 0 || c.Minute() != 0 || c.Second() != 0 || c.Nanosecond() != 0 {
				t.Fatalf("cycle start %v not at midnight", c)
			}
		}
	}
}
