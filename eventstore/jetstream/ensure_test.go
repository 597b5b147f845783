package jetstream_test

import (
	"context"
	"testing"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/eventstore/jetstream"
)

// streamsJS answers EnsureStream's two calls: the stream as it exists, and
// the configuration it is updated to.
type streamsJS struct {
	natsjs.JetStream
	cur     natsjs.StreamConfig
	updated *natsjs.StreamConfig
}

type cachedStream struct {
	natsjs.Stream
	info *natsjs.StreamInfo
}

func (s cachedStream) CachedInfo() *natsjs.StreamInfo { return s.info }

func (j *streamsJS) Stream(context.Context, string) (natsjs.Stream, error) {
	return cachedStream{info: &natsjs.StreamInfo{Config: j.cur}}, nil
}

func (j *streamsJS) CreateOrUpdateStream(_ context.Context, cfg natsjs.StreamConfig) (natsjs.Stream, error) {
	j.updated = &cfg
	return cachedStream{info: &natsjs.StreamInfo{Config: cfg}}, nil
}

// A store configured with one replica, opening a ledger stream provisioned
// with three, keeps the three and does not turn direct gets on for them.
func TestEnsureStreamKeepsReplicasWithoutDirectGets(t *testing.T) {
	cur := jetstream.StreamConfig(jetstream.Config{Replicas: 3})
	js := &streamsJS{cur: cur}
	want := jetstream.StreamConfig(jetstream.Config{Replicas: 1})
	if !want.AllowDirect {
		t.Fatal("the configuration of a single replica does not allow direct gets")
	}
	if _, err := jetstream.EnsureStream(t.Context(), js, want); err != nil {
		t.Fatal(err)
	}
	if js.updated == nil {
		t.Fatal("the stream was not updated")
	}
	if got := js.updated; got.Replicas != 3 || got.AllowDirect {
		t.Fatalf("stream updated to %d replicas, direct gets %v; want 3 replicas without direct gets", got.Replicas, got.AllowDirect)
	}
	// A single replica kept as it is allows them.
	js = &streamsJS{cur: want}
	if _, err := jetstream.EnsureStream(t.Context(), js, want); err != nil {
		t.Fatal(err)
	}
	if !js.updated.AllowDirect {
		t.Fatal("a single-replica stream was updated without direct gets")
	}
}
