package upstream

import (
	"io"
	"net"
	"os"
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

// readNow reads what the kernel holds for uc's connection, without
// waiting: errWouldBlock if nothing has arrived yet.
func (uc *upConn) readNow(p []byte) (int, error) {
	if uc.rc == nil {
		return 0, errWouldBlock
	}
	uc.rbuf = p
	err := uc.rc.Read(uc.readFn)
	uc.rbuf = nil
	if err != nil {
		return 0, err
	}
	n, err := uc.rn, uc.rerr
	uc.rn, uc.rerr = 0, nil
	return n, err
}

// tryRead is readNow's one read(2), made once per connection as a method
// value so that readNow does not allocate.
func (uc *upConn) tryRead(fd uintptr) bool {
	for {
		n, err := syscall.Read(int(fd), uc.rbuf)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			uc.rn, uc.rerr = 0, errWouldBlock
		case err != nil:
			uc.rn, uc.rerr = 0, &net.OpError{Op: "read", Net: "tcp", Source: uc.c.LocalAddr(), Addr: uc.c.RemoteAddr(), Err: os.NewSyscallError("read", err)}
		case n == 0:
			uc.rn, uc.rerr = 0, io.EOF
		default:
			uc.rn, uc.rerr = n, nil
		}
		return true
	}
}

// initRaw readies readNow for a new connection.
func (uc *upConn) initRaw() {
	if sc, ok := uc.c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			uc.rc, uc.readFn = rc, uc.tryRead
		}
	}
}
