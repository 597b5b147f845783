package telemetry_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/telemetry"
)

// writes records each write it gets.
type writes struct {
	mu sync.Mutex
	w  [][]byte
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.w = append(w.w, bytes.Clone(p))
	return len(p), nil
}

func (w *writes) get() (n int, all string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.w), string(bytes.Join(w.w, nil))
}

// TestLogBuffer: Info lines are gathered and written together, in order,
// after the delay or at Flush; a warning is written before its logging
// call returns, with the lines before it; a full batch goes at once.
func TestLogBuffer(t *testing.T) {
	out := &writes{}
	lb := telemetry.NewLogBuffer(out, time.Hour)
	log := slog.New(telemetry.LogHandler(lb.Handler(slog.NewJSONHandler(lb, nil)))).With("component", "http")
	ctx := telemetry.WithRequestID(context.Background(), "r-1")
	for i := range 3 {
		log.InfoContext(ctx, "request", "n", i)
	}
	if n, _ := out.get(); n != 0 {
		t.Fatalf("%d writes before the delay, a flush or a warning", n)
	}
	log.Warn("read models behind")
	n, all := out.get()
	lines := strings.Split(strings.TrimSuffix(all, "\n"), "\n")
	if n != 1 || len(lines) != 4 || !strings.Contains(lines[0], `"n":0`) || !strings.Contains(lines[2], `"n":2`) ||
		!strings.Contains(lines[0], `"request_id":"r-1"`) || !strings.Contains(lines[0], `"component":"http"`) ||
		!strings.Contains(lines[3], `"level":"WARN"`) {
		t.Fatalf("after a warning, %d writes:\n%s", n, all)
	}
	log.Info("request", "n", 4)
	if err := lb.Flush(); err != nil {
		t.Fatal(err)
	}
	if n, all := out.get(); n != 2 || !strings.HasSuffix(all, "\"n\":4}\n") {
		t.Fatalf("after Flush, %d writes:\n%s", n, all)
	}
	big := strings.Repeat("x", 70<<10)
	log.Info("request", "n", big)
	if n, _ := out.get(); n != 3 {
		t.Fatalf("a batch above 64 KiB waits: %d writes", n)
	}

	out = &writes{}
	lb = telemetry.NewLogBuffer(out, 10*time.Millisecond)
	log = slog.New(slog.NewJSONHandler(lb, nil))
	log.Info("request", "n", 1)
	log.Info("request", "n", 2)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, all := out.get(); strings.Count(all, "\n") == 2 {
			break
		}
		if time.Now().After(deadline) {
			n, all := out.get()
			t.Fatalf("30 s after two lines with a delay of 10 ms, %d writes: %q", n, all)
		}
		time.Sleep(time.Millisecond)
	}
}
