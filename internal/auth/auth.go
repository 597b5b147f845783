// Package auth authenticates bearer tokens and says what each role may do.
//
// # Tokens
//
// A token is 32 random bytes, base64url-encoded and prefixed with "ll_".
// The secret is shown once, when the token is minted; a [Store] keeps only
// its SHA-256 hash, with the token's id, role and account scope. The id
// (not the secret) is what events record as the actor.
//
// # Roles
//
//   - operator: support staff. Every account; the only role that may open
//     accounts, schedule seat reductions and mint tokens. Never scoped.
//   - admin: one account. Every write on it except seat reductions, and
//     every read.
//   - auditor: read-only, one account or all: every read, audit trail,
//     chain verification, raw events, state as of an instant and billing
//     included.
//   - service: records activities and reads the account, its seats, users
//     and activities, for one account or all. It does not read the audit
//     trail, raw events, past states or billing.
//   - provisioning: one account, always. An identity provider's SCIM
//     client: it may provision the users of its account over /scim/v2
//     and nothing else; every /v1 operation refuses it.
//
// Proofs of the transparency log (inclusion, consistency) are for
// operators and auditors only, whatever their scope: leaf positions tell
// how much every account writes.
//
// A token scoped to an account never sees another: [Principal.CanSee]
// reports false, and the HTTP API answers 404 as if the account did not
// exist, so a scoped token cannot probe which accounts exist.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrUnauthenticated is returned when a request carries no token, a
// malformed one, or one the store does not know.
var ErrUnauthenticated = errors.New("auth: missing or unknown bearer token")

// ErrInvalidRole is returned when minting a token with an unknown role or
// a scope the role cannot have.
var ErrInvalidRole = errors.New("auth: invalid role or scope")

// ErrNotFound is returned by a Store for a token id or hash it does not hold.
var ErrNotFound = errors.New("auth: token not found")

// ErrLastOperator is returned by Store.Revoke for the only operator token:
// revoking it would leave nobody able to mint tokens.
var ErrLastOperator = errors.New("auth: the last operator token cannot be revoked")

// Prefix starts every token secret, so that secret scanners and people
// recognise one.
const Prefix = "ll_"

// SecretBytes is the number of random bytes in a token secret.
const SecretBytes = 32

// Role is what a token may do.
type Role string

// The roles.
const (
	Operator Role = "operator"
	Admin    Role = "admin"
	Auditor  Role = "auditor"
	Service  Role = "service"
	// Provisioning is an identity provider's SCIM client, scoped to one
	// account.
	Provisioning Role = "provisioning"
)

// Valid reports whether r is a known role.
func (r Role) Valid() bool {
	switch r {
	case Operator, Admin, Auditor, Service, Provisioning:
		return true
	}
	return false
}

// Action is something a request does, checked against a role.
type Action string

// The actions of the HTTP API.
const (
	OpenAccount    Action = "open-account"
	PurchaseSeats  Action = "purchase-seats"
	ReduceSeats    Action = "reduce-seats"
	ManageUsers    Action = "manage-users"
	RecordActivity Action = "record-activity"
	Read           Action = "read"         // account, seats, users, activities
	ReadHistory    Action = "read-history" // audit, verify, events, state as of, billing
	MintToken      Action = "mint-token"
	// ReadLog is asking the transparency log for proofs: leaf positions
	// tell the volume of every account, so only operators and auditors.
	ReadLog Action = "read-log"
	// Provision is every SCIM operation on the token's account: reading,
	// adding, changing, deactivating and deleting its users.
	Provision Action = "provision"
	// ManageWebhooks is registering, reading, enabling, replaying and
	// deleting an account's webhook endpoints and reading their delivery
	// logs.
	ManageWebhooks Action = "manage-webhooks"
)

var grants = map[Role]map[Action]bool{
	Operator: {OpenAccount: true, PurchaseSeats: true, ReduceSeats: true, ManageUsers: true,
		RecordActivity: true, Read: true, ReadHistory: true, MintToken: true, ReadLog: true, ManageWebhooks: true},
	Admin:        {PurchaseSeats: true, ManageUsers: true, RecordActivity: true, Read: true, ReadHistory: true, ManageWebhooks: true},
	Auditor:      {Read: true, ReadHistory: true, ReadLog: true},
	Service:      {RecordActivity: true, Read: true},
	Provisioning: {Provision: true},
}

// Allows reports whether role r may do a.
func (r Role) Allows(a Action) bool { return grants[r][a] }

// Hash is the SHA-256 of a token secret: all a store keeps.
type Hash [sha256.Size]byte

// HashSecret returns the hash of a token secret.
func HashSecret(secret string) Hash { return sha256.Sum256([]byte(secret)) }

// String returns h in hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText returns h in hex.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText parses a hex hash.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != hex.EncodedLen(len(h)) {
		return fmt.Errorf("token hash of %d hex digits, want %d", len(b), hex.EncodedLen(len(h)))
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// Token is a minted token as a store keeps it: no secret.
type Token struct {
	ID   string `json:"id"`
	Hash Hash   `json:"hash"`
	Role Role   `json:"role"`
	// Account is the account the token is scoped to; empty for all.
	Account   string    `json:"account,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Principal is who a request is from.
type Principal struct {
	TokenID string
	Role    Role
	Account string // empty: every account
}

// CanSee reports whether p may see account at all.
func (p Principal) CanSee(account string) bool { return p.Account == "" || p.Account == account }

// Store keeps minted tokens by the hash of their secret.
type Store interface {
	// Put stores a new token. It fails if the id or hash is already stored.
	Put(ctx context.Context, t Token) error
	// ByHash returns the token whose secret hashes to h, or ErrNotFound.
	ByHash(ctx context.Context, h Hash) (Token, error)
	// ByID returns the token with id, or ErrNotFound.
	ByID(ctx context.Context, id string) (Token, error)
	// Len returns how many tokens the store holds.
	Len(ctx context.Context) (int, error)
	// Revoke removes the token with id: after it returns, the token
	// authenticates nowhere. An id the store does not hold, including one
	// revoked already, is ErrNotFound (wrapped). The only operator token
	// is refused with ErrLastOperator (wrapped) unless another operator
	// token exists.
	Revoke(ctx context.Context, id string) error
}

// Mint draws a new token for role and account from random (crypto/rand's
// Reader in production), stores its hash and returns the token and its
// secret, which is never stored.
func Mint(ctx context.Context, s Store, random io.Reader, role Role, account string, now time.Time) (Token, string, error) {
	if err := checkScope(role, account); err != nil {
		return Token{}, "", err
	}
	var b [SecretBytes + 8]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return Token{}, "", fmt.Errorf("mint token: %w", err)
	}
	secret := Prefix + base64.RawURLEncoding.EncodeToString(b[:SecretBytes])
	t := Token{
		ID:   "tok_" + hex.EncodeToString(b[SecretBytes:]),
		Hash: HashSecret(secret), Role: role, Account: account, CreatedAt: now.UTC(),
	}
	if err := s.Put(ctx, t); err != nil {
		return Token{}, "", fmt.Errorf("mint token: %w", err)
	}
	return t, secret, nil
}

func checkScope(role Role, account string) error {
	switch {
	case !role.Valid():
		return fmt.Errorf("role %q (want operator, admin, auditor, service or provisioning): %w", role, ErrInvalidRole)
	case role == Operator && account != "":
		return fmt.Errorf("an operator token covers every account and cannot be scoped: %w", ErrInvalidRole)
	case role == Admin && account == "":
		return fmt.Errorf("an admin token needs an account: %w", ErrInvalidRole)
	case role == Provisioning && account == "":
		return fmt.Errorf("a provisioning token needs an account: %w", ErrInvalidRole)
	}
	return nil
}

// Authenticate returns the principal of an Authorization header value
// ("Bearer ll_..."), or ErrUnauthenticated (wrapped).
func Authenticate(ctx context.Context, s Store, header string) (Principal, error) {
	scheme, secret, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, fmt.Errorf("no bearer token: %w", ErrUnauthenticated)
	}
	secret = strings.TrimSpace(secret)
	if !strings.HasPrefix(secret, Prefix) || len(secret) > 128 {
		return Principal{}, fmt.Errorf("malformed bearer token: %w", ErrUnauthenticated)
	}
	h := HashSecret(secret)
	t, err := s.ByHash(ctx, h)
	if errors.Is(err, ErrNotFound) {
		return Principal{}, fmt.Errorf("unknown bearer token: %w", ErrUnauthenticated)
	}
	if err != nil {
		return Principal{}, fmt.Errorf("look up token: %w", err)
	}
	// The store found it by hash; compare again in constant time so that a
	// store keyed by a prefix of the hash cannot be timed.
	if subtle.ConstantTimeCompare(t.Hash[:], h[:]) != 1 {
		return Principal{}, fmt.Errorf("unknown bearer token: %w", ErrUnauthenticated)
	}
	return Principal{TokenID: t.ID, Role: t.Role, Account: t.Account}, nil
}

// Bootstrap mints a first operator token when the store holds none and
// returns its secret and true; otherwise it returns "" and false. The
// caller shows or saves the secret once (licensed writes it to
// data/operator.token with mode 0600).
func Bootstrap(ctx context.Context, s Store, random io.Reader, now time.Time) (string, bool, error) {
	n, err := s.Len(ctx)
	if err != nil {
		return "", false, fmt.Errorf("bootstrap: %w", err)
	}
	if n > 0 {
		return "", false, nil
	}
	_, secret, err := Mint(ctx, s, random, Operator, "", now)
	if err != nil {
		return "", false, fmt.Errorf("bootstrap: %w", err)
	}
	return secret, true, nil
}
