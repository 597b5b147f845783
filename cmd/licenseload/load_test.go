package main

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestParseMix(t *testing.T) {
	m, err := parseMix("activity=3,delete=1")
	if err != nil {
		t.Fatal(err)
	}
	if m.total != 4 {
		t.Fatalf("total %d, want 4", m.total)
	}
	got := map[kind]int{}
	for r := range m.total {
		got[m.pick(r)]++
	}
	if got[kindActivity] != 3 || got[kindDelete] != 1 || len(got) != 2 {
		t.Fatalf("picks %v, want 3 activities and 1 delete", got)
	}
	for _, bad := range []string{"", "activity", "activity=-1", "fly=1", "activity=0"} {
		if _, err := parseMix(bad); err == nil {
			t.Errorf("mix %q accepted", bad)
		}
	}
	if s := mixString(mustMix(t, defaultMix)); s != defaultMix {
		t.Fatalf("default mix prints as %q", s)
	}
}

func mustMix(t *testing.T, s string) mix {
	t.Helper()
	m, err := parseMix(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	l := summarize(d)
	if l.P50 != 50 || l.P90 != 90 || l.P99 != 99 || l.Max != 100 {
		t.Fatalf("percentiles %+v, want 50/90/99/100 ms", l)
	}
	if l := summarize(nil); l != (latency{}) {
		t.Fatalf("empty: %+v", l)
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		status int
		err    error
		want   outcome
	}{
		{http.StatusCreated, nil, outOK},
		{http.StatusOK, nil, outOK},
		{http.StatusConflict, nil, outRefused},
		{http.StatusGone, nil, outRefused},
		{http.StatusPreconditionRequired, nil, outRefused},
		{http.StatusNotFound, nil, outError},
		{http.StatusInternalServerError, nil, outError},
		{0, errors.New("connection reset"), outError},
	}
	for _, c := range cases {
		if got := classify(c.status, c.err); got != c.want {
			t.Errorf("classify(%d, %v) = %d, want %d", c.status, c.err, got, c.want)
		}
	}
	tl := newTally()
	tl.record(kindAdd, time.Millisecond, http.StatusConflict, nil)
	tl.record(kindAdd, time.Millisecond, http.StatusBadRequest, nil)
	r := merge([]*tally{tl}, time.Second, true)
	if r.Requests != 2 || r.Refused != 1 || r.Errors != 1 || r.OK != 0 || r.Status["409"] != 1 || len(r.FirstError) != 1 {
		t.Fatalf("merged %+v", r)
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost:1", "http://[::1]:80"} {
		if _, err := newTarget(u, "t", 1); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	for _, u := range []string{"http://10.0.0.1:8080", "http://example.com", "https://127.0.0.1:1", "http://0.0.0.0:80"} {
		if _, err := newTarget(u, "t", 1); err == nil {
			t.Errorf("%s accepted", u)
		}
	}
}

func TestProcCPU(t *testing.T) {
	if _, err := procCPU(1 << 30); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
	self, _ := cpuClock(0)
	deadline := time.Now().Add(20 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	later, _ := cpuClock(0)
	if later <= self {
		t.Fatalf("CPU time did not grow while spinning: %v then %v", self, later)
	}
}
