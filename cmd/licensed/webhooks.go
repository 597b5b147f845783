package main

import (
	"context"
	"fmt"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/internal/contract"
	"github.com/licenseledger/ledger/internal/httpapi"
	"github.com/licenseledger/ledger/internal/webhooks"
)

// openWebhooks opens the webhook endpoints on the NATS of the backend
// (every backend has one: the event store's, or the relay's) and counts
// their deliveries in the metrics. Run delivers.
func (m *Main) openWebhooks(ctx context.Context) (*webhooks.Service, error) {
	js, err := natsjs.New(m.backend.nc)
	if err != nil {
		return nil, err
	}
	types, err := publishedTypes()
	if err != nil {
		return nil, fmt.Errorf("webhooks: the published types: %w", err)
	}
	s, err := webhooks.Open(ctx, webhooks.Config{
		JS: js, Replicas: m.cfg.Replicas,
		Guard:      webhooks.Guard{AllowPrivate: m.cfg.WebhookAllowPrivate},
		EventTypes: types,
		Logger:     m.log.With("component", "webhooks"),
	})
	if err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	m.metrics.CountWebhooks(func() httpapi.WebhookCounts {
		st := s.Stats()
		return httpapi.WebhookCounts{Delivered: st.Delivered, Failed: st.Failed, Pending: st.Pending}
	})
	if m.cfg.WebhookAllowPrivate {
		m.log.Warn("webhook endpoints may be on private, loopback and link-local addresses and use plain http (--webhook-allow-private)")
	}
	return s, nil
}

// publishedTypes are the CloudEvents types of the published events (event
// contract v2), which webhook filters name: every version of every stored
// event type (an event is published with the version it was stored with),
// and the billing cycle's closing notification.
func publishedTypes() ([]string, error) {
	schemas, err := contract.Schemas()
	if err != nil {
		return nil, err
	}
	out := []string{contract.BillingEventType}
	for _, s := range schemas {
		out = append(out, s.Type)
	}
	return out, nil
}
