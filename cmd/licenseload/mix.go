package main

import (
	"fmt"
	"strconv"
	"strings"
)

// kind is one kind of command the load sends.
type kind int

const (
	kindActivity kind = iota
	kindDeactivate
	kindActivate
	kindAdd
	kindPurchase
	kindDelete
	numKinds
)

var kindNames = [numKinds]string{"activity", "deactivate", "activate", "add", "purchase", "delete"}

func (k kind) String() string { return kindNames[k] }

// defaultMix is mostly activities and deactivate/activate cycles, with some
// additions, purchases and deletions.
const defaultMix = "activity=60,deactivate=12,activate=12,add=8,purchase=4,delete=4"

// mix is the cumulative weights of the kinds, for drawing one.
type mix struct {
	cum   [numKinds]int
	total int
}

func parseMix(spec string) (mix, error) {
	var m mix
	var w [numKinds]int
	for part := range strings.SplitSeq(spec, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return mix{}, fmt.Errorf("mix %q: want kind=weight", part)
		}
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return mix{}, fmt.Errorf("mix %q: weight must be a non-negative integer", part)
		}
		k := -1
		for i, kn := range kindNames {
			if kn == name {
				k = i
			}
		}
		if k < 0 {
			return mix{}, fmt.Errorf("mix: unknown kind %q (want one of %s)", name, strings.Join(kindNames[:], ", "))
		}
		w[k] = n
	}
	for i := range w {
		m.total += w[i]
		m.cum[i] = m.total
	}
	if m.total == 0 {
		return mix{}, fmt.Errorf("mix %q: weights sum to 0", spec)
	}
	return m, nil
}

// pick returns the kind drawn by r, uniform in [0, total).
func (m mix) pick(r int) kind {
	for i, c := range m.cum {
		if r < c {
			return kind(i)
		}
	}
	return numKinds - 1
}
