package stickyproxy

import (
	"net"
	"syscall"
)

// connAlive peeks at an idle connection without blocking: a connection the
// target closed reads as EOF (or an error), a live idle one as EAGAIN.
func connAlive(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// No data and EAGAIN: open and idle. Data: the target said something
		// unasked for, so do not trust the connection either.
		alive = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && alive
}
