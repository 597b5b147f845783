package translog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
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
// Any failure is a *BundleError (wrapping ErrBundle) naming the line.
func VerifyBundle(ctx context.Context, r io.Reader, vkey string, now time.Time) (*Verified, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	line := 0
	var bl BundleLine
	readLine := func() (bool, error) {
		b, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: read it whole.
			rest, err2 := br.ReadBytes('\n')
			b = append(append([]byte(nil), b...), rest...)
			err = err2
		}
		if len(b) == 0 && errors.Is(err, io.EOF) {
			return false, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("read bundle: %w", err)
		}
		line++
		bl = BundleLine{}
		if err := json.Unmarshal(b, &bl); err != nil {
			return false, &BundleError{Line: line, Reason: "not a bundle line: " + err.Error()}
		}
		return true, nil
	}

	ok, err := readLine()
	if err != nil {
		return nil, err
	}
	if !ok || bl.Kind != KindCheckpoint {
		return nil, &BundleError{Line: 1, Reason: "the bundle does not start with a checkpoint"}
	}
	if bl.Format != BundleFormat {
		return nil, &BundleError{Line: 1, Reason: fmt.Sprintf("format %q, want %q", bl.Format, BundleFormat)}
	}
	cp, err := OpenCheckpoint([]byte(bl.Checkpoint), vkey)
	if err != nil {
		return nil, &BundleError{Line: 1, Reason: err.Error()}
	}
	v := &Verified{Checkpoint: cp, Account: bl.Account}
	account := bl.Account
	own := map[string]eventstore.StreamID{
		eventstore.LedgerStream(account).String():   eventstore.LedgerStream(account),
		eventstore.ActivityStream(account).String(): eventstore.ActivityStream(account),
	}

	keys := &bundleKeys{keys: map[string][]byte{}}
	cod := codec.New(pii.NewKeyring(keys, nil))
	st, bi := seats.New(), billing.New()

	proofs := newProofChecker(cp)
	defer proofs.stop()

	type chainState struct {
		next uint64
		prev codec.Hash
	}
	chains := map[string]*chainState{}
	lastLeaf := int64(-1)
	var opened time.Time
	var leafBuf []byte
	batch := make([]codec.Decoded, 0, 256)
	flush := func() error {
		if err := st.ApplyBatch(batch); err != nil {
			return err
		}
		if err := bi.ApplyBatch(batch); err != nil {
			return err
		}
		batch = batch[:0]
		return nil
	}
	for {
		ok, err := readLine()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		switch bl.Kind {
		case KindKey:
			if v.Records > 0 {
				return nil, &BundleError{Line: line, Reason: "a data key after the records"}
			}
			keys.keys[pii.KeyID(account, bl.User)] = bl.Key
			v.Keys++
			continue
		case KindRecord:
		default:
			return nil, &BundleError{Line: line, Reason: fmt.Sprintf("unknown line kind %q", bl.Kind)}
		}
		where := &BundleError{Line: line, Leaf: bl.Leaf, Stream: bl.Stream, Revision: bl.Revision}
		fail := func(format string, args ...any) error {
			where.Reason = fmt.Sprintf(format, args...)
			// A record altered earlier shows first as a broken link or
			// event here: name the earliest line that fails.
			if err := proofs.wait(); err != nil {
				return err
			}
			return where
		}
		if _, ok := own[bl.Stream]; !ok {
			return nil, fail("a record of stream %q, not of account %q", bl.Stream, account)
		}
		if bl.Leaf <= lastLeaf {
			return nil, fail("out of order: leaf %d does not follow leaf %d of the line before", bl.Leaf, lastLeaf)
		}
		if bl.Leaf >= cp.Size {
			return nil, fail("leaf %d is outside the checkpoint's tree of %d leaves", bl.Leaf, cp.Size)
		}
		lastLeaf = bl.Leaf
		leafBuf = bl.leafData(leafBuf[:0])
		proofs.check(line, bl.Leaf, tlog.RecordHash(leafBuf), bl.Proof, *where)
		v.Records++
		if bl.Unreadable {
			return nil, fail("the store could not read this record (position %d): the stream holds a record that is not an event of its chain", bl.Position)
		}
		c := chains[bl.Stream]
		if c == nil {
			c = &chainState{}
			chains[bl.Stream] = c
		}
		switch {
		case bl.Revision > c.next:
			return nil, fail("revision %d of %s is missing before this record (left out of the bundle, or moved after it)", c.next, bl.Stream)
		case bl.Revision < c.next:
			return nil, fail("out of order: revision %d comes after revision %d", bl.Revision, c.next-1)
		}
		rec := eventstore.Record{ID: bl.ID, Stream: own[bl.Stream], Type: bl.Type, Data: bl.Data,
			Metadata: bl.Metadata, Revision: bl.Revision, Position: bl.Position}
		meta, err := codec.DecodeMetadata(rec)
		if err != nil {
			return nil, fail("metadata: %v", err)
		}
		if meta.PrevHash != c.prev {
			return nil, fail("chain broken: the event names %s as the link before it, the events before it give %s", meta.PrevHash, c.prev)
		}
		c.prev = codec.RecordHash(c.prev, rec)
		c.next++
		d, err := cod.Decode(ctx, rec)
		if err != nil {
			return nil, fail("cannot replay the event: %v", err)
		}
		if _, ok := d.Event.(ledger.AccountOpened); ok && opened.IsZero() {
			opened = d.Meta.Time
		}
		batch = append(batch, d)
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return nil, fail("replay: %v", err)
			}
		}
	}
	if err := proofs.wait(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, &BundleError{Reason: "replay: " + err.Error()}
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

// proofChecker checks inclusion proofs on every core while the records
// are read: the proofs are most of a bundle's hashing.
type proofChecker struct {
	cp    Checkpoint
	jobs  chan []proofJob
	batch []proofJob
	wg    sync.WaitGroup
	mu    sync.Mutex
	first *BundleError
}

type proofJob struct {
	leaf  int64
	hash  tlog.Hash
	proof [][]byte
	where BundleError
}

func newProofChecker(cp Checkpoint) *proofChecker {
	jobs := make(chan []proofJob, 8)
	p := &proofChecker{cp: cp, jobs: jobs}
	for range runtime.GOMAXPROCS(0) {
		p.wg.Go(func() {
			rp := make(tlog.RecordProof, 0, 64)
			for jobs := range jobs {
				for _, j := range jobs {
					rp = rp[:0]
					bad := false
					for _, h := range j.proof {
						if len(h) != tlog.HashSize {
							bad = true
							break
						}
						rp = append(rp, tlog.Hash(h))
					}
					if bad || tlog.CheckRecord(rp, p.cp.Size, p.cp.Hash, j.leaf, j.hash) != nil {
						e := j.where
						e.Reason = fmt.Sprintf("the inclusion proof of leaf %d does not lead to the checkpoint's root: the record or its proof was altered", j.leaf)
						p.fail(&e)
					}
				}
			}
		})
	}
	return p
}

func (p *proofChecker) fail(e *BundleError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.first == nil || e.Line < p.first.Line {
		p.first = e
	}
}

func (p *proofChecker) check(_ int, leaf int64, h tlog.Hash, proof [][]byte, where BundleError) {
	p.batch = append(p.batch, proofJob{leaf: leaf, hash: h, proof: proof, where: where})
	if len(p.batch) == 256 {
		p.jobs <- p.batch
		p.batch = make([]proofJob, 0, 256)
	}
}

func (p *proofChecker) stop() {
	if p.jobs != nil {
		close(p.jobs)
		p.jobs = nil
		p.wg.Wait()
	}
}

// wait checks the proofs still queued and returns the first failure.
func (p *proofChecker) wait() error {
	if len(p.batch) > 0 && p.jobs != nil {
		p.jobs <- p.batch
		p.batch = nil
	}
	p.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.first != nil {
		return p.first
	}
	return nil
}
