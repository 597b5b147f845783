package httpapi_test

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/memory"
	"github.com/licenseledger/ledger/internal/accounts"
	"github.com/licenseledger/ledger/internal/auth"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/cputime"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/internal/pii"
	"github.com/licenseledger/ledger/internal/telemetry"
	"github.com/licenseledger/ledger/projections/attribution"
	"github.com/licenseledger/ledger/projections/audit"
	"github.com/licenseledger/ledger/projections/billing"
	"github.com/licenseledger/ledger/projections/seats"
)

// deciding is a Commands that decides commands on accounts held in
// memory, with nothing stored: what the API does around a command,
// measured without the command's own cost.
type deciding struct {
	mu     sync.Mutex
	states map[string]ledger.State
	pos    eventstore.Position
	// applied, when set, is told of every position written before
	// Execute returns: read models never behind.
	applied func(eventstore.Position)
}

func (d *deciding) Execute(_ context.Context, account string, cmd ledger.Command, _ accounts.Request) (accounts.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.states[account]
	if o, ok := cmd.(ledger.OpenAccount); ok {
		o.Account = account
		cmd = o
	}
	events, err := ledger.Decide(s, cmd)
	if err != nil {
		return accounts.Result{}, err
	}
	res := accounts.Result{Events: make([]codec.Decoded, len(events))}
	for i, e := range events {
		s = ledger.Evolve(s, e)
		d.pos++
		res.Events[i] = codec.Decoded{Event: e}
	}
	d.states[account] = s
	res.State, res.Position = s, d.pos
	if d.applied != nil {
		d.applied(d.pos)
	}
	return res, nil
}

func (d *deciding) latest() eventstore.Position {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pos
}

// lagging is read models one step behind every write: a write's wait
// asks the feeder to apply its position and waits for it, as a write
// waits for the runner in the service.
type lagging struct {
	*httpapi.Tracker
	feed   chan eventstore.Position
	latest func() eventstore.Position // the last position written
}

// Changed asks the feeder to apply the last position written, when the
// read models are behind it: a wait on Changed then finds them there,
// as a wait with Wait does.
func (l *lagging) Changed() <-chan struct{} {
	// (Through an interface, so that this benchmark builds against
	// versions of the API that waited with Wait alone.)
	ch := any(l.Tracker).(interface{ Changed() <-chan struct{} }).Changed()
	if p := l.latest(); l.Position() < p {
		l.feed <- p
	}
	return ch
}

func (l *lagging) Wait(ctx context.Context, p eventstore.Position) error {
	select {
	case l.feed <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	return l.Tracker.Wait(ctx, p)
}

// sink is a ResponseWriter keeping only the status, as cheap as can be
// so that the handler's own cost shows.
type sink struct {
	header http.Header
	status int
	n      int
}

func (s *sink) Header() http.Header { return s.header }

func (s *sink) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}

func (s *sink) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	s.n += len(b)
	return len(b), nil
}

// BenchmarkHandler is the API's handler around a command, as the service
// wires it (JSON request log to a file, read models one step behind,
// ULIDs), in process and with a command that is decided but not stored:
// the cost per request of everything but the command's Execute and
// net/http's own reading and writing. cpu-ns/op is the process's CPU per
// request, the feeder's goroutine included.
func BenchmarkHandler(b *testing.B) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	tokens := auth.NewMemoryStore()
	operator, ok, err := auth.Bootstrap(context.Background(), tokens, crand.Reader, time.Now())
	if err != nil || !ok {
		b.Fatalf("bootstrap: %v %v", ok, err)
	}
	commands := &deciding{states: map[string]ledger.State{}}
	progress := &lagging{Tracker: httpapi.NewTracker(), feed: make(chan eventstore.Position), latest: commands.latest}
	feedDone := make(chan struct{})
	go func() {
		defer close(feedDone)
		for p := range progress.feed {
			progress.Advance(p)
		}
	}()
	defer func() { close(progress.feed); <-feedDone }()
	store := memory.New()
	defer store.Close()
	logger := slog.New(telemetry.LogHandler(slog.NewJSONHandler(devNull, nil))).With("component", "http")
	api := httpapi.New(httpapi.Config{
		Commands: commands,
		Seats:    seats.New(), Activities: attribution.New(), Audit: audit.New(), Billing: billing.New(),
		History: store, Decoder: codec.New(pii.NewKeyring(pii.NewMemoryKeys(), crand.Reader)),
		Progress: progress, ReadModelsReady: func() bool { return true }, Tokens: tokens,
		Clock: time.Now, NewID: ulid.Make, Random: crand.Reader,
		Logger: logger,
	})
	serve := func(method, path, body string) []byte {
		req := httptest.NewRequest(method, path, bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer "+operator)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		if w.Code >= 300 {
			b.Fatalf("%s %s: status %d: %s", method, path, w.Code, w.Body)
		}
		return w.Body.Bytes()
	}
	serve("POST", "/v1/accounts", `{"id":"acme","name":"Acme","seats":1000000}`)
	var users []string
	for i := range 10 {
		var u struct{ ID string }
		body := serve("POST", "/v1/accounts/acme/users",
			`{"name":"User `+strconv.Itoa(i)+`","email":"u`+strconv.Itoa(i)+`@acme.test","role":"member"}`)
		if err := json.Unmarshal(body, &u); err != nil || u.ID == "" {
			b.Fatalf("user: %s %v", body, err)
		}
		users = append(users, u.ID)
	}

	// request is one request of a kind; i counts the requests of the run.
	type request func(i int) (method, path, body string)
	kinds := []struct {
		name string
		req  request
	}{
		{"activity", func(i int) (string, string, string) {
			return "POST", "/v1/accounts/acme/activities",
				`{"user_id":"` + users[i%len(users)] + `","kind":"note","ref":"candidate-` + strconv.Itoa(i) + `"}`
		}},
		{"deactivate-activate", func(i int) (string, string, string) {
			u := users[(i/2)%len(users)]
			if i%2 == 0 {
				return "POST", "/v1/accounts/acme/users/" + u + "/deactivate", `{"reason":"load cycle"}`
			}
			return "POST", "/v1/accounts/acme/users/" + u + "/activate", ""
		}},
		{"purchase", func(int) (string, string, string) {
			return "POST", "/v1/accounts/acme/seats", `{"count":1}`
		}},
		{"add", func(i int) (string, string, string) {
			n := strconv.Itoa(i)
			return "POST", "/v1/accounts/acme/users",
				`{"name":"Added ` + n + `","email":"added-` + b.Name() + `-` + n + `@acme.test","role":"member"}`
		}},
	}
	// activity/caught-up is activity with read models that have applied
	// a write when it returns: no wait.
	kinds = append(kinds, struct {
		name string
		req  request
	}{"activity/caught-up", kinds[0].req})
	authz := "Bearer " + operator
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			if strings.HasSuffix(k.name, "/caught-up") {
				commands.mu.Lock()
				commands.applied = progress.Advance
				commands.mu.Unlock()
				defer func() {
					commands.mu.Lock()
					commands.applied = nil
					commands.mu.Unlock()
				}()
			}
			// The requests are made in batches while the clock stops, and
			// the CPU they take is left out: only the handler is measured.
			batch := make([]*http.Request, 256)
			next := len(batch)
			w := &sink{header: http.Header{}}
			var build time.Duration
			n := 0
			b.ReportAllocs()
			c0 := cputime.Process()
			for b.Loop() {
				if next == len(batch) {
					b.StopTimer()
					c := cputime.Process()
					for j := range batch {
						method, path, body := k.req(n + j)
						var rd io.Reader = http.NoBody
						if body != "" {
							rd = strings.NewReader(body)
						}
						req := httptest.NewRequest(method, path, rd)
						req.Header.Set("Authorization", authz)
						if body != "" {
							req.Header.Set("Content-Type", "application/json")
						}
						batch[j] = req
					}
					next = 0
					build += cputime.Process() - c
					b.StartTimer()
				}
				req := batch[next]
				batch[next] = nil
				next++
				clear(w.header)
				w.status, w.n = 0, 0
				api.ServeHTTP(w, req)
				if w.status >= 300 {
					b.Fatalf("%s %s: status %d", req.Method, req.URL.Path, w.status)
				}
				n++
			}
			cpu := cputime.Process() - c0 - build
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/op")
		})
	}
}
