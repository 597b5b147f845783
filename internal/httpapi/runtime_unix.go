//go:build unix

package httpapi

import "syscall"

// rusage returns the CPU time this process spent, in seconds, and its
// limit of open files; -1 and 0 when unknown.
func rusage() (cpu, maxFDs float64) {
	cpu = -1
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu = float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Cur < 1<<53 {
		maxFDs = float64(rl.Cur)
	}
	return cpu, maxFDs
}
