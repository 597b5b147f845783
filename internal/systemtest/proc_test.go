package systemtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The service's binary, built into binDir once, by the first test that
// runs it.
var (
	binDir    string
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "licensed-systemtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// licensedBin returns the path of cmd/licensed built from this module's
// sources, building it on first use.
func licensedBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root := filepath.Join("..", "..")
		// Within a test, so that go test's result cache knows the
		// binary's sources.
		if buildErr = statSources(root); buildErr != nil {
			return
		}
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		binPath = filepath.Join(binDir, "licensed")
		// Built as the tests are: with the race detector, the binary
		// shares the packages compiled for them.
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		build := exec.Command(goBin, append(args, "./cmd/licensed")...)
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/licensed: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// statSources looks at every Go source file and module file of the
// module: go test caches a test's result by the files the test looked at,
// and the binary under test is built from these, not imported.
func statSources(root string) error {
	return filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata"):
			return filepath.SkipDir
		case d.IsDir():
			return nil
		case strings.HasSuffix(path, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum":
			_, err := os.Stat(path)
			return err
		}
		return nil
	})
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is one licensed process, and the same service across restarts: its
// data directory and HTTP port stay, each start runs the binary again.
type proc struct {
	t     *testing.T
	name  string
	dir   string
	extra []string
	base  string // http://127.0.0.1:<port>, the same across restarts
	logs  *syncBuffer

	cmd    *exec.Cmd
	exited chan struct{}
	err    error // the exit status, once exited is closed
	// natsURL is the NATS URL the running process logged.
	natsURL string
}

// newProc returns a process of the service on data directory dir (created
// when empty) with extra flags; it does not start it.
func newProc(t *testing.T, name, dir string, extra ...string) *proc {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	p := &proc{t: t, name: name, dir: dir, extra: extra, base: "http://" + freeAddr(t), logs: &syncBuffer{}}
	t.Cleanup(func() {
		if p.running() {
			p.signal(syscall.SIGKILL)
			<-p.exited
		}
		logs := p.logs.String()
		if i := strings.Index(logs, "WARNING: DATA RACE"); i >= 0 {
			t.Errorf("%s: the race detector found a data race:\n%s", p.name, logs[i:min(len(logs), i+20000)])
		}
		if t.Failed() {
			t.Logf("%s logs (last lines):\n%s", p.name, tail(logs, 60))
		}
	})
	return p
}

// freeAddr returns a loopback address with a port free at the moment.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (p *proc) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// start runs the binary and returns as soon as it runs: the HTTP port
// may not answer yet.
func (p *proc) start() {
	p.t.Helper()
	if p.running() {
		p.t.Fatalf("%s: already running", p.name)
	}
	args := append([]string{
		"--data-dir", p.dir,
		"--http-addr", strings.TrimPrefix(p.base, "http://"),
		"--nats-listen", "127.0.0.1:0",
		"--log-format", "json",
		"--log-level", "info",
	}, p.extra...)
	fmt.Fprintf(p.logs, "--- start %s\n", strings.Join(args, " "))
	p.cmd = exec.Command(licensedBin(p.t), args...)
	p.cmd.Env = append(os.Environ(), "GOTRACEBACK=all")
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
	p.natsURL = ""
	exited := make(chan struct{})
	p.exited = exited
	cmd := p.cmd
	go func() {
		err := cmd.Wait()
		p.err = err
		close(exited)
	}()
}

// serving starts the process if needed and waits for its "licensed
// serving" log line, from which it takes the NATS URL.
func (p *proc) serving() {
	p.t.Helper()
	if !p.running() {
		p.start()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		// The serving line of the current run: after its start mark.
		logs := p.logs.String()
		for line := range strings.Lines(logs[strings.LastIndex(logs, "--- start "):]) {
			var rec struct {
				Msg  string `json:"msg"`
				NATS string `json:"nats"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "licensed serving" {
				p.natsURL = rec.NATS
				return
			}
		}
		select {
		case <-p.exited:
			p.t.Fatalf("%s exited before serving: %v", p.name, p.err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: no \"licensed serving\" log line", p.name)
		}
	}
}

// ready starts the process if needed and waits until /readyz answers 200.
func (p *proc) ready() {
	p.t.Helper()
	p.serving()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		st, _, _, err := p.do("GET", "/readyz", "", nil)
		if err == nil && st == http.StatusOK {
			return
		}
		if !p.running() {
			p.t.Fatalf("%s exited before ready: %v", p.name, p.err)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s not ready: status %d, %v", p.name, st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *proc) signal(sig syscall.Signal) {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// stop sends sig and waits for the process to exit; it returns the exit
// status (nil for exit status 0).
func (p *proc) stop(sig syscall.Signal) error {
	p.t.Helper()
	if !p.running() {
		return p.err
	}
	p.signal(sig)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(time.Minute):
		p.signal(syscall.SIGKILL)
		<-p.exited
		p.t.Fatalf("%s did not exit within a minute of %v", p.name, sig)
		return nil
	}
}

// file returns the contents of a file of the data directory, trimmed.
func (p *proc) file(name string) string {
	p.t.Helper()
	b, err := os.ReadFile(filepath.Join(p.dir, name))
	if err != nil {
		p.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

var client = &http.Client{Timeout: time.Minute}

// do sends a request with an optional bearer token and JSON body; err is
// set only when no answer came.
func (p *proc) do(method, path, token string, body any) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, p.base+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, raw, nil
}

// expect sends a request, fails the test unless it is answered with want,
// and decodes a JSON answer into out (when not nil). It returns the body.
func (p *proc) expect(want int, method, path, token string, body, out any) []byte {
	p.t.Helper()
	raw, err := p.try(want, method, path, token, body, out)
	if err != nil {
		p.t.Fatal(err)
	}
	return raw
}

// try is expect for goroutines other than the test's: it returns what
// went wrong.
func (p *proc) try(want int, method, path, token string, body, out any) ([]byte, error) {
	st, _, raw, err := p.do(method, path, token, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s %s: %w", p.name, method, path, err)
	}
	if st != want {
		return raw, fmt.Errorf("%s %s %s: status %d, want %d: %s", p.name, method, path, st, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("%s %s %s: %w: %s", p.name, method, path, err, raw)
		}
	}
	return raw, nil
}

// user is a user as listed by the API.
type user struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

// users lists every user of an account, page by page. Unless err is set,
// status is 200, or the status of the first answer that is not a 200, with
// its header and body.
func (p *proc) users(account, token string) (list []user, status int, hdr http.Header, raw []byte, err error) {
	cursor := ""
	for {
		path := "/v1/accounts/" + account + "/users?limit=1000"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		st, h, b, err := p.do("GET", path, token, nil)
		if err != nil || st != http.StatusOK {
			return nil, st, h, b, err
		}
		var page struct {
			Users      []user `json:"users"`
			HasMore    bool   `json:"has_more"`
			NextCursor string `json:"next_cursor"`
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return nil, st, h, b, fmt.Errorf("users of %s: %w", account, err)
		}
		list = append(list, page.Users...)
		if !page.HasMore {
			return list, st, h, b, nil
		}
		if page.NextCursor == "" {
			return nil, st, h, b, errors.New("has_more without next_cursor")
		}
		cursor = page.NextCursor
	}
}

// mint makes a token of role for account (empty: every account) with the
// operator token.
func (p *proc) mint(op, role, account string) string {
	p.t.Helper()
	body := map[string]any{"role": role}
	if account != "" {
		body["account"] = account
	}
	var out struct {
		Token string `json:"token"`
	}
	p.expect(http.StatusCreated, "POST", "/v1/tokens", op, body, &out)
	if out.Token == "" {
		p.t.Fatal("minted token missing")
	}
	return out.Token
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// waitABit is the pause of a polling loop.
func waitABit() { time.Sleep(5 * time.Millisecond) }

// on makes p report to t (a subtest) until the returned function is
// called.
func (p *proc) on(t *testing.T) (restore func()) {
	parent := p.t
	p.t = t
	return func() { p.t = parent }
}
