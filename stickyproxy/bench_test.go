package stickyproxy

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"testing"
	"time"
)

// BenchmarkPublicServer is the whole per-request path under concurrent
// load, as deploy/bench/run.sh drives it but inside one process: 64
// keep-alive client connections (raw, allocating nothing per request)
// send GETs through PublicServer and Listener (the fast serve loop, or
// net/http's server, and the client-connection wrapper) and the engine
// to rawBackend. Run it with
// -cpu 1 to compare CPU per request (ns/op) as run.sh's GOMAXPROCS=1
// proxy does; allocs/op are the proxy's and net/http's server's.
func BenchmarkPublicServer(b *testing.B) {
	u := rawBackend(b)
	for _, c := range []struct {
		name   string
		engine Engine
		server HTTPServer
	}{
		{"fast", EngineFast, HTTPServerFast},
		{"fast-nethttp", EngineFast, HTTPServerNetHTTP},
		{"reverseproxy", EngineReverseProxy, HTTPServerNetHTTP},
	} {
		b.Run(c.name, func(b *testing.B) {
			p, err := New(Config{Targets: []Target{{Name: "sp-1", URL: u}}, Keys: [][32]byte{internalKey}, Engine: c.engine,
				HTTPServer: c.server, AccessLog: AccessLogOff, MaxConnsPerClient: 1024, MaxInFlightPerClient: 1024})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := p.PublicServer()
			go srv.Serve(p.Listener(ln))
			defer srv.Close()
			v, _ := p.codec.Seal("sp-1", time.Now().Add(time.Hour))
			req := []byte("GET /path?q=1 HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\nCookie: AWSALB=" + v + "\r\n\r\n")
			b.SetParallelism(64) // goroutines per GOMAXPROCS
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				for pb.Next() {
					if _, err := c.Write(req); err != nil {
						b.Error(err)
						return
					}
					if err := readRawReply(br); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// readRawReply reads one reply with a Content-Length body from br and
// checks it is a 200, allocating nothing.
func readRawReply(br *bufio.Reader) error {
	n, first := -1, true
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if first {
			if !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
				return &net.AddrError{Err: "reply " + string(line)}
			}
			first = false
			continue
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && bytes.EqualFold(line[:16], []byte("Content-Length: ")) {
			n, err = strconv.Atoi(string(bytes.TrimSpace(line[16:])))
			if err != nil {
				return err
			}
		}
	}
	if n < 0 {
		return &net.AddrError{Err: "reply without Content-Length"}
	}
	_, err := br.Discard(n)
	return err
}
