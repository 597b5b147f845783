package translog_test

import (
	"os"

	"golang.org/x/mod/sumdb/tlog"
)

var (
	osStat     = os.Stat
	osReadFile = os.ReadFile
)

// naiveRoot computes the RFC 6962 root of leaves from scratch with tlog's
// storage, as a reference for the incrementally maintained tree.
func naiveRoot(leaves [][]byte) tlog.Hash {
	var stored []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for i, d := range leaves {
		hs, err := tlog.StoredHashes(int64(i), d, r)
		if err != nil {
			panic(err)
		}
		stored = append(stored, hs...)
	}
	h, err := tlog.TreeHash(int64(len(leaves)), r)
	if err != nil {
		panic(err)
	}
	return h
}

func checkRecord(p tlog.RecordProof, size int64, root tlog.Hash, i int64, leaf []byte) error {
	return tlog.CheckRecord(p, size, root, i, tlog.RecordHash(leaf))
}

func checkTree(p tlog.TreeProof, size int64, root tlog.Hash, old int64, oldRoot tlog.Hash) error {
	return tlog.CheckTree(p, size, root, old, oldRoot)
}
