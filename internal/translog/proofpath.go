package translog

import (
	"math/bits"

	"golang.org/x/mod/sumdb/tlog"
)

// The record lines of an audit bundle share one checkpoint, so their
// inclusion proofs share the hashes above the node where the paths of
// neighbouring leaves meet. A record line gives only the hashes of its
// proof that the record line before it does not prove: the hashes from
// its leaf up to the child, on its side, of the node where its path meets
// the path of the line before. The verifier hashes from the leaf up with
// them and compares the node reached with the same node as the line
// before proved it, whose hashes up to the root were checked then. A line
// may give more hashes, up to its whole proof: the node reached is then
// one of the line before's path, or the root. Together with the lines
// before, each line thus gives its whole RFC 6962 inclusion proof, and the
// verifier accepts a line exactly when that proof holds (compactProof,
// pathState and their tests).

// span is a node of the tree: the subtree of leaves [lo, hi).
type span struct{ lo, hi int64 }

// maxDepth bounds the depth of a path: a tree has fewer than 2^63 leaves.
const maxDepth = 64

// treePath sets node[d] to the node at depth d on the path from the root
// of the tree of size leaves (node[0]) down to leaf x, and sib[d] to its
// sibling, as RFC 6962 splits the tree; it returns the depth of the leaf,
// which is the number of hashes in its inclusion proof. The proof's hash i
// (tlog.ProveRecord's order, from the leaf up) is the hash of sib[depth-i].
func treePath(size, x int64, node, sib *[maxDepth]span) int {
	lo, hi := int64(0), size
	node[0] = span{lo, hi}
	d := 0
	for hi-lo > 1 {
		k := int64(1) << (bits.Len64(uint64(hi-lo-1)) - 1) // the largest power of 2 below hi-lo
		d++
		if x < lo+k {
			node[d], sib[d] = span{lo, lo + k}, span{lo + k, hi}
			hi = lo + k
		} else {
			node[d], sib[d] = span{lo + k, hi}, span{lo, lo + k}
			lo += k
		}
	}
	return d
}

// compactProof returns how many hashes, from the leaf up, of leaf x's
// inclusion proof (of depth hashes) a bundle line gives when the record
// line before it is of leaf prev (-1 for none): those below the node where
// their paths meet.
func compactProof(size, prev, x int64) int {
	var node, sib, pnode, psib [maxDepth]span
	depth := treePath(size, x, &node, &sib)
	if prev < 0 || prev >= size || prev == x {
		return depth
	}
	pdepth := treePath(size, prev, &pnode, &psib)
	for d := 1; d <= min(depth, pdepth); d++ {
		if node[d] != pnode[d] {
			return depth - d
		}
	}
	return depth
}

// climb hashes leaf (leaf x's hash) up its path in a tree of size leaves
// with the proof's hashes (concatenated, from the leaf up), appending to
// hs the hash of each node on the way, the leaf's first. It returns hs
// and false when the proof holds more hashes than the path has nodes.
func climb(size, x int64, leaf tlog.Hash, proof []byte, hs []tlog.Hash) ([]tlog.Hash, bool) {
	var node, sib [maxDepth]span
	depth := treePath(size, x, &node, &sib)
	g := len(proof) / tlog.HashSize
	if g > depth {
		return hs, false
	}
	h := leaf
	hs = append(hs, h)
	for i := range g {
		d := depth - i
		s := tlog.Hash(proof[i*tlog.HashSize:])
		if node[d].lo < sib[d].lo {
			h = tlog.NodeHash(h, s)
		} else {
			h = tlog.NodeHash(s, h)
		}
		hs = append(hs, h)
	}
	return hs, true
}

// pathState is what the record lines checked so far proved of the tree:
// the path of the last line's leaf, each node's hash and its sibling's.
// Every hash it holds is the hash of that node of the checkpoint's tree.
type pathState struct {
	size  int64
	root  tlog.Hash
	depth int // of the last path; -1 before the first line
	node  [maxDepth]span
	sib   [maxDepth]span
	nodeH [maxDepth]tlog.Hash
	sibH  [maxDepth]tlog.Hash
}

func newPathState(size int64, root tlog.Hash) *pathState {
	return &pathState{size: size, root: root, depth: -1}
}

// link reports whether the line of leaf x, whose path hashes climb
// computed (hs) from the proof's hashes given (proof), is proved: the node
// it reached is the root, or a node of the last line's path or its
// sibling, with the hash proved then. When it is, the state becomes leaf
// x's path.
func (s *pathState) link(x int64, hs []tlog.Hash, proof []byte) bool {
	var node, sib [maxDepth]span
	depth := treePath(s.size, x, &node, &sib)
	g := len(proof) / tlog.HashSize
	if x < 0 || x >= s.size || len(proof)%tlog.HashSize != 0 || g > depth || len(hs) != g+1 {
		return false
	}
	t, h := depth-g, hs[g]
	switch {
	case t == 0:
		if h != s.root {
			return false
		}
		s.node[0], s.nodeH[0] = node[0], h
	case t > s.depth:
		return false
	case node[t] == s.sib[t] && h == s.sibH[t]:
		s.sib[t], s.sibH[t] = s.node[t], s.nodeH[t]
		s.node[t], s.nodeH[t] = node[t], h
	case node[t] == s.node[t] && h == s.nodeH[t]:
	default:
		return false
	}
	for d := t + 1; d <= depth; d++ {
		s.node[d], s.nodeH[d] = node[d], hs[depth-d]
		s.sib[d], s.sibH[d] = sib[d], tlog.Hash(proof[(depth-d)*tlog.HashSize:])
	}
	s.depth = depth
	return true
}

// proof returns the whole inclusion proof of the last line's leaf, from
// the leaf up.
func (s *pathState) proof() tlog.RecordProof {
	p := make(tlog.RecordProof, 0, max(s.depth, 0))
	for d := s.depth; d >= 1; d-- {
		p = append(p, s.sibH[d])
	}
	return p
}
