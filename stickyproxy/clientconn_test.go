package stickyproxy

import (
	"errors"
	"os"
	"testing"
	"time"
)

// TestClientConnLazyDeadline: clientConn sets a read deadline on the
// connection only before a read (or at once while one waits), and then
// it holds as asked: a past deadline fails the next read, a cleared one
// lets it through, one set while a read waits ends that read.
func TestClientConnLazyDeadline(t *testing.T) {
	t.Parallel()
	peer, raw := loopbackPair(t)
	c := &clientConn{Conn: raw, wake: make(chan struct{}, 1)}
	defer c.Conn.Close()
	buf := make([]byte, 16)

	c.SetReadDeadline(time.Unix(1, 0))
	if !c.set.IsZero() {
		t.Fatal("deadline set on the connection with no read under way")
	}
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after a past deadline: %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	peer.Write([]byte("x"))
	if n, err := c.Read(buf); n != 1 || err != nil {
		t.Fatalf("read after the deadline was cleared: %d, %v", n, err)
	}

	// A deadline met while a read waits ends it.
	done := make(chan error, 1)
	go func() { _, err := c.Read(buf); done <- err }()
	time.Sleep(20 * time.Millisecond) // let the read start waiting; not a synchronisation (either order must work)
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("waiting read: %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a deadline set while a read waited did not end it")
	}

	// Deadlines a little later each time (net/http's idle deadline, one
	// per request) are not set again within deadlineSlack.
	hour := time.Now().Add(time.Hour)
	c.SetReadDeadline(hour)
	peer.Write([]byte("y"))
	c.Read(buf) // sets the hour on the connection
	set := c.set
	c.SetReadDeadline(hour.Add(deadlineSlack / 2))
	peer.Write([]byte("z"))
	c.Read(buf)
	if !c.set.Equal(set) {
		t.Errorf("deadline moved from %v to %v for a later one within the slack", set, c.set)
	}

	// A deadline fires no earlier than asked, and at most deadlineSlack later.
	start := time.Now()
	c.SetReadDeadline(start.Add(50 * time.Millisecond))
	_, err := c.Read(buf)
	if el := time.Since(start); !errors.Is(err, os.ErrDeadlineExceeded) || el < 50*time.Millisecond {
		t.Fatalf("read with a 50ms deadline: %v after %v", err, el)
	}
}
