// Package topo starts and stops the lab's topologies: real processes of
// samlha's binaries (devidp, samlsp replicas, stickyproxy) and a private
// redis-server, on loopback ports, each with its own log file, and injects
// faults into them (kill or drain a replica, stop and restart Redis).
package topo

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

// Proc is one child process. Its stdout and stderr go to LogPath. It is
// started in a process group of its own and, on Linux, is killed if the lab
// dies (Pdeathsig), so no child outlives the lab.
type Proc struct {
	Name    string
	Path    string
	Args    []string
	LogPath string

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
	log     *os.File
}

// childEnv is the lab's environment without samlha's SAMLHA_* variables,
// which would otherwise configure every child behind the lab's back.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SAMLHA_") {
			env = append(env, kv)
		}
	}
	return env
}

// Start starts the process.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.done != nil {
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
	fmt.Fprintf(f, "# samllab %s: %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), p.Path, strings.Join(p.Args, " "))
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = childEnv()
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.cmd, p.log, p.done = cmd, f, make(chan struct{})
	done, log := p.done, f
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr = err
		p.mu.Unlock()
		fmt.Fprintf(log, "# samllab %s: %s exited: %v\n", time.Now().UTC().Format(time.RFC3339Nano), p.Name, err)
		log.Close()
		close(done)
	}()
	return nil
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
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

// ExitErr is the process's exit error after it exited.
func (p *Proc) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

func (p *Proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	// The whole group: a child's own children go too.
	if err := syscall.Kill(-cmd.Process.Pid, sig); err != nil {
		_ = cmd.Process.Signal(sig)
	}
}

// Kill kills the process at once (SIGKILL) and waits for it: a crash.
func (p *Proc) Kill() {
	if !p.Running() {
		return
	}
	p.signal(syscall.SIGKILL)
	<-p.Exited()
}

// Stop asks the process to stop (SIGTERM), waits up to grace, then kills it.
func (p *Proc) Stop(grace time.Duration) {
	if !p.Running() {
		return
	}
	p.signal(syscall.SIGTERM)
	select {
	case <-p.Exited():
	case <-time.After(grace):
		p.signal(syscall.SIGKILL)
		<-p.Exited()
	}
}

// LogTail returns the last n bytes of the process's log, for error
// messages.
func (p *Proc) LogTail(n int64) string {
	f, err := os.Open(p.LogPath)
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
	if _, err := f.ReadAt(b, off); err != nil && !errors.Is(err, os.ErrClosed) {
		return string(b)
	}
	return string(b)
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
