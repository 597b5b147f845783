package httpapi

import (
	"testing"
	"time"
)

// TestTimeoutsAfter: a channel from after closes, and not before its
// duration has passed, also when waits share it.
func TestTimeoutsAfter(t *testing.T) {
	ts := newTimeouts()
	for _, d := range []time.Duration{0, time.Millisecond, 25 * time.Millisecond, 25 * time.Millisecond, 40 * time.Millisecond} {
		start := time.Now()
		select {
		case <-ts.after(d):
			if took := time.Since(start); took < d {
				t.Fatalf("after(%v) closed after %v", d, took)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("after(%v) still open after 30 s", d)
		}
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if len(ts.due) != 0 {
		t.Fatalf("%d channels kept after closing", len(ts.due))
	}
}
