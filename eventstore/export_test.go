package eventstore

import (
	"bytes"

	"github.com/go-json-experiment/json/jsontext"
)

// ParseCloudEventSlow parses an envelope without the fast path for the
// store's own layout, so tests can compare the two.
func ParseCloudEventSlow(b []byte) (ParsedCloudEvent, error) {
	ps := decoderPool.Get().(*parseState)
	defer decoderPool.Put(ps)
	ps.buf = *bytes.NewBuffer(b) //nolint:govet // bytes.Buffer holds no lock
	ps.dec.Reset(&ps.buf, jsontext.AllowDuplicateNames(true))
	return parseCloudEvent(&ps.dec, b)
}

// MetadataMembers and DecodeMetadataMembers are metadataMembers with and
// without its reading of plain metadata, for tests that compare them.
var (
	MetadataMembers       = metadataMembers
	DecodeMetadataMembers = decodeMetadataMembers
)
