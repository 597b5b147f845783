package codec

import (
	"context"
	"errors"

	"github.com/licenseledger/ledger/internal/pii"
)

// open opens a sealed field; a destroyed key yields "" and sets erased.
func (c *Codec) open(ctx context.Context, id, field, sealed string, erased *bool) (string, error) {
	s, err := c.keys.Open(ctx, id, field, sealed)
	if errors.Is(err, pii.ErrErased) {
		*erased = true
		return "", nil
	}
	return s, err
}
