package stickyproxy

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// TestConnCtxWatcher: a function registered on the fast loop's request
// context starts, after backgroundReadDelay, a one-byte read of the
// client. A byte that arrives (a pipelined request) is kept for the
// loop's reader and does not fire the function; a client that leaves
// fires it and cancels the context, and stopping it then says so.
func TestConnCtxWatcher(t *testing.T) {
	t.Parallel()
	peer, raw := loopbackPair(t)
	fc := newFastConn(&limitListener{p: &Proxy{}}, &clientConn{Conn: raw, wake: make(chan struct{}, 1)})
	within := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}

	var fired atomic.Int32
	stop := fc.ctx.AfterFunc(func() { fired.Add(1) })
	peer.Write([]byte("G"))
	within("the watcher to read the byte", fc.hasPend.Load)
	if !stop() {
		t.Error("stop after the watcher read a byte: false, want true (the function had not run)")
	}
	peer.Write([]byte("ET"))
	fc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := fc.br.Peek(3); err != nil || string(b) != "GET" {
		t.Fatalf("the loop read %q (%v), want the watcher's byte first: GET", b, err)
	}
	if fired.Load() != 0 || fc.ctx.Err() != nil {
		t.Fatal("a byte from the client counted as the client leaving")
	}

	stop = fc.ctx.AfterFunc(func() { fired.Add(1) })
	peer.Close()
	within("the function to run after the client left", func() bool { return fired.Load() == 1 })
	if fc.ctx.Err() != context.Canceled {
		t.Errorf("context error %v, want context.Canceled", fc.ctx.Err())
	}
	select {
	case <-fc.ctx.Done():
	default:
		t.Error("Done not closed")
	}
	if stop() {
		t.Error("stop after the function ran: true, want false")
	}
}

// TestHandoffKeepsHeaderDeadline: a connection handed to net/http in the
// middle of a head keeps the read-header deadline the fast loop had set:
// net/http's later one is held to it until net/http clears the deadline
// (the head is read); after that its deadlines are its own.
func TestHandoffKeepsHeaderDeadline(t *testing.T) {
	t.Parallel()
	_, raw := loopbackPair(t)
	cc := &clientConn{Conn: raw, wake: make(chan struct{}, 1)}
	limit := time.Now().Add(time.Hour)
	hc := &handoffConn{clientConn: cc}
	hc.hdrLimit.Store(limit.UnixNano())
	want := func(what string, t0 time.Time) {
		t.Helper()
		if !cc.want.Equal(t0) {
			t.Errorf("%s: read deadline %v, want %v", what, cc.want, t0)
		}
	}
	hc.SetReadDeadline(limit.Add(time.Hour)) // net/http's header deadline, later
	want("a later header deadline", limit)
	early := limit.Add(-time.Minute)
	hc.SetReadDeadline(early)
	want("an earlier one", early)
	hc.SetReadDeadline(time.Time{}) // the head is read
	want("cleared", time.Time{})
	late := limit.Add(2 * time.Hour)
	hc.SetReadDeadline(late) // a body or idle deadline
	want("after the head", late)
}

// loopbackPair is a TCP connection on loopback: the client's end and the
// accepted one, closed when the test ends.
func loopbackPair(t *testing.T) (peer, raw net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	raw, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return peer, raw
}
