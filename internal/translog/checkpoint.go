package translog

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is the body of a signed checkpoint (C2SP tlog-checkpoint):
// the log's origin, the tree size and the root hash.
type Checkpoint struct {
	Origin string
	Size   int64
	Hash   tlog.Hash
}

// String returns the checkpoint body: the origin line, the size in
// decimal, the root hash in standard base64, each ending with a newline.
func (c Checkpoint) String() string {
	return c.Origin + "\n" + strconv.FormatInt(c.Size, 10) + "\n" + base64.StdEncoding.EncodeToString(c.Hash[:]) + "\n"
}

// ErrCheckpoint is wrapped by the errors of checkpoints that are malformed
// or whose signature does not verify with the key given.
var ErrCheckpoint = errors.New("translog: checkpoint does not verify")

// ParseCheckpoint parses a checkpoint body. Extension lines after the root
// hash are allowed and ignored, as C2SP tlog-checkpoint says.
func ParseCheckpoint(text string) (Checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 || lines[0] == "" {
		return Checkpoint{}, fmt.Errorf("checkpoint body: want origin, size and root hash lines: %w", ErrCheckpoint)
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("checkpoint size %q: %w", lines[1], ErrCheckpoint)
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("checkpoint root hash %q: %w", lines[2], ErrCheckpoint)
	}
	c := Checkpoint{Origin: lines[0], Size: n}
	copy(c.Hash[:], h)
	return c, nil
}

// OpenCheckpoint verifies a signed checkpoint with the verifier key vkey
// (the `<name>+<hash>+<base64 key>` text note.NewVerifier reads) and
// returns its body. The key's name must be the checkpoint's origin.
func OpenCheckpoint(signed []byte, vkey string) (Checkpoint, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("verifier key: %w", err)
	}
	n, err := note.Open(signed, note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint signature: %v: %w", err, ErrCheckpoint)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != v.Name() {
		return Checkpoint{}, fmt.Errorf("checkpoint origin %q is not the key's name %q: %w", c.Origin, v.Name(), ErrCheckpoint)
	}
	return c, nil
}

// Key is the log's signing key and its verifier key.
type Key struct {
	Signer note.Signer
	// Verifier is the verifier key in the text form note.NewVerifier
	// reads: <name>+<hash>+<base64 key>.
	Verifier string
}

// Files in the data directory: the signing key (0600) and the verifier
// key.
const (
	KeyFile         = "log.key"
	VerifierKeyFile = "log.vkey"
)

// LoadKey returns the signing key. With keyFile set it reads the key from
// that file (a note signer key, PRIVATE+KEY+<name>+<hash>+<key>); otherwise
// it reads <dataDir>/log.key, creating it at the first start (mode 0600)
// with name as the key's name, which is the log's origin. It writes the
// verifier key to <dataDir>/log.vkey either way.
func LoadKey(dataDir, keyFile, name string, random io.Reader) (Key, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return Key{}, fmt.Errorf("log key: %w", err)
	}
	path := keyFile
	if path == "" {
		path = filepath.Join(dataDir, KeyFile)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			skey, _, err := note.GenerateKey(random, name)
			if err != nil {
				return Key{}, fmt.Errorf("log signing key: %w", err)
			}
			if err := writeFileSync(path, []byte(skey+"\n"), 0o600); err != nil {
				return Key{}, fmt.Errorf("log signing key: %w", err)
			}
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("log signing key: %w", err)
	}
	skey := string(bytes.TrimSpace(b))
	signer, err := note.NewSigner(skey)
	if err != nil {
		return Key{}, fmt.Errorf("log signing key %s: %w", path, err)
	}
	vkey, err := verifierOf(skey)
	if err != nil {
		return Key{}, fmt.Errorf("log signing key %s: %w", path, err)
	}
	if err := writeFileSync(filepath.Join(dataDir, VerifierKeyFile), []byte(vkey+"\n"), 0o644); err != nil {
		return Key{}, fmt.Errorf("log verifier key: %w", err)
	}
	return Key{Signer: signer, Verifier: vkey}, nil
}

// verifierOf derives the verifier key of a signer key: the Ed25519 public
// key of its seed.
func verifierOf(skey string) (string, error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return "", errors.New("malformed signer key")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return "", errors.New("signer key is not an Ed25519 key")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	return note.NewEd25519VerifierKey(parts[2], pub)
}

// writeFileSync writes a file whole through a temporary file, synced and
// renamed over the old one.
func writeFileSync(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
