package stickyproxy_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/samlha/samlha/stickyproxy"
)

// TestClientGoneNoticed: through Listener, whose connections defer
// net/http's background read, a client that leaves during a long request
// is still noticed: the proxy gives up the upstream request, so the
// target sees its request cancelled.
func TestClientGoneNoticed(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		u1, held := sink(t, "sp-1")
		h := newHostile(t, engine, nil, ordered(u1))
		c := dialFrom(t, "127.0.0.1", h.addr)
		io.WriteString(c, "GET /hold HTTP/1.1\r\nHost: p\r\n\r\n")
		waitFor(t, "the request held at the target", func() bool { return held.Load() == 1 })
		c.Close()
		waitFor(t, "the target's request cancelled after the client left", func() bool { return held.Load() == 0 })
		if !h.healthy("sp-1") {
			t.Error("a client that left marked the target down")
		}
	})
}

// TestPipelinedRequests: requests sent back to back on one connection,
// before any reply, are all answered, in order (the deferred background
// read must not lose the next request's bytes).
func TestPipelinedRequests(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		e := newEnv(t, engine, nil)
		h := newHostile(t, engine, nil, ordered(e.backend("sp-1").srv.URL))
		c := dialFrom(t, "127.0.0.1", h.addr)
		io.WriteString(c, "GET /one HTTP/1.1\r\nHost: p\r\n\r\nPOST /two HTTP/1.1\r\nHost: p\r\nContent-Length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		for _, want := range []string{"/one", "/two", "/three"} {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("reply to %s: %v", want, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(body), `"Path":"`+want+`"`) {
				t.Errorf("reply to %s: %d %s", want, resp.StatusCode, body)
			}
		}
	})
}

// TestSlowBodyOutlivesHeaderTimeout: ResponseHeaderTimeout bounds the
// reply's head only. A body that takes longer to arrive than the timeout
// reaches the client whole, and the connection serves the next request
// (the fast engine lifts its deadline lazily, before a body read waits).
func TestSlowBodyOutlivesHeaderTimeout(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		backend, conns := keepAliveServer(t, func(c net.Conn) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\nab")
			for _, s := range []string{"cd", "ef", "gh"} {
				time.Sleep(120 * time.Millisecond)
				io.WriteString(c, s)
			}
		})
		h := newHostile(t, engine, map[string]string{"sp-1": backend}, func(c *stickyproxy.Config) {
			c.ResponseHeaderTimeout = 100 * time.Millisecond
		})
		for i := range 2 {
			o := observe(http.DefaultClient, mustReq(http.MethodGet, h.url+"/slow"))
			if o.Status != 200 || o.Body != "abcdefgh" || o.BodyErr {
				t.Fatalf("request %d: %+v", i, o)
			}
		}
		if n := conns.Load(); n != 1 {
			t.Errorf("%d connections to the target, want 1 (reused)", n)
		}
	})
}

// TestClientGoneDuringBody: a client that leaves while the target's body
// is still coming makes the proxy give up the upstream connection, with
// no reply read past the head that waited (the fast engine arms its abort
// hook only before a read waits).
func TestClientGoneDuringBody(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		sent, gone := make(chan struct{}), make(chan struct{})
		backend := rawServer(t, func(c net.Conn, br *bufio.Reader) {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nhalf")
			close(sent)
			// Holds the rest until the proxy closes the connection.
			if _, err := br.ReadByte(); err != nil {
				close(gone)
			}
		})
		h := newHostile(t, engine, map[string]string{"sp-1": backend}, nil)
		c := dialFrom(t, "127.0.0.1", h.addr)
		io.WriteString(c, "GET /x HTTP/1.1\r\nHost: p\r\n\r\n")
		<-sent
		time.Sleep(20 * time.Millisecond) // the proxy has read the head by then, most likely; not a synchronisation
		c.Close()
		select {
		case <-gone:
		case <-time.After(30 * time.Second):
			t.Fatal("the proxy kept the upstream connection after the client left")
		}
	})
}

// TestPooledConnOutlivesItsDeadline: a pooled connection whose last
// deadline passed while it was idle is still reused, for a POST too (whose
// connection is checked first; the fast engine leaves a deadline in place
// between requests).
func TestPooledConnOutlivesItsDeadline(t *testing.T) {
	t.Parallel()
	backend, conns := keepAliveServer(t, func(c net.Conn) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")
	})
	h := newHostile(t, stickyproxy.EngineFast, map[string]string{"sp-1": backend}, func(c *stickyproxy.Config) {
		c.ResponseHeaderTimeout = 40 * time.Millisecond
	})
	if o := observe(http.DefaultClient, mustReq(http.MethodGet, h.url+"/")); o.Status != 200 {
		t.Fatalf("GET: %+v", o)
	}
	time.Sleep(100 * time.Millisecond) // past the deadline, well short of the idle check
	req, _ := http.NewRequest(http.MethodPost, h.url+"/", strings.NewReader("body"))
	if o := observe(http.DefaultClient, req); o.Status != 200 || o.Body != "ok" {
		t.Fatalf("POST: %+v", o)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections to the target, want 1 (reused)", n)
	}
}

// keepAliveServer is a raw target that reads each request whole and
// answers it with reply, keeping the connection; conns counts the
// connections it accepted.
func keepAliveServer(t *testing.T, reply func(c net.Conn)) (addr string, conns *atomic.Int32) {
	conns = new(atomic.Int32)
	addr = rawServer(t, func(c net.Conn, br *bufio.Reader) {
		conns.Add(1)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			reply(c)
		}
	})
	return addr, conns
}
