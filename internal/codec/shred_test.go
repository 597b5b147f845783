package codec_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/licenseledger/ledger/domain/ledger"
	"github.com/licenseledger/ledger/eventstore"
	"github.com/licenseledger/ledger/internal/codec"
	"github.com/licenseledger/ledger/internal/pii"
)

// encodings returns the forms in which s could leak into stored bytes:
// as is, in other cases, JSON-escaped, hex, and base64 at every alignment.
func encodings(s string) []string {
	forms := []string{s, strings.ToLower(s), strings.ToUpper(s), strconv.QuoteToASCII(s)[1 : len(strconv.QuoteToASCII(s))-1]}
	for _, b := range [][]byte{[]byte(s), []byte(strings.ToLower(s))} {
		forms = append(forms, hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)))
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			// Inside a longer base64 text s may start at any of 3 offsets;
			// keep the characters that depend on s alone.
			for off := range 3 {
				e := enc.EncodeToString(append(make([]byte, off), b...))
				lead := (off*4 + 2) / 3
				if len(e)-lead-4 >= 8 {
					forms = append(forms, e[lead:len(e)-4])
				}
			}
		}
	}
	return forms
}

// The crypto-shredding acceptance of DESIGN.md section 5, for the codec:
// no stored byte of a user's whole life holds their name or email, in any
// encoding, before or after their key is destroyed; and after, the events
// still decode and chain.
func TestCryptoShredding(t *testing.T) {
	ctx := t.Context()
	c, store := newCodec(t, user)
	secrets := []string{userName, userEmail, "Augusta", "Lovelace", "augusta.lovelace", "Ada King", "ada.king@example.com"}
	life := []ledger.Event{
		ledger.UserAdded{UserID: user, Name: userName, Email: userEmail, Role: ledger.RoleMember, At: at},
		ledger.ActivityRecorded{ActivityID: "act-1", UserID: user, Kind: "document.signed", Ref: "doc-1", At: at.Add(time.Hour)},
		ledger.UserDeactivated{UserID: user, Reason: "Augusta Zoë Lovelace asked for leave; write to augusta.lovelace@example.com", At: at.Add(2 * time.Hour)},
		ledger.UserActivated{UserID: user, At: at.Add(3 * time.Hour)},
		ledger.UserProfileUpdated{UserID: user, Name: "Ada King", Email: "ada.king@example.com", At: at.Add(3 * time.Hour)},
		ledger.UserRoleChanged{UserID: user, Role: ledger.RoleAdmin, At: at.Add(3 * time.Hour)},
		ledger.UserDeleted{UserID: user, ReassignTo: "u-9", At: at.Add(4 * time.Hour)},
	}
	var recs []eventstore.Record
	var chain codec.Hash
	for i, e := range life {
		meta := sampleMeta()
		meta.EventID = uuid.NewSHA1(uuid.NameSpaceOID, []byte{byte(i)})
		meta.PrevHash = chain
		p := encode(t, c, e, meta)
		chain = codec.NextHash(chain, p)
		recs = append(recs, record(p))
	}
	forms := encodings(userName)
	for _, s := range secrets {
		forms = append(forms, encodings(s)...)
	}
	scan := func(t *testing.T) {
		t.Helper()
		for _, r := range recs {
			for _, part := range [][]byte{r.Data, r.Metadata, []byte(r.Type), r.ID[:], []byte(r.ID.String())} {
				for _, f := range forms {
					if bytes.Contains(part, []byte(f)) {
						t.Errorf("%s stores %q: %s", r.Type, f, part)
					}
				}
			}
		}
	}
	t.Run("before deletion", func(t *testing.T) {
		scan(t)
		d, err := c.Decode(ctx, recs[0])
		if err != nil || d.Event.(ledger.UserAdded).Name != userName {
			t.Fatalf("Decode before deletion = %+v, %v", d.Event, err)
		}
	})
	if err := c.Keys().Destroy(ctx, pii.KeyID(account, user)); err != nil {
		t.Fatal(err)
	}
	t.Run("after deletion", func(t *testing.T) {
		scan(t)
		if _, err := store.Get(ctx, pii.KeyID(account, user)); !errors.Is(err, pii.ErrErased) {
			t.Errorf("key store Get = %v, want ErrErased", err)
		}
		var verify codec.Hash
		for i, r := range recs {
			d, err := c.Decode(ctx, r)
			if err != nil {
				t.Fatalf("Decode %s after deletion: %v", r.Type, err)
			}
			if d.Meta.PrevHash != verify {
				t.Errorf("event %d: chain broken", i)
			}
			verify = codec.RecordHash(verify, r)
			for _, s := range secrets {
				if txt := fmt.Sprintf("%+v", d); strings.Contains(txt, s) {
					t.Errorf("decoded %s shows %q", r.Type, s)
				}
			}
		}
		if verify != chain {
			t.Error("chain does not verify after deletion")
		}
	})
}

// The leak scan above is only as good as encodings: a name embedded
// anywhere in a hex or base64 text, or JSON-escaped, must be found.
func TestEncodingsFindLeaks(t *testing.T) {
	forms := encodings(userName)
	found := func(text string) bool {
		for _, f := range forms {
			if strings.Contains(text, f) {
				return true
			}
		}
		return false
	}
	for pre := range 6 {
		for post := range 4 {
			b := append(append([]byte(strings.Repeat("x", pre)), userName...), strings.Repeat("y", post)...)
			for name, text := range map[string]string{
				"base64":     base64.StdEncoding.EncodeToString(b),
				"base64 url": base64.RawURLEncoding.EncodeToString(b),
				"hex":        hex.EncodeToString(b),
				"plain":      string(b),
			} {
				if !found(text) {
					t.Errorf("%s of the name after %d bytes not found: %s", name, pre, text)
				}
			}
		}
	}
	if q := strconv.Quote(`{"n":"` + userName + `"}`); !found(strconv.QuoteToASCII(userName)) || !strings.Contains(q, userName) {
		t.Error("JSON-escaped form not found")
	}
	if found("vomNWZjz/Hbvi/FNSL8b36DZ7SkDV+dEBX9a5ar+Yhg5sttw/+XRmEYj/z3ggUkd7Q==") {
		t.Error("a sealed value is reported as a leak")
	}
}
