package translog

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/google/uuid"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/licenseledger/ledger/eventstore"
)

// memTree is a tree's stored hashes in memory.
type memTree []tlog.Hash

func (m memTree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		out[i] = m[x]
	}
	return out, nil
}

func buildTree(t *testing.T, n int64) (memTree, []tlog.Hash) {
	t.Helper()
	var m memTree
	leaves := make([]tlog.Hash, n)
	for i := range n {
		leaves[i] = tlog.RecordHash(fmt.Appendf(nil, "leaf %d", i))
		hs, err := tlog.StoredHashesForRecordHash(i, leaves[i], m)
		if err != nil {
			t.Fatal(err)
		}
		m = append(m, hs...)
	}
	return m, leaves
}

// Compact proofs, checked line after line, are accepted exactly when the
// whole inclusion proof they stand for holds, for leaves in order, with
// gaps, in trees of every shape: an altered hash, a hash taken or added or
// a proof given for another leaf are refused, and whatever is accepted
// (such as the proof of the line after one left out) holds.
func TestCompactProofsAgreeWithTlog(t *testing.T) {
	for _, size := range []int64{1, 2, 3, 5, 8, 13, 64, 100, 257} {
		m, leaves := buildTree(t, size)
		root, err := tlog.TreeHash(size, m)
		if err != nil {
			t.Fatal(err)
		}
		proofOf := func(i, prev int64) []byte {
			p, err := tlog.ProveRecord(size, i, m)
			if err != nil {
				t.Fatal(err)
			}
			var b []byte
			for _, h := range p[:compactProof(size, prev, i)] {
				b = append(b, h[:]...)
			}
			return b
		}
		// try links leaf i with proof b after the state's lines, on a
		// copy of the state; what it accepts must hold as a whole proof.
		try := func(ps *pathState, i int64, leaf tlog.Hash, b []byte) bool {
			hs, ok := climb(size, i, leaf, b, nil)
			cp := *ps
			if !ok || !cp.link(i, hs, b) {
				return false
			}
			if err := tlog.CheckRecord(cp.proof(), size, root, i, leaf); err != nil {
				t.Fatalf("size %d leaf %d: accepted a proof that does not hold: %v", size, i, err)
			}
			return true
		}
		for _, step := range []int64{1, 2, 3, 7} {
			ps := newPathState(size, root)
			prev := int64(-1)
			for i := int64(0); i < size; i += step {
				b := proofOf(i, prev)
				for k := range len(b) / tlog.HashSize {
					bad := bytes.Clone(b)
					bad[k*tlog.HashSize+7] ^= 1
					if try(ps, i, leaves[i], bad) {
						t.Fatalf("size %d leaf %d: proof with hash %d altered accepted", size, i, k)
					}
				}
				if len(b) > 0 && try(ps, i, leaves[i], b[:len(b)-tlog.HashSize]) {
					t.Fatalf("size %d leaf %d: proof without its last hash accepted", size, i)
				}
				if try(ps, i, leaves[i], append(bytes.Clone(b), leaves[i][:]...)) {
					t.Fatalf("size %d leaf %d: proof with a wrong hash added accepted", size, i)
				}
				if size > 1 && try(ps, (i+1)%size, leaves[i], b) {
					t.Fatalf("size %d leaf %d: proof accepted for leaf %d", size, i, (i+1)%size)
				}
				// A line left out: the next proof may still hold (it is
				// then a whole proof), or not.
				if i+step < size {
					try(ps, i+step, leaves[i+step], proofOf(i+step, i))
				}
				// The whole proof is accepted as well.
				if !try(ps, i, leaves[i], proofOf(i, -1)) {
					t.Fatalf("size %d leaf %d: whole proof refused", size, i)
				}
				hs, ok := climb(size, i, leaves[i], b, nil)
				if !ok || !ps.link(i, hs, b) {
					t.Fatalf("size %d leaf %d: good proof refused", size, i)
				}
				if err := tlog.CheckRecord(ps.proof(), size, root, i, leaves[i]); err != nil {
					t.Fatalf("size %d leaf %d: the whole proof the lines give does not hold: %v", size, i, err)
				}
				prev = i
			}
		}
	}
}

// The line parser decodes what json.Unmarshal decodes.
func TestLineParserAgreesWithUnmarshal(t *testing.T) {
	id := uuid.New()
	lines := []string{
		`{"kind":"record","leaf":12,"position":99,"stream":"ledger-acme","revision":3,"id":"` + id.String() + `","type":"UserAdded","data":"eyJhIjoxfQ==","metadata":"e30=","proof":"AAEC"}`,
		`{"kind":"rec\u006frd","stream":"ledger-\"acme\"","unreadable":true,"position":7,"proof":null,"extra":{"a":[1,2]}}`,
		`{"kind":"key","user":"u1","key":"AQID"}`,
		` {"kind":"checkpoint","format":"f","account":"acme","checkpoint":"a\nb"}` + "\n",
	}
	var p lineParser
	for _, line := range lines {
		var want BundleLine
		if err := json.Unmarshal([]byte(line), &want); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		var got BundleLine
		_, _, err := p.parse([]byte(line), &got, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if fmt.Sprintf("%#v", normal(got)) != fmt.Sprintf("%#v", normal(want)) {
			t.Fatalf("%s:\n got %#v\nwant %#v", line, got, want)
		}
	}
	for _, line := range []string{
		`{"kind":"record","leaf":-1}`, `{"kind":"record","leaf":"1"}`, `{"kind":1}`, `{"data":"@@"}`,
		`{"kind":"record"}{}`, `{"kind":"record","kind":"key"}`, `[1]`, `{"kind":"record"`, `{"id":"nope"}`,
		`{"leaf":1.5}`, `{"leaf":99999999999999999999}`,
	} {
		var bl BundleLine
		if _, _, err := p.parse([]byte(line), &bl, nil, nil); err == nil {
			t.Errorf("%s: parsed", line)
		}
	}
}

func normal(b BundleLine) BundleLine {
	for _, f := range []*[]byte{&b.Data, &b.Metadata, &b.Proof, &b.Key} {
		if len(*f) == 0 {
			*f = nil
		}
	}
	return b
}

// The log's leaf data of a record is the one a bundle line stands for.
func TestLeafDataMatchesBundleLine(t *testing.T) {
	rec := eventstore.Record{ID: uuid.New(), Stream: eventstore.ActivityStream("acme"), Type: "ActivityRecorded",
		Data: []byte(`{"a":1}`), Metadata: []byte(`{}`), Revision: 7, Position: 42}
	for _, readErr := range []error{nil, eventstore.ErrUnreadable} {
		line := RecordLine(rec, readErr, 3, nil)
		if got, want := LeafData(rec, readErr), line.leafData(nil); !bytes.Equal(got, want) {
			t.Fatalf("read with %v: leaf %x, bundle line's %x", readErr, got, want)
		}
	}
	if got, want := LeafData(eventstore.Record{Position: 9}, eventstore.ErrUnreadable), AppendUnreadableLeaf(nil, 9, ""); !bytes.Equal(got, want) {
		t.Fatalf("record of no stream: leaf %x, want %x", got, want)
	}
}

// Proofs decoded one after another decode to their own bytes, whichever
// part they share with the proof before.
func TestLineParserProofs(t *testing.T) {
	base := make([]byte, 21*tlog.HashSize)
	for i := range base {
		base[i] = byte(i * 7)
	}
	var proofs [][]byte
	for _, at := range []int{0, 5, 31, 32, 100, 300, 500, len(base) - 1, -1} {
		p := bytes.Clone(base)
		if at >= 0 {
			p[at] ^= 0x55
		}
		proofs = append(proofs, p, bytes.Clone(base), p[:len(p)-tlog.HashSize])
	}
	var p lineParser
	for i, want := range proofs {
		line, err := json.Marshal(&BundleLine{Kind: KindRecord, Proof: want})
		if err != nil {
			t.Fatal(err)
		}
		var bl BundleLine
		if _, _, err := p.parse(line, &bl, nil, nil); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(bl.Proof, want) {
			t.Fatalf("proof %d decoded to other bytes", i)
		}
	}
	// A padding character inside the text is refused, also when the end
	// is the last proof's.
	line, _ := json.Marshal(&BundleLine{Kind: KindRecord, Proof: base})
	at := bytes.Index(line, []byte(`"proof":"`)) + len(`"proof":"`) + 60
	bad := bytes.Clone(line)
	copy(bad[at:], "AA==")
	var bl BundleLine
	if len(bad) != len(line) || bytes.Equal(bad, line) {
		t.Fatalf("altered line %s", bad)
	}
	if _, _, err := p.parse(line, &bl, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.parse(bad, &bl, nil, nil); err == nil {
		t.Fatalf("proof with padding inside parsed: %s", bad)
	}
}

// fastAgrees fails t when the fast path decodes line otherwise than
// json.Unmarshal: what it decodes must be a line Unmarshal decodes alike.
func fastAgrees(t *testing.T, p *lineParser, line []byte) bool {
	var got BundleLine
	_, _, ok := p.parseFast(line, &got, nil, nil)
	if !ok {
		return false
	}
	var want BundleLine
	if err := json.Unmarshal(line, &want); err != nil {
		t.Fatalf("%q: the fast path decodes what Unmarshal refuses: %v", line, err)
	}
	if fmt.Sprintf("%#v", normal(got)) != fmt.Sprintf("%#v", normal(want)) {
		t.Fatalf("%q:\n got %#v\nwant %#v", line, got, want)
	}
	return true
}

// The fast path of the line parser decodes the lines a bundle holds, and
// any line with a byte changed, added or taken either as json.Unmarshal
// does or not at all (the streaming decoder then decides).
func TestParseFastAgreesWithUnmarshal(t *testing.T) {
	rec := eventstore.Record{ID: uuid.New(), Stream: eventstore.ActivityStream("acme"), Type: "ActivityRecorded",
		Data: []byte(`{"a":1}`), Metadata: []byte(`{"prevhash":"00"}`), Revision: 7, Position: 42}
	proof := make(tlog.RecordProof, 2)
	proof[1][3] = 9
	var lines [][]byte
	for _, bl := range []BundleLine{
		RecordLine(rec, nil, 3, proof),
		RecordLine(rec, eventstore.ErrUnreadable, 10, proof[:1]),
		RecordLine(rec, nil, 0, nil),
		{Kind: KindKey, User: "u1", Key: []byte{1, 2, 3}},
		{Kind: KindCheckpoint, Format: BundleFormat, Account: "acme", Checkpoint: "origin"},
	} {
		b, err := json.Marshal(&bl)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, append(b, '\n'))
	}
	var p lineParser
	for _, line := range lines {
		if !fastAgrees(t, &p, line) {
			t.Fatalf("%s: not decoded by the fast path", line)
		}
		for i := range line {
			for _, c := range []byte{'"', '\\', ',', ':', '}', '{', ' ', '\r', '0', '1', '-', 'A', '=', 't', 0x80, 0} {
				bad := bytes.Clone(line)
				bad[i] = c
				fastAgrees(t, &p, bad)
				fastAgrees(t, &p, append(bytes.Clone(line[:i]), append([]byte{c}, line[i:]...)...))
			}
			fastAgrees(t, &p, append(bytes.Clone(line[:i]), line[i+1:]...))
		}
	}
}

func FuzzParseFast(f *testing.F) {
	f.Add([]byte(`{"kind":"record","leaf":12,"position":99,"stream":"ledger-acme","revision":3,"id":"6ba7b810-9dad-11d1-80b4-00c04fd430c8","type":"UserAdded","data":"eyJhIjoxfQ==","metadata":"e30=","proof":"AAEC"}`))
	f.Add([]byte(`{"kind":"record","unreadable":true,"position":7}` + "\n"))
	f.Fuzz(func(t *testing.T, line []byte) {
		var p lineParser
		fastAgrees(t, &p, line)
	})
}
