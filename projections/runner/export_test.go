package runner

// SetLiveBatch sets the most live records folded together and returns the
// previous number. Call it when no runner follows the store.
func SetLiveBatch(n int) int {
	old := liveBatch
	liveBatch = n
	return old
}
