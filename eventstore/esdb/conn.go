package esdb

import (
	"context"
	"errors"
	"sync"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// Calls into the client.
//
// The client (EventStore-Client-Go/v4) hands out connections from one
// goroutine, its connection loop, over an unbuffered channel, and does not
// look at the caller's context while it waits for one. When node discovery
// fails the loop marks the client closed and ends: a call that had already
// passed the closed check and was waiting on the channel then waits forever,
// and so would every call that came in while the failed discovery lasted.
// The same goes for the reconnect request a call sends after the node was
// unavailable.
//
// The store therefore makes every call that may wait so through [start],
// [open], [recv] or [readAhead]: the call runs in a goroutine of its own, and the
// store's method returns when its context ends, leaving the call behind.
// A [conn] keeps left-behind calls few: while its client is not known to be
// connected, one call at a time goes in (the probe) and the others wait for
// it in the store, where they see their context. A probe that is left
// behind, or that a waiting caller gave up on, gets the client replaced:
// later calls go to a new one. The call whose request started a discovery
// gets its answer, so a left-behind call on a client stays blocked for
// good only if it queued behind a discovery that failed: the calls that
// were already inside the client when its connection broke, and at most
// one probe.
//
// A replaced client is closed once no call is inside it and no read or
// subscription through it is open: closing it earlier would make a call
// still sending on its channel panic, and would cut reads that still work.

// errClientReplaced ends a call that would go into a client the store has
// replaced since, or a probe still waiting in it.
var errClientReplaced = errors.New("esdb: the client was replaced after it lost its connection")

// conn is one client of the store and what the store knows about it.
type conn struct {
	c     *esdb.Client
	probe chan struct{} // holds a token while a probe is inside c
	gone  chan struct{} // closed when c is replaced

	mu       sync.Mutex
	ready    bool // the last call through c connected
	inflight int  // calls inside c and reads open through it
	retired  bool // c was replaced; close it once inflight is 0
	closed   bool
}

func newConn(c *esdb.Client) *conn {
	return &conn{c: c, probe: make(chan struct{}, 1), gone: make(chan struct{})}
}

// enter admits a call into cn: at once while cn is ready, else as the only
// probe. It returns whether the call is the probe, [errClientReplaced] once
// cn is replaced, or ctx's cause.
func (cn *conn) enter(ctx context.Context) (bool, error) {
	for {
		cn.mu.Lock()
		switch {
		case cn.retired:
			cn.mu.Unlock()
			return false, errClientReplaced
		case cn.ready:
			cn.inflight++
			cn.mu.Unlock()
			return false, nil
		}
		cn.mu.Unlock()
		select {
		case cn.probe <- struct{}{}:
			cn.mu.Lock()
			if cn.ready || cn.retired {
				cn.mu.Unlock()
				<-cn.probe
				continue
			}
			cn.inflight++
			cn.mu.Unlock()
			return true, nil
		case <-cn.gone:
			return false, errClientReplaced
		case <-ctx.Done():
			return false, context.Cause(ctx)
		}
	}
}

// hold admits a call on a read or subscription already open through cn,
// or keeps cn's client open while such a read lasts, whether or not cn is
// ready or replaced: what it sends on the client's channel is at most a
// reconnect request. It fails with [errClientReplaced] once the client is
// closed.
func (cn *conn) hold() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.closed {
		return errClientReplaced
	}
	cn.inflight++
	return nil
}

// leave records the end of a call into cn that returned err.
func (cn *conn) leave(probe bool, err error) {
	cn.mu.Lock()
	switch {
	case err == nil:
		cn.ready = true
	case lostConnection(err):
		cn.ready = false
	case probe:
		cn.ready = true // the server answered
	}
	cn.mu.Unlock()
	if probe {
		<-cn.probe
	}
	cn.release()
}

// release ends a call or a hold, and closes a replaced client after the
// last.
func (cn *conn) release() {
	cn.mu.Lock()
	cn.inflight--
	closeNow := cn.retired && cn.inflight == 0 && !cn.closed
	if closeNow {
		cn.closed = true
	}
	cn.mu.Unlock()
	if closeNow {
		_ = cn.c.Close()
	}
}

// abandon records that a call left cn behind when its context ended, or
// lost its connection: cn may be waiting for a connection that never comes.
func (cn *conn) abandon() {
	cn.mu.Lock()
	cn.ready = false
	cn.mu.Unlock()
}

// retire marks cn replaced and closes its client once no call is inside.
func (cn *conn) retire() {
	cn.mu.Lock()
	if cn.retired {
		cn.mu.Unlock()
		return
	}
	cn.retired = true
	close(cn.gone)
	closeNow := cn.inflight == 0 && !cn.closed
	if closeNow {
		cn.closed = true
	}
	cn.mu.Unlock()
	if closeNow {
		_ = cn.c.Close()
	}
}

// lostConnection reports whether err says the client has no connection.
func lostConnection(err error) bool {
	if errors.Is(err, errClientReplaced) {
		return true
	}
	var e *esdb.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() {
	case esdb.ErrorUnavailable, esdb.ErrorCodeConnectionClosed:
		return true
	}
	return false
}

// outcome is what a call into the client returned.
type outcome[T any] struct {
	v   T
	err error
}

// recv returns the next event of rs, a read open through cn, as [run] does.
func recv(ctx context.Context, s *Store, cn *conn, rs *esdb.ReadStream) (*esdb.ResolvedEvent, error) {
	if err := cn.hold(); err != nil {
		return nil, err
	}
	return run(ctx, s, cn, false, func(*esdb.Client) (*esdb.ResolvedEvent, error) { return rs.Recv() })
}

// readAheadEvents is how many events of a read [readAhead] receives before
// the reader takes them.
const readAheadEvents = 256

// readAhead receives the events of rs, a read opened with [open] through cn,
// in a goroutine of its own, which closes rs and releases cn when it ends:
// after an error (io.EOF at the end), or once ctx ends. Recv asks the client
// to reconnect when the node is unavailable, which may block like any call
// into it; the reader selects on the channel and on ctx.
func readAhead(ctx context.Context, cn *conn, rs *esdb.ReadStream) <-chan outcome[*esdb.ResolvedEvent] {
	out := make(chan outcome[*esdb.ResolvedEvent], readAheadEvents)
	go func() {
		defer cn.release()
		defer rs.Close()
		for {
			ev, err := rs.Recv()
			if lostConnection(err) {
				cn.abandon()
			}
			select {
			case out <- outcome[*esdb.ResolvedEvent]{ev, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return out
}

// run runs f, a call admitted into cn, in a goroutine of its own and
// returns what f returns, or ctx's cause as soon as ctx ends. A probe left
// behind so gets cn replaced: its client may be waiting for a connection
// that never comes. A probe also returns, with [errClientReplaced], when
// cn is replaced meanwhile (a caller that waited for it gave up, or the
// store closed).
func run[T any](ctx context.Context, s *Store, cn *conn, probe bool, f func(*esdb.Client) (T, error)) (T, error) {
	done := make(chan outcome[T], 1)
	go func() {
		v, err := f(cn.c)
		cn.leave(probe, err)
		done <- outcome[T]{v, err}
	}()
	var gone <-chan struct{} // nil blocks: a call that is not the probe has a connection
	if probe {
		gone = cn.gone
	}
	var err error
	select {
	case o := <-done:
		return o.v, o.err
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-gone:
		err = errClientReplaced
	}
	select {
	case o := <-done: // it ended too
		return o.v, o.err
	default:
	}
	cn.abandon()
	if probe {
		s.renew(cn)
	}
	var zero T
	return zero, err
}

// start runs f, one call into the store's current client, with [run] once
// the client admits it (see [conn.enter]), following replacements while the
// call waits to go in. It also returns the conn it used.
func start[T any](ctx context.Context, s *Store, f func(*esdb.Client) (T, error)) (T, *conn, error) {
	return begin(ctx, s, false, f)
}

// open is [start] for a call that opens a read or a subscription: when it
// succeeds the conn is held (see [conn.hold]) until the caller releases it,
// after the read ends.
func open[T any](ctx context.Context, s *Store, f func(*esdb.Client) (T, error)) (T, *conn, error) {
	return begin(ctx, s, true, f)
}

func begin[T any](ctx context.Context, s *Store, held bool, f func(*esdb.Client) (T, error)) (T, *conn, error) {
	for {
		cn, err := s.current()
		if err != nil {
			var zero T
			return zero, nil, err
		}
		probe, err := cn.enter(ctx)
		if errors.Is(err, errClientReplaced) {
			// Nothing was sent: go on with the new client.
			if next, cerr := s.current(); cerr == nil && next != cn {
				continue
			}
		}
		if err != nil && ctx.Err() != nil && len(cn.probe) > 0 {
			// The probe took longer than this caller could wait: it may
			// be stuck in a client that is gone, so the next call gets a
			// new one.
			s.renew(cn)
		}
		if err != nil {
			var zero T
			return zero, cn, err
		}
		if held {
			_ = cn.hold() // cannot fail: the call is inside
		}
		v, err := run(ctx, s, cn, probe, f)
		if held && err != nil {
			cn.release()
		}
		return v, cn, err
	}
}
