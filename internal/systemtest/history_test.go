package systemtest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
)

// ledgerStream is the JetStream stream that holds every event, ledger and
// activity, in the store's global order.
const ledgerStream = "LEDGER"

// stored is one message of the ledger stream as the read path sees it.
type stored struct {
	rec eventstore.Record
	// err is set when the message is not an event the service could have
	// written (it does not parse or decode); ev and meta are then unset.
	err  error
	ev   ledger.Event
	meta codec.Metadata
}

// connect dials NATS as the identity in creds: a .creds file (JWT) or an
// nkey seed file; anonymously when creds is empty.
func connect(t *testing.T, url, creds string, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	opts = append(opts, nats.Name("systemtest"), nats.Timeout(10*time.Second))
	if creds != "" {
		b, err := os.ReadFile(creds)
		if err != nil {
			return nil, err
		}
		if strings.Contains(string(b), "BEGIN NATS USER JWT") {
			opts = append(opts, nats.UserCredentials(creds))
		} else {
			opt, err := nats.NkeyOptionFromSeed(creds)
			if err != nil {
				return nil, fmt.Errorf("nkey seed %s: %w", creds, err)
			}
			opts = append(opts, opt)
		}
	}
	return nats.Connect(url, opts...)
}

// serviceCreds returns the path of the service's own NATS credential in a
// data directory, or "" when there is none (a service that lets anyone
// connect).
func serviceCreds(dir string) string {
	path := dir + "/licensed.nk"
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	return path
}

// readHistory reads every message of the ledger stream, up to the last one
// stored when it starts, and decodes each with the service's codec. Keys
// are not needed: personal data decodes as erased.
func readHistory(t *testing.T, url, creds string) []stored {
	t.Helper()
	nc, err := connect(t, url, creds)
	if err != nil {
		t.Fatalf("connect to NATS with the service's credential: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, ledgerStream)
	if err != nil {
		t.Fatalf("stream %s: %v", ledgerStream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := info.State.LastSeq
	if last == 0 {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dec := codec.New(pii.NewKeyring(erasedKeys{}, rand.Reader))
	var out []stored
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("read %s: %v", ledgerStream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, decodeMessage(ctx, dec, m.Subject(), m.Headers(), m.Data(), md.Sequence.Stream, md.Timestamp))
			if md.Sequence.Stream >= last {
				return out
			}
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("read %s: %v", ledgerStream, err)
		}
		if n == 0 {
			t.Fatalf("read %s: stopped at %d messages, before sequence %d", ledgerStream, len(out), last)
		}
	}
}

// decodeMessage turns a message of the ledger stream into a record as the
// JetStream store lays it out, and decodes it.
func decodeMessage(ctx context.Context, dec *codec.Codec, subject string, h nats.Header, body []byte, seq uint64, at time.Time) stored {
	rec := eventstore.Record{Position: eventstore.Position(seq), Stored: at}
	parts := strings.Split(subject, ".")
	if len(parts) != 3 || (parts[0] != string(eventstore.Ledger) && parts[0] != string(eventstore.Activity)) {
		return stored{rec: rec, err: fmt.Errorf("subject %q", subject)}
	}
	rec.Stream = eventstore.StreamID{Category: eventstore.Category(parts[0]), Account: parts[1]}
	rev, err := strconv.ParseUint(h.Get("Ledger-Revision"), 10, 64)
	if err != nil {
		return stored{rec: rec, err: fmt.Errorf("revision header: %w", err)}
	}
	rec.Revision = rev
	e, err := eventstore.ParseCloudEvent(body)
	if err != nil {
		return stored{rec: rec, err: err}
	}
	if e.Metadata == nil {
		if md := h.Get("Ledger-Metadata"); md != "" {
			e.Metadata = []byte(md)
		}
	}
	rec.ID, rec.Type, rec.Data, rec.Metadata = e.ID, e.Type, e.Data, e.Metadata
	return decodeRecord(ctx, dec, rec)
}

func decodeRecord(ctx context.Context, dec *codec.Codec, rec eventstore.Record) stored {
	d, err := dec.Decode(ctx, rec)
	if err != nil {
		return stored{rec: rec, err: err}
	}
	if d.Meta.Account != rec.Stream.Account || ledger.IsActivity(d.Event) != (rec.Stream.Category == eventstore.Activity) {
		return stored{rec: rec, err: fmt.Errorf("event of account %q, %s, on stream %s", d.Meta.Account, rec.Type, rec.Stream)}
	}
	return stored{rec: rec, ev: d.Event, meta: d.Meta}
}

// erasedKeys is a key store whose every key was destroyed: sealed personal
// data decodes as erased, everything else as stored.
type erasedKeys struct{}

func (erasedKeys) Put(context.Context, string, []byte) error { return pii.ErrErased }
func (erasedKeys) Get(context.Context, string) ([]byte, error) {
	return nil, pii.ErrErased
}
func (erasedKeys) Destroy(context.Context, string) error { return nil }

// checkHistory checks the invariants of a stored history, in store order
// across every account's ledger and activity streams, and returns what
// breaks them:
//
//   - every message is an event the service wrote (planted: positions a
//     test placed there itself, which are skipped);
//   - each stream's revisions count from 0 and its hash chain links every
//     event to the one before;
//   - at every position, an account's active users are no more than its
//     seats;
//   - an activity is recorded only for a user who is active at that
//     position: never after their deactivation (until activated again) or
//     deletion.
func checkHistory(h []stored, planted map[eventstore.Position]bool) []string {
	var bad []string
	type streamHead struct {
		n    uint64
		prev codec.Hash
	}
	heads := map[eventstore.StreamID]*streamHead{}
	states := map[string]ledger.State{}
	for _, s := range h {
		pos := s.rec.Position
		if planted[pos] {
			continue
		}
		if s.err != nil {
			bad = append(bad, fmt.Sprintf("position %d (%s): not an event the service wrote: %v", pos, s.rec.Stream, s.err))
			continue
		}
		hd := heads[s.rec.Stream]
		if hd == nil {
			hd = &streamHead{}
			heads[s.rec.Stream] = hd
		}
		if s.rec.Revision != hd.n {
			bad = append(bad, fmt.Sprintf("position %d: %s revision %d, want %d", pos, s.rec.Stream, s.rec.Revision, hd.n))
		}
		if s.meta.PrevHash != hd.prev {
			bad = append(bad, fmt.Sprintf("position %d: %s revision %d breaks the hash chain", pos, s.rec.Stream, s.rec.Revision))
		}
		hd.n, hd.prev = s.rec.Revision+1, codec.RecordHash(hd.prev, s.rec)

		account := s.rec.Stream.Account
		st := states[account]
		if a, ok := s.ev.(ledger.ActivityRecorded); ok {
			u, known := st.Users[a.UserID]
			switch {
			case !known:
				bad = append(bad, fmt.Sprintf("position %d: activity %s of %s by unknown user %s", pos, a.ActivityID, account, a.UserID))
			case u.Status != ledger.StatusActive:
				bad = append(bad, fmt.Sprintf("position %d: activity %s of %s by user %s, who is %s", pos, a.ActivityID, account, a.UserID, u.Status))
			}
			continue
		}
		st = ledger.Evolve(st, s.ev)
		if held := st.SeatsAt(s.ev.OccurredAt()); st.Active > held {
			bad = append(bad, fmt.Sprintf("position %d: %s has %d active users on %d seats", pos, account, st.Active, held))
		}
		states[account] = st
	}
	return bad
}

// accountsOf returns the accounts of a history, in the order they appear.
func accountsOf(h []stored) []string {
	var out []string
	for _, s := range h {
		if s.err == nil && !slices.Contains(out, s.rec.Stream.Account) {
			out = append(out, s.rec.Stream.Account)
		}
	}
	return out
}

// checkInvariants reads the whole stored history from NATS as the service
// (creds), checks it with checkHistory and has the service verify every
// account's hash chains, except those of the accounts in tampered. It
// returns the history.
func checkInvariants(t *testing.T, natsURL, creds string, api *proc, token string, planted map[eventstore.Position]bool, tampered ...string) []stored {
	t.Helper()
	h := readHistory(t, natsURL, creds)
	if len(h) == 0 {
		t.Fatal("the stored history is empty")
	}
	bad := checkHistory(h, planted)
	for i, b := range bad {
		if i == 20 {
			t.Errorf("... and %d more", len(bad)-i)
			break
		}
		t.Errorf("stored history: %s", b)
	}
	for _, a := range accountsOf(h) {
		if slices.Contains(tampered, a) {
			continue
		}
		st, _, raw, err := api.do("GET", "/v1/accounts/"+a+"/audit/verify", token, nil)
		if err != nil {
			t.Fatal(err)
		}
		var v struct {
			OK bool `json:"ok"`
		}
		if st != http.StatusOK || json.Unmarshal(raw, &v) != nil || !v.OK {
			t.Errorf("verify %s: status %d: %s", a, st, raw)
		}
	}
	return h
}

// ackedOnce checks that each id in acked is stored exactly once as the id
// that id picks from an event (false: not an event of the kind counted).
func ackedOnce(t *testing.T, h []stored, what string, acked []string, id func(ledger.Event) (string, bool)) {
	t.Helper()
	count := map[string]int{}
	for _, s := range h {
		if s.err != nil {
			continue
		}
		if k, ok := id(s.ev); ok {
			count[k]++
		}
	}
	missing, twice := 0, 0
	for _, k := range acked {
		switch count[k] {
		case 1:
		case 0:
			missing++
			if missing <= 5 {
				t.Errorf("acknowledged %s %s is not stored", what, k)
			}
		default:
			twice++
			if twice <= 5 {
				t.Errorf("acknowledged %s %s is stored %d times", what, k, count[k])
			}
		}
	}
	if missing+twice > 0 {
		t.Errorf("%d of %d acknowledged %s missing, %d stored more than once", missing, len(acked), what, twice)
	}
}

var errNoAnswer = errors.New("no answer")
