package esdb_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	client "github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"

	"github.com/licenseledger/ledger/eventstore"
)

func proposed(n int) []eventstore.Proposed {
	out := make([]eventstore.Proposed, n)
	for i := range out {
		out[i] = eventstore.Proposed{
			ID:       uuid.New(),
			Type:     "SeatsPurchased",
			Data:     fmt.Appendf(nil, `{"seats":%d}`, i+1),
			Metadata: fmt.Appendf(nil, `{"n":%d}`, i),
		}
	}
	return out
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestExpectedRevisions checks each expectation against the server's
// answer, and that a conflict keeps the client's error as its cause.
func TestExpectedRevisions(t *testing.T) {
	srv := startServer(t)
	s := open(t, srv.ConnectionString())
	ctx := testCtx(t)
	stream := eventstore.LedgerStream("acct-" + uuid.NewString())
	if _, err := s.Append(ctx, stream, eventstore.NoStream(), proposed(2)...); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		expected eventstore.ExpectedRevision
		wantErr  error
		wantNext uint64
	}{
		{"no stream on a stream with events", eventstore.NoStream(), eventstore.ErrConflict, 0},
		{"exact behind", eventstore.Exact(0), eventstore.ErrConflict, 0},
		{"exact ahead", eventstore.Exact(5), eventstore.ErrConflict, 0},
		{"exact at the last revision", eventstore.Exact(1), nil, 2},
		{"any", eventstore.Any(), nil, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := s.Append(ctx, stream, tt.expected, proposed(1)...)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Append(%s) error = %v, want %v", tt.expected, err, tt.wantErr)
			}
			if err != nil {
				var cause *client.Error
				if !errors.As(err, &cause) || cause.Code() != client.ErrorCodeWrongExpectedVersion {
					t.Errorf("Append(%s) error %v does not keep the client's wrong-expected-version error", tt.expected, err)
				}
				return
			}
			if res.NextRevision != tt.wantNext {
				t.Errorf("Append(%s).NextRevision = %d, want %d", tt.expected, res.NextRevision, tt.wantNext)
			}
		})
	}
}

// TestReadStreamNotFound checks the mapping of stream_not_found, and that
// the cause is kept.
func TestReadStreamNotFound(t *testing.T) {
	s := open(t, startServer(t).ConnectionString())
	for _, err := range s.ReadStream(testCtx(t), eventstore.LedgerStream("nobody"), 0) {
		if !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Fatalf("ReadStream of a missing stream: %v, want ErrStreamNotFound", err)
		}
		var cause *client.Error
		if !errors.As(err, &cause) || cause.Code() != client.ErrorCodeResourceNotFound {
			t.Errorf("error %v does not keep the client's not-found error", err)
		}
		return
	}
	t.Fatal("ReadStream of a missing stream yielded nothing")
}

// TestGlobalOrderIsFiltered writes events the service does not own
// (another application's stream, a stream whose name only contains
// "ledger", a system stream) between its own, and requires ReadAll and
// Subscribe to leave them out.
func TestGlobalOrderIsFiltered(t *testing.T) {
	srv := startServer(t)
	s := open(t, srv.ConnectionString())
	raw := rawClient(t, srv.ConnectionString())
	ctx := testCtx(t)
	foreign := func(stream string) {
		t.Helper()
		_, err := raw.AppendToStream(ctx, stream, client.AppendToStreamOptions{}, client.EventData{
			EventID: uuid.New(), EventType: "Other", ContentType: client.ContentTypeJson, Data: []byte(`{}`),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var want []uuid.UUID
	mine := func(stream eventstore.StreamID) {
		t.Helper()
		ev := proposed(1)
		if _, err := s.Append(ctx, stream, eventstore.Any(), ev...); err != nil {
			t.Fatal(err)
		}
		want = append(want, ev[0].ID)
	}
	foreign("orders-1")
	mine(eventstore.LedgerStream("a"))
	foreign("$$ledger-a")
	foreign("xledger-a")
	mine(eventstore.ActivityStream("a"))
	foreign("ledger") // no dash: not a ledger stream

	var got []uuid.UUID
	for rec, err := range s.ReadAll(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec.ID)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ReadAll = %v, want only the service's events %v", got, want)
	}

	got = got[:0]
	for rec, err := range s.Subscribe(ctx, 0) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec.ID)
		if len(got) == len(want) {
			break
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Subscribe = %v, want only the service's events %v", got, want)
	}
}

// TestSubscribeSurvivesDroppedConnection cuts every connection while a
// subscription is live, twice, and requires each event exactly once, in
// order.
func TestSubscribeSurvivesDroppedConnection(t *testing.T) {
	srv := startServer(t)
	s := open(t, srv.ConnectionString())
	ctx := testCtx(t)
	stream := eventstore.LedgerStream("acct-" + uuid.NewString())

	const batches, perBatch = 6, 5
	var want []uuid.UUID
	var next uint64
	appendBatch := func() {
		t.Helper()
		ev := proposed(perBatch)
		expected := eventstore.ExpectRevisionAfter(next)
		// The append may meet the dropped connection: retry it, which is
		// safe at the same expected revision.
		for attempt := 0; ; attempt++ {
			_, err := s.Append(ctx, stream, expected, ev...)
			if err == nil {
				break
			}
			if attempt == 20 || ctx.Err() != nil {
				t.Fatalf("append: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		next += perBatch
		for _, e := range ev {
			want = append(want, e.ID)
		}
	}
	appendBatch()

	got := make(chan uuid.UUID, batches*perBatch)
	done := make(chan error, 1)
	go func() {
		n := 0
		for rec, err := range s.Subscribe(ctx, 0) {
			if err != nil {
				done <- err
				return
			}
			got <- rec.ID
			if n++; n == batches*perBatch+2 { // more than were written: fail on duplicates below
				break
			}
		}
		done <- nil
	}()

	var seen []uuid.UUID
	receive := func(n int) {
		t.Helper()
		for range n {
			select {
			case id := <-got:
				seen = append(seen, id)
			case err := <-done:
				t.Fatalf("subscription ended: %v", err)
			case <-ctx.Done():
				t.Fatalf("received %d of %d events before the deadline", len(seen), len(want))
			}
		}
	}
	receive(perBatch)
	for b := 1; b < batches; b++ {
		if b%2 == 1 {
			srv.DropConnections()
		}
		appendBatch()
		receive(perBatch)
	}
	// Anything more would be a duplicate.
	select {
	case id := <-got:
		t.Errorf("event %s delivered again after all %d events", id, len(want))
	case <-time.After(200 * time.Millisecond):
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("delivered %v,\nwant %v", seen, want)
	}
	if n := srv.Subscriptions(); n < 2 {
		t.Errorf("the server saw %d subscriptions; the connection drop did not force a new one", n)
	}
}

// TestServerStoresRetriesAtTheCurrentRevision shows what the store guards
// against: the server (and the double, which follows it) stores events a
// second time when they are appended again with an expectation matching the
// stream's current revision. Through the store the retry returns the first
// result and stores nothing.
func TestServerStoresRetriesAtTheCurrentRevision(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	raw := rawClient(t, srv.ConnectionString())
	ev := client.EventData{EventID: uuid.New(), EventType: "T", ContentType: client.ContentTypeJson, Data: []byte(`{}`)}
	for _, exp := range []client.ExpectedRevision{client.NoStream{}, client.Revision(0)} {
		if _, err := raw.AppendToStream(ctx, "ledger-raw", client.AppendToStreamOptions{ExpectedRevision: exp}, ev); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := raw.ReadStream(ctx, "ledger-raw", client.ReadStreamOptions{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	n := 0
	for ; ; n++ {
		if _, err := rs.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if n != 2 {
		t.Fatalf("the double holds %d copies of an event appended twice at the current revision; a real server holds 2", n)
	}

	s := open(t, srv.ConnectionString())
	stream := eventstore.LedgerStream("guarded")
	events := proposed(2)
	first, err := s.Append(ctx, stream, eventstore.NoStream(), events...)
	if err != nil {
		t.Fatal(err)
	}
	again, err := s.Append(ctx, stream, eventstore.Exact(first.NextRevision), events...)
	if err != nil || again != first {
		t.Errorf("retry at the current revision = %+v, %v; want %+v", again, err, first)
	}
}

// TestRetryFromAnotherStore retries an append through a second store, which
// has no memory of it: the server recognises the retry and answers without
// a position, and the store finds the position of the stored events.
func TestRetryFromAnotherStore(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	a, b := open(t, srv.ConnectionString()), open(t, srv.ConnectionString())
	stream := eventstore.ActivityStream("acct-" + uuid.NewString())
	events := proposed(3)
	first, err := a.Append(ctx, stream, eventstore.NoStream(), events...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, stream, eventstore.Exact(2), proposed(1)...); err != nil {
		t.Fatal(err)
	}
	appends := srv.Appends()
	retry, err := b.Append(ctx, stream, eventstore.NoStream(), events...)
	if err != nil || retry != first {
		t.Errorf("retry through another store = %+v, %v; want %+v", retry, err, first)
	}
	if srv.Appends() != appends {
		t.Error("the retry stored events")
	}
}

// TestTombstone checks the double's tombstones, which the key store relies
// on: reads and appends of a tombstoned stream fail with the client's
// stream-deleted error, and the stream cannot be recreated.
func TestTombstone(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	raw := rawClient(t, srv.ConnectionString())
	ev := client.EventData{EventID: uuid.New(), EventType: "KeyCreated", ContentType: client.ContentTypeJson, Data: []byte(`{}`)}
	if _, err := raw.AppendToStream(ctx, "key-u1", client.AppendToStreamOptions{ExpectedRevision: client.NoStream{}}, ev); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.TombstoneStream(ctx, "key-u1", client.TombstoneStreamOptions{ExpectedRevision: client.Revision(3)}); err == nil {
		t.Error("tombstone at a wrong expected revision succeeded")
	}
	if _, err := raw.TombstoneStream(ctx, "key-u1", client.TombstoneStreamOptions{ExpectedRevision: client.Revision(0)}); err != nil {
		t.Fatal(err)
	}
	deleted := func(what string, err error) {
		t.Helper()
		var e *client.Error
		if !errors.As(err, &e) || e.Code() != client.ErrorCodeStreamDeleted {
			t.Errorf("%s of a tombstoned stream: %v, want ErrorCodeStreamDeleted", what, err)
		}
	}
	_, err := raw.AppendToStream(ctx, "key-u1", client.AppendToStreamOptions{}, ev)
	deleted("append", err)
	_, err = raw.TombstoneStream(ctx, "key-u1", client.TombstoneStreamOptions{})
	deleted("tombstone", err)
	rs, err := raw.ReadStream(ctx, "key-u1", client.ReadStreamOptions{}, 10)
	if err == nil {
		defer rs.Close()
		_, err = rs.Recv()
	}
	deleted("read", err)
}

// TestCloseEndsResubscribing closes the store while its subscription waits
// to reconnect to a stopped server.
func TestCloseEndsResubscribing(t *testing.T) {
	srv := startServer(t)
	s := open(t, srv.ConnectionString())
	ctx := testCtx(t)
	done := make(chan error, 1)
	go func() {
		for _, err := range s.Subscribe(ctx, 0) {
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for srv.Subscriptions() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	srv.Close()
	time.Sleep(100 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, eventstore.ErrClosed) {
			t.Errorf("subscription ended with %v, want ErrClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("Close did not end a resubscribing subscription")
	}
}

// TestSubscribeSurvivesNodeDown takes the server away long enough for the
// client to give up discovery and close itself for good; the store replaces
// the client and the subscription goes on once the server is back.
func TestSubscribeSurvivesNodeDown(t *testing.T) {
	srv := startServer(t)
	// Give up discovery quickly: 2 attempts, 20 ms apart.
	s := open(t, srv.ConnectionString()+"&maxDiscoverAttempts=2&discoveryInterval=20")
	ctx := testCtx(t)
	stream := eventstore.LedgerStream("acct-" + uuid.NewString())
	first, second := proposed(1), proposed(1)
	if _, err := s.Append(ctx, stream, eventstore.NoStream(), first...); err != nil {
		t.Fatal(err)
	}
	got := make(chan uuid.UUID, 4)
	go func() {
		for rec, err := range s.Subscribe(ctx, 0) {
			if err != nil {
				return
			}
			got <- rec.ID
		}
	}()
	if id := <-got; id != first[0].ID {
		t.Fatalf("first event %s, want %s", id, first[0].ID)
	}
	subs := srv.Subscriptions()
	srv.Pause()
	time.Sleep(300 * time.Millisecond) // several failed resubscriptions
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	// The store may still hold the client that gave up, or one that is
	// discovering the node: retry, each append bounded by its own deadline,
	// until the test's deadline.
	for {
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := s.Append(callCtx, stream, eventstore.Exact(0), second...)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("append after the server came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case id := <-got:
		if id != second[0].ID {
			t.Errorf("after the outage the subscription delivered %s, want %s", id, second[0].ID)
		}
	case <-ctx.Done():
		t.Fatal("the subscription did not resume after the server came back")
	}
	if srv.Subscriptions() <= subs {
		t.Error("no new subscription reached the server")
	}
}

// TestUnreadableRecordsDoNotStopReads writes, with another client, an event
// to "ledger-" (a ledger stream without an account, which the service
// never writes) between the service's events: ReadAll and Subscribe yield
// it as unreadable, with its position and no content, and go on with the
// next events; any data and metadata in a ledger stream are a record for
// its reader to verify.
func TestUnreadableRecordsDoNotStopReads(t *testing.T) {
	srv := startServer(t)
	s := open(t, srv.ConnectionString())
	raw := rawClient(t, srv.ConnectionString())
	ctx := testCtx(t)
	foreign := func(stream string, data []byte) {
		t.Helper()
		_, err := raw.AppendToStream(ctx, stream, client.AppendToStreamOptions{}, client.EventData{
			EventID: uuid.New(), EventType: "SeatsPurchased", ContentType: client.ContentTypeBinary, Data: data, Metadata: []byte("not json"),
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	mine := func() {
		t.Helper()
		if _, err := s.Append(ctx, eventstore.LedgerStream("a"), eventstore.Any(), proposed(1)...); err != nil {
			t.Fatal(err)
		}
	}
	mine()
	foreign("ledger-", []byte(`{"count":500}`))
	foreign("ledger-a", []byte{0xff, 0, '{'})
	mine()

	want := "ok unreadable ok ok"
	check := func(what string, seq func(yield func(eventstore.Record, error) bool)) {
		t.Helper()
		var got []string
		for rec, err := range seq {
			var u *eventstore.UnreadableError
			switch {
			case err == nil:
				got = append(got, "ok")
			case errors.Is(err, eventstore.ErrUnreadable) && errors.As(err, &u) && rec.Position > 0 && u.Position == rec.Position && rec.Data == nil:
				got = append(got, "unreadable")
			default:
				t.Fatalf("%s: record %d: %v", what, len(got), err)
			}
			if len(got) == 4 {
				break
			}
		}
		if fmt.Sprint(got) != "["+want+"]" {
			t.Errorf("%s yields %v, want [%s]", what, got, want)
		}
	}
	check("ReadAll", s.ReadAll(ctx, 0))
	check("Subscribe", s.Subscribe(ctx, 0))
	var n int
	for _, err := range s.ReadStream(ctx, eventstore.LedgerStream("a"), 0) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 3 {
		t.Errorf("ReadStream yields %d records of ledger-a, want 3", n)
	}
}

// waitingInClient counts the goroutines blocked in the client while they
// wait for a connection.
func waitingInClient() int {
	var buf bytes.Buffer
	_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
	return strings.Count(buf.String(), "esdb.(*grpcClient).getConnectionHandle")
}

// TestCallsReturnWhenDiscoveryFails makes node discovery fail while appends
// wait for it. The client stops serving requests once discovery fails, and
// ignores contexts while a call waits for a connection, so those appends
// used to wait forever; they must return when their context ends at the
// latest, the store must append again once the node is back, and no
// goroutine may stay blocked in the dead client.
func TestCallsReturnWhenDiscoveryFails(t *testing.T) {
	srv := startServer(t)
	// Discovery takes about 2 s against a stopped node: the appends below
	// all reach the client while it lasts.
	s := open(t, srv.ConnectionString()+"&maxDiscoverAttempts=20&discoveryInterval=100")
	ctx := testCtx(t)
	stream := eventstore.LedgerStream("acct-" + uuid.NewString())
	if _, err := s.Append(ctx, stream, eventstore.NoStream(), proposed(1)...); err != nil {
		t.Fatal(err)
	}
	before := waitingInClient()
	srv.Pause()
	// The open connection is cut: the next call fails and makes the
	// client discover the node again at the call after it.
	callCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	_, err := s.Append(callCtx, stream, eventstore.Exact(0), proposed(1)...)
	cancel()
	if err == nil {
		t.Fatal("append to a stopped node succeeded")
	}

	const n = 4
	errs := make(chan error, n)
	for range n {
		go func() {
			callCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			_, err := s.Append(callCtx, stream, eventstore.Exact(0), proposed(1)...)
			errs <- err
		}()
	}
	// Each append has 3 s; allow as much again for a loaded machine before
	// calling it stuck.
	stuck := time.After(6 * time.Second)
	for i := range n {
		select {
		case err := <-errs:
			if err == nil {
				t.Errorf("append %d to a stopped node succeeded", i)
			}
		case <-stuck:
			t.Fatalf("%d of %d appends still blocked 3 s after their context ended", n-i, n)
		}
	}

	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	for {
		callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := s.Append(callCtx, stream, eventstore.Exact(0), proposed(1)...)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("append after the node came back: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Replacing the dead client ends the calls still blocked in it.
	for waitingInClient() > before {
		if ctx.Err() != nil {
			t.Fatalf("%d goroutines still blocked in a dead client", waitingInClient()-before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
