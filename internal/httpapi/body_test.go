package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
)

// oneByOne reads one byte per call, then fails with err (io.EOF: ends).
type oneByOne struct {
	b   []byte
	err error
}

func (o *oneByOne) Read(p []byte) (int, error) {
	if len(o.b) == 0 {
		return 0, o.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0], o.b = o.b[0], o.b[1:]
	return 1, nil
}

// TestReadAll: a body is read as io.ReadAll of http.MaxBytesReader read
// it, whatever its Content-Length says, up to and over the limit, and a
// failing read fails it.
func TestReadAll(t *testing.T) {
	const max = 1000
	failed := errors.New("connection reset")
	for _, n := range []int{0, 1, 80, 511, 512, 513, 999, 1000, 1001, 5000} {
		body := bytes.Repeat([]byte("x"), n)
		for _, size := range []int64{-1, 0, int64(n), int64(n) - 1, int64(n) + 1, max, max + 1} {
			for _, end := range []error{io.EOF, failed} {
				want, wantErr := io.ReadAll(http.MaxBytesReader(nil, io.NopCloser(&oneByOne{body, end}), max))
				got, gotErr := readAll(&oneByOne{body, end}, size, max)
				var tooBig *http.MaxBytesError
				switch {
				case errors.As(wantErr, &tooBig):
					if !errors.As(gotErr, &tooBig) || tooBig.Limit != max {
						t.Errorf("%d bytes, Content-Length %d, %v: %v, want %v", n, size, end, gotErr, wantErr)
					}
				case wantErr != nil:
					if !errors.Is(gotErr, wantErr) {
						t.Errorf("%d bytes, Content-Length %d, %v: %v, want %v", n, size, end, gotErr, wantErr)
					}
				case gotErr != nil || !bytes.Equal(got, want):
					t.Errorf("%d bytes, Content-Length %d, %v: %d bytes, %v; want %d", n, size, end, len(got), gotErr, len(want))
				}
			}
		}
	}
}
