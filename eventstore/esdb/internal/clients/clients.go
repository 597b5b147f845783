// Package clients makes calls into an EventStore-Client-Go/v4 client that
// return when their context ends, and replaces a client that gave up.
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
// The users of a [Pool] therefore make every call that may wait so through
// [Start], [Open], [Recv] or [ReadAhead]: the call runs in a goroutine of its
// own, and the user's method returns when its context ends, leaving the
// call behind.
// A [Conn] keeps left-behind calls few: while its client is not known to be
// connected, one call at a time goes in (the probe) and the others wait for
// it in the pool, where they see their context. A probe that is left
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
package clients

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
)

// Pool hands out the client to use and replaces it when it gives up. It is
// safe for concurrent use.
type Pool struct {
	conf      *esdb.Configuration // nil: the client is the caller's, kept
	closedErr error

	mu     sync.Mutex
	cur    *Conn
	closed bool
}

// New returns a Pool of clients of conf. Calls after Close fail with
// closedErr.
func New(conf esdb.Configuration, closedErr error) (*Pool, error) {
	p := &Pool{conf: &conf, closedErr: closedErr}
	c, err := p.newClient()
	if err != nil {
		return nil, err
	}
	p.cur = newConn(c)
	return p, nil
}

// Borrow returns a Pool of c alone, which the caller keeps and closes: it
// is neither replaced nor closed.
func Borrow(c *esdb.Client, closedErr error) *Pool {
	cn := newConn(c)
	cn.keep = true
	return &Pool{closedErr: closedErr, cur: cn}
}

func (p *Pool) newClient() (*esdb.Client, error) {
	conf := *p.conf
	c, err := esdb.NewClient(&conf)
	if err != nil {
		return nil, fmt.Errorf("esdb: new client: %w", err)
	}
	return c, nil
}

// Current returns the client to use, or the closed error.
func (p *Pool) Current() (*Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, p.closedErr
	}
	return p.cur, nil
}

// Renew replaces a client that gave up. The client closes itself for good
// when node discovery fails (10 attempts, 100 ms apart by default), for
// instance while a node restarts; a new one is needed then. The pool also
// replaces a client whose probe is left waiting for a connection (see
// [run]). The old client is closed once no call is inside it.
func (p *Pool) Renew(dead *Conn) {
	p.mu.Lock()
	if p.closed || p.cur != dead || p.conf == nil {
		p.mu.Unlock()
		return
	}
	c, err := p.newClient()
	if err != nil {
		p.mu.Unlock()
		return // the configuration was valid once; keep the old client
	}
	p.cur = newConn(c)
	p.mu.Unlock()
	dead.retire()
}

// Close makes later calls fail with the closed error, and closes the client
// once no call is inside it, unless it is borrowed. A call still inside
// ends by its own context.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	cn := p.cur
	p.mu.Unlock()
	cn.retire()
}

// Failed replaces the client of cn when err says it gave up.
func (p *Pool) Failed(cn *Conn, err error) {
	var e *esdb.Error
	if cn != nil && errors.As(err, &e) && e.Code() == esdb.ErrorCodeConnectionClosed {
		p.Renew(cn)
	}
}

// ErrReplaced ends a call that would go into a client the pool has
// replaced since, or a probe still waiting in it.
var ErrReplaced = errors.New("esdb: the client was replaced after it lost its connection")

// Conn is one client of a pool and what the pool knows about it.
type Conn struct {
	c     *esdb.Client
	probe chan struct{} // holds a token while a probe is inside c
	gone  chan struct{} // closed when c is replaced

	mu       sync.Mutex
	ready    bool // the last call through c connected
	inflight int  // calls inside c and reads open through it
	retired  bool // c was replaced; close it once inflight is 0
	closed   bool
	keep     bool // borrowed: never closed here
}

func newConn(c *esdb.Client) *Conn {
	return &Conn{c: c, probe: make(chan struct{}, 1), gone: make(chan struct{})}
}

// enter admits a call into cn: at once while cn is ready, else as the only
// probe. It returns whether the call is the probe, [ErrReplaced] once
// cn is replaced, or ctx's cause.
func (cn *Conn) enter(ctx context.Context) (bool, error) {
	for {
		cn.mu.Lock()
		switch {
		case cn.retired:
			cn.mu.Unlock()
			return false, ErrReplaced
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
			return false, ErrReplaced
		case <-ctx.Done():
			return false, context.Cause(ctx)
		}
	}
}

// hold admits a call on a read or subscription already open through cn,
// or keeps cn's client open while such a read lasts, whether or not cn is
// ready or replaced: what it sends on the client's channel is at most a
// reconnect request. It fails with [ErrReplaced] once the client is
// closed.
func (cn *Conn) hold() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.closed {
		return ErrReplaced
	}
	cn.inflight++
	return nil
}

// leave records the end of a call into cn that returned err.
func (cn *Conn) leave(probe bool, err error) {
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
	cn.Release()
}

// Release ends a call or a hold, and closes a replaced client after the
// last.
func (cn *Conn) Release() {
	cn.mu.Lock()
	cn.inflight--
	closeNow := cn.retired && cn.inflight == 0 && !cn.closed && !cn.keep
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
func (cn *Conn) abandon() {
	cn.mu.Lock()
	cn.ready = false
	cn.mu.Unlock()
}

// retire marks cn replaced and closes its client once no call is inside.
func (cn *Conn) retire() {
	cn.mu.Lock()
	if cn.retired {
		cn.mu.Unlock()
		return
	}
	cn.retired = true
	close(cn.gone)
	closeNow := cn.inflight == 0 && !cn.closed && !cn.keep
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
	if errors.Is(err, ErrReplaced) {
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

// Outcome is what a call into the client returned.
type Outcome[T any] struct {
	V   T
	Err error
}

// Recv returns the next event of rs, a read open through cn, as [run] does.
func Recv(ctx context.Context, p *Pool, cn *Conn, rs *esdb.ReadStream) (*esdb.ResolvedEvent, error) {
	if err := cn.hold(); err != nil {
		return nil, err
	}
	return run(ctx, p, cn, false, func(*esdb.Client) (*esdb.ResolvedEvent, error) { return rs.Recv() })
}

// readAheadEvents is how many events of a read [ReadAhead] receives before
// the reader takes them.
const readAheadEvents = 256

// ReadAhead receives the events of rs, a read opened with [Open] through cn,
// in a goroutine of its own, which closes rs and releases cn when it ends:
// after an error (io.EOF at the end), or once ctx ends. Recv asks the client
// to reconnect when the node is unavailable, which may block like any call
// into it; the reader selects on the channel and on ctx.
func ReadAhead(ctx context.Context, cn *Conn, rs *esdb.ReadStream) <-chan Outcome[*esdb.ResolvedEvent] {
	out := make(chan Outcome[*esdb.ResolvedEvent], readAheadEvents)
	go func() {
		defer cn.Release()
		defer rs.Close()
		for {
			ev, err := rs.Recv()
			if lostConnection(err) {
				cn.abandon()
			}
			select {
			case out <- Outcome[*esdb.ResolvedEvent]{V: ev, Err: err}:
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
// that never comes. A probe also returns, with [ErrReplaced], when
// cn is replaced meanwhile (a caller that waited for it gave up, or the
// pool closed).
func run[T any](ctx context.Context, p *Pool, cn *Conn, probe bool, f func(*esdb.Client) (T, error)) (T, error) {
	done := make(chan Outcome[T], 1)
	go func() {
		v, err := f(cn.c)
		cn.leave(probe, err)
		done <- Outcome[T]{V: v, Err: err}
	}()
	var gone <-chan struct{} // nil blocks: a call that is not the probe has a connection
	if probe {
		gone = cn.gone
	}
	var err error
	select {
	case o := <-done:
		return o.V, o.Err
	case <-ctx.Done():
		err = context.Cause(ctx)
	case <-gone:
		err = ErrReplaced
	}
	select {
	case o := <-done: // it ended too
		return o.V, o.Err
	default:
	}
	cn.abandon()
	if probe {
		p.Renew(cn)
	}
	var zero T
	return zero, err
}

// Start runs f, one call into p's current client, with [run] once
// the client admits it (see [Conn.enter]), following replacements while the
// call waits to go in. It also returns the conn it used.
func Start[T any](ctx context.Context, p *Pool, f func(*esdb.Client) (T, error)) (T, *Conn, error) {
	return begin(ctx, p, false, f)
}

// Open is [Start] for a call that opens a read or a subscription: when it
// succeeds the conn is held (see [Conn.hold]) until the caller releases it,
// after the read ends.
func Open[T any](ctx context.Context, p *Pool, f func(*esdb.Client) (T, error)) (T, *Conn, error) {
	return begin(ctx, p, true, f)
}

func begin[T any](ctx context.Context, p *Pool, held bool, f func(*esdb.Client) (T, error)) (T, *Conn, error) {
	for {
		cn, err := p.Current()
		if err != nil {
			var zero T
			return zero, nil, err
		}
		probe, err := cn.enter(ctx)
		if errors.Is(err, ErrReplaced) {
			// Nothing was sent: go on with the new client.
			if next, cerr := p.Current(); cerr == nil && next != cn {
				continue
			}
		}
		if err != nil && ctx.Err() != nil && len(cn.probe) > 0 {
			// The probe took longer than this caller could wait: it may
			// be stuck in a client that is gone, so the next call gets a
			// new one.
			p.Renew(cn)
		}
		if err != nil {
			var zero T
			return zero, cn, err
		}
		if held {
			_ = cn.hold() // cannot fail: the call is inside
		}
		v, err := run(ctx, p, cn, probe, f)
		if held && err != nil {
			cn.Release()
		}
		return v, cn, err
	}
}
