package stickyproxy

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// PublicServer returns the http.Server for the public listener, with the
// client bounds of the configuration: ReadHeaderTimeout, IdleTimeout and
// 64 KiB of request headers at most. (ClientBodyTimeout and the in-flight
// limit are applied by ServeHTTP; MaxClientConns by Listener.)
func (p *Proxy) PublicServer() *http.Server {
	return &http.Server{
		Handler:           p,
		ReadHeaderTimeout: p.cfg.ReadHeaderTimeout,
		IdleTimeout:       p.cfg.IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
}

// MaxHeaderBytes bounds a client's request line and headers.
const MaxHeaderBytes = 64 << 10

// busyReply is what a connection over MaxClientConns gets before it is
// closed.
const busyReply = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\nRetry-After: 1\r\nContent-Length: 50\r\n\r\n" +
	"stickyproxy: too many client connections; retry.\n\n"

// Listener wraps ln so that at most Config.MaxClientConns client
// connections are open at once; a connection beyond that is answered 503
// (stickyproxy_client_conns_refused_total) and closed at once, rather than
// left waiting in the kernel's queue. With MaxClientConns < 0, ln is
// returned as is.
func (p *Proxy) Listener(ln net.Listener) net.Listener {
	if p.cfg.MaxClientConns <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, p: p, max: int64(p.cfg.MaxClientConns)}
}

// TLSListener is Listener for a listener that TLS will wrap (ServeTLS): a
// connection over the limit is closed without the plain-text 503, which a
// TLS client would read as a broken handshake; the metric and the log
// still count it.
func (p *Proxy) TLSListener(ln net.Listener) net.Listener {
	l := p.Listener(ln)
	if ll, ok := l.(*limitListener); ok {
		ll.silent = true
	}
	return l
}

type limitListener struct {
	net.Listener
	p      *Proxy
	max    int64
	open   atomic.Int64
	logged atomic.Int64 // unix seconds of the last warning
	silent bool         // TLS follows: close without the plain-text reply
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &limitConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		l.p.m.connsRefused.Inc()
		if now := time.Now().Unix(); l.logged.Swap(now) != now {
			l.p.log.Warn("client connection refused: too many open", "max_client_conns", l.max, "client", clientIP(c.RemoteAddr().String()))
		}
		// A fresh socket's send buffer takes this at once; the deadline
		// only guards against the impossible.
		if !l.silent {
			_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = c.Write([]byte(busyReply))
		}
		_ = c.Close()
	}
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}
