package httpapi

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/eventstore"
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

// TestFastRoutes: the routes serve matches before the mux are matched as
// the mux matches them (the same pattern, the same path values) for every
// route's paths and for paths near them, and the writes clients send
// most are matched there.
func TestFastRoutes(t *testing.T) {
	s := New(Config{}).s
	if len(s.fast) != len(fastPatterns) {
		t.Fatalf("%d of the %d fast patterns registered", len(s.fast), len(fastPatterns))
	}
	// A mux of the same patterns whose handlers tell what they matched.
	type match struct {
		pattern string
		values  map[string]string
	}
	var got match
	ref := http.NewServeMux()
	for _, rt := range s.routes {
		pattern := rt.Path
		if rt.Method != "" {
			pattern = rt.Method + " " + rt.Path
		}
		var names []string
		for _, seg := range strings.Split(rt.Path, "/") {
			if strings.HasPrefix(seg, "{") {
				names = append(names, strings.Trim(seg, "{}."))
			}
		}
		ref.HandleFunc(pattern, func(_ http.ResponseWriter, r *http.Request) {
			got = match{pattern: r.Pattern, values: map[string]string{}}
			for _, n := range names {
				got.values[n] = r.PathValue(n)
			}
		})
	}
	values := []string{"acme", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "x-y_z~1", "users", "activities", "seats", "deactivate", "A"}
	var paths []string
	for _, rt := range s.routes {
		for _, v := range values {
			p := rt.Path
			for strings.Contains(p, "{") {
				i, j := strings.Index(p, "{"), strings.Index(p, "}")
				p = p[:i] + v + p[j+1:]
			}
			paths = append(paths, p, p+"/", "/"+p, strings.Replace(p, "/", "//", 2), p+"/x", strings.TrimSuffix(p, "/"+path.Base(p)),
				strings.Replace(p, v, "%61"+v, 1), strings.Replace(p, v, v+".", 1), strings.Replace(p, v, "..", 1), strings.Replace(p, v, "", 1))
		}
	}
	fastOnes := 0
	for _, p := range paths {
		for _, method := range []string{"POST", "GET", "PUT", "DELETE"} {
			u, err := url.Parse("http://ledger.test" + p)
			if err != nil {
				continue
			}
			r := &http.Request{Method: method, URL: u, Host: "ledger.test", RequestURI: u.RequestURI(), Header: http.Header{}}
			h := s.fastRoute(r)
			if h == nil {
				continue
			}
			fastOnes++
			fast := match{pattern: r.Pattern, values: map[string]string{}}
			got = match{}
			r2 := &http.Request{Method: method, URL: u, Host: "ledger.test", RequestURI: u.RequestURI(), Header: http.Header{}}
			ref.ServeHTTP(&captured{}, r2)
			for n := range got.values {
				fast.values[n] = r.PathValue(n)
			}
			if got.pattern != fast.pattern || !maps.Equal(got.values, fast.values) {
				t.Errorf("%s %s: fast route %v, the mux %v", method, p, fast, got)
			}
		}
	}
	for _, p := range []string{"/v1/accounts/acme/activities", "/v1/accounts/load-00001/users/01ARZ3NDEKTSV4RRFFQ69G5FAV/deactivate",
		"/v1/accounts/acme/users/01ARZ3NDEKTSV4RRFFQ69G5FAV/activate", "/v1/accounts/acme/users", "/v1/accounts/acme/seats"} {
		r := &http.Request{Method: "POST", URL: &url.URL{Path: p}, Header: http.Header{}}
		if s.fastRoute(r) == nil || r.PathValue("account") == "" {
			t.Errorf("POST %s not matched before the mux", p)
		}
	}
	if fastOnes < 20 {
		t.Fatalf("%d paths matched before the mux: the cases do not exercise it", fastOnes)
	}
}

// TestWaiters: a wait's channel closes once the position reaches it, not
// before, whatever the order of the waits; a wait removed is dropped.
func TestWaiters(t *testing.T) {
	tracker := NewTracker()
	var w waiters
	const n = 50
	chs := make([]<-chan struct{}, n+1)
	for _, p := range rand.Perm(n) {
		chs[p+1] = w.add(tracker, eventstore.Position(p+1))
	}
	gone := w.add(tracker, n+100)
	w.remove(gone)
	for p := 1; p <= n; p++ {
		select {
		case <-chs[p]:
			t.Fatalf("wait for %d closed at position %d", p, p-1)
		default:
		}
		tracker.Advance(eventstore.Position(p))
		select {
		case <-chs[p]:
		case <-time.After(30 * time.Second):
			t.Fatalf("wait for %d open 30 s after the position reached it", p)
		}
	}
	if w.len() != 0 {
		t.Fatalf("%d waits held after every one ended", w.len())
	}
}

// TestWaitersReachedBeforeAdd: a wait for a position reached after the
// watcher last looked, while other waits keep it watching, is released
// without another change.
func TestWaitersReachedBeforeAdd(t *testing.T) {
	tracker := NewTracker()
	var w waiters
	far := w.add(tracker, 100) // keeps the watcher watching
	defer w.remove(far)
	first := w.add(tracker, 1)
	tracker.Advance(2)
	select {
	case <-first:
	case <-time.After(30 * time.Second):
		t.Fatal("wait for 1 open 30 s after position 2")
	}
	// The watcher has looked at position 2 and waits for the next change.
	select {
	case <-w.add(tracker, 2):
	case <-time.After(30 * time.Second):
		t.Fatal("wait for a position already reached open 30 s without a change")
	}
}
