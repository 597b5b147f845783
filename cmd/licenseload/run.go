package main

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// run measures once against -url, or once per durability against a
// licensed it starts.
func run(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	var reports []runReport
	if cfg.Spawn == "" {
		token, err := readToken(cfg.Token, cfg.TokenFile)
		if err != nil {
			return err
		}
		r, err := measure(ctx, cfg, cfg.URL, token, 0, stderr)
		if err != nil {
			return err
		}
		reports = append(reports, r)
	} else {
		for _, d := range cfg.Durability {
			r, err := measureSpawned(ctx, cfg, d, stderr)
			if err != nil {
				return fmt.Errorf("durability %s: %w", d, err)
			}
			reports = append(reports, r)
			if !cfg.JSON {
				r.writeText(stdout)
			}
		}
		if cfg.JSON {
			return writeJSON(stdout, reports)
		}
		return nil
	}
	if cfg.JSON {
		return writeJSON(stdout, reports)
	}
	reports[0].writeText(stdout)
	return nil
}

func writeJSON(w io.Writer, reports []runReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(reports)
}

func readToken(token, file string) (string, error) {
	if token != "" {
		return token, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("operator token: give -token or -token-file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("operator token file %s is empty", file)
	}
	return t, nil
}

// measure runs warm-up, baseline and load against base.
func measure(ctx context.Context, cfg config, base, token string, pid int, progress io.Writer) (runReport, error) {
	t, err := newTarget(base, token, cfg.Clients)
	if err != nil {
		return runReport{}, err
	}
	defer t.client.CloseIdleConnections()
	prefix := cfg.Prefix
	if prefix == "" {
		var b [3]byte
		crand.Read(b[:])
		prefix = "load-" + hex.EncodeToString(b[:])
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	clients := make([]*client, min(cfg.Clients, cfg.Accounts))
	for i := range clients {
		clients[i] = &client{t: t, mix: cfg.Mix, rnd: rand.New(rand.NewPCG(seed, uint64(i)))}
	}
	for i := range cfg.Accounts {
		c := clients[i%len(clients)]
		c.accts = append(c.accts, &account{id: fmt.Sprintf("%s-%05d", prefix, i)})
	}
	report := runReport{Target: base, Accounts: cfg.Accounts, Clients: len(clients), Mix: mixString(cfg.Mix)}

	fmt.Fprintf(progress, "warm-up: opening %d accounts with %d users each\n", cfg.Accounts, cfg.Users)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, len(clients))
	for i, c := range clients {
		wg.Go(func() { errs[i] = c.warmUp(ctx, cfg.Users, cfg.Seats) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return runReport{}, fmt.Errorf("warm-up: %w", err)
	}
	report.WarmUp = time.Since(start).Round(time.Millisecond).Seconds()
	if ctx.Err() != nil {
		return runReport{}, ctx.Err()
	}

	if cfg.Baseline > 0 {
		fmt.Fprintf(progress, "baseline: GET /healthz for %s\n", cfg.Baseline)
		self0, svc0 := cpuClock(pid)
		tallies, wall := phase(clients, time.Now().Add(cfg.Baseline), 0, func(c *client, tl *tally) {
			s := time.Now()
			st, _, err := c.t.call(ctx, "GET", "/healthz", nil)
			tl.record(kindActivity, time.Since(s), st, err)
		})
		self1, svc1 := cpuClock(pid)
		b := merge(tallies, wall, false)
		b.setCPU(self1-self0, svc1-svc0)
		report.Baseline = &b
	}
	if ctx.Err() != nil {
		return runReport{}, ctx.Err()
	}
	fmt.Fprintf(progress, "load: %s", cfg.Duration)
	if cfg.Count > 0 {
		fmt.Fprintf(progress, " or %d commands", cfg.Count)
	}
	fmt.Fprintln(progress)
	self0, svc0 := cpuClock(pid)
	tallies, wall := phase(clients, time.Now().Add(cfg.Duration), cfg.Count, func(c *client, tl *tally) {
		c.step(ctx, tl)
	})
	self1, svc1 := cpuClock(pid)
	report.Load = merge(tallies, wall, true)
	report.Load.setCPU(self1-self0, svc1-svc0)
	return report, ctx.Err()
}

func mixString(m mix) string {
	var parts []string
	prev := 0
	for k := range numKinds {
		if w := m.cum[k] - prev; w > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, w))
		}
		prev = m.cum[k]
	}
	return strings.Join(parts, ",")
}

// measureSpawned starts licensed with durability d on free loopback ports
// and a temporary data dir, measures it and stops it.
func measureSpawned(ctx context.Context, cfg config, d string, progress io.Writer) (runReport, error) {
	dir, err := os.MkdirTemp("", "licenseload-")
	if err != nil {
		return runReport{}, err
	}
	if cfg.KeepData {
		fmt.Fprintf(progress, "data dir: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	logf, err := os.Create(filepath.Join(dir, "licensed.log"))
	if err != nil {
		return runReport{}, err
	}
	defer logf.Close()
	cmd := exec.Command(cfg.Spawn,
		"--data-dir", filepath.Join(dir, "data"),
		"--http-addr", "127.0.0.1:0",
		"--nats-listen", "127.0.0.1:0",
		"--durability", d,
		"--log-level", cfg.ChildLog,
		"--log-format", "json",
	)
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		return runReport{}, err
	}
	cmd.Stdout = logf
	if err := cmd.Start(); err != nil {
		return runReport{}, fmt.Errorf("start %s: %w", cfg.Spawn, err)
	}
	fmt.Fprintf(progress, "started %s (pid %d, durability %s)\n", cfg.Spawn, cmd.Process.Pid, d)
	exited := make(chan error, 1)
	addr := make(chan string, 1)
	go func() {
		// Find where it serves, then keep its log in the data dir.
		sc := bufio.NewScanner(stderrPipe)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			line := sc.Bytes()
			logf.Write(append(line, '\n'))
			if found {
				continue
			}
			var rec struct {
				Msg  string `json:"msg"`
				HTTP string `json:"http"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "licensed serving" && rec.HTTP != "" {
				found = true
				addr <- rec.HTTP
			}
		}
		io.Copy(logf, stderrPipe)
		exited <- cmd.Wait()
	}()
	stop := func() error {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-exited
			return errors.New("licensed did not stop within 20s of SIGTERM: killed")
		}
	}
	var base string
	select {
	case base = <-addr:
	case err := <-exited:
		return runReport{}, fmt.Errorf("licensed exited before serving (%v): see %s", err, logf.Name())
	case <-time.After(30 * time.Second):
		stop()
		return runReport{}, errors.New("licensed did not start serving within 30s")
	case <-ctx.Done():
		stop()
		return runReport{}, ctx.Err()
	}
	token, err := readToken("", filepath.Join(dir, "data", "operator.token"))
	if err != nil {
		stop()
		return runReport{}, err
	}
	r, err := measure(ctx, cfg, base, token, cmd.Process.Pid, progress)
	r.Durability = d
	if serr := stop(); serr != nil && err == nil {
		fmt.Fprintf(progress, "licensed stopped: %v\n", serr)
	}
	return r, err
}
