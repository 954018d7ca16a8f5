package production_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kpo-reaper/kpo-reaper/e2e/airflowsim"
	"github.com/kpo-reaper/kpo-reaper/e2e/harness"
)

// startSim serves a scenario on a loopback port until the test ends.
func startSim(t testing.TB, sc *airflowsim.Scenario) (*airflowsim.Server, string) {
	t.Helper()
	s := airflowsim.New(sc)
	srv := httptest.NewServer(s)
	t.Cleanup(func() {
		s.Close()
		srv.Close()
	})
	return s, srv.URL
}

// baseEnv is the test process's environment without anything that would
// configure the reaper behind the test's back: KPO_REAPER_* (viper reads
// every config key from there), KUBECONFIG and the downward-API names.
func baseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "KPO_REAPER_"), k == "KUBECONFIG", strings.HasPrefix(k, "POD_"):
			continue
		}
		out = append(out, kv)
	}
	return out
}

// logSink keeps a process's output in a file and counts the reaper's
// end-of-cycle log lines as they arrive, so a test can wait for cycles
// without asking the process (which would cost it CPU).
type logSink struct {
	mu      sync.Mutex
	f       *os.File
	partial []byte
	cycles  atomic.Int64 // "cycle" (success) and "cycle failed" lines
	info    atomic.Int64 // lines at level INFO (JSON or text logs)
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.f.Write(p)
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		line := s.partial[:i]
		if bytes.Contains(line, []byte(`"msg":"cycle"`)) || bytes.Contains(line, []byte(`"msg":"cycle failed"`)) ||
			bytes.Contains(line, []byte(" msg=cycle ")) || bytes.Contains(line, []byte(` msg="cycle failed"`)) {
			s.cycles.Add(1)
		}
		if bytes.Contains(line, []byte(`"level":"INFO"`)) || bytes.Contains(line, []byte(" level=INFO ")) {
			s.info.Add(1)
		}
		s.partial = s.partial[i+1:]
	}
	return n, err
}

// proc is one reaper process the test started and therefore owns.
type proc struct {
	*harness.Child
	t       testing.TB
	name    string
	logPath string
	log     *logSink
	// base is http://127.0.0.1:<port> of its metrics server, if any.
	base string
}

// startProc starts the reaper binary. Like the harness's processes, it is
// forked from a goroutine locked to its thread and gets Pdeathsig, so it
// never outlives the test process; t.Cleanup kills it if the test did not
// stop it.
func startProc(t testing.TB, name string, args, env []string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, logPath: logPath, log: &logSink{f: f}}
	cmd := exec.Command(reaperBin, args...)
	cmd.Env = env
	cmd.Stdout = p.log
	cmd.Stderr = p.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if p.Child, err = harness.StartChild(cmd); err != nil {
		f.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		if !p.Exited() {
			_ = p.Cmd.Process.Kill()
			<-p.Done()
		}
		f.Close()
		if t.Failed() {
			t.Logf("%s (%s) %s", name, strings.Join(args, " "), p.tail(60))
		}
	})
	return p
}

// exitCode waits (bounded) for the process to end and returns its exit
// code, -1 if a signal ended it.
func (p *proc) exitCode(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.Done():
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %v\n%s", p.name, timeout, p.tail(40))
	}
	var exit *exec.ExitError
	switch {
	case p.WaitErr() == nil:
		return 0
	case errors.As(p.WaitErr(), &exit):
		return exit.ExitCode()
	default:
		p.t.Fatalf("%s: %v", p.name, p.WaitErr())
		return -2
	}
}

// signal sends sig to the process (through its pidfd: never to a process
// that reused the pid).
func (p *proc) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signalling %s: %v", p.name, err)
	}
}

// terminate sends SIGTERM and expects the clean exit (0) of a daemon that
// was told to stop.
func (p *proc) terminate() {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	if code := p.exitCode(30 * time.Second); code != 0 {
		p.t.Errorf("%s: exit code %d after SIGTERM, want 0\n%s", p.name, code, p.tail(20))
	}
}

// output is everything the process wrote so far.
func (p *proc) output() string {
	p.log.mu.Lock()
	defer p.log.mu.Unlock()
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func (p *proc) tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.output(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "--- last lines of " + p.logPath + " ---\n" + strings.Join(lines, "\n")
}

// freeAddr finds a free loopback port by binding and releasing it. Another
// process can take it in between; startDaemon then retries.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startDaemon starts `kpo-reaper <args>` with its metrics server on a free
// loopback port (env KPO_REAPER_SERVER_ADDRESS, the one setting that must
// change outside a pod) and waits until healthPath answers 200, which it
// does once the start-up self-check passed. A port lost to another process
// in between is retried with a fresh one. A process that exits during
// start-up fails the test.
func startDaemon(t testing.TB, name string, args, env []string, healthPath string) *proc {
	t.Helper()
	p, out := tryStartDaemon(t, name, args, env, healthPath)
	if p == nil {
		t.Fatalf("%s exited during start-up\n%s", name, out)
	}
	return p
}

// tryStartDaemon is startDaemon, but a process that exits during start-up
// (for a reason other than a lost port) is returned as nil and its output.
func tryStartDaemon(t testing.TB, name string, args, env []string, healthPath string) (*proc, string) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		addr := freeAddr(t)
		p := startProc(t, name, args, append(append([]string(nil), env...), "KPO_REAPER_SERVER_ADDRESS="+addr))
		p.base = "http://" + addr
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		eventually(ctx, t, 60*time.Second, name+" serving "+healthPath, func() (bool, string) {
			if p.Exited() {
				return true, "exited"
			}
			code, body, err := p.get(healthPath)
			if err != nil {
				return false, err.Error()
			}
			return code == http.StatusOK, fmt.Sprintf("%d %s", code, body)
		})
		cancel()
		if !p.Exited() {
			return p, ""
		}
		out := p.output()
		if attempt < 2 && strings.Contains(out, "address already in use") {
			continue
		}
		return nil, fmt.Sprintf("exit code %d\n%s", p.exitCode(time.Second), p.tail(40))
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// get fetches a path of the process's server.
func (p *proc) get(path string) (int, string, error) {
	resp, err := httpClient.Get(p.base + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// metrics scrapes /metrics; a failed scrape fails the test.
func (p *proc) metrics() metricSet {
	p.t.Helper()
	code, body, err := p.get("/metrics")
	if err != nil || code != http.StatusOK {
		p.t.Fatalf("scraping %s/metrics: %d %v", p.base, code, err)
	}
	m, err := parseMetrics(body)
	if err != nil {
		p.t.Fatalf("parsing %s/metrics: %v", p.base, err)
	}
	return m
}

// tryMetrics is metrics for polling loops: an error instead of a failure.
func (p *proc) tryMetrics() (metricSet, error) {
	code, body, err := p.get("/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/metrics answered %d", code)
	}
	return parseMetrics(body)
}

// waitMetric polls /metrics until cond holds for the value of the series
// name{labels} (0 when absent).
func (p *proc) waitMetric(ctx context.Context, timeout time.Duration, name string, labels map[string]string, what string, cond func(float64) bool) {
	p.t.Helper()
	eventually(ctx, p.t, timeout, fmt.Sprintf("%s: %s %v %s", p.name, name, labels, what), func() (bool, string) {
		if p.Exited() {
			p.t.Fatalf("%s exited (%v)\n%s", p.name, p.WaitErr(), p.tail(40))
		}
		m, err := p.tryMetrics()
		if err != nil {
			return false, err.Error()
		}
		v, _ := m.value(name, labels)
		return cond(v), strconv.FormatFloat(v, 'g', -1, 64)
	})
}

func atLeast(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
func equal(n float64) func(float64) bool   { return func(v float64) bool { return v == n } }

// sample is one series of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

type metricSet []sample

// value is the value of the one series of name whose labels include
// labels; ok is false when there is none. More than one match is summed.
func (m metricSet) value(name string, labels map[string]string) (float64, bool) {
	var sum float64
	found := false
	for _, s := range m.series(name) {
		if hasLabels(s.labels, labels) {
			sum += s.value
			found = true
		}
	}
	return sum, found
}

func (m metricSet) series(name string) []sample {
	var out []sample
	for _, s := range m {
		if s.name == name {
			out = append(out, s)
		}
	}
	return out
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// parseMetrics reads the Prometheus text exposition format (what
// promhttp serves without content negotiation): `name{l="v",...} value`.
func parseMetrics(text string) (metricSet, error) {
	var out metricSet
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := sample{labels: map[string]string{}}
		end := strings.IndexAny(line, "{ ")
		if end < 0 {
			return nil, fmt.Errorf("line %d: %q", i+1, line)
		}
		s.name, line = line[:end], line[end:]
		if strings.HasPrefix(line, "{") {
			rest, err := parseLabels(line[1:], s.labels)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", i+1, err)
			}
			line = rest
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			return nil, fmt.Errorf("line %d: no value", i+1)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: value: %w", i+1, err)
		}
		s.value = v
		out = append(out, s)
	}
	return out, nil
}

// parseLabels parses `l="v",...}` and returns what follows the brace.
func parseLabels(s string, into map[string]string) (string, error) {
	for {
		s = strings.TrimLeft(s, " ,")
		if strings.HasPrefix(s, "}") {
			return s[1:], nil
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 || len(s) < eq+2 || s[eq+1] != '"' {
			return "", fmt.Errorf("bad labels at %q", s)
		}
		key := strings.TrimSpace(s[:eq])
		s = s[eq+2:]
		var val strings.Builder
		closed := false
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[i])
				}
				continue
			}
			if c == '"' {
				s, closed = s[i+1:], true
				break
			}
			val.WriteByte(c)
		}
		if !closed {
			return "", fmt.Errorf("unterminated label value of %s", key)
		}
		into[key] = val.String()
	}
}
