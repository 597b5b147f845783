package main

import (
	"io"
	"slices"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	env := map[string]string{"LICENSED_HTTP_ADDR": "127.0.0.1:9000", "LICENSED_DURABILITY": "interval"}
	getenv := func(k string) string { return env[k] }
	c, err := ParseConfig([]string{"--durability", "fsync"}, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != "127.0.0.1:9000" || c.Durability != "fsync" || c.DataDir != "./data" || c.Store != "jetstream" || c.Replicas != 1 {
		t.Fatalf("config %+v: want the variable over the default and the flag over the variable", c)
	}
	for _, bad := range [][]string{
		{"--durability", "sometimes"},
		{"--store", "postgres://x"},
		{"--replicas", "3"}, // the embedded server is a single node
		{"--replicas", "zero", "--nats-url", "nats://127.0.0.1:4222"},
		{"--log-format", "xml"},
		{"--nats-creds", "licensed.nk"}, // the embedded server has its own
		{"--downstream-consumers", "0"},
		{"--downstream-consumers", "many"},
		{"--public-url", "ledger.example.com"},
		{"--public-url", "ftp://ledger.example.com"},
		{"--public-url", "https://ledger.example.com/?x=1"},
		{"extra"},
	} {
		if _, err := ParseConfig(bad, getenv, io.Discard); err == nil {
			t.Errorf("ParseConfig(%q) accepted", bad)
		}
	}
	if c, err := ParseConfig([]string{"--public-url", "https://ledger.example.com/"}, getenv, io.Discard); err != nil || c.PublicURL != "https://ledger.example.com" {
		t.Errorf("--public-url: %q, %v", c.PublicURL, err)
	}
	if got := defaultPublicURL("0.0.0.0:8080"); got != "http://localhost:8080" {
		t.Errorf("public URL of 0.0.0.0:8080: %s", got)
	}
	if _, err := ParseConfig([]string{"--replicas", "3", "--nats-url", "nats://127.0.0.1:4222"}, getenv, io.Discard); err != nil {
		t.Errorf("three replicas on an external cluster refused: %v", err)
	}
}

func TestDownstreamConsumersSetting(t *testing.T) {
	c, err := ParseConfig(nil, func(string) string { return "" }, io.Discard)
	if err != nil || c.DownstreamConsumers != 1000 {
		t.Fatalf("default: %d %v, want 1000", c.DownstreamConsumers, err)
	}
	c, err = ParseConfig(nil, func(k string) string { return map[string]string{"LICENSED_DOWNSTREAM_CONSUMERS": "20"}[k] }, io.Discard)
	if err != nil || c.DownstreamConsumers != 20 {
		t.Fatalf("LICENSED_DOWNSTREAM_CONSUMERS: %d %v, want 20", c.DownstreamConsumers, err)
	}
}

func TestNATSCredsSetting(t *testing.T) {
	env := map[string]string{"LICENSED_NATS_URL": "nats://n1:4222", "LICENSED_NATS_CREDS": "/run/secrets/ledger.creds"}
	c, err := ParseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil || c.NATSCreds != "/run/secrets/ledger.creds" {
		t.Fatalf("LICENSED_NATS_CREDS: %+v %v", c, err)
	}
	c, err = ParseConfig([]string{"--nats-creds", "other.nk"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil || c.NATSCreds != "other.nk" {
		t.Fatalf("--nats-creds: %+v %v", c, err)
	}
}

func TestWithoutCredentials(t *testing.T) {
	got := withoutCredentials("nats://user:secret@n1:4222,nats://s3cr3tt0ken@n2:4222,nats://n3:4222")
	if strings.Contains(got, "secret") || strings.Contains(got, "s3cr3tt0ken") || !strings.Contains(got, "n1:4222") || !strings.Contains(got, "n3:4222") {
		t.Fatalf("withoutCredentials = %q", got)
	}
}

func TestWebhookAllowPrivateSetting(t *testing.T) {
	c, err := ParseConfig(nil, func(string) string { return "" }, io.Discard)
	if err != nil || c.WebhookAllowPrivate {
		t.Fatalf("default: %v %v, want false", c.WebhookAllowPrivate, err)
	}
	c, err = ParseConfig(nil, func(k string) string { return map[string]string{"LICENSED_WEBHOOK_ALLOW_PRIVATE": "true"}[k] }, io.Discard)
	if err != nil || !c.WebhookAllowPrivate {
		t.Fatalf("LICENSED_WEBHOOK_ALLOW_PRIVATE=true: %v %v", c.WebhookAllowPrivate, err)
	}
	if _, err := ParseConfig([]string{"--webhook-allow-private", "maybe"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Fatal("--webhook-allow-private maybe accepted")
	}
}

// The published types webhook filters name follow contract v2's naming.
func TestPublishedTypes(t *testing.T) {
	types, err := publishedTypes()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"dev.licenseledger.user.deactivated.v1", "dev.licenseledger.seat_reduction.scheduled.v1",
		"dev.licenseledger.account.opened.v1", "dev.licenseledger.account.opened.v2", "dev.licenseledger.user_profile.updated.v1",
		"dev.licenseledger.billing.cycle_closed.v1"} {
		if !slices.Contains(types, want) {
			t.Errorf("%s missing from %v", want, types)
		}
	}
}
