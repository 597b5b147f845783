package auth_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/licenseledger/ledger/internal/auth"
)

var now = time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)

func TestMintAuthenticate(t *testing.T) {
	ctx := context.Background()
	s := auth.NewMemoryStore()
	tok, secret, err := auth.Mint(ctx, s, rand.Reader, auth.Auditor, "acme", now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, auth.Prefix) || len(secret) != len(auth.Prefix)+43 {
		t.Fatalf("secret %q: want ll_ and 43 base64url characters", secret)
	}
	if tok.Hash != auth.HashSecret(secret) {
		t.Fatal("stored hash is not the secret's SHA-256")
	}
	p, err := auth.Authenticate(ctx, s, "Bearer "+secret)
	if err != nil {
		t.Fatal(err)
	}
	if p != (auth.Principal{TokenID: tok.ID, Role: auth.Auditor, Account: "acme"}) {
		t.Fatalf("principal %+v", p)
	}
	if !p.CanSee("acme") || p.CanSee("other") {
		t.Fatal("scoped token must see its account only")
	}
	for name, h := range map[string]string{
		"empty": "", "basic": "Basic " + secret, "no prefix": "Bearer x" + secret[1:],
		"unknown": "Bearer " + auth.Prefix + strings.Repeat("A", 43), "no space": "Bearer" + secret,
	} {
		if _, err := auth.Authenticate(ctx, s, h); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s: err %v, want ErrUnauthenticated", name, err)
		}
	}
}

func TestMintScopes(t *testing.T) {
	ctx := context.Background()
	s := auth.NewMemoryStore()
	for _, c := range []struct {
		role    auth.Role
		account string
		ok      bool
	}{
		{auth.Operator, "", true}, {auth.Operator, "acme", false},
		{auth.Admin, "acme", true}, {auth.Admin, "", false},
		{auth.Auditor, "", true}, {auth.Service, "acme", true}, {"root", "", false},
		{auth.Provisioning, "acme", true}, {auth.Provisioning, "", false},
	} {
		_, _, err := auth.Mint(ctx, s, rand.Reader, c.role, c.account, now)
		if c.ok != (err == nil) || (err != nil && !errors.Is(err, auth.ErrInvalidRole)) {
			t.Errorf("%s/%q: err %v, want ok=%v", c.role, c.account, err, c.ok)
		}
	}
}

func TestRoleMatrix(t *testing.T) {
	want := map[auth.Role][]auth.Action{
		auth.Operator: {auth.OpenAccount, auth.PurchaseSeats, auth.ReduceSeats, auth.ManageUsers, auth.RecordActivity, auth.Read, auth.ReadHistory, auth.MintToken},
		auth.Admin:    {auth.PurchaseSeats, auth.ManageUsers, auth.RecordActivity, auth.Read, auth.ReadHistory},
		auth.Auditor:  {auth.Read, auth.ReadHistory},
		auth.Service:  {auth.RecordActivity, auth.Read},
		// A provisioning token may do nothing of the /v1 API.
		auth.Provisioning: {auth.Provision},
	}
	all := append(want[auth.Operator], auth.Provision)
	for role, allowed := range want {
		for _, a := range all {
			exp := false
			for _, b := range allowed {
				exp = exp || a == b
			}
			if role.Allows(a) != exp {
				t.Errorf("%s %s: allows %v, want %v", role, a, role.Allows(a), exp)
			}
		}
	}
}

func TestBootstrapOnce(t *testing.T) {
	ctx := context.Background()
	s := auth.NewMemoryStore()
	secret, created, err := auth.Bootstrap(ctx, s, rand.Reader, now)
	if err != nil || !created {
		t.Fatalf("first bootstrap: created %v err %v", created, err)
	}
	p, err := auth.Authenticate(ctx, s, "Bearer "+secret)
	if err != nil || p.Role != auth.Operator || p.Account != "" {
		t.Fatalf("bootstrap token: %+v %v", p, err)
	}
	secret2, created, err := auth.Bootstrap(ctx, s, rand.Reader, now)
	if err != nil || created || secret2 != "" {
		t.Fatalf("second bootstrap: %q %v %v, want nothing minted", secret2, created, err)
	}
}

func TestFileStore(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "auth")
	s, err := auth.OpenFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, secret, err := auth.Mint(ctx, s, rand.Reader, auth.Service, "", now)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, auth.FileName)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, want 0600", fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), secret) || strings.Contains(string(b), secret[len(auth.Prefix):]) {
		t.Fatal("token file holds the secret")
	}
	if !strings.Contains(string(b), tok.Hash.String()) {
		t.Fatal("token file lacks the hash")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d files, want only the token file", len(entries))
	}

	reopened, err := auth.OpenFileStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := auth.Authenticate(ctx, reopened, "Bearer "+secret)
	if err != nil || p.TokenID != tok.ID || p.Role != auth.Service {
		t.Fatalf("after reopen: %+v %v", p, err)
	}
	if got, err := reopened.ByID(ctx, tok.ID); err != nil || got.Hash != tok.Hash {
		t.Fatalf("ByID: %+v %v", got, err)
	}
	if _, created, _ := auth.Bootstrap(ctx, reopened, rand.Reader, now); created {
		t.Fatal("bootstrap minted a token in a store that has one")
	}
	if err := reopened.Put(ctx, tok); !errors.Is(err, auth.ErrDuplicate) {
		t.Fatalf("duplicate put: %v", err)
	}
}

// TestRevoke runs the revocation contract on both stores: a revoked token
// no longer authenticates, a second revocation and an unknown id are
// ErrNotFound, and the last operator token is refused until another
// exists. The file store must also forget the token after a reopen.
func TestRevoke(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "auth")
	stores := map[string]func(t *testing.T) auth.Store{
		"memory": func(*testing.T) auth.Store { return auth.NewMemoryStore() },
		"file": func(t *testing.T) auth.Store {
			s, err := auth.OpenFileStore(dir)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			op1, op1Secret, err := auth.Mint(ctx, s, rand.Reader, auth.Operator, "", now)
			if err != nil {
				t.Fatal(err)
			}
			svc, svcSecret, err := auth.Mint(ctx, s, rand.Reader, auth.Service, "acme", now)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Revoke(ctx, svc.ID); err != nil {
				t.Fatalf("revoke service token: %v", err)
			}
			if _, err := auth.Authenticate(ctx, s, "Bearer "+svcSecret); !errors.Is(err, auth.ErrUnauthenticated) {
				t.Fatalf("revoked token authenticates: %v", err)
			}
			if _, err := s.ByID(ctx, svc.ID); !errors.Is(err, auth.ErrNotFound) {
				t.Fatalf("revoked token by id: %v", err)
			}
			if err := s.Revoke(ctx, svc.ID); !errors.Is(err, auth.ErrNotFound) {
				t.Fatalf("second revoke: %v, want ErrNotFound", err)
			}
			if err := s.Revoke(ctx, "tok_nosuch"); !errors.Is(err, auth.ErrNotFound) {
				t.Fatalf("unknown id: %v, want ErrNotFound", err)
			}
			if err := s.Revoke(ctx, op1.ID); !errors.Is(err, auth.ErrLastOperator) {
				t.Fatalf("last operator: %v, want ErrLastOperator", err)
			}
			if _, err := auth.Authenticate(ctx, s, "Bearer "+op1Secret); err != nil {
				t.Fatalf("refused revocation still revoked the token: %v", err)
			}
			op2, op2Secret, err := auth.Mint(ctx, s, rand.Reader, auth.Operator, "", now)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Revoke(ctx, op1.ID); err != nil {
				t.Fatalf("revoke an operator with another left: %v", err)
			}
			if err := s.Revoke(ctx, op2.ID); !errors.Is(err, auth.ErrLastOperator) {
				t.Fatalf("new last operator: %v, want ErrLastOperator", err)
			}
			if n, err := s.Len(ctx); err != nil || n != 1 {
				t.Fatalf("Len %d %v, want 1", n, err)
			}
			if name != "file" {
				return
			}
			reopened := open(t)
			if _, err := auth.Authenticate(ctx, reopened, "Bearer "+op1Secret); !errors.Is(err, auth.ErrUnauthenticated) {
				t.Fatalf("revoked operator authenticates after reopen: %v", err)
			}
			if _, err := auth.Authenticate(ctx, reopened, "Bearer "+op2Secret); err != nil {
				t.Fatalf("kept operator after reopen: %v", err)
			}
		})
	}
}
