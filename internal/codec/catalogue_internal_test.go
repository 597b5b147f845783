package codec

import (
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
)

// A registration the codec could not honour is refused when the service
// starts, with what is wrong.
func TestRegistrationRefused(t *testing.T) {
	type E = ledger.UserDeactivated
	id := text("user_id", "", func(e *E) *string { return &e.UserID })
	reason := sealed("reason_sealed", "reason", "", func(e *E) *string { return &e.Reason })
	when := instant("at", "", func(e *E) *time.Time { return &e.At })
	ok := spec[E]{version: 1, category: eventstore.Ledger, fields: []field[E]{id.subject(), reason, when}}
	if _, err := newRegistered("UserDeactivated", ok); err != nil {
		t.Fatalf("valid registration refused: %v", err)
	}
	tests := []struct {
		name, want string
		change     func(*spec[E])
	}{
		{"no version", "schema version 0", func(s *spec[E]) { s.version = 0 }},
		{"unknown category", "unknown stream category", func(s *spec[E]) { s.category = "billing" }},
		{"no member", "0 payload members", func(s *spec[E]) { s.fields = nil }},
		{"repeated member", "repeated name", func(s *spec[E]) { s.fields = append(s.fields, id) }},
		{"sealed without subject", "without a subject", func(s *spec[E]) { s.fields = []field[E]{id, reason, when} }},
		{"two subjects", "a second subject", func(s *spec[E]) {
			s.fields = append(s.fields, text("other", "", func(e *E) *string { return &e.Reason }).subject())
		}},
		{"missing upcast", "0 upcasts for version 2", func(s *spec[E]) { s.version = 2 }},
		{"upcast from the wrong version", "from version 2, want 1", func(s *spec[E]) {
			s.version, s.upcasts = 2, []Upcast{renameMember(2, "a", "b")}
		}},
		{"kind without accessor", "without its accessor", func(s *spec[E]) {
			s.fields = append(s.fields, field[E]{Field: Field{Name: "n", Kind: KindInt}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			s.fields = append([]field[E](nil), ok.fields...)
			tt.change(&s)
			_, err := newRegistered("UserDeactivated", s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("newRegistered = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// The command fingerprint an idempotent command records in its metadata
// decodes the same on the fast path and the general one, and is left out
// when there is none.
func TestCommandFingerprintMetadata(t *testing.T) {
	e := ledger.UserActivated{UserID: "u-1", At: time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)}
	for _, fp := range []string{"", "0123456789abcdef0123456789abcdef.fedcba9876543210fedcba9876543210"} {
		p, err := (&Codec{}).Encode(t.Context(), e, Metadata{Account: "acme", Time: e.At, IdempotencyKey: "k-1", CommandFingerprint: fp})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(p.Metadata), `"commandfingerprint"`); got != (fp != "") {
			t.Errorf("fingerprint %q: metadata %s", fp, p.Metadata)
		}
		r := eventstore.Record{ID: p.ID, Type: p.Type, Data: p.Data, Metadata: p.Metadata}
		fast, ms, ok := scanMeta(r.Metadata)
		if !ok {
			t.Fatalf("the fast path gave up on %s", r.Metadata)
		}
		ms.set(&fast)
		general, err := unmarshalMeta(r)
		if err != nil {
			t.Fatal(err)
		}
		if fast.CommandFingerprint != fp || general.CommandFingerprint != fp || fast.IdempotencyKey != "k-1" || general.IdempotencyKey != "k-1" {
			t.Errorf("fingerprint %q decodes as %q (fast) and %q (general)", fp, fast.CommandFingerprint, general.CommandFingerprint)
		}
	}
}
