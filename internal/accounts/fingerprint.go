package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/internal/pii"
)

// ErrIdempotencyKeyReused is returned when a command is given with an
// idempotency key the account remembers for another command: nothing is
// decided, the first command's result is not given either.
var ErrIdempotencyKeyReused = errors.New("accounts: the idempotency key was used for another command")

// A command given with an idempotency key records a fingerprint of itself
// in the metadata of its events, "<clear>" or "<clear>.<personal>" in hex:
//
//   - clear is SHA-256 (first 16 bytes) of what the command says that is
//     not personal data: its name, the user it is about, a role, a count,
//     an activity's kind and reference, and which optional fields it
//     gives;
//   - personal is HMAC-SHA-256 (first 16 bytes) of the personal data it
//     carries (a name, an email, a reason) under a key derived from the
//     data key of the user it is about ([pii.Keyring.Fingerprint]), absent
//     when it carries none.
//
// The personal part can be neither computed nor tested against a guess
// once the user's key is destroyed: no pseudonym of personal data outlives
// the key. What the service draws for the command (a new user's or
// activity's id, its time) is left out, so a repeat matches.
//
// A repeat is the same command when both parts match. Once the user's key
// is destroyed the personal part cannot be compared: the repeat is judged
// on the clear part alone, and its answer holds the erased result. A
// command this service cannot fingerprint, or a recorded event without a
// fingerprint, is never the same.

// commandPrint returns the clear and personal parts a fingerprint is made
// of; ok is false for a command it does not know.
func commandPrint(cmd ledger.Command) (clear, personal []byte, ok bool) {
	var c, p printer
	c.add(cmd.CommandName())
	switch cmd := cmd.(type) {
	case ledger.OpenAccount:
		c.add(cmd.Account, cmd.Name, strconv.Itoa(cmd.Seats))
	case ledger.PurchaseSeats:
		c.add(strconv.Itoa(cmd.Count))
	case ledger.ScheduleSeatReduction:
		c.add(strconv.Itoa(cmd.Count))
	case ledger.AddUser:
		c.add(string(cmd.Role))
		p.add(strings.TrimSpace(cmd.Name), strings.ToLower(strings.TrimSpace(cmd.Email)))
		if x := strings.TrimSpace(cmd.ExternalID); x != "" {
			p.add("external_id", x)
		}
	case ledger.DeactivateUser:
		c.add(cmd.UserID)
		if r := strings.TrimSpace(cmd.Reason); r != "" {
			p.add(r)
		}
	case ledger.ActivateUser:
		c.add(cmd.UserID)
	case ledger.DeleteUser:
		c.add(cmd.UserID, cmd.Confirm, cmd.ReassignTo)
	case ledger.RecordActivity:
		c.add(cmd.UserID, cmd.Kind, cmd.Ref)
	case ledger.UpdateUser:
		c.add(cmd.UserID, given(cmd.Name), given(cmd.Email), given((*string)(cmd.Role)))
		if cmd.ExternalID != nil {
			// Only then, so that the prints recorded before external ids
			// existed still compare equal.
			c.add("external_id")
		}
		if cmd.Role != nil {
			c.add(string(*cmd.Role))
		}
		if cmd.Name != nil {
			p.add("name", strings.TrimSpace(*cmd.Name))
		}
		if cmd.Email != nil {
			p.add("email", strings.ToLower(strings.TrimSpace(*cmd.Email)))
		}
		if cmd.ExternalID != nil {
			p.add("external_id", strings.TrimSpace(*cmd.ExternalID))
		}
	default:
		return nil, nil, false
	}
	return c.b, p.b, true
}

func given(s *string) string {
	if s == nil {
		return "-"
	}
	return "+"
}

// printer writes strings length-prefixed, so that no two lists of strings
// write the same bytes.
type printer struct{ b []byte }

func (p *printer) add(ss ...string) {
	for _, s := range ss {
		p.b = strconv.AppendInt(p.b, int64(len(s)), 10)
		p.b = append(p.b, ':')
		p.b = append(p.b, s...)
	}
}

// fingerprintSize is how many bytes of each digest a fingerprint keeps.
const fingerprintSize = 16

// fingerprint returns the fingerprint of cmd, about user (whose key makes
// the personal part) of account, "" for a command it does not know.
func (s *Service) fingerprint(ctx context.Context, account, user string, cmd ledger.Command) (string, error) {
	clear, personal, ok := commandPrint(cmd)
	if !ok {
		return "", nil
	}
	sum := sha256.Sum256(clear)
	fp := hex.EncodeToString(sum[:fingerprintSize])
	if len(personal) == 0 {
		return fp, nil
	}
	if user == "" {
		return "", fmt.Errorf("fingerprint %s: personal data without a user whose key keeps it", cmd.CommandName())
	}
	mac, err := s.cfg.Codec.Keys().Fingerprint(ctx, pii.KeyID(account, user), personal)
	if err != nil {
		return "", fmt.Errorf("fingerprint %s: %w", cmd.CommandName(), err)
	}
	return fp + "." + hex.EncodeToString(mac[:fingerprintSize]), nil
}

// sameCommand reports whether cmd is the command whose result r the
// account remembers under the key cmd was given with.
func (s *Service) sameCommand(ctx context.Context, account string, r Result, cmd ledger.Command) (bool, error) {
	if len(r.Events) == 0 {
		return false, nil
	}
	first := r.Events[0].Meta
	recorded := first.CommandFingerprint
	clear, personal, ok := commandPrint(cmd)
	if recorded == "" || !ok {
		return false, nil
	}
	wantClear, wantPersonal, _ := strings.Cut(recorded, ".")
	sum := sha256.Sum256(clear)
	if hex.EncodeToString(sum[:fingerprintSize]) != wantClear || (len(personal) > 0) != (wantPersonal != "") {
		return false, nil
	}
	if len(personal) == 0 {
		return true, nil
	}
	want, err := hex.DecodeString(wantPersonal)
	if err != nil || first.Subject == "" {
		return false, nil
	}
	mac, err := s.cfg.Codec.Keys().Fingerprint(ctx, pii.KeyID(account, first.Subject), personal)
	switch {
	case errors.Is(err, pii.ErrErased):
		return true, nil // judged on the clear part: see above
	case err != nil:
		return false, fmt.Errorf("compare %s with the command first given under its idempotency key: %w", cmd.CommandName(), err)
	}
	return hmac.Equal(mac[:fingerprintSize], want), nil
}
