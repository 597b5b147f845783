// Package cputime reads the CPU time this process has used. On a shared
// machine, CPU time per unit of work is a steadier figure than a rate
// measured by the wall clock, and the benchmarks and the load generator
// report it.
package cputime
