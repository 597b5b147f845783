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
	// tail is the last block, the one appended to; the blocks' own
	// lengths are not kept up to date, At reads them up to their capacity.
	tail []T
	n    int
}

// Append adds v at the end.
func (l *List[T]) Append(v T) {
	if len(l.tail) == cap(l.tail) {
		l.grow()
	}
	l.tail = append(l.tail, v)
	l.n++
}

func (l *List[T]) grow() {
	switch {
	case len(l.blocks) == 0:
		l.tail = make([]T, 0, 4)
		l.blocks = append(l.blocks, l.tail)
	case cap(l.tail) < Size:
		// Grown by hand: append could round the capacity past Size, and
		// At relies on every full block holding exactly Size.
		grown := make([]T, len(l.tail), min(2*cap(l.tail), Size))
		copy(grown, l.tail)
		l.tail = grown
		l.blocks[len(l.blocks)-1] = grown
	default:
		l.tail = make([]T, 0, Size)
		l.blocks = append(l.blocks, l.tail)
	}
}

// Len returns the number of elements.
func (l *List[T]) Len() int { return l.n }

// At returns a pointer to element i, which must be below Len.
func (l *List[T]) At(i int) *T {
	if uint(i) >= uint(l.n) {
		panic("chunk: index out of range")
	}
	b := l.blocks[i/Size]
	return &b[:cap(b)][i%Size]
}
