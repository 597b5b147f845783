// Package chunk provides an append-only list stored in fixed-size blocks,
// so that appending never copies what is already stored: a read model of a
// million entries grows without the repeated copying (and garbage) of a
// doubling slice.
package chunk

// Size is the number of elements of every block after the first. The first
// block grows like a slice up to Size, so small lists stay small.
const Size = 512

// List is an append-only list. The zero List is empty and ready to use.
type List[T any] struct {
	blocks [][]T
	n      int
}

// Append adds v at the end.
func (l *List[T]) Append(v T) {
	if len(l.blocks) == 0 {
		l.blocks = append(l.blocks, make([]T, 0, 4))
	}
	last := &l.blocks[len(l.blocks)-1]
	if len(*last) == cap(*last) {
		if cap(*last) < Size {
			// Grown by hand: append could round the capacity past Size,
			// and At relies on every full block holding exactly Size.
			grown := make([]T, len(*last), min(2*cap(*last), Size))
			copy(grown, *last)
			*last = grown
		} else {
			l.blocks = append(l.blocks, make([]T, 0, Size))
			last = &l.blocks[len(l.blocks)-1]
		}
	}
	*last = append(*last, v)
	l.n++
}

// Len returns the number of elements.
func (l *List[T]) Len() int { return l.n }

// At returns a pointer to element i, which must be below Len.
func (l *List[T]) At(i int) *T { return &l.blocks[i/Size][i%Size] }
