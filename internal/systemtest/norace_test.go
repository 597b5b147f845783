//go:build !race

package systemtest

// raceEnabled tells whether the tests run with the race detector: the
// service's binary is then built with it too.
const raceEnabled = false
