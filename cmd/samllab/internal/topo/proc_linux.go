package topo

import "syscall"

func sysProcAttr() *syscall.SysProcAttr {
	// Setpgid: a group of its own, so Ctrl-C at the terminal reaches the
	// lab only, and the lab stops the children in order. Pdeathsig: if
	// the lab itself dies, the kernel kills the child.
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
