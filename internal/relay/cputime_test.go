//go:build unix

package relay_test

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time the process has used, user and system: with
// the NATS server embedded, the server's work included.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
