//go:build unix

package cputime_test

import (
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/cputime"
)

// TestProcessGrows: the process's CPU time is counted and grows with
// work done on it.
func TestProcessGrows(t *testing.T) {
	before := cputime.Process()
	if before <= 0 {
		t.Fatalf("CPU time %v before any work, want more than 0", before)
	}
	// Busy until the CPU time moves; a clock that never moves fails.
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for cputime.Process() <= before {
		if time.Now().After(deadline) {
			t.Fatalf("CPU time still %v after 10 s of work (%d rounds)", before, x)
		}
		x++
	}
}
