//go:build unix

package cputime

import (
	"syscall"
	"time"
)

// Process returns the CPU time, user and system on every core, this
// process has used so far (with an embedded NATS server, the server's
// work included); 0 when the system cannot tell.
func Process() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
