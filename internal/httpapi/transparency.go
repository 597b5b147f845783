package httpapi

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"

	"github.com/go-json-experiment/json"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/internal/translog"
)

// TransparencyLog is the Merkle tree over the stored records with its
// signed checkpoints; *translog.Log is one.
type TransparencyLog interface {
	// Ready reports whether the tree has caught up with the records
	// stored when the service started.
	Ready() bool
	// Err returns why the log stopped following the store, nil while it
	// follows it.
	Err() error
	// Sign returns a checkpoint of the tree as it is now, signing one if
	// the tree grew since the last.
	Sign(ctx context.Context) (*translog.Signed, error)
	VerifierKey() string
	// InclusionProof and ConsistencyProof return translog.ErrProof
	// (wrapped) for sizes or indexes outside the tree.
	InclusionProof(index, size int64, r tlog.HashReader) (tlog.RecordProof, error)
	ConsistencyProof(old, size int64) (tlog.TreeProof, error)
	// Wait returns once the tree holds the record at position p.
	Wait(ctx context.Context, p eventstore.Position) error
	Export(ctx context.Context, h translog.StreamReader, account string, cp *translog.Signed, emit func(*translog.BundleLine) error) error
}

// KeyReader reads data keys; pii.KeyStore is one.
type KeyReader interface {
	Get(ctx context.Context, id string) ([]byte, error)
}

// Proof is the answer of the proof endpoints: the hashes, base64.
type Proof struct {
	Proof []tlog.Hash `json:"proof"`
}

// ProblemLogUnavailable is the slug of the transparency log's endpoints
// on a service that keeps no log (503).
const ProblemLogUnavailable = "log-unavailable"

// logRoutes registers the transparency log's endpoints and the audit
// bundle export.
func (s *server) logRoutes() {
	s.read("GET /v1/log/checkpoint", auth.Read, s.logCheckpoint)
	s.read("GET /v1/log/key", auth.Read, s.logKey)
	s.read("GET /v1/log/consistency", auth.ReadLog, s.logConsistency)
	s.read("GET /v1/log/inclusion", auth.ReadLog, s.logInclusion)
	s.raw("GET /v1/accounts/{account}/export", auth.ReadHistory, s.exportBundle)
}

func (s *server) logReady() error {
	if s.cfg.Log == nil {
		return newProblem(ProblemLogUnavailable, http.StatusServiceUnavailable, "this service keeps no transparency log")
	}
	if err := s.cfg.Log.Err(); err != nil {
		return newProblem(ProblemLogUnavailable, http.StatusServiceUnavailable,
			"the transparency log stopped following the ledger and is no longer extended ("+err.Error()+"); the ledger goes on: an operator must look into it")
	}
	if !s.cfg.Log.Ready() {
		return newProblem(ProblemNotReady, http.StatusServiceUnavailable,
			"the service is starting and its transparency log is catching up with the stored records: retry shortly")
	}
	return nil
}

func textResponse(body []byte) *response {
	resp := &response{status: http.StatusOK, header: http.Header{}, body: body}
	resp.header.Set("Content-Type", "text/plain; charset=utf-8")
	return resp
}

func (s *server) logCheckpoint(ctx context.Context, _ *http.Request, _ auth.Principal) (*response, error) {
	if err := s.logReady(); err != nil {
		return nil, err
	}
	cp, err := s.cfg.Log.Sign(ctx)
	if err != nil {
		return nil, err
	}
	return textResponse(cp.Note), nil
}

func (s *server) logKey(context.Context, *http.Request, auth.Principal) (*response, error) {
	if s.cfg.Log == nil {
		return nil, s.logReady()
	}
	return textResponse([]byte(s.cfg.Log.VerifierKey() + "\n")), nil
}

// queryInt64 reads a required non-negative integer parameter.
func queryInt64(q url.Values, name string) (int64, error) {
	v := q.Get(name)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest("%s must be a non-negative integer, got %q", name, v)
	}
	return n, nil
}

func proofProblem(err error) error {
	if errors.Is(err, translog.ErrProof) {
		return badRequest("%s", err.Error())
	}
	return err
}

func (s *server) logConsistency(_ context.Context, r *http.Request, _ auth.Principal) (*response, error) {
	if err := s.logReady(); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	old, err := queryInt64(q, "old")
	if err != nil {
		return nil, err
	}
	size, err := queryInt64(q, "new")
	if err != nil {
		return nil, err
	}
	p, err := s.cfg.Log.ConsistencyProof(old, size)
	if err != nil {
		return nil, proofProblem(err)
	}
	return jsonResponse(http.StatusOK, Proof{Proof: append([]tlog.Hash{}, p...)}), nil
}

func (s *server) logInclusion(_ context.Context, r *http.Request, _ auth.Principal) (*response, error) {
	if err := s.logReady(); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	index, err := queryInt64(q, "index")
	if err != nil {
		return nil, err
	}
	size, err := queryInt64(q, "size")
	if err != nil {
		return nil, err
	}
	p, err := s.cfg.Log.InclusionProof(index, size, nil)
	if err != nil {
		return nil, proofProblem(err)
	}
	return jsonResponse(http.StatusOK, Proof{Proof: append([]tlog.Hash{}, p...)}), nil
}

// exportBundle streams an account's audit bundle (JSON Lines): a
// checkpoint signed now, the data keys of its users not deleted when
// asked with keys=true, then its records with their leaf indexes and
// inclusion proofs. It first waits (up to WaitTimeout) for the tree to
// hold what the read models have applied, so that the bundle holds every
// event a read would show.
func (s *server) exportBundle(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	account := r.PathValue("account")
	if err := s.logReady(); err != nil {
		return err
	}
	var withKeys bool
	switch r.URL.Query().Get("keys") {
	case "", "false":
	case "true":
		withKeys = true
	default:
		return badRequest("keys must be true or false")
	}
	if withKeys && s.cfg.DataKeys == nil {
		return newProblem(ProblemForbidden, http.StatusForbidden, "this service gives out no data keys")
	}
	if _, err := s.exists(account); err != nil {
		return err
	}
	if s.cfg.Progress != nil {
		wctx, cancel := context.WithTimeout(ctx, s.cfg.WaitTimeout)
		err := s.cfg.Log.Wait(wctx, s.cfg.Progress.Position())
		cancel()
		if err != nil {
			return &problemError{slug: ProblemNotCaughtUp, status: http.StatusServiceUnavailable,
				detail: "the transparency log has not reached the read models' position yet: retry shortly", err: err}
		}
	}
	cp, err := s.cfg.Log.Sign(ctx)
	if err != nil {
		return err
	}
	var keys []translog.BundleLine
	if withKeys {
		if keys, err = s.bundleKeys(ctx, account); err != nil {
			return err
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/jsonl")
	h.Set("Content-Disposition", `attachment; filename="audit-bundle-`+account+`.jsonl"`)
	s.setPosition(h)
	w.WriteHeader(http.StatusOK)
	fw := &flushWriter{w: w}
	bw := bufio.NewWriterSize(fw, 64<<10)
	emit := func(l *translog.BundleLine) error {
		if err := json.MarshalWrite(bw, l); err != nil {
			return err
		}
		if err := bw.WriteByte('\n'); err != nil {
			return err
		}
		if n := fw.lines + 1; n == 1 || n%flushEvery == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		return fw.line()
	}
	first := translog.CheckpointLine(account, cp)
	if err := emit(&first); err != nil {
		s.abortExport(ctx, account, err)
	}
	for i := range keys {
		if err := emit(&keys[i]); err != nil {
			s.abortExport(ctx, account, err)
		}
	}
	if err := s.cfg.Log.Export(ctx, s.cfg.History, account, cp, emit); err != nil {
		s.abortExport(ctx, account, err)
	}
	if err := bw.Flush(); err != nil {
		s.abortExport(ctx, account, err)
	}
	return nil
}

// bundleKeys returns the key lines of the account's users not deleted.
func (s *server) bundleKeys(ctx context.Context, account string) ([]translog.BundleLine, error) {
	var out []translog.BundleLine
	after := 0
	for {
		users, next, more, err := s.cfg.Seats.UsersPage(account, "", after, MaxLimit)
		if err != nil {
			return nil, notFound(account, err)
		}
		for _, u := range users {
			if u.Status == ledger.StatusDeleted {
				continue
			}
			k, err := s.cfg.DataKeys.Get(ctx, pii.KeyID(account, u.ID))
			if errors.Is(err, pii.ErrErased) || errors.Is(err, pii.ErrNoKey) {
				continue
			}
			if err != nil {
				return nil, err
			}
			out = append(out, translog.BundleLine{Kind: translog.KindKey, User: u.ID, Key: k})
		}
		if !more {
			return out, nil
		}
		after = next
	}
}
