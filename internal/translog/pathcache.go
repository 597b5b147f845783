package translog

import (
	"bytes"

	"golang.org/x/mod/sumdb/tlog"
)

// pathCache checks inclusion proofs against one tree, remembering the
// interior hashes of the last proof that held: the proofs of nearby leaves
// share all their upper nodes, so a proof whose path reaches a node of the
// remembered path with the same hash, and whose remaining hashes are the
// remembered path's, holds without hashing up to the root again. Every
// hash of every proof is either hashed or compared with one of a proof
// that held, so a proof is accepted exactly when tlog.CheckRecord accepts
// it. The walk is RFC 9162's (section 2.1.3.2); a proof it rejects is
// checked again with tlog.CheckRecord, which has the last word.
type pathCache struct {
	size int64
	root tlog.Hash

	proof []byte // the last proof that held
	// nodes of the last proof's path by height: after the step that
	// reached it, the node's index at that height, its hash and how many
	// proof hashes were left.
	nodes [64]pathNode
}

type pathNode struct {
	ok   bool
	fn   uint64
	left int
	hash tlog.Hash
}

func newPathCache(size int64, root tlog.Hash) *pathCache {
	return &pathCache{size: size, root: root}
}

// check reports whether proof (hashes concatenated) proves that leaf is
// the leaf hash of leaf index of the tree.
func (pc *pathCache) check(index int64, leaf tlog.Hash, proof []byte) bool {
	if pc.fast(index, leaf, proof) {
		return true
	}
	p := make(tlog.RecordProof, len(proof)/tlog.HashSize)
	for i := range p {
		p[i] = tlog.Hash(proof[i*tlog.HashSize:])
	}
	return len(proof)%tlog.HashSize == 0 && tlog.CheckRecord(p, pc.size, pc.root, index, leaf) == nil
}

func (pc *pathCache) fast(index int64, leaf tlog.Hash, proof []byte) bool {
	if index < 0 || index >= pc.size || len(proof)%tlog.HashSize != 0 {
		return false
	}
	n := len(proof) / tlog.HashSize
	var seen [64]pathNode
	fn, sn, height := uint64(index), uint64(pc.size-1), 0
	r := leaf
	for k := range n {
		if sn == 0 {
			return false
		}
		p := tlog.Hash(proof[k*tlog.HashSize:])
		if fn&1 == 1 || fn == sn {
			r = tlog.NodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn, sn, height = fn>>1, sn>>1, height+1
			}
		} else {
			r = tlog.NodeHash(r, p)
		}
		fn, sn, height = fn>>1, sn>>1, height+1
		if height >= len(seen) {
			return false
		}
		left := n - k - 1
		seen[height] = pathNode{ok: true, fn: fn, left: left, hash: r}
		if c := pc.nodes[height]; c.ok && c.fn == fn {
			// The same node as on the path that held: same hash, same
			// hashes above it.
			if c.hash != r || c.left != left ||
				!bytes.Equal(proof[len(proof)-left*tlog.HashSize:], pc.proof[len(pc.proof)-left*tlog.HashSize:]) {
				return false
			}
			for h := range height + 1 {
				pc.nodes[h] = seen[h]
			}
			pc.proof = append(pc.proof[:0], proof...)
			return true
		}
	}
	if sn != 0 || r != pc.root {
		return false
	}
	pc.nodes = seen
	pc.proof = append(pc.proof[:0], proof...)
	return true
}
