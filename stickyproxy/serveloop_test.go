package stickyproxy_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/samlha/samlha/stickyproxy"
)

// serverCases are raw client byte streams, each sent whole on one
// connection; the replies are read until the connection ends.
var serverCases = []struct{ name, raw string }{
	{"plain keep-alive", "GET /a?x=1 HTTP/1.1\r\nHost: p\r\nX-Fuzz-A: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"},
	{"body of known length", "POST /a HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"},
	{"GET with a body", "GET /a HTTP/1.1\r\nHost: p\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"},
	{"body larger than buffered ones", "POST /big HTTP/1.1\r\nHost: p\r\nContent-Length: 3000\r\n\r\n" + strings.Repeat("b", 3000) + "GET /b HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"},
	{"plain then chunked", "GET /a HTTP/1.1\r\nHost: p\r\n\r\nPOST /c HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /d HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"},
	{"plain then Expect", "GET /a HTTP/1.1\r\nHost: p\r\n\r\nPOST /e HTTP/1.1\r\nHost: p\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nokGET /d HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"},
	{"HTTP/1.0", "GET /a HTTP/1.0\r\nHost: p\r\n\r\n"},
	{"HTTP/1.0 keep-alive", "GET /a HTTP/1.0\r\nHost: p\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"},
	{"Content-Length and Transfer-Encoding", "POST /s HTTP/1.1\r\nHost: p\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"},
	{"two Content-Lengths", "POST /s HTTP/1.1\r\nHost: p\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"},
	{"two equal Content-Lengths", "POST /s HTTP/1.1\r\nHost: p\r\nContent-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab"},
	{"signed Content-Length", "POST /s HTTP/1.1\r\nHost: p\r\nContent-Length: +2\r\n\r\nab"},
	{"obs-fold", "GET /f HTTP/1.1\r\nHost: p\r\nX-Fuzz-A: 1\r\n 2\r\nConnection: close\r\n\r\n"},
	{"space before colon", "GET /f HTTP/1.1\r\nHost: p\r\nX-Fuzz-A : 1\r\n\r\n"},
	{"invalid header name", "GET /f HTTP/1.1\r\nHost: p\r\nX(A: 1\r\n\r\n"},
	{"control byte in value", "GET /f HTTP/1.1\r\nHost: p\r\nX-Fuzz-A: a\x01b\r\n\r\n"},
	{"bare LF", "GET /f HTTP/1.1\nHost: p\nConnection: close\n\n"},
	{"bare CR", "GET /f HTTP/1.1\r\nHost: p\rX-Fuzz-A: 1\r\n\r\n"},
	{"no Host", "GET /f HTTP/1.1\r\n\r\n"},
	{"two Hosts", "GET /f HTTP/1.1\r\nHost: p\r\nHost: q\r\n\r\n"},
	{"invalid Host", "GET /f HTTP/1.1\r\nHost: p q\r\n\r\n"},
	{"absolute URI", "GET http://p/abs HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"},
	{"escaped path", "GET /a%20b?c=%41 HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"},
	{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"},
	{"unknown version", "GET /v HTTP/1.7\r\nHost: p\r\nConnection: close\r\n\r\n"},
	{"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
	{"header of 10 KB", "GET /h HTTP/1.1\r\nHost: p\r\nX-Fuzz-Big: " + strings.Repeat("h", 10<<10) + "\r\nConnection: close\r\n\r\n"},
	{"header over MaxHeaderBytes", "GET /h HTTP/1.1\r\nHost: p\r\nX-Fuzz-Big: " + strings.Repeat("h", stickyproxy.MaxHeaderBytes+(8<<10)) + "\r\n\r\n"},
	{"pipelined", "GET /1 HTTP/1.1\r\nHost: p\r\n\r\nGET /2 HTTP/1.1\r\nHost: p\r\n\r\nGET /3 HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"},
	{"Pragma", "GET /p HTTP/1.1\r\nHost: p\r\nPragma: no-cache\r\nConnection: close\r\n\r\n"},
	{"Upgrade the target ignores", "GET /u HTTP/1.1\r\nHost: p\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET /b HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"},
	{"head cut short", "GET /cut HTTP/1.1\r\nHost: p\r\nX-Fuzz"},
	{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"},
}

// serverReply is what a client sees of one reply of serverCases.
type serverReply struct {
	Status int
	Header string
	Body   string
	Close  bool
}

// exchangeRaw sends raw on a new connection to addr and reads the
// replies until the connection ends (or 10 s pass: then "timeout").
func exchangeRaw(t *testing.T, addr, name, raw string) []serverReply {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { // a server may answer before it read everything
		io.WriteString(c, raw)
		if strings.Contains(name, "cut short") {
			c.(*net.TCPConn).CloseWrite() // and then the end
		}
	}()
	br := bufio.NewReader(c)
	var got []serverReply
	for range 10 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				got = append(got, serverReply{Status: -1, Body: "timeout"})
			}
			return got
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			body = append(body, "<cut>"...)
		}
		var hs []string
		for _, k := range []string{"Content-Type", "X-Stickyproxy-Decision", "X-Stickyproxy-Target"} {
			if v := resp.Header.Values(k); len(v) > 0 {
				hs = append(hs, k+"="+strings.Join(v, ","))
			}
		}
		hs = append(hs, fmt.Sprintf("length=%d", resp.ContentLength), fmt.Sprintf("te=%q", resp.TransferEncoding))
		got = append(got, serverReply{Status: resp.StatusCode, Header: strings.Join(hs, ";"), Body: string(body), Close: resp.Close})
	}
	return got
}

// TestServersAgree sends the same byte streams, plain and hostile
// (smuggling attempts, malformed heads, unusual requests that the fast
// loop hands to net/http mid-connection), through the fast serve loop and
// through net/http's server, both with the fast engine before the same
// echo backend, and requires the same replies on the wire.
func TestServersAgree(t *testing.T) {
	t.Parallel()
	backend := echoBackend(t)
	var hs [2]*hostile
	for i, server := range []stickyproxy.HTTPServer{stickyproxy.HTTPServerFast, stickyproxy.HTTPServerNetHTTP} {
		hs[i] = newHostile(t, stickyproxy.EngineFast, map[string]string{"sp-1": backend}, func(c *stickyproxy.Config) {
			c.Stickiness, c.HTTPServer, c.MaxBufferedBody = stickyproxy.StickinessOff, server, 1<<10
		})
	}
	for _, sc := range serverCases {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			fast, nethttp := exchangeRaw(t, hs[0].addr, sc.name, sc.raw), exchangeRaw(t, hs[1].addr, sc.name, sc.raw)
			if diff := cmp.Diff(nethttp, fast); diff != "" {
				t.Errorf("fast loop and net/http differ (-net/http +fast):\n%s", diff)
			}
			if len(fast) == 0 && !strings.Contains(sc.name, "cut") && sc.name != "garbage" {
				t.Error("no reply")
			}
		})
	}
}

// TestDrainWaitsForFastConns: after the server's Shutdown, Drain closes
// the fast loop's idle connections at once and waits for one with a
// request in flight, whose reply says Connection: close; a deadline that
// passes first closes it.
func TestDrainWaitsForFastConns(t *testing.T) {
	t.Parallel()
	for _, expire := range []bool{false, true} {
		t.Run(fmt.Sprintf("expire=%v", expire), func(t *testing.T) {
			t.Parallel()
			arrived, release := make(chan struct{}), make(chan struct{})
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/hold" {
					close(arrived)
					select {
					case <-release:
					case <-r.Context().Done():
					}
				}
				io.WriteString(w, "done")
			}))
			t.Cleanup(backend.Close)
			h := newHostile(t, stickyproxy.EngineFast, map[string]string{"sp-1": backend.URL}, nil)
			srv, p := h.srv, h.proxy

			idle := dialFrom(t, "127.0.0.1", h.addr)
			io.WriteString(idle, "GET /a HTTP/1.1\r\nHost: p\r\n\r\n")
			idle.SetReadDeadline(time.Now().Add(10 * time.Second))
			ibr := bufio.NewReader(idle)
			if resp, err := http.ReadResponse(ibr, nil); err != nil || resp.StatusCode != 200 {
				t.Fatalf("first request: %v", err)
			} else {
				io.Copy(io.Discard, resp.Body)
			}
			busy := dialFrom(t, "127.0.0.1", h.addr)
			io.WriteString(busy, "GET /hold HTTP/1.1\r\nHost: p\r\n\r\n")
			<-arrived

			if err := srv.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			drained := make(chan error, 1)
			go func() { drained <- p.Drain(ctx) }()
			if _, err := ibr.ReadByte(); err != io.EOF {
				t.Errorf("idle connection: %v, want it closed (EOF)", err)
			}
			select {
			case err := <-drained:
				t.Fatalf("Drain returned (%v) with a request in flight", err)
			default:
			}
			busy.SetReadDeadline(time.Now().Add(10 * time.Second))
			if expire {
				cancel()
				if err := <-drained; err != context.Canceled {
					t.Errorf("Drain: %v, want context.Canceled", err)
				}
				if _, err := http.ReadResponse(bufio.NewReader(busy), nil); err == nil {
					t.Error("the held request got a reply after Drain gave up")
				}
				return
			}
			close(release)
			resp, err := http.ReadResponse(bufio.NewReader(busy), nil)
			if err != nil {
				t.Fatalf("the request in flight: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(body) != "done" || !resp.Close {
				t.Errorf("the request in flight: %d %q, close %v; want 200 \"done\", Connection: close", resp.StatusCode, body, resp.Close)
			}
			if err := <-drained; err != nil {
				t.Errorf("Drain: %v", err)
			}
		})
	}
}

// TestStreamedBodyHandedOff: a body larger than MaxBufferedBody streams
// to the target while the fast engine waits on it, so the fast loop hands
// such a request to net/http rather than let the client-gone watcher read
// the connection at the same time as the body's reader (which would take
// a byte of the body). The body arrives in two parts, the second once the
// target is reading the first, and must reach it whole.
func TestStreamedBodyHandedOff(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var first [1]byte
		if _, err := io.ReadFull(r.Body, first[:]); err != nil {
			return
		}
		close(started)
		rest, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d %x", 1+len(rest), sha256.Sum256(append(first[:], rest...)))
	}))
	t.Cleanup(backend.Close)
	h := newHostile(t, stickyproxy.EngineFast, map[string]string{"sp-1": backend.URL}, func(c *stickyproxy.Config) {
		c.MaxBufferedBody = 1 << 10
	})
	body := strings.Repeat("0123456789", 3000) // the first 10 KB fill the engine's 8 KiB write buffer
	c := dialFrom(t, "127.0.0.1", h.addr)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: p\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:10000])
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the target did not get the body's start")
	}
	io.WriteString(c, body[10000:])
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	if want := fmt.Sprintf("%d %x", len(body), sha256.Sum256([]byte(body))); string(got) != want {
		t.Errorf("the target got %q, want %q", got, want)
	}
}

// TestRefusalLingerBounded: a request refused before its body was read
// (here over the client's buffer share) gets its reply, then the fast
// loop ends its side and drops what the client still sends, for a
// bounded time only: a client that keeps the connection open and sends
// nothing more does not keep it.
func TestRefusalLingerBounded(t *testing.T) {
	t.Parallel()
	u1, _ := sink(t, "sp-1")
	h := newHostile(t, stickyproxy.EngineFast, nil, both(ordered(u1), func(c *stickyproxy.Config) {
		c.MaxBufferedBody, c.MaxBufferPerClient = 100_000, 100_000
	}))
	stallPOST(t, "127.0.0.1", h.addr, "/a", 70_000, 100) // holds 70 KB of the share
	waitFor(t, "a stalled POST inside the proxy", func() bool { return inFlight(h)() == 1 })
	c := stallPOST(t, "127.0.0.1", h.addr, "/b", 70_000, 100)
	wantReply(t, "a body over the client's share", replyOn(t, c), 429, "client-limit")
	waitFor(t, "the refused connection closed by the proxy", func() bool {
		return gaugeValue(t, h.proxy, "stickyproxy_client_conns") == 1
	})
}
