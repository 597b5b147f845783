package jetstream

// BatchStats returns how many coalesced batches s committed and how many
// events they held.
func BatchStats(s *Store) (batches, events uint64) { return s.batches.Load(), s.batched.Load() }
