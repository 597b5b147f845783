// Package esdbtest runs an in-process stand-in for an EventStoreDB node,
// speaking the gRPC protocol of EventStore-Client-Go/v4 closely enough for the
// esdb adapter's tests and benchmarks.
//
// # What it implements
//
// The server answers the calls the adapter makes and no others: feature
// discovery (ServerFeatures.GetSupportedMethods), Streams.Append,
// Streams.Read on one stream or on $all (counted reads and catch-up
// subscriptions, with stream-name or event-type filters), and
// Streams.Tombstone. Events live in memory with a global position that only
// grows and is not dense.
//
// It follows the real server where the client depends on it: every event it
// returns carries the "type", "content-type" and "created" (.NET ticks since
// the Unix epoch) system metadata, without which the client exits the
// process; a read of a missing stream answers with a single stream_not_found
// message; expected revisions are enforced, and appending events whose ids
// are already stored at the expected place succeeds without writing, with no
// position in the answer; a tombstoned stream fails reads and appends with the
// "stream-deleted" exception trailer. Its keepalive policy permits the
// client's 10 s pings.
//
// # What it does not tell
//
// Positions here are commit == prepare for every event, and idempotency is
// checked exactly rather than through the server's bounded id cache. Only a
// real server confirms those details.
package esdbtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/protos/serverfeatures"
	"github.com/EventStore/EventStore-Client-Go/v4/protos/shared"
	api "github.com/EventStore/EventStore-Client-Go/v4/protos/streams"
	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ServerVersion is the EventStoreDB version the server reports.
const ServerVersion = "24.10.0"

// Server is a running in-process EventStoreDB stand-in. It is safe for
// concurrent use.
type Server struct {
	grpc *grpc.Server
	lis  *trackingListener

	mu      sync.Mutex
	all     []*record
	streams map[string]*streamState
	next    uint64        // position of the next event
	changed chan struct{} // closed and replaced on every write
	appends int           // append calls that wrote events
	subs    int           // subscriptions to $all started
}

type record struct {
	id          uuid.UUID
	stream      string
	revision    uint64
	position    uint64
	eventType   string
	contentType string
	created     int64 // .NET ticks since the Unix epoch
	data        []byte
	metadata    []byte
}

type streamState struct {
	events     []*record
	tombstoned bool
}

// Start starts a server on 127.0.0.1 on a free port. Stop it with Close.
//
// Like a real node, the server holds one system event ("$settings") before
// any client writes, so filters on $all have something to leave out.
func Start() (*Server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("esdbtest: listen: %w", err)
	}
	s := &Server{
		lis:     &trackingListener{addr: l.Addr(), inner: l, conns: map[net.Conn]struct{}{}},
		streams: map[string]*streamState{},
		next:    1024,
		changed: make(chan struct{}),
	}
	s.grpc = grpc.NewServer(
		// The client pings every 10 s; grpc-go's default policy (5 min)
		// would answer with GOAWAY "too_many_pings".
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             5 * time.Second,
			PermitWithoutStream: true,
		}),
	)
	api.RegisterStreamsServer(s.grpc, &streamsServer{s: s})
	serverfeatures.RegisterServerFeaturesServer(s.grpc, featuresServer{})
	s.mu.Lock()
	s.write("$settings", []*api.AppendReq_ProposedMessage{{
		Id:       uuidToProto(uuid.New()),
		Metadata: map[string]string{"type": "$settings", "content-type": "application/json"},
		Data:     []byte(`{}`),
	}})
	s.mu.Unlock()
	go s.grpc.Serve(s.lis) //nolint:errcheck // Serve returns when Close stops the server.
	return s, nil
}

// Addr returns the server's host:port.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// ConnectionString returns an esdb:// connection string for the server.
func (s *Server) ConnectionString() string {
	return "esdb://" + s.Addr() + "?tls=false"
}

// DropConnections closes every client connection at the TCP level, as a
// network failure or a node restart would. The server keeps listening, so
// clients can reconnect.
func (s *Server) DropConnections() { s.lis.closeAll() }

// Appends returns how many append calls wrote at least one event.
// Idempotent replays and rejected appends do not count.
func (s *Server) Appends() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.appends
}

// Pause stops accepting connections and cuts the open ones, as a node that
// goes down would; the events stay. Resume brings the server back on the
// same address.
func (s *Server) Pause() {
	_ = s.lis.Close() // Serve returns
	s.lis.closeAll()
}

// Resume listens again on the address the server had before Pause.
func (s *Server) Resume() error {
	l, err := net.Listen("tcp", s.lis.Addr().String())
	if err != nil {
		return fmt.Errorf("esdbtest: listen again: %w", err)
	}
	s.lis.mu.Lock()
	s.lis.inner = l
	s.lis.mu.Unlock()
	go s.grpc.Serve(s.lis) //nolint:errcheck // Serve returns when Close stops the server.
	return nil
}

// Subscriptions returns how many subscriptions to $all clients started.
func (s *Server) Subscriptions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.subs
}

// RewriteLast replaces the data of the last event of $all with what edit
// returns, in place, as someone with the node's files could: nothing marks
// the change.
func (s *Server) RewriteLast(edit func(data []byte) []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.all) == 0 {
		return
	}
	r := s.all[len(s.all)-1]
	r.data = edit(slices.Clone(r.data))
}

// Truncate forgets the last n events of $all, as a node restored from an
// older copy of its files would.
func (s *Server) Truncate(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ; n > 0 && len(s.all) > 0; n-- {
		r := s.all[len(s.all)-1]
		s.all = s.all[:len(s.all)-1]
		if st := s.streams[r.stream]; st != nil && len(st.events) > 0 && st.events[len(st.events)-1] == r {
			st.events = st.events[:len(st.events)-1]
		}
	}
}

// Close stops the server and closes every connection.
func (s *Server) Close() {
	s.lis.closeAll()
	s.grpc.Stop()
}

// write appends events to stream and returns the stored records. s.mu is held.
func (s *Server) write(stream string, msgs []*api.AppendReq_ProposedMessage) []*record {
	st := s.streams[stream]
	if st == nil {
		st = &streamState{}
		s.streams[stream] = st
	}
	created := time.Now().UnixNano() / 100
	out := make([]*record, 0, len(msgs))
	for _, m := range msgs {
		r := &record{
			id:          uuidFromProto(m.GetId()),
			stream:      stream,
			revision:    uint64(len(st.events)),
			position:    s.next,
			eventType:   m.GetMetadata()["type"],
			contentType: m.GetMetadata()["content-type"],
			created:     created,
			data:        slices.Clone(m.GetData()),
			metadata:    slices.Clone(m.GetCustomMetadata()),
		}
		// Positions are byte offsets in a real node's log: growing, not dense.
		s.next += 128 + uint64(len(r.data)+len(r.metadata))
		st.events = append(st.events, r)
		s.all = append(s.all, r)
		out = append(out, r)
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return out
}

type featuresServer struct {
	serverfeatures.UnimplementedServerFeaturesServer
}

func (featuresServer) GetSupportedMethods(context.Context, *shared.Empty) (*serverfeatures.SupportedMethods, error) {
	const svc = "event_store.client.streams.streams"
	return &serverfeatures.SupportedMethods{
		EventStoreServerVersion: ServerVersion,
		Methods: []*serverfeatures.SupportedMethod{
			{MethodName: "read", ServiceName: svc},
			{MethodName: "append", ServiceName: svc},
			{MethodName: "tombstone", ServiceName: svc},
		},
	}, nil
}

type streamsServer struct {
	api.UnimplementedStreamsServer
	s *Server
}

// expectation is an expected revision as the protocol states it.
type expectation struct {
	kind     string // "any", "no_stream", "stream_exists", "revision"
	revision uint64
}

func (streamsServer) expectationOf(opts interface {
	GetRevision() uint64
	GetNoStream() *shared.Empty
	GetAny() *shared.Empty
	GetStreamExists() *shared.Empty
}) expectation {
	switch {
	case opts.GetNoStream() != nil:
		return expectation{kind: "no_stream"}
	case opts.GetStreamExists() != nil:
		return expectation{kind: "stream_exists"}
	case opts.GetAny() != nil:
		return expectation{kind: "any"}
	default:
		return expectation{kind: "revision", revision: opts.GetRevision()}
	}
}

func (e expectation) matches(n int) bool {
	switch e.kind {
	case "no_stream":
		return n == 0
	case "stream_exists":
		return n > 0
	case "revision":
		return uint64(n) == e.revision+1
	default:
		return true
	}
}

// Append implements the client-streaming append: one options message, then
// the proposed events.
func (ss *streamsServer) Append(stream api.Streams_AppendServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	opts := first.GetOptions()
	if opts == nil {
		return status.Error(codes.InvalidArgument, "append: first message must carry options")
	}
	name := string(opts.GetStreamIdentifier().GetStreamName())
	want := ss.expectationOf(opts)
	var msgs []*api.AppendReq_ProposedMessage
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if m := req.GetProposedMessage(); m != nil {
			msgs = append(msgs, m)
		}
	}

	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[name]
	if st != nil && st.tombstoned {
		return streamDeleted(stream.Context(), name)
	}
	var n int
	if st != nil {
		n = len(st.events)
	}
	if !want.matches(n) {
		if resp, ok := ss.replay(st, want, msgs); ok {
			return stream.SendAndClose(resp)
		}
		return stream.SendAndClose(wrongExpectedVersion(want, n))
	}
	if want.kind == "any" {
		// The real server recognises a retried write with expected revision
		// any from its cache of recent event ids.
		if resp, ok := ss.replay(st, want, msgs); ok {
			return stream.SendAndClose(resp)
		}
	}
	if len(msgs) == 0 {
		return stream.SendAndClose(success(n, nil))
	}
	written := s.write(name, msgs)
	s.appends++
	return stream.SendAndClose(success(n+len(msgs), written[len(written)-1]))
}

// replay reports whether msgs are already stored in st where want says they
// were written, and the answer to give: the revision of the last of them and
// no position, as a real node answers an idempotent write.
func (ss *streamsServer) replay(st *streamState, want expectation, msgs []*api.AppendReq_ProposedMessage) (*api.AppendResp, bool) {
	if st == nil || len(msgs) == 0 {
		return nil, false
	}
	var start int
	switch want.kind {
	case "no_stream":
		start = 0
	case "revision":
		if want.revision >= uint64(len(st.events)) {
			return nil, false
		}
		start = int(want.revision) + 1
	default:
		first := uuidFromProto(msgs[0].GetId())
		start = slices.IndexFunc(st.events, func(r *record) bool { return r.id == first })
		if start < 0 {
			return nil, false
		}
	}
	if start+len(msgs) > len(st.events) {
		return nil, false
	}
	for i, m := range msgs {
		if st.events[start+i].id != uuidFromProto(m.GetId()) {
			return nil, false
		}
	}
	last := st.events[start+len(msgs)-1]
	return &api.AppendResp{Result: &api.AppendResp_Success_{Success: &api.AppendResp_Success{
		CurrentRevisionOption: &api.AppendResp_Success_CurrentRevision{CurrentRevision: last.revision},
		PositionOption:        &api.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}},
	}}}, true
}

func success(n int, last *record) *api.AppendResp {
	ok := &api.AppendResp_Success{}
	if n == 0 {
		ok.CurrentRevisionOption = &api.AppendResp_Success_NoStream{NoStream: &shared.Empty{}}
	} else {
		ok.CurrentRevisionOption = &api.AppendResp_Success_CurrentRevision{CurrentRevision: uint64(n - 1)}
	}
	if last == nil {
		ok.PositionOption = &api.AppendResp_Success_NoPosition{NoPosition: &shared.Empty{}}
	} else {
		ok.PositionOption = &api.AppendResp_Success_Position{Position: &api.AppendResp_Position{
			CommitPosition: last.position, PreparePosition: last.position,
		}}
	}
	return &api.AppendResp{Result: &api.AppendResp_Success_{Success: ok}}
}

func wrongExpectedVersion(want expectation, n int) *api.AppendResp {
	w := &api.AppendResp_WrongExpectedVersion{}
	if n == 0 {
		w.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentNoStream{CurrentNoStream: &shared.Empty{}}
	} else {
		w.CurrentRevisionOption = &api.AppendResp_WrongExpectedVersion_CurrentRevision{CurrentRevision: uint64(n - 1)}
	}
	switch want.kind {
	case "no_stream":
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedNoStream{ExpectedNoStream: &shared.Empty{}}
	case "stream_exists":
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedStreamExists{ExpectedStreamExists: &shared.Empty{}}
	case "any":
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedAny{ExpectedAny: &shared.Empty{}}
	default:
		w.ExpectedRevisionOption = &api.AppendResp_WrongExpectedVersion_ExpectedRevision{ExpectedRevision: want.revision}
	}
	return &api.AppendResp{Result: &api.AppendResp_WrongExpectedVersion_{WrongExpectedVersion: w}}
}

// streamDeleted fails a call on a tombstoned stream the way a real node does:
// the client recognises the "exception" trailer.
func streamDeleted(ctx context.Context, name string) error {
	_ = grpc.SetTrailer(ctx, metadata.Pairs("exception", "stream-deleted", "stream-name", name))
	return status.Errorf(codes.FailedPrecondition, "event stream '%s' is deleted", name)
}

// Tombstone deletes a stream for good: reads and appends fail afterwards, and
// a "$streamDeleted" event marks the deletion in $all.
func (ss *streamsServer) Tombstone(ctx context.Context, req *api.TombstoneReq) (*api.TombstoneResp, error) {
	opts := req.GetOptions()
	name := string(opts.GetStreamIdentifier().GetStreamName())
	want := ss.expectationOf(opts)
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[name]
	if st != nil && st.tombstoned {
		return nil, streamDeleted(ctx, name)
	}
	var n int
	if st != nil {
		n = len(st.events)
	}
	if !want.matches(n) {
		_ = grpc.SetTrailer(ctx, metadata.Pairs("exception", "wrong-expected-version"))
		return nil, status.Errorf(codes.FailedPrecondition, "tombstone %s: wrong expected version", name)
	}
	written := s.write(name, []*api.AppendReq_ProposedMessage{{
		Id:       uuidToProto(uuid.New()),
		Metadata: map[string]string{"type": "$streamDeleted", "content-type": "application/octet-stream"},
	}})
	t := written[0]
	t.revision = math.MaxInt64
	s.streams[name].tombstoned = true
	return &api.TombstoneResp{PositionOption: &api.TombstoneResp_Position_{Position: &api.TombstoneResp_Position{
		CommitPosition: t.position, PreparePosition: t.position,
	}}}, nil
}

// Read serves counted reads of a stream or of $all, and catch-up
// subscriptions to $all.
func (ss *streamsServer) Read(req *api.ReadReq, stream api.Streams_ReadServer) error {
	opts := req.GetOptions()
	match, err := filterOf(opts.GetFilter())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	switch {
	case opts.GetStream() != nil && opts.GetSubscription() == nil:
		return ss.readStream(opts, stream)
	case opts.GetAll() != nil && opts.GetSubscription() == nil:
		return ss.readAll(opts, match, stream)
	case opts.GetAll() != nil:
		return ss.subscribeAll(opts, match, stream)
	default:
		return status.Error(codes.Unimplemented, "esdbtest: stream subscriptions are not implemented")
	}
}

func (ss *streamsServer) readStream(opts *api.ReadReq_Options, stream api.Streams_ReadServer) error {
	so := opts.GetStream()
	name := string(so.GetStreamIdentifier().GetStreamName())
	s := ss.s
	s.mu.Lock()
	st := s.streams[name]
	if st != nil && st.tombstoned {
		s.mu.Unlock()
		return streamDeleted(stream.Context(), name)
	}
	if st == nil || len(st.events) == 0 {
		s.mu.Unlock()
		return stream.Send(&api.ReadResp{Content: &api.ReadResp_StreamNotFound_{StreamNotFound: &api.ReadResp_StreamNotFound{
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(name)},
		}}})
	}
	events := st.events
	s.mu.Unlock()

	n := uint64(len(events))
	var picked []*record
	backwards := opts.GetReadDirection() == api.ReadReq_Options_Backwards
	switch {
	case !backwards:
		from := n
		switch {
		case so.GetStart() != nil:
			from = 0
		case so.GetEnd() != nil:
			from = n
		default:
			from = min(so.GetRevision(), n)
		}
		picked = events[from:]
	default:
		to := n // exclusive
		if so.GetStart() != nil {
			to = 1
		} else if so.GetEnd() == nil {
			to = min(so.GetRevision()+1, n)
		}
		picked = slices.Clone(events[:to])
		slices.Reverse(picked)
	}
	if c := opts.GetCount(); uint64(len(picked)) > c {
		picked = picked[:c]
	}
	for _, r := range picked {
		if err := stream.Send(readEvent(r)); err != nil {
			return err
		}
	}
	return nil
}

func (ss *streamsServer) readAll(opts *api.ReadReq_Options, match func(*record) bool, stream api.Streams_ReadServer) error {
	ao := opts.GetAll()
	s := ss.s
	s.mu.Lock()
	all := s.all
	s.mu.Unlock()

	var picked []*record
	if opts.GetReadDirection() == api.ReadReq_Options_Backwards {
		to := len(all) // exclusive
		switch {
		case ao.GetStart() != nil:
			to = 0
		case ao.GetPosition() != nil:
			p := ao.GetPosition().GetCommitPosition()
			to, _ = slices.BinarySearchFunc(all, p, func(r *record, p uint64) int { return cmpU(r.position, p) })
		}
		picked = slices.Clone(all[:to])
		slices.Reverse(picked)
	} else {
		from := 0
		switch {
		case ao.GetEnd() != nil:
			from = len(all)
		case ao.GetPosition() != nil:
			p := ao.GetPosition().GetCommitPosition()
			from, _ = slices.BinarySearchFunc(all, p, func(r *record, p uint64) int { return cmpU(r.position, p) })
		}
		picked = all[from:]
	}
	sent := uint64(0)
	for _, r := range picked {
		if sent >= opts.GetCount() {
			break
		}
		if match != nil && !match(r) {
			continue
		}
		if err := stream.Send(readEvent(r)); err != nil {
			return err
		}
		sent++
	}
	return nil
}

// subscribeAll confirms the subscription, sends the stored events after the
// start (exclusive, as the real server does), a checkpoint and caught_up,
// then each new event as it is written, until the client goes away.
func (ss *streamsServer) subscribeAll(opts *api.ReadReq_Options, match func(*record) bool, stream api.Streams_ReadServer) error {
	ctx := stream.Context()
	s := ss.s
	err := stream.Send(&api.ReadResp{Content: &api.ReadResp_Confirmation{Confirmation: &api.ReadResp_SubscriptionConfirmation{
		SubscriptionId: uuid.NewString(),
	}}})
	if err != nil {
		return err
	}

	s.mu.Lock()
	s.subs++
	next := 0 // index in s.all of the next event to consider
	switch ao := opts.GetAll(); {
	case ao.GetEnd() != nil:
		next = len(s.all)
	case ao.GetPosition() != nil:
		p := ao.GetPosition().GetCommitPosition()
		next, _ = slices.BinarySearchFunc(s.all, p+1, func(r *record, p uint64) int { return cmpU(r.position, p) })
	}
	s.mu.Unlock()

	caughtUp := false
	for {
		s.mu.Lock()
		batch := s.all[next:]
		changed := s.changed
		s.mu.Unlock()
		next += len(batch)

		for _, r := range batch {
			if match != nil && !match(r) {
				continue
			}
			if err := stream.Send(readEvent(r)); err != nil {
				return err
			}
		}
		if !caughtUp {
			caughtUp = true
			if match != nil && next > 0 {
				s.mu.Lock()
				last := s.all[next-1].position
				s.mu.Unlock()
				if err := stream.Send(&api.ReadResp{Content: &api.ReadResp_Checkpoint_{Checkpoint: &api.ReadResp_Checkpoint{
					CommitPosition: last, PreparePosition: last,
				}}}); err != nil {
					return err
				}
			}
			if err := stream.Send(&api.ReadResp{Content: &api.ReadResp_CaughtUp_{CaughtUp: &api.ReadResp_CaughtUp{}}}); err != nil {
				return err
			}
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-changed:
		}
	}
}

func readEvent(r *record) *api.ReadResp {
	return &api.ReadResp{Content: &api.ReadResp_Event{Event: &api.ReadResp_ReadEvent{
		Event: &api.ReadResp_ReadEvent_RecordedEvent{
			Id:               uuidToProto(r.id),
			StreamIdentifier: &shared.StreamIdentifier{StreamName: []byte(r.stream)},
			StreamRevision:   r.revision,
			PreparePosition:  r.position,
			CommitPosition:   r.position,
			Metadata: map[string]string{
				"type":         r.eventType,
				"content-type": r.contentType,
				"created":      strconv.FormatInt(r.created, 10),
			},
			CustomMetadata: r.metadata,
			Data:           r.data,
		},
		Position: &api.ReadResp_ReadEvent_CommitPosition{CommitPosition: r.position},
	}}}
}

// filterOf turns a read filter into a predicate; nil means no filter.
func filterOf(f *api.ReadReq_Options_FilterOptions) (func(*record) bool, error) {
	if f == nil {
		return nil, nil
	}
	expr := f.GetStreamIdentifier()
	field := func(r *record) string { return r.stream }
	if expr == nil {
		expr = f.GetEventType()
		field = func(r *record) string { return r.eventType }
	}
	if expr == nil {
		return nil, errors.New("filter without expression")
	}
	if re := expr.GetRegex(); re != "" {
		rx, err := regexp.Compile(re)
		if err != nil {
			return nil, fmt.Errorf("filter regex: %w", err)
		}
		return func(r *record) bool { return rx.MatchString(field(r)) }, nil
	}
	prefixes := expr.GetPrefix()
	return func(r *record) bool {
		v := field(r)
		for _, p := range prefixes {
			if strings.HasPrefix(v, p) {
				return true
			}
		}
		return false
	}, nil
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func uuidToProto(id uuid.UUID) *shared.UUID {
	most, least := int64(0), int64(0)
	for i := range 8 {
		most = most<<8 | int64(id[i])
		least = least<<8 | int64(id[8+i])
	}
	return &shared.UUID{Value: &shared.UUID_Structured_{Structured: &shared.UUID_Structured{
		MostSignificantBits: most, LeastSignificantBits: least,
	}}}
}

func uuidFromProto(u *shared.UUID) uuid.UUID {
	if s := u.GetString_(); s != "" {
		id, _ := uuid.Parse(s)
		return id
	}
	st := u.GetStructured()
	var id uuid.UUID
	most, least := uint64(st.GetMostSignificantBits()), uint64(st.GetLeastSignificantBits())
	for i := range 8 {
		id[7-i] = byte(most >> (8 * i))
		id[15-i] = byte(least >> (8 * i))
	}
	return id
}

// trackingListener remembers the connections it accepted so that they can
// be cut all at once. Its listener can be replaced (Resume) while an old
// Serve loop is still returning.
type trackingListener struct {
	addr  net.Addr
	mu    sync.Mutex
	inner net.Listener
	conns map[net.Conn]struct{}
}

func (l *trackingListener) listener() net.Listener {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inner
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.listener().Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.conns[c] = struct{}{}
	l.mu.Unlock()
	return c, nil
}

func (l *trackingListener) Close() error { return l.listener().Close() }

func (l *trackingListener) Addr() net.Addr { return l.addr }

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		_ = c.Close()
		delete(l.conns, c)
	}
}
