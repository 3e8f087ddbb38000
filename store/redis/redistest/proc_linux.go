package redistest

import (
	"os/exec"
	"syscall"
)

// setDeathSignal asks Linux to kill the server if the test process dies
// without cleaning up, so that no redis-server outlives its test.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
