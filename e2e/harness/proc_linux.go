package harness

import "syscall"

// Pdeathsig kills the child if the test process dies without calling Stop
// (a panic, a -timeout abort, SIGKILL), so no apiserver or etcd outlives it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
