package telemetry

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// LogBuffer gathers a log's lines and writes them to its writer in
// batches, instead of one write(2) per line: a line goes out at the
// latest Delay after it came, at once once the batch holds flushBytes,
// and, with every line before it, before the logging call returns when
// it is of level Warn or above (through [LogBuffer.Handler]) or when
// Flush or Close is called. What a crash can lose is the Info and Debug
// lines of the last Delay; warnings and errors, and the order of lines,
// are kept.
type LogBuffer struct {
	w     io.Writer
	delay time.Duration

	mu    sync.Mutex
	buf   []byte
	timer *time.Timer // armed while buf holds lines
	err   error       // the last write's error
}

// flushBytes is the size at which a batch is written without waiting.
const flushBytes = 64 << 10

// NewLogBuffer returns a LogBuffer writing to w, each line at the latest
// delay after it came.
func NewLogBuffer(w io.Writer, delay time.Duration) *LogBuffer {
	b := &LogBuffer{w: w, delay: delay}
	b.timer = time.AfterFunc(time.Hour, func() { _ = b.Flush() })
	b.timer.Stop()
	return b
}

// Write adds p, whole lines, to the batch.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf) == 0 {
		b.timer.Reset(b.delay)
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) >= flushBytes {
		b.flushLocked()
	}
	return len(p), nil
}

// Flush writes the lines gathered; it returns the error of the last write
// that failed, if any.
func (b *LogBuffer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	return b.err
}

func (b *LogBuffer) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	b.timer.Stop()
	if _, err := b.w.Write(b.buf); err != nil {
		b.err = err
	}
	if cap(b.buf) > 4*flushBytes {
		b.buf = nil // a burst's buffer is not kept
	} else {
		b.buf = b.buf[:0]
	}
}

// Close writes the lines gathered; lines written after it go out as
// before, each at the latest the delay after it came.
func (b *LogBuffer) Close() error { return b.Flush() }

// Handler returns h writing through b so that a record of level Warn or
// above is written, with every line before it, before Handle returns.
// h must write to b.
func (b *LogBuffer) Handler(h slog.Handler) slog.Handler {
	return &flushingHandler{h: h, b: b}
}

type flushingHandler struct {
	h slog.Handler
	b *LogBuffer
}

func (f *flushingHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return f.h.Enabled(ctx, level)
}

func (f *flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	err := f.h.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		if ferr := f.b.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (f *flushingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &flushingHandler{h: f.h.WithAttrs(attrs), b: f.b}
}

func (f *flushingHandler) WithGroup(name string) slog.Handler {
	return &flushingHandler{h: f.h.WithGroup(name), b: f.b}
}
