package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// process is one child the harness started and therefore owns. Each runs in
// its own process group so that a Ctrl-C at the terminal reaches only the
// test process, whose cleanup (or Pdeathsig) then stops the child.
type process struct {
	*Child
	name    string
	logPath string
	log     *os.File
	stopped bool // set before signalling, so an exit is not reported as a crash
}

func startProcess(name, logPath, bin string, args ...string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	// The file itself, not a pipe: no copying goroutine, and the log stays
	// complete even if this process dies first.
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	child, err := StartChild(cmd)
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return &process{Child: child, name: name, logPath: logPath, log: logFile}, nil
}

// stop asks the process to terminate and escalates to SIGKILL after grace.
// It reports an error only if the process had already died on its own,
// because that means the cluster broke during the test.
//
// Signals go through os.Process, which on Linux uses a pidfd, so they can
// never reach an unrelated process that reused the pid. Neither etcd nor
// kube-apiserver forks, so the process is all there is to stop.
func (p *process) stop(grace time.Duration) error {
	var crashed error
	if p.Exited() && !p.stopped {
		crashed = fmt.Errorf("%s exited before Stop: %w\n%s", p.name, p.exitErr(), p.tail(30))
	}
	p.stopped = true
	if !p.Exited() {
		_ = p.Cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(grace)
		select {
		case <-p.Done():
			timer.Stop()
		case <-timer.C:
			_ = p.Cmd.Process.Kill()
			<-p.Done()
		}
	}
	p.log.Close()
	return crashed
}

// tail returns the last n lines of the process's log, for error messages.
func (p *process) tail(n int) string {
	return fileTail(p.logPath, n)
}

func fileTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const maxBytes = 16 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > maxBytes {
		_, _ = f.Seek(fi.Size()-maxBytes, io.SeekStart)
	}
	data, _ := io.ReadAll(f)
	lines := strings.Split(string(bytes.TrimRight(data, "\n")), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "--- last lines of " + path + " ---\n" + strings.Join(lines, "\n")
}

// exitErr is how the exited process ended; exit status 0 too is an error,
// since it was not asked to stop.
func (p *process) exitErr() error {
	if err := p.WaitErr(); err != nil {
		return err
	}
	return errors.New("exit status 0")
}
