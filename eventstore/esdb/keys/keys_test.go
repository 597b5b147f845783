package keys_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/eventstore/esdb"
	"github.com/licenseledger/ledger/eventstore/esdb/keys"
	"github.com/licenseledger/ledger/internal/esdbtest"
	"github.com/licenseledger/ledger/internal/pii"
)

// target is a database to run the cases against.
type target struct {
	conn string
}

// targets returns the in-process double and, when EVENTSTORE_URL is set
// (e.g. "esdb://localhost:2113?tls=false"), a real server.
func targets(t *testing.T) map[string]target {
	srv, err := esdbtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ts := map[string]target{"double": {conn: srv.ConnectionString()}}
	if url := os.Getenv("EVENTSTORE_URL"); url != "" {
		ts["server"] = target{conn: url}
	}
	return ts
}

func forEach(t *testing.T, f func(t *testing.T, tg target)) {
	t.Helper()
	ts := targets(t)
	for name, tg := range ts {
		t.Run(name, func(t *testing.T) { f(t, tg) })
	}
	if _, ok := ts["server"]; !ok {
		t.Run("server", func(t *testing.T) { t.Skip("EVENTSTORE_URL not set") })
	}
}

func openKeys(t *testing.T, tg target) *keys.Store {
	t.Helper()
	s, err := keys.Open(tg.conn, keys.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newKey(t *testing.T) []byte {
	k := make([]byte, pii.KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// newID returns a key id no other run used, so that cases can share a
// real server.
func newID() string { return pii.KeyID("acme", "u"+uuid.NewString()) }

func TestPutGetDestroy(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		s := openKeys(t, tg)
		ctx := testCtx(t)
		id := newID()
		if _, err := s.Get(ctx, id); !errors.Is(err, pii.ErrNoKey) {
			t.Fatalf("Get of a missing key: %v, want ErrNoKey", err)
		}
		first, second := newKey(t), newKey(t)
		if stored, err := s.PutNew(ctx, id, first); err != nil || !stored {
			t.Fatalf("PutNew = %v, %v; want stored", stored, err)
		}
		if stored, err := s.PutNew(ctx, id, second); err != nil || stored {
			t.Fatalf("second PutNew = %v, %v; want nil and not stored (first key wins)", stored, err)
		}
		got, err := s.Get(ctx, id)
		if err != nil || !bytes.Equal(got, first) {
			t.Fatalf("Get = %x, %v; want the first key %x", got, err, first)
		}
		other := newID()
		if err := s.Put(ctx, other, second); err != nil {
			t.Fatal(err)
		}

		if err := s.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, id); !errors.Is(err, pii.ErrErased) {
			t.Errorf("Get after Destroy: %v, want ErrErased", err)
		}
		if err := s.Put(ctx, id, newKey(t)); !errors.Is(err, pii.ErrErased) {
			t.Errorf("Put after Destroy: %v, want ErrErased", err)
		}
		if err := s.Destroy(ctx, id); err != nil {
			t.Errorf("second Destroy: %v", err)
		}
		if got, err := s.Get(ctx, other); err != nil || !bytes.Equal(got, second) {
			t.Errorf("other key after Destroy = %x, %v; want %x", got, err, second)
		}
		// A fresh connection sees the same: nothing is cached.
		if _, err := openKeys(t, tg).Get(ctx, id); !errors.Is(err, pii.ErrErased) {
			t.Errorf("Get through another store: %v, want ErrErased", err)
		}
	})
}

func TestDestroyWithoutKey(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		s := openKeys(t, tg)
		ctx := testCtx(t)
		id := newID()
		if err := s.Destroy(ctx, id); err != nil {
			t.Fatalf("Destroy of an id without a key: %v", err)
		}
		if err := s.Put(ctx, id, newKey(t)); !errors.Is(err, pii.ErrErased) {
			t.Errorf("Put after Destroy of an id without a key: %v, want ErrErased", err)
		}
		if _, err := s.Get(ctx, id); !errors.Is(err, pii.ErrErased) {
			t.Errorf("Get: %v, want ErrErased", err)
		}
	})
}

// TestRacingPuts has several stores put different keys under one id at
// once: every Put succeeds and all of them read the same key back.
func TestRacingPuts(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		ctx := testCtx(t)
		id := newID()
		const n = 6
		stores := make([]*keys.Store, n)
		putKeys := make([][]byte, n)
		for i := range stores {
			stores[i], putKeys[i] = openKeys(t, tg), newKey(t)
		}
		var wg sync.WaitGroup
		errs := make([]error, n)
		stored := make([]bool, n)
		for i := range n {
			wg.Go(func() { stored[i], errs[i] = stores[i].PutNew(ctx, id, putKeys[i]) })
		}
		wg.Wait()
		var first []byte
		for i, s := range stores {
			if errs[i] != nil {
				t.Fatalf("Put %d: %v", i, errs[i])
			}
			got, err := s.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = got
			}
			if !bytes.Equal(got, first) {
				t.Fatalf("store %d reads %x, store 0 reads %x", i, got, first)
			}
		}
		if !slicesContain(putKeys, first) {
			t.Errorf("stored key %x is none of the keys put", first)
		}
		// Only the writer of the key kept reports that it stored it.
		for i := range n {
			if stored[i] != bytes.Equal(putKeys[i], first) {
				t.Errorf("store %d: PutNew reported stored %v; its key kept: %v", i, stored[i], bytes.Equal(putKeys[i], first))
			}
		}
	})
}

func slicesContain(ks [][]byte, k []byte) bool {
	for _, x := range ks {
		if bytes.Equal(x, k) {
			return true
		}
	}
	return false
}

func TestRefusals(t *testing.T) {
	srv, err := esdbtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	s := openKeys(t, target{conn: srv.ConnectionString()})
	ctx := testCtx(t)
	if err := s.Put(ctx, newID(), make([]byte, 16)); !errors.Is(err, keys.ErrInvalidKey) {
		t.Errorf("Put of a 16-byte key: %v, want ErrInvalidKey", err)
	}
	for _, id := range []string{"", "acme.a b", "acme.\n"} {
		if err := s.Put(ctx, id, newKey(t)); !errors.Is(err, keys.ErrInvalidID) {
			t.Errorf("Put(%q): %v, want ErrInvalidID", id, err)
		}
		if _, err := s.Get(ctx, id); !errors.Is(err, keys.ErrInvalidID) {
			t.Errorf("Get(%q): %v, want ErrInvalidID", id, err)
		}
	}
	for _, p := range []string{"ledger-keys-", "activity-", "$keys-"} {
		if _, err := keys.New(nil, keys.Config{Prefix: p}); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
	// A stream under the prefix holding something else is reported, not
	// taken for a key.
	raw := rawClient(t, srv.ConnectionString())
	id := newID()
	if _, err := raw.AppendToStream(ctx, s.StreamName(id), client.AppendToStreamOptions{},
		client.EventData{EventID: uuid.New(), EventType: "Other", ContentType: client.ContentTypeJson, Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, id); !errors.Is(err, keys.ErrCorrupt) {
		t.Errorf("Get of a foreign event: %v, want ErrCorrupt", err)
	}
}

func rawClient(t *testing.T, conn string) *client.Client {
	t.Helper()
	conf, err := client.ParseConnectionString(conn)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.NewClient(conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestKeysStayOutOfGlobalOrder checks that the event store's reads of the
// global order, which projections and the relay consume, never carry a key
// stream's events, tombstones included.
func TestKeysStayOutOfGlobalOrder(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		ctx := testCtx(t)
		ks := openKeys(t, tg)
		st, err := esdb.Open(ctx, tg.conn, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		var start eventstore.Position
		for rec, err := range st.ReadAll(ctx, 0) {
			if err != nil {
				t.Fatal(err)
			}
			start = rec.Position
		}
		id := newID()
		if err := ks.Put(ctx, id, newKey(t)); err != nil {
			t.Fatal(err)
		}
		acct := "k" + uuid.NewString()[:8]
		ev := eventstore.Proposed{ID: uuid.New(), Type: "AccountOpened", Data: []byte(`{}`)}
		if _, err := st.Append(ctx, eventstore.LedgerStream(acct), eventstore.NoStream(), ev); err != nil {
			t.Fatal(err)
		}
		if err := ks.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
		ev2 := eventstore.Proposed{ID: uuid.New(), Type: "ActivityRecorded", Data: []byte(`{}`)}
		if _, err := st.Append(ctx, eventstore.ActivityStream(acct), eventstore.NoStream(), ev2); err != nil {
			t.Fatal(err)
		}
		var got []uuid.UUID
		for rec, err := range st.ReadAll(ctx, start) {
			if err != nil {
				t.Fatal(err)
			}
			if rec.Stream.Account == acct || rec.Type == keys.EventType || rec.Type == "$streamDeleted" {
				got = append(got, rec.ID)
			}
		}
		if len(got) != 2 || got[0] != ev.ID || got[1] != ev2.ID {
			t.Errorf("global order after a key put and destroyed = %v, want only %v, %v", got, ev.ID, ev2.ID)
		}
	})
}

// TestKeyring runs the crypto-shredding path end to end on this store: a
// sealed field opens until the key is destroyed, then reads as erased, also
// through a keyring that never cached the key.
func TestKeyring(t *testing.T) {
	forEach(t, func(t *testing.T, tg target) {
		ctx := testCtx(t)
		ring := pii.NewKeyring(openKeys(t, tg), rand.Reader)
		id := newID()
		if err := ring.Create(ctx, id); err != nil {
			t.Fatal(err)
		}
		sealed, err := ring.Seal(ctx, id, "name", "Ada Lovelace")
		if err != nil {
			t.Fatal(err)
		}
		fresh := pii.NewKeyring(openKeys(t, tg), rand.Reader)
		if got, err := fresh.Open(ctx, id, "name", sealed); err != nil || got != "Ada Lovelace" {
			t.Fatalf("Open through another keyring = %q, %v", got, err)
		}
		if err := ring.Destroy(ctx, id); err != nil {
			t.Fatal(err)
		}
		late := pii.NewKeyring(openKeys(t, tg), rand.Reader)
		if _, err := late.Open(ctx, id, "name", sealed); !errors.Is(err, pii.ErrErased) {
			t.Errorf("Open after Destroy: %v, want ErrErased", err)
		}
		if err := late.Create(ctx, id); !errors.Is(err, pii.ErrErased) {
			t.Errorf("Create after Destroy: %v, want ErrErased", err)
		}
	})
}

// TestCallsReturnWhenDiscoveryFails makes node discovery fail while Gets
// wait for it. The client stops serving requests once discovery fails and
// ignores contexts while a call waits for a connection, so those Gets used
// to wait forever, and the store kept its dead client: they must return
// when their context ends at the latest, and the store must read the key
// again once the node is back.
func TestCallsReturnWhenDiscoveryFails(t *testing.T) {
	srv, err := esdbtest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	// Discovery takes about 2 s against a stopped node: the Gets below all
	// reach the client while it lasts.
	s := openKeys(t, target{conn: srv.ConnectionString() + "&maxDiscoverAttempts=20&discoveryInterval=100"})
	ctx := testCtx(t)
	id, key := newID(), newKey(t)
	if err := s.Put(ctx, id, key); err != nil {
		t.Fatal(err)
	}
	srv.Pause()
	callCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err = s.Get(callCtx, id)
	cancel()
	if err == nil {
		t.Fatal("Get from a stopped node succeeded")
	}

	const n = 4
	errs := make(chan error, n)
	for range n {
		go func() {
			callCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			_, err := s.Get(callCtx, id)
			errs <- err
		}()
	}
	stuck := time.After(6 * time.Second)
	for i := range n {
		select {
		case err := <-errs:
			if err == nil {
				t.Errorf("Get %d from a stopped node succeeded", i)
			}
		case <-stuck:
			t.Fatalf("%d of %d Gets still blocked 3 s after their context ended", n-i, n)
		}
	}

	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	for {
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		got, err := s.Get(callCtx, id)
		cancel()
		if err == nil {
			if !bytes.Equal(got, key) {
				t.Fatal("Get after the node came back returned another key")
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Get after the node came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
