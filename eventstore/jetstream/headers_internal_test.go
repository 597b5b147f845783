package jetstream

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestRawHeadersAgree checks the block-file read's reading of a message's
// headers in place (rawHeaders.parts) against the reading of a message
// the server delivers: the NATS client's nats.DecodeHeadersMsg, then the
// values record takes from it. Both must find the same revision, the same
// verdict on whether the store wrote the message, the same metadata
// header, whatever blanks and repeated keys a foreign publish carries.
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
	// Repeated keys: the first value counts, empty or not.
	blocks = append(blocks, "NATS/1.0\r\n"+RevisionHeader+": 4\r\n"+RevisionHeader+": 5\r\n"+jetstream.ExpectedLastSubjSeqHeader+": 1\r\n\r\n",
		"NATS/1.0\r\n"+RevisionHeader+":\r\n"+RevisionHeader+": 6\r\n"+jetstream.ExpectedLastSubjSeqHeader+": 1\r\n\r\n",
		"NATS/1.0\r\n"+RevisionHeader+":\t9 \r\n"+jetstream.ExpectedLastSubjSeqHeader+": 1\r\n\r\n")
	// Sequenced appends' expectation, with or without the message id and
	// the per-subject one; the message id alone is no sign.
	for _, rev := range []string{"", "0", "3", "x"} {
		for _, exp := range []string{
			jetstream.ExpectedLastSeqHeader + ": 12\r\n",
			jetstream.ExpectedLastSeqHeader + ": 12\r\n" + jetstream.ExpectedLastMsgIDHeader + ": a-b\r\n",
			jetstream.ExpectedLastMsgIDHeader + ": a-b\r\n",
			jetstream.ExpectedLastMsgIDHeader + ": a-b\r\n" + jetstream.ExpectedLastSeqHeader + ": 0\r\n",
			jetstream.ExpectedLastSeqHeader + ":\r\n",
			jetstream.ExpectedLastSeqHeader + ": 4\r\n" + jetstream.ExpectedLastSubjSeqHeader + ": 2\r\n",
		} {
			h := "NATS/1.0\r\n" + exp
			if rev != "" {
				h += RevisionHeader + ": " + rev + "\r\n"
			}
			blocks = append(blocks, h+"\r\n")
		}
	}
	for _, b := range blocks {
		t.Run(strconv.Quote(b), func(t *testing.T) {
			raw, err := parseStoredHeaders([]byte(b))
			if err != nil {
				t.Fatal(err)
			}
			got := raw.parts()
			nh, err := nats.DecodeHeadersMsg([]byte(b))
			if err != nil {
				t.Fatal(err)
			}
			sh := storedHeadersOf(nh)
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

// TestWrittenBySequencedAppend checks which headers make a message one
// the store wrote: either expectation on an append's first message, the
// batch headers on its later ones; the message id expectation alone, or
// nothing, leaves it foreign.
func TestWrittenBySequencedAppend(t *testing.T) {
	for _, tc := range []struct {
		h    nats.Header
		want bool
	}{
		{nats.Header{jetstream.ExpectedLastSubjSeqHeader: {"3"}, RevisionHeader: {"1"}}, true},
		{nats.Header{jetstream.ExpectedLastSeqHeader: {"3"}, RevisionHeader: {"1"}}, true},
		{nats.Header{jetstream.ExpectedLastSeqHeader: {"0"}, jetstream.ExpectedLastMsgIDHeader: {"x"}}, true},
		{nats.Header{jetstream.ExpectedLastMsgIDHeader: {"x"}, RevisionHeader: {"1"}}, false},
		{nats.Header{RevisionHeader: {"1"}}, false},
		{nats.Header{batchIDHeader: {"b"}, batchSeqHeader: {"2"}}, true},
	} {
		if got := written(tc.h); got != tc.want {
			t.Errorf("written(%v) = %v, want %v", tc.h, got, tc.want)
		}
		if got := storedHeadersOf(tc.h).written(); got != tc.want {
			t.Errorf("storedHeaders(%v).written() = %v, want %v", tc.h, got, tc.want)
		}
	}
}
