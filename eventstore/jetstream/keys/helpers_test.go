package keys

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// subject returns the subject of the key of id in the stream that holds
// it, or would hold it.
func (s *Store) subject(id string) (string, error) {
	_, subj, _, err := s.locate(context.Background(), id)
	return subj, err
}

// partOf returns the stream of s whose subjects include subj.
func (s *Store) partOf(subj string) *part {
	n := strings.Count(subj, ".")
	for _, p := range s.parts() {
		if strings.HasPrefix(subj, p.prefix+".") && strings.Count(p.prefix, ".")+2 == n {
			return p
		}
	}
	panic("no key stream has subject " + subj)
}

// last returns the last message on subj, nil when there is none.
func (s *Store) last(ctx context.Context, subj string) (*jetstream.RawStreamMsg, error) {
	return s.partOf(subj).last(ctx, subj)
}
