//go:build !linux

package localproc

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// Owns cannot tell who holds a port outside Linux; it trusts the probe
// (nil). Children that fail to bind still exit, and BindFailed sees that.
func Owns(pid, port int) error { return nil }

func listeningPorts() map[int]bool { return nil }
