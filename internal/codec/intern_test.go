package codec

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

func TestInternedRepeatsShareMemory(t *testing.T) {
	b := []byte("acct-0042")
	first := interned(b)
	b[0] = 'X' // the cached string must not alias the input
	if first != "acct-0042" {
		t.Fatalf("interned string changed with its input: %q", first)
	}
	again := interned([]byte("acct-0042"))
	if again != first || unsafe.StringData(again) != unsafe.StringData(first) {
		t.Fatalf("a repeated string was allocated again")
	}
	if s := interned(nil); s != "" {
		t.Fatalf("interned(nil) = %q", s)
	}
	long := strings.Repeat("x", internMax+1)
	if s := interned([]byte(long)); s != long {
		t.Fatalf("long string came back as %q", s)
	}
}

func TestInternedConcurrentAndEvicting(t *testing.T) {
	// More distinct strings than slots, from several goroutines: every
	// call returns its own value whatever the cache evicts.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 3 * internSlots {
				want := fmt.Sprintf("u-%d-%d", g, i%(internSlots+7))
				if got := interned([]byte(want)); got != want {
					t.Errorf("interned(%q) = %q", want, got)
					return
				}
			}
		}()
	}
	wg.Wait()
}
