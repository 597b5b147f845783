package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/esdb"
	"github.com/licenseledger/ledger/eventstore/jetstream"
	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/esdbtest"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/internal/translog"
)

// waitLog waits until the transparency log holds every stored record.
func (e *env) waitLog() {
	e.t.Helper()
	var last eventstore.Position
	for rec, err := range e.store.ReadAll(context.Background(), 0) {
		if err != nil {
			e.t.Fatal(err)
		}
		last = rec.Position
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.log.Wait(ctx, last); err != nil {
		e.t.Fatal(err)
	}
	for !e.log.Ready() {
		select {
		case <-ctx.Done():
			e.t.Fatal("log not ready")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// logStores are the stores the log's endpoints are tested on: the
// in-memory one, the real JetStream store on an embedded NATS server, and
// EventStoreDB (the in-process double of its gRPC API).
func logStores() map[string]func(testing.TB) eventstore.Store {
	return map[string]func(testing.TB) eventstore.Store{
		"memory": func(testing.TB) eventstore.Store { return memory.New() },
		"jetstream": func(t testing.TB) eventstore.Store {
			s, err := jetstream.Embedded(context.Background(), jetstream.ServerConfig{DataDir: t.TempDir(), Port: -1}, jetstream.Config{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"esdb": func(t testing.TB) eventstore.Store {
			srv, err := esdbtest.Start()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Close)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			s, err := esdb.Open(ctx, srv.ConnectionString(), nil)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
}

// The log's endpoints on each store: the key, a checkpoint of every
// stored record, each leaf's inclusion proof, a consistency proof once
// the tree grew, and problem answers to bad queries.
func TestLogEndpoints(t *testing.T) {
	for name, store := range logStores() {
		t.Run(name, func(t *testing.T) { testLogEndpoints(t, newEnv(t, options{store: store})) })
	}
}

func testLogEndpoints(t *testing.T, e *env) {
	e.open("acme", 5)
	ada := e.addUser("acme", "Ada", "ada@acme.test", "admin")
	e.addUser("acme", "Bob", "bob@acme.test", "admin")
	e.open("beta", 2)
	e.waitLog()

	key := e.must(200, e.operator, "GET", "/v1/log/key", nil)
	if strings.TrimSpace(string(key.Body)) != e.logKey.Verifier || !strings.HasPrefix(key.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("key %q (%s), want %q", key.Body, key.Header.Get("Content-Type"), e.logKey.Verifier)
	}
	r := e.must(200, e.operator, "GET", "/v1/log/checkpoint", nil)
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("checkpoint as %q", r.Header.Get("Content-Type"))
	}
	cp, err := translog.OpenCheckpoint(r.Body, e.logKey.Verifier)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 4 {
		t.Fatalf("checkpoint of %d leaves, want 4 (4 events stored)", cp.Size)
	}

	// Every leaf's inclusion proof leads to the checkpoint's root.
	var i int64
	for rec, err := range e.store.ReadAll(context.Background(), 0) {
		var p httpapi.Proof
		body := e.must(200, e.operator, "GET", fmt.Sprintf("/v1/log/inclusion?index=%d&size=%d", i, cp.Size), nil).Body
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		if err := tlog.CheckRecord(p.Proof, cp.Size, cp.Hash, i, translog.LeafHash(rec, err)); err != nil {
			t.Fatalf("leaf %d: %v", i, err)
		}
		i++
	}
	// The tree grows; the old checkpoint's tree is a prefix of the new.
	e.must(200, e.operator, "POST", "/v1/accounts/acme/users/"+ada+"/deactivate", nil)
	e.addUser("acme", "Cy", "cy@acme.test", "admin")
	e.must(200, e.operator, "POST", "/v1/accounts/acme/users/"+ada+"/deactivate", nil)
	e.waitLog()
	cp2, err := translog.OpenCheckpoint(e.must(200, e.operator, "GET", "/v1/log/checkpoint", nil).Body, e.logKey.Verifier)
	if err != nil || cp2.Size != 6 {
		t.Fatalf("second checkpoint %+v, %v; want 6 leaves", cp2, err)
	}
	var p httpapi.Proof
	if err := json.Unmarshal(e.must(200, e.operator, "GET", fmt.Sprintf("/v1/log/consistency?old=%d&new=%d", cp.Size, cp2.Size), nil).Body, &p); err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(p.Proof, cp2.Size, cp2.Hash, cp.Size, cp.Hash); err != nil {
		t.Fatalf("consistency: %v", err)
	}

	for _, q := range []string{
		"/v1/log/consistency?old=0&new=2", "/v1/log/consistency?old=3&new=2", "/v1/log/consistency?old=1&new=99",
		"/v1/log/consistency?old=x&new=2", "/v1/log/consistency?new=2",
		"/v1/log/inclusion?index=6&size=6", "/v1/log/inclusion?index=0&size=99", "/v1/log/inclusion?index=-1&size=2",
		"/v1/accounts/acme/export?keys=maybe",
	} {
		r := e.must(400, e.operator, "GET", q, nil)
		if r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %s", q, r.Header.Get("Content-Type"))
		}
	}
	e.must(404, e.operator, "GET", "/v1/accounts/nosuch/export", nil)
}

// A tenant auditor's bundle holds only its account's records and verifies
// offline; with keys=true it carries the keys of users not deleted.
func TestExportBundle(t *testing.T) {
	for name, store := range logStores() {
		t.Run(name, func(t *testing.T) { testExportBundle(t, newEnv(t, options{store: store})) })
	}
}

func testExportBundle(t *testing.T, e *env) {
	e.open("acme", 5)
	e.open("beta", 5)
	ada := e.addUser("acme", "Ada", "ada@acme.test", "admin")
	e.addUser("beta", "Bea", "bea@beta.test", "admin")
	bob := e.addUser("acme", "Bob", "bob@acme.test", "member")
	e.must(201, e.operator, "POST", "/v1/accounts/acme/activities", map[string]string{"user_id": ada, "kind": "note", "ref": "r"})
	e.must(200, e.operator, "DELETE", "/v1/accounts/acme/users/"+bob+"?confirm="+bob, nil)
	auditor := e.mint(auth.Auditor, "acme")
	e.waitLog()

	plain := e.must(200, auditor, "GET", "/v1/accounts/acme/export", nil)
	if plain.Header.Get("Content-Type") != "application/jsonl" {
		t.Fatalf("export as %q", plain.Header.Get("Content-Type"))
	}
	withKeys := e.must(200, auditor, "GET", "/v1/accounts/acme/export?keys=true", nil).Body
	for name, b := range map[string][]byte{"plain": plain.Body, "keys": withKeys} {
		// Quoted or as a stream's name: the four letters alone turn up
		// by chance in the records' base64.
		if bytes.Contains(b, []byte(`"beta"`)) || bytes.Contains(b, []byte("-beta")) {
			t.Errorf("%s bundle of acme mentions beta", name)
		}
		v, err := translog.VerifyBundle(context.Background(), bytes.NewReader(b), e.logKey.Verifier, e.clock.Now())
		if err != nil {
			t.Fatalf("%s bundle: %v", name, err)
		}
		if v.Account != "acme" || len(v.Streams) == 0 {
			t.Errorf("%s bundle: account %q, %d streams", name, v.Account, len(v.Streams))
		}
		for _, st := range v.Streams {
			if !strings.HasSuffix(st.Stream, "-acme") {
				t.Errorf("%s bundle of acme holds the stream %s", name, st.Stream)
			}
		}
		wantKeys := 0
		if name == "keys" {
			wantKeys = 1 // Ada's; Bob is deleted
		}
		if v.Records != 5 || v.Keys != wantKeys || v.Seats.Active != 1 || v.Seats.Deleted != 1 || v.Seats.Purchased != 5 {
			t.Errorf("%s bundle: %d records, %d keys, seats %+v; want 5 records, %d keys, 1 active, 1 deleted", name, v.Records, v.Keys, v.Seats, wantKeys)
		}
	}
	e.must(404, e.mint(auth.Auditor, "beta"), "GET", "/v1/accounts/acme/export", nil)
}

// The log's endpoints answer 503 not-ready until the log caught up.
func TestLogNotReady(t *testing.T) {
	e := newEnv(t, options{adjust: func(c *httpapi.Config) { c.Log = notReadyLog{c.Log} }})
	e.open("acme", 1)
	for _, path := range []string{"/v1/log/checkpoint", "/v1/log/inclusion?index=0&size=1", "/v1/log/consistency?old=1&new=1", "/v1/accounts/acme/export"} {
		r := e.must(503, e.operator, "GET", path, nil)
		if r.Header.Get("Retry-After") == "" || !strings.Contains(string(r.Body), "not-ready") {
			t.Errorf("%s: %v %s", path, r.Header, r.Body)
		}
	}
}

type notReadyLog struct{ httpapi.TransparencyLog }

func (notReadyLog) Ready() bool { return false }
