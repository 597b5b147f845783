package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/licenseledger/ledger/internal/cputime"
)

// cpuClock returns the CPU time (user and system) used so far by this
// process and by the process pid (0: none; its time is then 0). On a shared
// machine, CPU time per command is steadier than wall-clock rates.
func cpuClock(pid int) (self, other time.Duration) {
	self = cputime.Process()
	if pid > 0 {
		other, _ = procCPU(pid)
	}
	return self, other
}

// procCPU reads a process's utime and stime from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; fields resume after its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	// Fields 14 and 15 of stat (utime, stime) are 11 and 12 after ')'.
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clkTck, nil
}
