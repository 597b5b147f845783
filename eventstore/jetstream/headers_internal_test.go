package jetstream

import (
	"fmt"
	"strconv"
	"testing"

	"bytes"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// TestRawHeadersAgree checks the block-file read's reading of a message's
// headers in place (rawHeaders.parts) against their reading into strings
// that decodeRecord takes: the same revision, the same verdict on whether
// the store wrote the message, the same metadata header.
func TestRawHeadersAgree(t *testing.T) {
	values := []string{"", "0", "1", "2", "7", "-2", "+2", " 3 ", "12a", "00", "18446744073709551615",
		"18446744073709551616", "123456789012345678", "1234567890123456789", "x"}
	var blocks []string
	for _, rev := range values {
		for _, exp := range []string{"", "5"} {
			for _, seq := range values {
				for _, id := range []string{"", "b1"} {
					for _, md := range []string{"", `{"a":1}`} {
						h := "NATS/1.0\r\n"
						for _, kv := range [][2]string{{RevisionHeader, rev}, {jetstream.ExpectedLastSubjSeqHeader, exp},
							{batchSeqHeader, seq}, {batchIDHeader, id}, {MetadataHeader, md}} {
							if kv[1] != "" {
								h += kv[0] + ": " + kv[1] + "\r\n"
							}
						}
						blocks = append(blocks, h+"\r\n")
					}
				}
			}
		}
	}
	// Repeated keys: the first non-empty value counts.
	blocks = append(blocks, "NATS/1.0\r\n"+RevisionHeader+": 4\r\n"+RevisionHeader+": 5\r\n"+jetstream.ExpectedLastSubjSeqHeader+": 1\r\n\r\n",
		"NATS/1.0\r\n"+RevisionHeader+":\r\n"+RevisionHeader+": 6\r\n"+jetstream.ExpectedLastSubjSeqHeader+": 1\r\n\r\n",
		"NATS/1.0\r\n"+RevisionHeader+":\t9 \r\n"+jetstream.ExpectedLastSubjSeqHeader+": 1\r\n\r\n")
	for _, b := range blocks {
		t.Run(strconv.Quote(b), func(t *testing.T) {
			raw, err := parseStoredHeaders([]byte(b))
			if err != nil {
				t.Fatal(err)
			}
			got := raw.parts()
			sh, err := stringHeaders([]byte(b))
			if err != nil {
				t.Fatal(err)
			}
			rev, err := strconv.ParseUint(sh.revision, 10, 64)
			want := recordParts{revision: rev, revisionOK: err == nil, written: sh.written(), metadata: sh.metadata}
			if !want.revisionOK {
				want.revision, got.revision = 0, 0 // not read either way
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("in place %+v, through nats.Header %+v", got, want)
			}
		})
	}
}

// stringHeaders is parseStoredHeaders as it was before it read the
// values in place: each value kept copied into a string.
func stringHeaders(b []byte) (storedHeaders, error) {
	var h storedHeaders
	line, rest, ok := bytes.Cut(b, crlf)
	if !ok || !bytes.HasPrefix(line, natsHeaderLine) {
		return h, errors.New("malformed header block")
	}
	for {
		line, rest, ok = bytes.Cut(rest, crlf)
		if !ok {
			return h, errors.New("malformed header block")
		}
		if len(line) == 0 {
			return h, nil
		}
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			return h, errors.New("malformed header line")
		}
		var dst *string
		switch string(line[:i]) {
		case RevisionHeader:
			dst = &h.revision
		case jetstream.ExpectedLastSubjSeqHeader:
			dst = &h.expected
		case batchSeqHeader:
			dst = &h.batchSeq
		case batchIDHeader:
			dst = &h.batchID
		case MetadataHeader:
			dst = &h.metadata
		default:
			continue
		}
		if *dst == "" {
			*dst = string(bytes.Trim(line[i+1:], " \t"))
		}
	}
}
