package httpapi

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
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

// TestRequestIDsUnique: the request ids the API draws are ULIDs of now,
// all different.
func TestRequestIDsUnique(t *testing.T) {
	a := New(Config{})
	seen := make(map[string]bool)
	for range 20_000 {
		id := a.s.cfg.NewRequestID()
		u, err := ulid.ParseStrict(id)
		if err != nil || !ValidRequestID(id) || seen[id] {
			t.Fatalf("request id %q: %v, seen %v", id, err, seen[id])
		}
		if d := time.Since(ulid.Time(u.Time())); d < -time.Minute || d > time.Minute {
			t.Fatalf("request id %q of %v", id, ulid.Time(u.Time()))
		}
		seen[id] = true
	}
}
