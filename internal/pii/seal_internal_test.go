package pii

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"io"
	"testing"
)

// sealBefore is Seal as it was written before one buffer held every part.
func (k *Keyring) sealBefore(ctx context.Context, id, field, plaintext string) (string, error) {
	a, err := k.aead(ctx, id)
	if err != nil {
		return "", err
	}
	buf := make([]byte, a.NonceSize(), a.NonceSize()+len(plaintext)+a.Overhead())
	if _, err := io.ReadFull(k.rand, buf); err != nil {
		return "", err
	}
	buf = a.Seal(buf, buf, []byte(plaintext), additional(id, field))
	return base64.StdEncoding.EncodeToString(buf), nil
}

// TestSealAsBefore checks that values sealed now and as before open alike,
// with the same nonce and ciphertext for the same nonce source.
func TestSealAsBefore(t *testing.T) {
	ctx := context.Background()
	store := NewMemoryKeys()
	if err := store.Put(ctx, "acme.ada", make([]byte, KeySize)); err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"a", "Ada Lovelace", "ada@acme.test", string(make([]byte, 300))} {
		// The same nonces for both: a reader that repeats itself.
		now := NewKeyring(store, zeros{})
		before := NewKeyring(store, zeros{})
		got, err := now.Seal(ctx, "acme.ada", "email", plain)
		if err != nil {
			t.Fatal(err)
		}
		want, err := before.sealBefore(ctx, "acme.ada", "email", plain)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("Seal(%q) = %s, before %s", plain, got, want)
		}
		if opened, err := now.Open(ctx, "acme.ada", "email", got); err != nil || opened != plain {
			t.Fatalf("Open: %q, %v", opened, err)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// BenchmarkSeal seals an email as before and now.
//
//	go test -run '^$' -bench Seal -count 5 ./internal/pii/
func BenchmarkSeal(b *testing.B) {
	ctx := context.Background()
	k := NewKeyring(NewMemoryKeys(), rand.Reader)
	if err := k.Create(ctx, "acct0042.u0001234"); err != nil {
		b.Fatal(err)
	}
	for _, way := range []struct {
		name string
		seal func(context.Context, string, string, string) (string, error)
	}{{"before", k.sealBefore}, {"now", k.Seal}} {
		b.Run(way.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := way.seal(ctx, "acct0042.u0001234", "email", "u0001234@example.test"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
