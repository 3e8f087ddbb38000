//go:build !linux

package upstream

import "net"

// connAlive cannot peek portably; a stale connection is caught on use.
func connAlive(net.Conn) bool { return true }

// readNow cannot read without waiting here: the caller reads as usual.
func (uc *upConn) readNow([]byte) (int, error) { return 0, errWouldBlock }

func (uc *upConn) initRaw() {}
