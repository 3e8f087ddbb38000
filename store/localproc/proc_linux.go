package localproc

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

func sysProcAttr() *syscall.SysProcAttr {
	// Setpgid: a group of its own, so Ctrl-C at a terminal reaches the
	// parent only, which stops its children in order. Pdeathsig: if the
	// parent dies, the kernel kills the child.
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Owns reports whether the process pid holds the TCP listener on
// 127.0.0.1:port (or on any address at port), from /proc: the listener's
// socket inode in /proc/net/tcp, and that inode among pid's descriptors.
// It returns an error wrapping ErrPortTaken if nobody or somebody else
// listens there.
func Owns(pid, port int) error {
	inodes, err := listenInodes(port)
	if err != nil {
		return err
	}
	if len(inodes) == 0 {
		return fmt.Errorf("nothing listens on port %d: %w", port, ErrPortTaken)
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return fmt.Errorf("descriptors of pid %d: %w", pid, err)
	}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(ino, "]")] {
			return nil
		}
	}
	return fmt.Errorf("the listener on port %d is not pid %d's: %w", port, pid, ErrPortTaken)
}

// listenInodes returns the socket inodes of the IPv4 and IPv6 TCP
// listeners on port.
func listenInodes(port int) (map[string]bool, error) {
	const listen = "0A"
	want := fmt.Sprintf(":%04X", port)
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || fs[3] != listen || !strings.HasSuffix(fs[1], want) {
				continue
			}
			if _, err := strconv.ParseUint(fs[9], 10, 64); err == nil {
				inodes[fs[9]] = true
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return inodes, nil
}

// listeningPorts returns the ports of every TCP listener on the machine
// (best effort: nil if /proc cannot be read).
func listeningPorts() map[int]bool {
	busy := map[int]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			fs := strings.Fields(line)
			if len(fs) < 4 || fs[3] != "0A" {
				continue
			}
			_, hexPort, ok := strings.Cut(fs[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil {
				busy[int(p)] = true
			}
		}
	}
	return busy
}
