package localproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one child process. Its stdout and stderr go to LogPath. It runs in
// a process group of its own and, on Linux, is killed if the thread that
// started it dies (Pdeathsig), so no child outlives its parent.
type Proc struct {
	Name    string
	Path    string
	Args    []string
	LogPath string
	// Dir is the working directory ("" for the parent's).
	Dir string
	// Env is the environment (nil for the parent's).
	Env []string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
}

// EnvWithout is this process's environment without the variables whose
// names begin with prefix: a child given it is not configured behind the
// caller's back by variables meant for the caller (samlha's binaries read
// SAMLHA_* as flags).
func EnvWithout(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return env
}

// Start starts the process. A Proc that has exited may be started again,
// with the same arguments (a restart); its log is appended to.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("%s is already running", p.Name)
		}
	}
	if err := os.MkdirAll(filepath.Dir(p.LogPath), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "# localproc %s: %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), p.Path, strings.Join(p.Args, " "))
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir, cmd.Env = p.Dir, p.Env
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.exitErr = cmd, done, nil
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(f, "# localproc %s: %s exited: %v\n", time.Now().UTC().Format(time.RFC3339Nano), p.Name, err)
		f.Close()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	done := p.Exited()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Exited returns a channel closed when the process exits (nil if it was
// never started).
func (p *Proc) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// ExitErr is the process's exit error once it has exited.
func (p *Proc) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// Pid is the process's ID (0 if it was never started).
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Signal sends sig to the process's group (its own children too).
func (p *Proc) Signal(sig syscall.Signal) {
	if !p.Running() {
		return
	}
	pid := p.Pid()
	if err := syscall.Kill(-pid, sig); err != nil {
		_ = syscall.Kill(pid, sig)
	}
}

// Kill kills the process at once (SIGKILL) and waits for it: a crash.
func (p *Proc) Kill() {
	if !p.Running() {
		return
	}
	p.Signal(syscall.SIGKILL)
	<-p.Exited()
}

// Stop asks the process to stop (SIGCONT, in case it was paused, then
// SIGTERM), waits up to grace, then kills it.
func (p *Proc) Stop(grace time.Duration) {
	if !p.Running() {
		return
	}
	p.Signal(syscall.SIGCONT)
	p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.Exited():
	case <-t.C:
		p.Kill()
	}
}

// LogTail returns the last n bytes of the process's log, for error
// messages.
func (p *Proc) LogTail(n int64) string {
	return tail(p.LogPath, n)
}

func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b := make([]byte, st.Size()-off)
	_, _ = f.ReadAt(b, off)
	return string(b)
}

// ErrPortTaken says that a child could not have the port it was given:
// it failed to bind it, or another process answers on it.
var ErrPortTaken = errors.New("port taken by another process")

// BindFailed reports whether the process has exited because its port was
// taken, going by the usual message in its log ("address already in use",
// from Go and Redis alike) or in extraLogs (a child that logs to a file of
// its own, such as redis-server's --logfile).
func (p *Proc) BindFailed(extraLogs ...string) bool {
	if p.Running() || p.Exited() == nil {
		return false
	}
	for _, path := range append([]string{p.LogPath}, extraLogs...) {
		s := strings.ToLower(tail(path, 4096))
		if strings.Contains(s, "address already in use") {
			return true
		}
	}
	return false
}
