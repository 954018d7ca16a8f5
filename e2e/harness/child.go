package harness

import (
	"os/exec"
	"runtime"
)

// Child is a child process started by StartChild.
type Child struct {
	Cmd     *exec.Cmd
	done    chan struct{} // closed once Wait has returned
	waitErr error         // valid after done is closed
}

// StartChild starts cmd and waits for it in the background. Linux delivers
// Pdeathsig (cmd.SysProcAttr) when the *thread* that forked the child
// exits, not the process. The Go runtime may retire a thread, so the fork
// happens on a goroutine locked to its thread, and that goroutine stays
// alive (in Wait) for as long as the child does: a child started here with
// Pdeathsig dies with the test process, and not before.
func StartChild(cmd *exec.Cmd) (*Child, error) {
	c := &Child{Cmd: cmd, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			runtime.UnlockOSThread()
			started <- err
			return
		}
		started <- nil
		c.waitErr = cmd.Wait() // also waits for the copying of its output, if any
		close(c.done)
		// Left locked on purpose: the thread exits with the goroutine,
		// which is harmless now that the child is gone.
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return c, nil
}

// PID is the child's process id.
func (c *Child) PID() int { return c.Cmd.Process.Pid }

// Done is closed once the child has exited and been waited for.
func (c *Child) Done() <-chan struct{} { return c.done }

// Exited reports whether Done is closed.
func (c *Child) Exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// WaitErr is what cmd.Wait returned; valid once Done is closed.
func (c *Child) WaitErr() error { return c.waitErr }
