package httpapi_test

import (
	"fmt"
	"math"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// family is a metric family as parseExposition read it.
type family struct {
	typ     string
	help    bool
	samples map[string]float64 // by name and labels as written
}

var (
	metricName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelPair  = regexp.MustCompile(`^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"$`)
)

// parseExposition parses the Prometheus text exposition format (0.0.4)
// strictly: every sample belongs to a family declared by one TYPE line
// before it (histogram samples by their _bucket, _sum and _count
// suffixes), families are not interleaved nor declared twice, names and
// labels are well formed, values are floats, and the text ends with a
// newline.
func parseExposition(text string) (map[string]*family, error) {
	if !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("does not end with a newline")
	}
	fams := map[string]*family{}
	var current string
	closed := map[string]bool{}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		fail := func(format string, args ...any) error {
			return fmt.Errorf("line %d %q: %s", i+1, line, fmt.Sprintf(format, args...))
		}
		switch {
		case strings.HasPrefix(line, "# HELP "), strings.HasPrefix(line, "# TYPE "):
			f := strings.SplitN(line, " ", 4)
			if len(f) < 4 || !metricName.MatchString(f[2]) {
				return nil, fail("malformed comment")
			}
			name := f[2]
			if name != current {
				if closed[name] || (fams[name] != nil && fams[name].samples != nil && len(fams[name].samples) > 0) {
					return nil, fail("family %s declared again or interleaved", name)
				}
				if current != "" {
					closed[current] = true
				}
				current = name
			}
			fam := fams[name]
			if fam == nil {
				fam = &family{samples: map[string]float64{}}
				fams[name] = fam
			}
			if f[1] == "HELP" {
				if fam.help {
					return nil, fail("second HELP")
				}
				fam.help = true
				continue
			}
			if fam.typ != "" || len(fam.samples) > 0 {
				return nil, fail("TYPE again or after samples")
			}
			switch f[3] {
			case "counter", "gauge", "histogram", "summary", "untyped":
				fam.typ = f[3]
			default:
				return nil, fail("unknown type")
			}
		case strings.HasPrefix(line, "#"):
			continue
		case line == "":
			return nil, fail("empty line")
		default:
			name, rest := line, ""
			if j := strings.IndexAny(line, "{ "); j >= 0 {
				name, rest = line[:j], line[j:]
			}
			if !metricName.MatchString(name) {
				return nil, fail("bad metric name")
			}
			if strings.HasPrefix(rest, "{") {
				end := strings.LastIndex(rest, "}")
				if end < 0 {
					return nil, fail("unclosed labels")
				}
				if labels := rest[1:end]; labels != "" {
					for _, l := range splitLabels(labels) {
						if !labelPair.MatchString(l) {
							return nil, fail("bad label %q", l)
						}
					}
				}
				rest = rest[end+1:]
			}
			fields := strings.Fields(rest)
			if len(fields) < 1 || len(fields) > 2 || !strings.HasPrefix(rest, " ") {
				return nil, fail("want one value and an optional timestamp")
			}
			val, err := strconv.ParseFloat(fields[0], 64)
			if err != nil {
				return nil, fail("value: %v", err)
			}
			base := name
			if fams[name] == nil {
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(name, suf); ok && fams[b] != nil && (fams[b].typ == "histogram" || fams[b].typ == "summary") {
						base = b
					}
				}
			}
			fam := fams[base]
			if fam == nil || fam.typ == "" {
				return nil, fail("sample of a family without TYPE")
			}
			if base != current {
				return nil, fail("sample outside its family's block")
			}
			key := line[:len(line)-len(rest)]
			if _, dup := fam.samples[key]; dup {
				return nil, fail("sample repeated")
			}
			fam.samples[key] = val
		}
	}
	return fams, nil
}

// splitLabels splits name="value" pairs on the commas outside quotes.
func splitLabels(s string) []string {
	var out []string
	inQuote, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// /metrics carries the Go runtime's and the process's metrics beside the
// ledger's own, all in a valid text exposition.
func TestMetricsRuntimeAndProcess(t *testing.T) {
	e := newEnv(t)
	e.open("acme", 2)
	before := time.Now()
	body := string(e.must(200, "", "GET", "/metrics", nil).Body)
	fams, err := parseExposition(body)
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	value := func(name string) float64 {
		t.Helper()
		f := fams[name]
		if f == nil || len(f.samples) != 1 || !f.help {
			t.Fatalf("family %s: %+v", name, f)
		}
		for _, v := range f.samples {
			return v
		}
		return math.NaN()
	}
	if f := fams["licensed_commands_total"]; f == nil || f.typ != "counter" || len(f.samples) == 0 {
		t.Errorf("the ledger's own metrics: %+v", f)
	}
	if f := fams["go_info"]; f == nil || f.samples[`go_info{version="`+runtime.Version()+`"}`] != 1 {
		t.Errorf("go_info: %+v", f)
	}
	for name, ok := range map[string]func(float64) bool{
		"go_goroutines":                 func(v float64) bool { return v >= 1 },
		"go_sched_gomaxprocs_threads":   func(v float64) bool { return v == float64(runtime.GOMAXPROCS(0)) },
		"go_memstats_alloc_bytes":       func(v float64) bool { return v > 0 },
		"go_memstats_alloc_bytes_total": func(v float64) bool { return v >= value("go_memstats_alloc_bytes") },
		"go_memstats_heap_alloc_bytes":  func(v float64) bool { return v > 0 },
		"go_memstats_heap_inuse_bytes":  func(v float64) bool { return v >= value("go_memstats_heap_alloc_bytes") },
		"go_memstats_heap_objects":      func(v float64) bool { return v > 0 },
		"go_memstats_mallocs_total":     func(v float64) bool { return v >= value("go_memstats_frees_total") },
		"go_memstats_sys_bytes":         func(v float64) bool { return v >= value("go_memstats_heap_inuse_bytes") },
		"go_memstats_next_gc_bytes":     func(v float64) bool { return v > 0 },
		"go_memstats_stack_inuse_bytes": func(v float64) bool { return v > 0 },
		"go_gc_cycles_total":            func(v float64) bool { return v >= 0 },
		"process_cpu_seconds_total":     func(v float64) bool { return v > 0 },
		"process_resident_memory_bytes": func(v float64) bool { return v > 1<<20 },
		"process_virtual_memory_bytes":  func(v float64) bool { return v >= value("process_resident_memory_bytes") },
		"process_open_fds":              func(v float64) bool { return v >= 3 && v <= value("process_max_fds") },
		"process_start_time_seconds": func(v float64) bool {
			return v <= float64(before.Unix()+1) && v > float64(before.Add(-time.Hour).Unix())
		},
		"licensed_events_published_total": func(v float64) bool { return v >= 0 },
	} {
		if runtime.GOOS != "linux" && strings.HasPrefix(name, "process_") && name != "process_start_time_seconds" && name != "process_cpu_seconds_total" {
			continue
		}
		if v := value(name); !ok(v) {
			t.Errorf("%s = %v", name, v)
		}
	}
	for name, f := range fams {
		want := "gauge"
		if strings.HasSuffix(name, "_total") {
			want = "counter"
		}
		if f.typ == "histogram" {
			continue
		}
		if f.typ != want {
			t.Errorf("%s is a %s, want %s", name, f.typ, want)
		}
	}
}

// The parser refuses what a scraper would.
func TestParseExpositionRefuses(t *testing.T) {
	good := "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 2\n"
	if _, err := parseExposition(good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"a_total 2\n",
		"# TYPE a gauge\na 1",
		"# TYPE a gauge\na one\n",
		"# TYPE a gauge\na{x=1} 1\n",
		"# TYPE a gauge\n# TYPE b gauge\na 1\n",
		"# TYPE a gauge\na 1\n# TYPE a gauge\n",
		"# TYPE a gauge\na 1\na 2\n",
		"# TYPE 1a gauge\n1a 1\n",
		"# TYPE a weird\na 1\n",
	} {
		if _, err := parseExposition(bad); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}
