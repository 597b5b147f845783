package main

import (
	"context"
	crand "crypto/rand"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/oklog/ulid/v2"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/internal/translog"
	"github.com/licenseledger/ledger/projections"
	"github.com/licenseledger/ledger/projections/attribution"
	"github.com/licenseledger/ledger/projections/audit"
	"github.com/licenseledger/ledger/projections/billing"
	"github.com/licenseledger/ledger/projections/runner"
	"github.com/licenseledger/ledger/projections/seats"
)

// TestMain lets the test binary run as licensectl when a script execs it.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"licensectl": func() { os.Exit(Main()) },
	})
}

// t0 is when every script's server clock starts.
var t0 = time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)

// TestScripts runs the scripts of testdata/script, each against a server
// of its own, built from the service's packages over the in-memory store.
// Scripts find it through LICENSECTL_URL and its operator token in
// ./data/operator.token, where licensed writes it.
//
// Commands the scripts have besides testscript's:
//
//	exits N licensectl ARGS...  run licensectl and require exit status N
//	capture NAME [FIELD]        set $NAME to the last stdout, or to one
//	                            string field of the JSON object it holds
//	advance DURATION            move the server's clock forward
func TestScripts(t *testing.T) {
	p := scriptParams(func(*testscript.Env) (eventstore.Store, error) { return memory.New(), nil })
	p.Dir = "testdata/script"
	testscript.Run(t, p)
}

// scriptParams are the parameters of scripts whose server keeps its
// events in the store open returns for the script; what open defers on
// env runs after the server is closed.
func scriptParams(open func(env *testscript.Env) (eventstore.Store, error)) testscript.Params {
	return testscript.Params{
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			store, err := open(env)
			if err != nil {
				return err
			}
			srv, err := startServerOn(env.WorkDir, store)
			if err != nil {
				return errors.Join(err, store.Close())
			}
			env.Defer(func() {
				if err := srv.close(); err != nil {
					env.T().Fatal(err)
				}
			})
			env.Values[serverKey{}] = srv
			env.Setenv("LICENSECTL_URL", srv.http.URL)
			// Under -race, each licensectl run would otherwise sleep a second
			// before exiting (the race runtime's atexit_sleep_ms).
			env.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			dir := filepath.Join(env.WorkDir, "data")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(dir, "operator.token"), []byte(srv.operator+"\n"), 0o600)
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":   cmdExits,
			"capture": cmdCapture,
			"advance": cmdAdvance,
			"bundle":  cmdBundle,
			"history": cmdHistory,
		},
	}
}

type serverKey struct{}

// cmdBundle changes an audit bundle file as someone tampering with it
// would:
//
//	bundle flip FILE LINE     flip a bit of the record's stored payload
//	bundle drop FILE LINE     remove the line
//	bundle swap FILE LINE M   exchange two lines
func cmdBundle(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 {
		ts.Fatalf("usage: bundle flip|drop|swap FILE LINE [LINE]")
	}
	path := ts.MkAbs(args[1])
	raw, err := os.ReadFile(path)
	ts.Check(err)
	lines := strings.SplitAfter(strings.TrimSuffix(string(raw), "\n"), "\n")
	at := func(s string) int {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > len(lines) {
			ts.Fatalf("no line %s in %s", s, args[1])
		}
		return n - 1
	}
	i := at(args[2])
	switch args[0] {
	case "flip":
		var bl translog.BundleLine
		ts.Check(json.Unmarshal([]byte(lines[i]), &bl))
		if len(bl.Data) == 0 {
			ts.Fatalf("line %d holds no record payload", i+1)
		}
		bl.Data[len(bl.Data)/2] ^= 1
		b, err := json.Marshal(&bl)
		ts.Check(err)
		lines[i] = string(b) + "\n"
	case "drop":
		lines = append(lines[:i], lines[i+1:]...)
	case "swap":
		if len(args) < 4 {
			ts.Fatalf("bundle swap needs two lines")
		}
		j := at(args[3])
		lines[i], lines[j] = lines[j], lines[i]
	default:
		ts.Fatalf("unknown bundle change %q", args[0])
	}
	ts.Check(os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600))
}

func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits N command args...")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: %v", err)
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exits: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
}

func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: capture NAME [FIELD]")
	}
	out := ts.ReadFile("stdout")
	v := strings.TrimSpace(out)
	if len(args) == 2 {
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			ts.Fatalf("capture: stdout is not a JSON object: %v", err)
		}
		s, ok := m[args[1]].(string)
		if !ok {
			ts.Fatalf("capture: no string field %q in stdout", args[1])
		}
		v = s
	}
	if v == "" {
		ts.Fatalf("capture: nothing to capture")
	}
	ts.Setenv(args[0], v)
}

func cmdAdvance(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: advance DURATION")
	}
	d, err := time.ParseDuration(args[0])
	if err != nil || d <= 0 {
		ts.Fatalf("advance: %q is not a positive duration", args[0])
	}
	ts.Value(serverKey{}).(*server).clock.advance(d)
}

// clock is a server clock that stands still until advanced, so that the
// times a script sees are the ones it chose.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// server is the HTTP API wired as licensed wires it, over an event store
// (the in-memory one unless told) and the in-memory key store, with the
// read models fed by the projection runner.
type server struct {
	log *translog.Log
	// served is the log the API serves: log, or one rebuilt from the
	// store after its history was changed (see cmdHistory).
	served   *swapLog
	rebuilt  []*translog.Log
	key      translog.Key
	data     string
	ctx      context.Context
	runs     int // goroutines that send to done
	http     *httptest.Server
	store    eventstore.Store
	clock    *clock
	operator string
	stop     context.CancelFunc
	done     chan error
}

func startServer(work string) (*server, error) { return startServerOn(work, memory.New()) }

// startServerOn starts a server over store, which it closes when closed.
func startServerOn(work string, store eventstore.Store) (*server, error) {
	s := &server{store: store, clock: &clock{now: t0}, done: make(chan error, 2+maxRebuilds)}
	keys := pii.NewMemoryKeys()
	cod := codec.New(pii.NewKeyring(keys, crand.Reader))
	// The transparency log keeps its files and key in the script's data
	// directory, where licensed writes log.vkey; other.vkey is a key of
	// another log of the same name.
	data := filepath.Join(work, "data")
	key, err := translog.LoadKey(data, "", "ledger.test/log", crand.Reader)
	if err != nil {
		return nil, err
	}
	other, err := translog.LoadKey(filepath.Join(work), "", "ledger.test/log", crand.Reader)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(work, translog.VerifierKeyFile), filepath.Join(work, "other.vkey")); err != nil {
		return nil, err
	}
	_ = other
	if s.log, err = translog.Open(translog.Config{Dir: filepath.Join(data, "log"), Key: key}); err != nil {
		return nil, err
	}
	s.served, s.key, s.data = &swapLog{}, key, data
	s.served.Store(s.log)
	newULID := func() ulid.ULID { return ulid.MustNew(ulid.Timestamp(s.clock.Now()), ulid.DefaultEntropy()) }
	svc := accounts.New(accounts.Config{
		Store: s.store, Codec: cod, Clock: s.clock.Now, NewEventID: uuid.New, NewULID: newULID,
	})
	st, at, au, bi := seats.New(), attribution.New(), audit.New(), billing.New()
	run := runner.New(runner.Config{
		Store: s.store, Codec: cod,
		Projections: []projections.Projection{st, at, au, bi},
		Fresh: func() []projections.Projection {
			return []projections.Projection{seats.New(), attribution.New(), audit.New(), billing.New()}
		},
	})
	tokens := auth.NewMemoryStore()
	secret, created, err := auth.Bootstrap(context.Background(), tokens, crand.Reader, t0)
	if err != nil || !created {
		return nil, errors.Join(errors.New("bootstrap operator token"), err)
	}
	s.operator = secret
	api := httpapi.New(httpapi.Config{
		Commands: svc, Seats: st, Activities: at, Audit: au, Billing: bi,
		History: s.store, Decoder: cod, Progress: run, Tokens: tokens, Log: s.served, DataKeys: keys,
		Clock: s.clock.Now, NewID: newULID, Random: crand.Reader,
		WaitTimeout: 5 * time.Second,
	})
	ctx, cancel := context.WithCancel(context.Background())
	s.stop, s.ctx, s.runs = cancel, ctx, 2
	go func() { s.done <- run.Run(ctx) }()
	go func() { s.done <- s.log.Run(ctx, s.store) }()
	s.http = httptest.NewServer(api)
	return s, nil
}

// close stops the server and reports whether the read models failed.
func (s *server) close() error {
	s.http.Close()
	s.stop()
	var errs []error
	for range s.runs {
		if err := <-s.done; !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	for _, l := range s.rebuilt {
		errs = append(errs, l.Close())
	}
	return errors.Join(append(errs, s.log.Close(), s.store.Close())...)
}
