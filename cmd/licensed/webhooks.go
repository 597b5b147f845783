package main

import (
	"context"
	"fmt"
	"strings"
	"unicode"

	natsjs "github.com/nats-io/nats.go/jetstream"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/internal/cycleclose"
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
	s, err := webhooks.Open(ctx, webhooks.Config{
		JS: js, Replicas: m.cfg.Replicas,
		Guard:      webhooks.Guard{AllowPrivate: m.cfg.WebhookAllowPrivate},
		EventTypes: publishedTypes(),
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
// contract v2), which webhook filters name: for each stored type,
// "dev.licenseledger.<noun>.<verb>.v1", the verb the stored name's last
// word and the noun its words before, lower case, joined by "_"; and the
// billing cycle's closing notification.
func publishedTypes() []string {
	out := []string{cycleclose.Type}
	for _, t := range ledger.EventTypes {
		var words []string
		start := 0
		for i, r := range t {
			if i > 0 && unicode.IsUpper(r) {
				words = append(words, strings.ToLower(t[start:i]))
				start = i
			}
		}
		words = append(words, strings.ToLower(t[start:]))
		name := words[0]
		if len(words) > 1 {
			name = strings.Join(words[:len(words)-1], "_") + "." + words[len(words)-1]
		}
		out = append(out, "dev.licenseledger."+name+".v1")
	}
	return out
}
