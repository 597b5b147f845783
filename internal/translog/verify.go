package translog

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/go-json-experiment/json"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/projections/billing"
	"github.com/licenseledger/ledger/projections/seats"
)

// ErrBundle is wrapped by every error of a bundle that does not verify.
var ErrBundle = errors.New("audit bundle does not verify")

// BundleError says where a bundle fails to verify.
type BundleError struct {
	// Line is the line of the bundle, from 1; Leaf and Stream/Revision
	// name the record on it, when it is one.
	Line     int
	Leaf     int64
	Stream   string
	Revision uint64
	Reason   string
}

// Error describes the failure and where it is.
func (e *BundleError) Error() string {
	switch {
	case e.Stream != "":
		return fmt.Sprintf("line %d (leaf %d, %s revision %d): %s", e.Line, e.Leaf, e.Stream, e.Revision, e.Reason)
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return e.Reason
}

// Unwrap returns ErrBundle.
func (e *BundleError) Unwrap() error { return ErrBundle }

// StreamSummary is what verifying a bundle learnt of one stream.
type StreamSummary struct {
	Stream string `json:"stream"`
	// Events is the number of events, revisions 0 to Events-1.
	Events uint64 `json:"events"`
	// Head is the chain link of the last event.
	Head codec.Hash `json:"head"`
}

// Verified is the outcome of a bundle that verifies: what it proves and
// the read models replayed from it.
type Verified struct {
	Checkpoint Checkpoint      `json:"checkpoint"`
	Account    string          `json:"account"`
	Records    int             `json:"records"`
	Keys       int             `json:"keys"`
	Streams    []StreamSummary `json:"streams"`
	Seats      seats.Usage     `json:"seats"`
	Cycles     []billing.Cycle `json:"cycles"`
}

// VerifyBundle verifies an audit bundle read from r with the verifier key
// vkey, offline: the checkpoint's signature, every record's inclusion
// proof against it, that the records come in the tree's order, that each
// of the account's streams is whole from revision 0 (no revision missing,
// repeated or out of place) and that every event names the chain link of
// the one before it. It then replays the seats and billing read models
// from the bundle's events, as of now, and returns them. Users whose key
// the bundle does not carry read as erased, which changes no quantity.
//
// Any failure is a *BundleError (wrapping ErrBundle) naming the first
// line that fails.
//
// A record line's proof may give only the hashes below the path the
// record line before proved (see compactProof); each line's whole proof,
// rebuilt so, must hold.
//
// Lines are decoded, hashed up their paths and their events decoded on
// every core; what depends on the lines before (the node a proof leads
// to, order, revisions, links, the replay) is checked in order on one.
func VerifyBundle(ctx context.Context, r io.Reader, vkey string, now time.Time) (*Verified, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lr := &lineReader{r: bufio.NewReaderSize(r, 1<<20)}
	var bl BundleLine
	b, err := lr.next()
	if err != nil {
		return nil, err
	}
	if b == nil || json.Unmarshal(b, &bl) != nil || bl.Kind != KindCheckpoint {
		return nil, &BundleError{Line: 1, Reason: "the bundle does not start with a checkpoint"}
	}
	if bl.Format != BundleFormat && bl.Format != bundleFormat1 {
		return nil, &BundleError{Line: 1, Reason: fmt.Sprintf("format %q, want %q", bl.Format, BundleFormat)}
	}
	cp, err := OpenCheckpoint([]byte(bl.Checkpoint), vkey)
	if err != nil {
		return nil, &BundleError{Line: 1, Reason: err.Error()}
	}
	v := &Verified{Checkpoint: cp, Account: bl.Account}
	account := bl.Account
	vf := &verifier{cp: cp, account: account, own: map[string]eventstore.StreamID{
		eventstore.LedgerStream(account).String():   eventstore.LedgerStream(account),
		eventstore.ActivityStream(account).String(): eventstore.ActivityStream(account),
	}}

	// The data keys come first: the events are decoded with them.
	keys := &bundleKeys{keys: map[string][]byte{}}
	var first []byte
	for {
		b, err := lr.next()
		if err != nil {
			return nil, err
		}
		if b == nil {
			break
		}
		bl = BundleLine{}
		if err := json.Unmarshal(b, &bl); err != nil {
			return nil, &BundleError{Line: lr.n, Reason: "not a bundle line: " + err.Error()}
		}
		if bl.Kind != KindKey {
			first = append([]byte(nil), b...)
			break
		}
		keys.keys[pii.KeyID(account, bl.User)] = bl.Key
		v.Keys++
	}
	vf.codec = codec.New(pii.NewKeyring(keys, nil))

	// Batches of lines go to the workers and, in order, to this goroutine,
	// which hands them back to the reading goroutine once replayed: their
	// buffers are used again (the read models keep nothing of a record's
	// bytes, the codec copies what an event holds).
	type batch struct {
		start  int // the line number of the first line
		lines  [][]byte
		buf    []byte // holds the lines
		out    []checked
		arena  []byte      // the records' data, metadata and proofs
		hashes []tlog.Hash // the records' path hashes
		done   chan struct{}
	}
	procs := runtime.GOMAXPROCS(0)
	work := make(chan *batch, 2*procs)
	order := make(chan *batch, 2*procs)
	free := make(chan *batch, 4*procs+2)
	newBatch := func() *batch {
		select {
		case bt := <-free:
			bt.lines, bt.buf, bt.done = bt.lines[:0], bt.buf[:0], make(chan struct{})
			return bt
		default:
			return &batch{lines: make([][]byte, 0, 256), done: make(chan struct{})}
		}
	}
	var readErr error
	go func() {
		defer close(work)
		defer close(order)
		cur := newBatch()
		cur.start = lr.n
		if first != nil {
			cur.lines = append(cur.lines, first)
		}
		send := func() bool {
			select {
			case work <- cur:
			case <-ctx.Done():
				return false
			}
			select {
			case order <- cur:
			case <-ctx.Done():
				return false
			}
			return true
		}
		for {
			b, err := lr.next()
			if err != nil {
				readErr = err
				break
			}
			if b == nil {
				break
			}
			if len(cur.lines) == 0 {
				cur.start = lr.n
			}
			// The lines of a batch are copied into one buffer.
			if cap(cur.buf)-len(cur.buf) < len(b) {
				cur.buf = make([]byte, 0, max(256<<10, 2*cap(cur.buf), len(b)))
			}
			at := len(cur.buf)
			cur.buf = append(cur.buf, b...)
			cur.lines = append(cur.lines, cur.buf[at:len(cur.buf):len(cur.buf)])
			if len(cur.lines) == 256 {
				if !send() {
					return
				}
				cur = newBatch()
			}
		}
		if len(cur.lines) > 0 {
			send()
		}
	}()
	var wg sync.WaitGroup
	for range procs {
		wg.Go(func() {
			w := &lineChecker{verifier: vf}
			for bt := range work {
				bt.out = slices.Grow(bt.out[:0], len(bt.lines))[:len(bt.lines)]
				clear(bt.out)
				// The records' data and metadata, which the decoded
				// events keep, and their proofs are decoded into one
				// buffer per batch.
				size := 0
				for _, line := range bt.lines {
					size += len(line)
				}
				w.arena = slices.Grow(bt.arena[:0], size*3/4)
				w.hashes = slices.Grow(bt.hashes[:0], 4*len(bt.lines))
				for i, line := range bt.lines {
					w.check(ctx, bt.start+i, line, &bt.out[i])
				}
				bt.arena, bt.hashes = w.arena, w.hashes
				close(bt.done)
			}
		})
	}
	defer wg.Wait()
	defer cancel()

	st, bi := seats.New(), billing.New()
	type chainState struct {
		next uint64
		prev codec.Hash
	}
	chains := map[string]*chainState{}
	lastLeaf := int64(-1)
	paths := newPathState(cp.Size, cp.Hash)
	var opened time.Time
	ds := make([]codec.Decoded, 0, 256)
	for bt := range order {
		select {
		case <-bt.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		ds = ds[:0]
		for i := range bt.out {
			c := &bt.out[i]
			if c.err != nil {
				return nil, c.err
			}
			fail := func(format string, args ...any) error {
				return &BundleError{Line: bt.start + i, Leaf: c.leaf, Stream: c.stream, Revision: c.revision,
					Reason: fmt.Sprintf(format, args...)}
			}
			if c.leaf <= lastLeaf {
				return nil, fail("out of order: leaf %d does not follow leaf %d of the line before", c.leaf, lastLeaf)
			}
			lastLeaf = c.leaf
			v.Records++
			ch := chains[c.stream]
			if ch == nil {
				ch = &chainState{}
				chains[c.stream] = ch
			}
			switch {
			case c.unreadable:
			case c.revision > ch.next:
				return nil, fail("revision %d of %s is missing before this record (left out of the bundle, or moved after it)", ch.next, c.stream)
			case c.revision < ch.next:
				return nil, fail("out of order: revision %d comes after revision %d", c.revision, ch.next-1)
			}
			if !paths.link(c.leaf, c.path, c.proof) {
				return nil, fail("the inclusion proof of leaf %d does not lead to the checkpoint's root, nor to a node the record line before proved: the record, its proof or the line before was altered", c.leaf)
			}
			if c.unreadable {
				return nil, fail("the store could not read this record (position %d): the stream holds a record that is not an event of its chain", c.position)
			}
			if c.decodeErr != nil {
				return nil, fail("cannot replay the event: %v", c.decodeErr)
			}
			if c.d.Meta.PrevHash != ch.prev {
				return nil, fail("chain broken: the event names %s as the link before it, the events before it give %s", c.d.Meta.PrevHash, ch.prev)
			}
			ch.prev = c.link
			ch.next++
			if _, ok := c.d.Event.(ledger.AccountOpened); ok && opened.IsZero() {
				opened = c.d.Meta.Time
			}
			ds = append(ds, c.d)
		}
		if err := st.ApplyBatch(ds); err != nil {
			return nil, &BundleError{Line: bt.start, Reason: "replay: " + err.Error()}
		}
		if err := bi.ApplyBatch(ds); err != nil {
			return nil, &BundleError{Line: bt.start, Reason: "replay: " + err.Error()}
		}
		clear(ds)
		select {
		case free <- bt:
		default:
		}
	}
	if readErr != nil {
		return nil, readErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if chains[eventstore.LedgerStream(account).String()] == nil {
		return nil, &BundleError{Reason: fmt.Sprintf("the bundle holds no event of account %q's ledger stream", account)}
	}
	for _, name := range []string{eventstore.LedgerStream(account).String(), eventstore.ActivityStream(account).String()} {
		if c := chains[name]; c != nil {
			v.Streams = append(v.Streams, StreamSummary{Stream: name, Events: c.next, Head: c.prev})
		}
	}
	if v.Seats, err = st.Usage(account, now); err != nil {
		return nil, &BundleError{Reason: "replay: " + err.Error()}
	}
	for m := time.Date(opened.Year(), opened.Month(), 1, 0, 0, 0, 0, time.UTC); !m.After(now); m = m.AddDate(0, 1, 0) {
		c, err := bi.Cycle(account, m.Format("2006-01"), now)
		if errors.Is(err, billing.ErrNotStarted) {
			continue
		}
		if err != nil {
			return nil, &BundleError{Reason: "replay billing: " + err.Error()}
		}
		v.Cycles = append(v.Cycles, c)
	}
	return v, nil
}

// lineReader reads a bundle's lines and counts them.
type lineReader struct {
	r *bufio.Reader
	n int
}

// next returns the next line, valid until the next call; nil at the end.
func (lr *lineReader) next() ([]byte, error) {
	b, err := lr.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		// A line longer than the buffer: read it whole.
		rest, err2 := lr.r.ReadBytes('\n')
		b = append(append([]byte(nil), b...), rest...)
		err = err2
	}
	if len(b) == 0 && errors.Is(err, io.EOF) {
		return nil, nil
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read bundle: %w", err)
	}
	lr.n++
	return b, nil
}

// verifier checks what each record line proves on its own.
type verifier struct {
	cp      Checkpoint
	account string
	own     map[string]eventstore.StreamID
	codec   *codec.Codec
}

// checked is a record line checked on its own: the error of the line, or
// what the checks in order need.
type checked struct {
	err        error
	leaf       int64
	stream     string
	revision   uint64
	position   eventstore.Position
	unreadable bool
	// path holds the hashes of the leaf's path that its proof's hashes
	// (proof) lead to, from the leaf up: whether they lead to a node of
	// the tree depends on the line before.
	path  []tlog.Hash
	proof []byte
	// d is the decoded event, or decodeErr why it does not decode (told
	// once the proof holds: a record altered fails its proof first).
	d         codec.Decoded
	decodeErr error
	// link is the chain link of this event, computed from the link its
	// metadata names (which the check in order compares with the link of
	// the event before).
	link codec.Hash
}

// lineChecker checks record lines on one goroutine.
type lineChecker struct {
	*verifier
	parser lineParser
	arena  []byte      // the data, metadata and proofs of the batch's records
	hashes []tlog.Hash // the path hashes of the batch's records
	proof  []byte
	leaf   []byte
}

func (w *lineChecker) check(ctx context.Context, line int, b []byte, c *checked) {
	var bl BundleLine
	var err error
	if w.arena, w.proof, err = w.parser.parse(b, &bl, w.arena, w.proof); err != nil {
		c.err = &BundleError{Line: line, Reason: "not a bundle line: " + err.Error()}
		return
	}
	fail := func(format string, args ...any) {
		c.err = &BundleError{Line: line, Leaf: bl.Leaf, Stream: bl.Stream, Revision: bl.Revision, Reason: fmt.Sprintf(format, args...)}
	}
	switch bl.Kind {
	case KindRecord:
	case KindKey:
		fail("a data key after the records")
		return
	default:
		fail("unknown line kind %q", bl.Kind)
		return
	}
	stream, ok := w.own[bl.Stream]
	if !ok {
		fail("a record of stream %q, not of account %q", bl.Stream, w.account)
		return
	}
	if bl.Leaf < 0 || bl.Leaf >= w.cp.Size {
		fail("leaf %d is outside the checkpoint's tree of %d leaves", bl.Leaf, w.cp.Size)
		return
	}
	if len(bl.Proof)%tlog.HashSize != 0 {
		fail("the inclusion proof of leaf %d is %d bytes, not a whole number of hashes", bl.Leaf, len(bl.Proof))
		return
	}
	// The leaf hash, SHA-256(0x00 || leaf data), as tlog.RecordHash.
	w.leaf = bl.leafData(append(w.leaf[:0], 0))
	start := len(w.hashes)
	if w.hashes, ok = climb(w.cp.Size, bl.Leaf, sha256.Sum256(w.leaf), bl.Proof, w.hashes); !ok {
		fail("the inclusion proof of leaf %d has %d hashes, more than the leaf's path in the checkpoint's tree", bl.Leaf, len(bl.Proof)/tlog.HashSize)
		return
	}
	c.path = w.hashes[start:len(w.hashes):len(w.hashes)]
	at := len(w.arena)
	w.arena = append(w.arena, bl.Proof...)
	c.proof = w.arena[at:len(w.arena):len(w.arena)]
	c.leaf, c.stream, c.revision, c.position, c.unreadable = bl.Leaf, bl.Stream, bl.Revision, bl.Position, bl.Unreadable
	if bl.Unreadable {
		return
	}
	rec := eventstore.Record{ID: bl.ID, Stream: stream, Type: bl.Type, Data: bl.Data,
		Metadata: bl.Metadata, Revision: bl.Revision, Position: bl.Position}
	d, err := w.codec.Decode(ctx, rec)
	if err != nil {
		c.decodeErr = err
		return
	}
	c.d = d
	c.link = codec.RecordHash(d.Meta.PrevHash, rec)
}

// bundleKeys is the key store of a bundle's data keys: a user whose key
// the bundle does not carry reads as erased.
type bundleKeys struct{ keys map[string][]byte }

func (k *bundleKeys) Put(context.Context, string, []byte) error { return errors.New("read-only") }
func (k *bundleKeys) Destroy(context.Context, string) error     { return nil }
func (k *bundleKeys) Get(_ context.Context, id string) ([]byte, error) {
	if b, ok := k.keys[id]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("key %s not in the bundle: %w", id, pii.ErrErased)
}
