package intern

import (
	"fmt"
	"testing"
)

func TestTable(t *testing.T) {
	var tb Table
	if _, ok := tb.Lookup("x"); ok || tb.Len() != 0 {
		t.Fatal("an empty table has x")
	}
	const n = 1000
	for i := range n {
		s := fmt.Sprintf("u%d", i)
		if i%7 == 0 {
			s = "" // the empty string is a string like any other, once
		}
		got := tb.Index(s)
		if again := tb.Index(s); again != got {
			t.Fatalf("Index(%q) = %d then %d", s, got, again)
		}
	}
	if tb.Len() != n-n/7 {
		t.Fatalf("Len = %d, want %d", tb.Len(), n-n/7)
	}
	for i, s := range tb.Strings() {
		if j, ok := tb.Lookup(s); !ok || j != uint32(i) || tb.String(j) != s {
			t.Errorf("Lookup(%q) = %d, %v; want %d", s, j, ok, i)
		}
	}
	if tb.String(0) != "" || tb.String(1) != "u1" {
		t.Errorf("numbers not in the order first seen: %q, %q", tb.String(0), tb.String(1))
	}
	for _, s := range []string{"u1000", "u", "x"} {
		if _, ok := tb.Lookup(s); ok {
			t.Errorf("Lookup(%q) found a string never added", s)
		}
	}
}
