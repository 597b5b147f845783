package translog

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/tlog"
)

// ErrInconsistent is wrapped by the errors of a log whose new checkpoint
// does not extend the one verified before: its history was rewritten,
// truncated or forked.
var ErrInconsistent = errors.New("translog: the log's history is not an extension of the one verified before")

// Source is a log as a watcher sees it: its latest signed checkpoint and
// consistency proofs between two sizes.
type Source interface {
	Checkpoint(ctx context.Context) ([]byte, error)
	Consistency(ctx context.Context, old, size int64) (tlog.TreeProof, error)
}

// WatchResult is what one run of a watcher found.
type WatchResult struct {
	// Old is the checkpoint verified before, nil on the first run.
	Old *Checkpoint
	New Checkpoint
}

// Watch fetches the log's checkpoint, verifies its signature with vkey
// and checks that it extends the checkpoint kept in the file state (from
// an earlier run): a smaller tree, another root for the same size, or a
// consistency proof that does not hold is ErrInconsistent (wrapped). The
// new checkpoint replaces the kept one only when it holds; on the first
// run, with no file yet, it is kept as it is.
func Watch(ctx context.Context, src Source, vkey, state string) (WatchResult, error) {
	signed, err := src.Checkpoint(ctx)
	if err != nil {
		return WatchResult{}, fmt.Errorf("fetch checkpoint: %w", err)
	}
	cur, err := OpenCheckpoint(signed, vkey)
	if err != nil {
		return WatchResult{}, fmt.Errorf("fetched checkpoint: %w", err)
	}
	res := WatchResult{New: cur}
	kept, err := os.ReadFile(state)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return res, writeFileSync(state, signed, 0o644)
	case err != nil:
		return res, fmt.Errorf("kept checkpoint: %w", err)
	}
	old, err := OpenCheckpoint(kept, vkey)
	if err != nil {
		return res, fmt.Errorf("kept checkpoint %s: %w", state, err)
	}
	res.Old = &old
	switch {
	case cur.Size < old.Size:
		return res, fmt.Errorf("the log now holds %d records, fewer than the %d of the checkpoint verified before: its history was truncated or rewritten: %w",
			cur.Size, old.Size, ErrInconsistent)
	case cur.Size == old.Size:
		if cur.Hash != old.Hash {
			return res, fmt.Errorf("the log's tree of %d records has root %s, the checkpoint verified before %s: its history was rewritten: %w",
				cur.Size, cur.Hash, old.Hash, ErrInconsistent)
		}
		return res, nil
	}
	proof, err := src.Consistency(ctx, old.Size, cur.Size)
	if err != nil {
		return res, fmt.Errorf("fetch consistency proof %d..%d: %w", old.Size, cur.Size, err)
	}
	if err := tlog.CheckTree(proof, cur.Size, cur.Hash, old.Size, old.Hash); err != nil {
		return res, fmt.Errorf("the log's tree of %d records does not extend the tree of %d records verified before (%v): its history was rewritten: %w",
			cur.Size, old.Size, err, ErrInconsistent)
	}
	return res, writeFileSync(state, signed, 0o644)
}
