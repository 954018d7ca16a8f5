//go:build unix && !linux

package harness

import "syscall"

// Only Linux has Pdeathsig; elsewhere a test process that dies without
// calling Stop leaves its children running.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
