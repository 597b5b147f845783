package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	cenats "github.com/cloudevents/sdk-go/protocol/nats/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream is the downstream stream: the mirror of the ledger's published
// events in the downstream account.
const Stream = "LEDGER"

// Config is what Run needs.
type Config struct {
	NATSURL   string
	NkeySeed  string // path of the downstream nkey seed
	Durable   string
	StateFile string
	Logger    *slog.Logger
}

// Run consumes the license events (ledger.>) durably until ctx ends,
// applying each to counter and saving counter to the state file before
// acknowledging. A state file left by an earlier run is loaded first.
func Run(ctx context.Context, cfg Config, counter *Counter) error {
	if err := checkConfig(cfg); err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if b, err := os.ReadFile(cfg.StateFile); err == nil {
		if err := counter.UnmarshalJSON(b); err != nil {
			return fmt.Errorf("consumer: state %s: %w", cfg.StateFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("consumer: state: %w", err)
	}
	creds, err := nats.NkeyOptionFromSeed(cfg.NkeySeed)
	if err != nil {
		return fmt.Errorf("consumer: credential: %w", err)
	}
	nc, err := nats.Connect(cfg.NATSURL, creds, nats.Name("seat-counter"), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("consumer: connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, Stream, jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		FilterSubject: "ledger.>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxAckPending: 1000,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("consumer: durable consumer %s on %s: %w", cfg.Durable, Stream, err)
	}
	log.Info("consuming", "stream", Stream, "durable", cfg.Durable)
	for ctx.Err() == nil {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("fetch", "err", err)
			time.Sleep(time.Second)
			continue
		}
		var got []jetstream.Msg
		for m := range batch.Messages() {
			if err := apply(ctx, counter, m); err != nil {
				// A message this example cannot read: logged and
				// acknowledged, so that it does not block the others.
				log.Warn("message skipped", "subject", m.Subject(), "err", err)
			}
			got = append(got, m)
		}
		if len(got) == 0 {
			continue
		}
		if err := save(cfg.StateFile, counter); err != nil {
			return err // unacknowledged: redelivered to the next run
		}
		for _, m := range got {
			if err := m.Ack(); err != nil {
				log.Warn("ack", "err", err)
			}
		}
	}
	return nil
}

// apply decodes m with the CloudEvents SDK's NATS binding (structured
// mode: the body is the envelope) and folds it into counter.
func apply(ctx context.Context, counter *Counter, m jetstream.Msg) error {
	md, err := m.Metadata()
	if err != nil {
		return err
	}
	ev, err := binding.ToEvent(ctx, cenats.NewMessage(&nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}))
	if err != nil {
		return fmt.Errorf("not a CloudEvent: %w", err)
	}
	if err := ev.Validate(); err != nil {
		return err
	}
	return counter.Apply(md.Sequence.Stream, *ev)
}

// save writes counter to path atomically.
func save(path string, counter *Counter) error {
	b, err := counter.MarshalJSON()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".seat-counter-*")
	if err != nil {
		return fmt.Errorf("consumer: save state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("consumer: save state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("consumer: save state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("consumer: save state: %w", err)
	}
	return nil
}
