package stickyproxy

import "io"

// bufferedBody is a request body read whole before the request takes a
// target's in-flight slot; it can be sent again (a retry after a failed
// connection) and goes out with the request head in one write.
type bufferedBody struct {
	buf []byte
	off int
}

func (b *bufferedBody) Read(p []byte) (int, error) {
	if b.off >= len(b.buf) {
		return 0, io.EOF
	}
	n := copy(p, b.buf[b.off:])
	b.off += n
	return n, nil
}

// Close is a no-op: the bytes stay until the request is done.
func (b *bufferedBody) Close() error { return nil }

// Rest and Consume make it an upstream.Buffered.
func (b *bufferedBody) Rest() []byte { return b.buf[b.off:] }
func (b *bufferedBody) Consume()     { b.off = len(b.buf) }
func (b *bufferedBody) rewind()      { b.off = 0 }
