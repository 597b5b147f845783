//go:build !unix

package httpapi

// rusage returns -1 and 0: unknown on this system.
func rusage() (cpu, maxFDs float64) { return -1, 0 }
