package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/esdb"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/internal/esdbtest"
	"github.com/licenseledger/ledger/internal/translog"
)

// The transparency log's scripts run with the server's events on the real
// JetStream store (an embedded NATS server) and on EventStoreDB (the
// in-process double of its gRPC API), whose global order the tree
// follows: testdata/script/translog.txtar (export, offline verify and its
// refusals, log watch), and the scripts of testdata/stores, which change
// the store's history behind the service.
func TestTransparencyLogOnEachStore(t *testing.T) {
	scripts, err := filepath.Glob(filepath.Join("testdata", "stores", "*.txtar"))
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no scripts in testdata/stores: %v", err)
	}
	scripts = append(scripts, filepath.Join("testdata", "script", "translog.txtar"))
	for name, open := range map[string]func(env *testscript.Env) (eventstore.Store, error){
		"jetstream": func(env *testscript.Env) (eventstore.Store, error) {
			s, err := jetstream.Embedded(context.Background(),
				jetstream.ServerConfig{DataDir: filepath.Join(env.WorkDir, "nats"), Port: -1}, jetstream.Config{})
			if err != nil {
				return nil, err
			}
			env.Values[historyKey{}] = jetstreamHistory(s)
			return s, nil
		},
		"esdb": func(env *testscript.Env) (eventstore.Store, error) {
			srv, err := esdbtest.Start()
			if err != nil {
				return nil, err
			}
			env.Defer(srv.Close)
			env.Values[historyKey{}] = history{truncate: func(n int) error { srv.Truncate(n); return nil },
				rewrite: func(edit func([]byte) []byte) error { srv.RewriteLast(edit); return nil }}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return esdb.Open(ctx, srv.ConnectionString(), nil)
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := scriptParams(open)
			p.Files = scripts
			testscript.Run(t, p)
		})
	}
}

// history changes a store's history behind the service's back, as whoever
// runs the store could.
type history struct {
	truncate func(n int) error                    // removes the last n records
	rewrite  func(edit func([]byte) []byte) error // replaces the last record's payload
}

type historyKey struct{}

// jetstreamHistory changes the history of the LEDGER stream: records
// removed from its end, and its last message replaced by a copy with the
// payload edited (deleted, and published again).
func jetstreamHistory(s *jetstream.Store) history {
	ctx := context.Background()
	stream := func() (natsjs.JetStream, natsjs.Stream, uint64, error) {
		js, err := natsjs.New(s.Conn())
		if err != nil {
			return nil, nil, 0, err
		}
		st, err := js.Stream(ctx, "LEDGER")
		if err != nil {
			return nil, nil, 0, err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return nil, nil, 0, err
		}
		return js, st, info.State.LastSeq, nil
	}
	return history{
		truncate: func(n int) error {
			_, st, last, err := stream()
			if err != nil {
				return err
			}
			// The last n messages the stream holds, skipping sequences
			// removed before.
			for seq := last; n > 0 && seq > 0; seq-- {
				if _, err := st.GetMsg(ctx, seq); errors.Is(err, natsjs.ErrMsgNotFound) {
					continue
				} else if err != nil {
					return err
				}
				if err := st.SecureDeleteMsg(ctx, seq); err != nil {
					return err
				}
				n--
			}
			return nil
		},
		rewrite: func(edit func([]byte) []byte) error {
			js, st, last, err := stream()
			if err != nil {
				return err
			}
			m, err := st.GetMsg(ctx, last)
			if err != nil {
				return err
			}
			if err := st.SecureDeleteMsg(ctx, last); err != nil {
				return err
			}
			msg := nats.NewMsg(m.Subject)
			msg.Data = edit(m.Data)
			for k, v := range m.Header {
				msg.Header[k] = v
			}
			msg.Header.Set(natsjs.MsgIDHeader, uuid.NewString())
			msg.Header.Del(natsjs.ExpectedLastSubjSeqHeader)
			msg.Header.Del(natsjs.ExpectedLastSubjSeqSubjHeader)
			msg.Header.Del(natsjs.ExpectedLastSeqHeader)
			msg.Header.Del(natsjs.ExpectedLastMsgIDHeader)
			_, err = js.PublishMsg(ctx, msg)
			return err
		},
	}
}

// maxRebuilds is how many times a script may rebuild the server's log.
const maxRebuilds = 4

// cmdHistory changes the store's history behind the service, then has the
// server serve a log rebuilt from what the store now holds, signed with
// the same key, as an operator hiding the change would:
//
//	history truncate N       remove the last N records
//	history rewrite OLD NEW  replace OLD by NEW in the last record's payload
func cmdHistory(ts *testscript.TestScript, neg bool, args []string) {
	h, ok := ts.Value(historyKey{}).(history)
	if neg || !ok || len(args) < 1 {
		ts.Fatalf("usage: history truncate N | history rewrite OLD NEW (on a store whose history can change)")
	}
	switch {
	case args[0] == "truncate" && len(args) == 2:
		n, err := strconv.Atoi(args[1])
		if err != nil || n < 1 {
			ts.Fatalf("history truncate: %q is not a count", args[1])
		}
		ts.Check(h.truncate(n))
	case args[0] == "rewrite" && len(args) == 3:
		ts.Check(h.rewrite(func(data []byte) []byte {
			out := bytes.Replace(data, []byte(args[1]), []byte(args[2]), 1)
			if bytes.Equal(out, data) {
				ts.Fatalf("history rewrite: no %q in the last record", args[1])
			}
			return out
		}))
	default:
		ts.Fatalf("unknown history change %q", args)
	}
	ts.Check(ts.Value(serverKey{}).(*server).rebuildLog())
}

// rebuildLog has the API serve a log built anew from the store, in a
// directory of its own, once it holds every record.
func (s *server) rebuildLog() error {
	if len(s.rebuilt) == maxRebuilds {
		return fmt.Errorf("more than %d rebuilds of the log", maxRebuilds)
	}
	l, err := translog.Open(translog.Config{Dir: filepath.Join(s.data, fmt.Sprintf("log-rebuilt-%d", len(s.rebuilt)+1)), Key: s.key})
	if err != nil {
		return err
	}
	s.rebuilt = append(s.rebuilt, l)
	s.runs++
	go func() { s.done <- l.Run(s.ctx, s.store) }()
	ctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
	defer cancel()
	var last eventstore.Position
	for rec := range s.store.ReadAll(ctx, 0) {
		last = rec.Position
	}
	if err := l.Wait(ctx, last); err != nil {
		return err
	}
	for !l.Ready() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("rebuilt log not ready: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	s.served.Store(l)
	return nil
}

// swapLog is the transparency log the API serves, which a script can
// replace by one rebuilt from the store.
type swapLog struct{ atomic.Pointer[translog.Log] }

func (l *swapLog) Ready() bool         { return l.Load().Ready() }
func (l *swapLog) Err() error          { return l.Load().Err() }
func (l *swapLog) VerifierKey() string { return l.Load().VerifierKey() }
func (l *swapLog) Sign(ctx context.Context) (*translog.Signed, error) {
	return l.Load().Sign(ctx)
}
func (l *swapLog) InclusionProof(index, size int64, r tlog.HashReader) (tlog.RecordProof, error) {
	return l.Load().InclusionProof(index, size, r)
}
func (l *swapLog) ConsistencyProof(old, size int64) (tlog.TreeProof, error) {
	return l.Load().ConsistencyProof(old, size)
}
func (l *swapLog) Wait(ctx context.Context, p eventstore.Position) error {
	return l.Load().Wait(ctx, p)
}
func (l *swapLog) Export(ctx context.Context, h translog.StreamReader, account string, cp *translog.Signed, emit func(*translog.BundleLine) error) error {
	return l.Load().Export(ctx, h, account, cp, emit)
}
