package chunk

import "testing"

func TestList(t *testing.T) {
	for _, n := range []int{0, 1, 4, 5, Size - 1, Size, Size + 1, 3*Size + 7} {
		var l List[int]
		for i := range n {
			l.Append(i * 3)
		}
		if l.Len() != n {
			t.Fatalf("Len = %d, want %d", l.Len(), n)
		}
		for i := range n {
			if got := *l.At(i); got != i*3 {
				t.Fatalf("n=%d: At(%d) = %d, want %d", n, i, got, i*3)
			}
		}
	}
}
