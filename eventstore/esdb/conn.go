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
// The store therefore makes every call that may wait so through [call] or
// [start]: the call runs in a goroutine of its own, and the store's method
// returns when its context ends. A [conn] keeps such left-behind goroutines
// few: while its client is not known to be connected, one call at a time
// goes in (the probe) and the others wait for it in the store, where they
// see their context; a probe that is left behind gets the client replaced.
// A left-behind call on a client whose loop is still running ends once the
// loop answers it; only the calls waiting in a client when its discovery
// fails stay blocked, and those are the few that were in flight when its
// connection broke plus at most one probe.
//
// A replaced client is closed once no call is inside it: closing it earlier
// would make a call still sending on its channel panic.

// errClientReplaced ends a call that would go into a client the store has
// replaced since; nothing was sent.
var errClientReplaced = errors.New("esdb: the client was replaced after it lost its connection")

// conn is one client of the store and what the store knows about it.
type conn struct {
	c     *esdb.Client
	probe chan struct{} // holds a token while a probe is inside c
	gone  chan struct{} // closed when c is replaced

	mu       sync.Mutex
	ready    bool // the last call through c connected
	inflight int  // calls inside c
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
	cn.inflight--
	closeNow := cn.retired && cn.inflight == 0 && !cn.closed
	if closeNow {
		cn.closed = true
	}
	cn.mu.Unlock()
	if probe {
		<-cn.probe
	}
	if closeNow {
		_ = cn.c.Close()
	}
}

// abandon records that a call left cn behind when its context ended: cn
// may be waiting for a connection that never comes.
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

// call runs f, one call into cn's client, in a goroutine of its own once cn
// admits it, and returns what f returns, or ctx's cause as soon as ctx ends.
func call[T any](ctx context.Context, s *Store, cn *conn, f func(*esdb.Client) (T, error)) (T, error) {
	probe, err := cn.enter(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	done := make(chan outcome[T], 1)
	go func() {
		v, err := f(cn.c)
		cn.leave(probe, err)
		done <- outcome[T]{v, err}
	}()
	select {
	case o := <-done:
		return o.v, o.err
	case <-ctx.Done():
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
	return zero, context.Cause(ctx)
}

// start is [call] on the store's current client, following replacements
// while the call waits to go in. It also returns the conn it used.
func start[T any](ctx context.Context, s *Store, f func(*esdb.Client) (T, error)) (T, *conn, error) {
	for {
		cn, err := s.current()
		if err != nil {
			var zero T
			return zero, nil, err
		}
		v, err := call(ctx, s, cn, f)
		if errors.Is(err, errClientReplaced) {
			if next, cerr := s.current(); cerr == nil && next != cn {
				continue
			}
		}
		return v, cn, err
	}
}
