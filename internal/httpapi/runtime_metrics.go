package httpapi

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// processStart is when this package was initialised: the start of the
// process to within the time the runtime takes to get here.
var processStart = time.Now()

// runtimeSamples are the runtime/metrics read for /metrics, in the order
// of runtimeFamilies' sources.
var runtimeSamples = []string{
	"/sched/goroutines:goroutines",         // 0
	"/sched/gomaxprocs:threads",            // 1
	"/memory/classes/heap/objects:bytes",   // 2
	"/memory/classes/heap/unused:bytes",    // 3
	"/memory/classes/heap/free:bytes",      // 4
	"/memory/classes/heap/released:bytes",  // 5
	"/memory/classes/heap/stacks:bytes",    // 6
	"/memory/classes/total:bytes",          // 7
	"/gc/heap/allocs:bytes",                // 8
	"/gc/heap/allocs:objects",              // 9
	"/gc/heap/frees:objects",               // 10
	"/gc/heap/tiny/allocs:objects",         // 11
	"/gc/heap/objects:objects",             // 12
	"/gc/heap/goal:bytes",                  // 13
	"/gc/cycles/total:gc-cycles",           // 14
	"/cpu/classes/gc/total:cpu-seconds",    // 15
	"/sync/mutex/wait/total:seconds",       // 16
	"/gc/gogc:percent",                     // 17
	"/gc/gomemlimit:bytes",                 // 18
	"/memory/classes/metadata/other:bytes", // 19
}

// writeRuntime writes the Go runtime's metrics and the process's in the
// text exposition format, under the names the Prometheus Go client uses
// (go_*, process_*), so that the usual dashboards and alerts apply. They
// are read from runtime/metrics, which does not stop the world.
func writeRuntime(w io.Writer) {
	s := make([]metrics.Sample, len(runtimeSamples))
	for i, name := range runtimeSamples {
		s[i].Name = name
	}
	metrics.Read(s)
	v := func(i int) float64 {
		switch s[i].Value.Kind() {
		case metrics.KindUint64:
			return float64(s[i].Value.Uint64())
		case metrics.KindFloat64:
			return s[i].Value.Float64()
		}
		return 0
	}
	family := func(name, typ, help string, value float64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name, typ, name, strconv.FormatFloat(value, 'g', -1, 64))
	}
	fmt.Fprintf(w, "# HELP go_info Information about the Go environment.\n# TYPE go_info gauge\ngo_info{version=%s} 1\n", quote(runtime.Version()))
	family("go_goroutines", "gauge", "Number of goroutines that currently exist.", v(0))
	family("go_sched_gomaxprocs_threads", "gauge", "The current runtime.GOMAXPROCS setting.", v(1))
	family("go_memstats_alloc_bytes", "gauge", "Number of heap bytes allocated and still in use.", v(2))
	family("go_memstats_alloc_bytes_total", "counter", "Total number of heap bytes allocated, even if freed.", v(8))
	family("go_memstats_heap_alloc_bytes", "gauge", "Number of heap bytes allocated and still in use.", v(2))
	family("go_memstats_heap_inuse_bytes", "gauge", "Number of heap bytes in spans that are in use.", v(2)+v(3))
	family("go_memstats_heap_idle_bytes", "gauge", "Number of heap bytes waiting to be used.", v(4)+v(5))
	family("go_memstats_heap_released_bytes", "gauge", "Number of heap bytes released to the OS.", v(5))
	family("go_memstats_heap_objects", "gauge", "Number of currently allocated objects.", v(12))
	family("go_memstats_mallocs_total", "counter", "Total number of heap objects allocated, tiny ones included.", v(9)+v(11))
	family("go_memstats_frees_total", "counter", "Total number of heap objects freed, tiny ones included.", v(10)+v(11))
	family("go_memstats_stack_inuse_bytes", "gauge", "Number of bytes obtained from the OS for goroutine stacks.", v(6))
	family("go_memstats_sys_bytes", "gauge", "Number of bytes obtained from the OS.", v(7))
	family("go_memstats_other_sys_bytes", "gauge", "Number of bytes used for other runtime metadata.", v(19))
	family("go_memstats_next_gc_bytes", "gauge", "Heap size the next garbage collection aims at.", v(13))
	family("go_gc_cycles_total", "counter", "Completed garbage collection cycles.", v(14))
	family("go_gc_cpu_seconds_total", "counter", "Estimated CPU time spent on garbage collection.", v(15))
	family("go_sync_mutex_wait_total_seconds_total", "counter", "Approximate time goroutines spent blocked on a sync.Mutex or sync.RWMutex.", v(16))
	family("go_gc_gogc_percent", "gauge", "Heap size target percentage (GOGC).", v(17))
	family("go_gc_gomemlimit_bytes", "gauge", "Go runtime memory limit (GOMEMLIMIT).", v(18))

	p := readProcess()
	if p.cpu >= 0 {
		family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", p.cpu)
	}
	if p.rss > 0 {
		family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", p.rss)
	}
	if p.vsize > 0 {
		family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", p.vsize)
	}
	if p.openFDs >= 0 {
		family("process_open_fds", "gauge", "Number of open file descriptors.", p.openFDs)
	}
	if p.maxFDs > 0 {
		family("process_max_fds", "gauge", "Maximum number of open file descriptors.", p.maxFDs)
	}
	family("process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch in seconds.",
		float64(processStart.UnixNano())/1e9)
}

// process holds what the operating system tells of this process; a
// negative or zero value is unknown and not written.
type process struct {
	cpu, rss, vsize, openFDs, maxFDs float64
}

// readProcess reads /proc/self where there is one (Linux) and the
// resource usage where the system has it.
func readProcess() process {
	p := process{cpu: -1, openFDs: -1}
	p.cpu, p.maxFDs = rusage()
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		// size resident shared text lib data dt, in pages.
		if f := strings.Fields(string(b)); len(f) >= 2 {
			page := float64(os.Getpagesize())
			if n, err := strconv.ParseUint(f[0], 10, 64); err == nil {
				p.vsize = float64(n) * page
			}
			if n, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				p.rss = float64(n) * page
			}
		}
	}
	if d, err := os.Open("/proc/self/fd"); err == nil {
		names, err := d.Readdirnames(-1)
		d.Close()
		if err == nil {
			p.openFDs = float64(len(names) - 1) // less the one just opened to read it
		}
	}
	return p
}
