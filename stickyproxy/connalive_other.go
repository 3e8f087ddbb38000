//go:build !linux

package stickyproxy

import "net"

// connAlive cannot peek portably; a stale connection is caught on use.
func connAlive(net.Conn) bool { return true }
