package stickyproxy_test

import (
	"bufio"
	"io"
	"net/http"
	"strings"
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
