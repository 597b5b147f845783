package ledger

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// The grammar of ids and kinds, as regular expressions: the checks must
// accept exactly what these match.
var (
	accountIDGrammar = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	idGrammar        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	kindGrammar      = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)
)

func TestValidIDsMatchTheirGrammar(t *testing.T) {
	inputs := []string{"", "a", "A", "0", "_", "-", ".", "a_", "a-", "a.", "aB", "Ab", "a b", "a\n", "a\x00",
		"é", "aé", "acme", "acme-2", "01HZY3K6V1M000000000000000", "u1\n",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a", 65), strings.Repeat("A", 64)}
	const alphabet = "azAZ09_-./ \n\xc3\xa9"
	rng := rand.New(rand.NewPCG(1, 15))
	for range 20000 {
		b := make([]byte, rng.IntN(70))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		inputs = append(inputs, string(b))
	}
	for _, s := range inputs {
		if got, want := ValidAccountID(s), accountIDGrammar.MatchString(s); got != want {
			t.Errorf("ValidAccountID(%q) = %v, want %v", s, got, want)
		}
		if got, want := ValidID(s), idGrammar.MatchString(s); got != want {
			t.Errorf("ValidID(%q) = %v, want %v", s, got, want)
		}
		if got, want := validKind(s), kindGrammar.MatchString(s); got != want {
			t.Errorf("validKind(%q) = %v, want %v", s, got, want)
		}
	}
}

// BenchmarkValidID checks a user id as every command does, beside the
// regular expression of its grammar.
//
//	go test -run '^$' -bench ValidID -count 3 ./domain/ledger/
func BenchmarkValidID(b *testing.B) {
	const id = "01HZY3K6V1M000000000000000"
	b.Run("loop", func(b *testing.B) {
		for b.Loop() {
			if !ValidID(id) {
				b.Fatal("refused")
			}
		}
	})
	b.Run("regexp", func(b *testing.B) {
		for b.Loop() {
			if !idGrammar.MatchString(id) {
				b.Fatal("refused")
			}
		}
	})
}
