package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAuditMemory measures the resident memory the licensed binary adds
// while ten clients read the audit trail of an account with 100,000
// events at once: the default JSON page, then the JSON Lines export of
// the whole trail. It loads the events through the HTTP API, so it takes
// a minute or more, and runs only when asked:
//
//	LEDGER_MEASURE_AUDIT_MEMORY=1 go test -run TestAuditMemory -v -timeout 30m ./cmd/licensed/
//
// LEDGER_MEASURE_BIN runs a licensed binary built elsewhere (another
// version, to compare) instead of building this one; LEDGER_MEASURE_EVENTS
// changes the number of events (100000); LEDGER_MEASURE_ONLY=json, jsonl
// or events (the raw history, GET /events) measures one of the reads, in a process that has served no
// other; LEDGER_MEASURE_PROFILE=DIR saves heap profiles of the process
// into DIR while the reads run; LEDGER_MEASURE_RESTART=1 restarts the process after loading, so
// that the idle figure holds no garbage of the load.
func TestAuditMemory(t *testing.T) {
	if os.Getenv("LEDGER_MEASURE_AUDIT_MEMORY") == "" {
		t.Skip("set LEDGER_MEASURE_AUDIT_MEMORY=1 to measure")
	}
	events := 100_000
	if v := os.Getenv("LEDGER_MEASURE_EVENTS"); v != "" {
		var err error
		if events, err = strconv.Atoi(v); err != nil || events < 1 {
			t.Fatalf("LEDGER_MEASURE_EVENTS=%q", v)
		}
	}
	bin := os.Getenv("LEDGER_MEASURE_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "licensed")
		out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
		if err != nil {
			t.Fatalf("build: %v\n%s", err, out)
		}
	}
	dir := t.TempDir()
	cmd, c := startLicensed(t, bin, dir)
	c.mustDo(t, 201, "POST", "/accounts", `{"id":"big","name":"Big","seats":2}`)
	var user struct{ ID string }
	json.Unmarshal(c.mustDo(t, 201, "POST", "/accounts/big/users", `{"name":"Ada","email":"ada@big.test","role":"admin"}`), &user)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 32 {
		wg.Go(func() {
			for next.Add(1) <= int64(events-3) {
				body := fmt.Sprintf(`{"user_id":%q,"kind":"note","ref":"r"}`, user.ID)
				if status, b, err := c.do("POST", "/accounts/big/activities", body); err != nil || status != 201 {
					failed.Store(fmt.Sprintf("%d %s %v", status, b, err))
					return
				}
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f != nil {
		t.Fatalf("loading: %v", f)
	}
	t.Logf("loaded %d events in %v", events, time.Since(start).Round(time.Second))

	if os.Getenv("LEDGER_MEASURE_RESTART") != "" {
		// Measure from a process that served no write: stopped cleanly,
		// it restarts from its snapshots.
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatalf("stop: %v", err)
		}
		cmd, c = startLicensed(t, bin, dir)
		t.Log("restarted")
	}
	pid := cmd.Process.Pid
	for _, tc := range []struct{ name, path, only string }{
		{"JSON, default page", "/accounts/big/audit", "json"},
		{"JSON Lines export", "/accounts/big/audit?format=jsonl", "jsonl"},
		{"raw events export", "/accounts/big/events", "events"},
	} {
		if only := os.Getenv("LEDGER_MEASURE_ONLY"); only != "" && only != tc.only {
			continue
		}
		time.Sleep(3 * time.Second)
		idle := rss(t, pid, "VmRSS")
		// Peak resident memory from now on (Linux: writing 5 to
		// clear_refs resets VmHWM).
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
			t.Logf("cannot reset the peak (%v): polling only", err)
		}
		var polled atomic.Int64
		stop := make(chan struct{})
		pollDone := make(chan struct{})
		go func() {
			defer close(pollDone)
			for {
				if v := rss(t, pid, "VmRSS"); v > polled.Load() {
					polled.Store(v)
				}
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		if os.Getenv("LEDGER_MEASURE_PROFILE") != "" {
			// A CPU profile of the first 8 s of the reads, and heap
			// profiles while they run, at the largest resident size
			// seen.
			go saveProfile(t, "profile?seconds=8", tc.only+"-cpu.pb.gz")
			go func() {
				most := int64(0)
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-time.After(500 * time.Millisecond):
					}
					logMemStats(t)
					if v := polled.Load(); v > most {
						most = v
						saveProfile(t, "heap", tc.only+"-heap.pb.gz")
						t.Logf("heap profile at %d MB", v>>10)
					}
				}
			}()
		}
		cpu0 := cpuTicks(t, pid)
		var bytesRead, lines atomic.Int64
		var firstByte, total atomic.Int64
		began := time.Now()
		var rg sync.WaitGroup
		for range 10 {
			rg.Go(func() {
				req, _ := http.NewRequest("GET", c.base+tc.path, nil)
				req.Header.Set("Authorization", "Bearer "+c.token)
				t0 := time.Now()
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					failed.Store(err.Error())
					return
				}
				defer resp.Body.Close()
				br := bufio.NewReader(resp.Body)
				if _, err := br.Peek(1); err == nil {
					firstByte.Store(max(firstByte.Load(), int64(time.Since(t0))))
				}
				n, _ := io.Copy(&lineCount{n: &lines}, br)
				bytesRead.Add(n)
				total.Store(max(total.Load(), int64(time.Since(t0))))
				if resp.StatusCode != 200 {
					failed.Store(fmt.Sprintf("status %d", resp.StatusCode))
				}
			})
		}
		rg.Wait()
		close(stop)
		<-pollDone
		if os.Getenv("LEDGER_MEASURE_PROFILE") != "" {
			saveProfile(t, "allocs", tc.only+"-allocs.pb.gz")
		}
		if f := failed.Load(); f != nil {
			t.Fatalf("%s: %v", tc.name, f)
		}
		peak := max(polled.Load(), rss(t, pid, "VmHWM"))
		cpu := time.Duration(cpuTicks(t, pid)-cpu0) * 10 * time.Millisecond
		t.Logf("%s: idle %d MB, peak %d MB, growth %d MB; 10 answers of %d bytes, %d lines in all; slowest first byte %v, slowest answer %v, all in %v, CPU %v",
			tc.name, idle>>10, peak>>10, (peak-idle)>>10, bytesRead.Load()/10, lines.Load(),
			time.Duration(firstByte.Load()).Round(time.Millisecond), time.Duration(total.Load()).Round(time.Millisecond),
			time.Since(began).Round(time.Millisecond), cpu)
	}
}

// startLicensed starts bin on the data directory dir with random ports
// and returns it once its API is ready. The process is killed when the
// test ends.
func startLicensed(t *testing.T, bin, dir string) (*exec.Cmd, *apiClient) {
	t.Helper()
	args := []string{"--data-dir", dir, "--http-addr", "127.0.0.1:0",
		"--nats-listen", "127.0.0.1:0", "--durability", "interval", "--log-format", "json"}
	if os.Getenv("LEDGER_MEASURE_PROFILE") != "" {
		args = append(args, "--debug-addr", "127.0.0.1:0")
	}
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	cmd.Stdout = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`"http":"(http://[^"]+)"`)
		dre := regexp.MustCompile(`"debug":"(http://[^"]+)"`)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if logs.Len() < 1<<20 {
				logs.Write(append(sc.Bytes(), '\n'))
			}
			if m := dre.FindSubmatch(sc.Bytes()); m != nil {
				debugAddr.Store(string(m[1]))
			}
			if m := re.FindSubmatch(sc.Bytes()); m != nil {
				select {
				case addr <- string(m[1]):
				default:
				}
			}
		}
	}()
	var base string
	select {
	case base = <-addr:
	case <-time.After(2 * time.Minute):
		t.Fatalf("licensed did not say where it listens:\n%s", logs)
	}
	token, err := os.ReadFile(filepath.Join(dir, "operator.token"))
	if err != nil {
		t.Fatal(err)
	}
	c := &apiClient{base: base + "/v1", token: strings.TrimSpace(string(token))}
	awaitReady(t, c)
	return cmd, c
}

// debugAddr is the profile listener of the last licensed started with
// LEDGER_MEASURE_PROFILE set.
var debugAddr atomic.Value

// saveProfile writes the named profile of the running licensed to
// LEDGER_MEASURE_PROFILE/file.
func saveProfile(t *testing.T, name, file string) {
	base, _ := debugAddr.Load().(string)
	resp, err := http.Get(base + name)
	if err != nil {
		t.Logf("profile %s: %v", name, err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := os.WriteFile(filepath.Join(os.Getenv("LEDGER_MEASURE_PROFILE"), file), b, 0o644); err != nil {
		t.Log(err)
	}
}

// logMemStats logs the Go heap figures of the running licensed.
func logMemStats(t *testing.T) {
	base, _ := debugAddr.Load().(string)
	resp, err := http.Get(base + "heap?debug=1")
	if err != nil {
		return
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		for _, f := range []string{"HeapAlloc", "HeapInuse", "HeapIdle", "HeapReleased", "NextGC", "Sys", "NumGC"} {
			if v, ok := strings.CutPrefix(sc.Text(), "# "+f+" = "); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				if f != "NumGC" {
					n >>= 20
				}
				out = append(out, fmt.Sprintf("%s %d", f, n))
			}
		}
	}
	t.Log(strings.Join(out, ", "))
}

// cpuTicks returns the CPU time, user and system, process pid has used,
// in clock ticks (1/100 s on Linux).
func cpuTicks(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command name, which ends with ")": state is
	// the first, utime the 12th, stime the 13th.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// rss returns a field of /proc/PID/status in kB.
func rss(t *testing.T, pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			v, _ := strconv.ParseInt(f[0], 10, 64)
			return v
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

type lineCount struct{ n *atomic.Int64 }

func (l *lineCount) Write(p []byte) (int, error) {
	l.n.Add(int64(bytes.Count(p, []byte("\n"))))
	return len(p), nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type apiClient struct {
	base, token string
}

func (c *apiClient) do(method, path, body string) (int, []byte, error) {
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (c *apiClient) mustDo(t *testing.T, want int, method, path, body string) []byte {
	t.Helper()
	status, b, err := c.do(method, path, body)
	if err != nil || status != want {
		t.Fatalf("%s %s: %d %s %v", method, path, status, b, err)
	}
	return b
}

// awaitReady waits until the API answers reads.
func awaitReady(t *testing.T, c *apiClient) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get(strings.TrimSuffix(c.base, "/v1") + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal(errors.New("licensed not ready after 2 minutes"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
