package stickyproxy

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/samlha/samlha/stickyproxy/forward"
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
// closed; clientBusyReply, one over MaxConnsPerClient.
const (
	busyReply = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Connection: close\r\nRetry-After: 1\r\nContent-Length: 50\r\n\r\n" +
		"stickyproxy: too many client connections; retry.\n\n"
	clientBusyReply = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Connection: close\r\nRetry-After: 5\r\nContent-Length: 58\r\n\r\n" +
		"stickyproxy: too many connections from this client; retry\n"
)

// Listener wraps ln so that at most Config.MaxClientConns client
// connections are open at once, and at most Config.MaxConnsPerClient from
// one TCP peer (by /64 for IPv6) that is not a trusted proxy. A connection
// beyond either is answered (503, or 429 for the client's share) and
// closed at once, rather than left waiting in the kernel's queue, counted
// in stickyproxy_client_conns_refused_total{reason} and logged (at most
// once a second). With both limits negative, ln is returned as is.
func (p *Proxy) Listener(ln net.Listener) net.Listener {
	if p.cfg.MaxClientConns <= 0 && p.cfg.MaxConnsPerClient <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, p: p}
}

// TLSListener is Listener for a listener that TLS will wrap (ServeTLS): a
// connection over a limit is closed without the plain-text reply, which a
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
	silent bool // TLS follows: close without the plain-text reply
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc := l.admit(c); lc != nil {
			return lc, nil
		}
	}
}

// admit counts c against the limits, or refuses and closes it (nil).
func (l *limitListener) admit(c net.Conn) net.Conn {
	p := l.p
	if !addCapped(&p.conns, 1, int64(p.cfg.MaxClientConns)) {
		l.refuse(c, "total", busyReply)
		return nil
	}
	lc := &limitConn{Conn: c, p: p}
	peer, ok := forward.PeerAddr(c.RemoteAddr().String())
	if ok && p.cfg.MaxConnsPerClient > 0 && !p.fwd.Trusted.Contains(peer) {
		lc.client = p.clients.get(forward.ClientKey(peer))
		if !addCapped(&lc.client.conns, 1, int64(p.cfg.MaxConnsPerClient)) {
			p.clients.put(lc.client)
			p.conns.Add(-1)
			l.refuse(c, "per-client", clientBusyReply)
			return nil
		}
	}
	return lc
}

func (l *limitListener) refuse(c net.Conn, reason, reply string) {
	l.p.m.connsRefused.WithLabelValues(reason).Inc()
	if ok, dropped := l.p.sample("conns-"+reason, time.Now()); ok {
		l.p.log.Warn("client connection refused", "reason", reason, "max_client_conns", l.p.cfg.MaxClientConns,
			"max_conns_per_client", l.p.cfg.MaxConnsPerClient, "client", c.RemoteAddr().String(), "refused_since_last_line", dropped)
	}
	// A fresh socket's send buffer takes this at once; the deadline only
	// guards against the impossible.
	if !l.silent {
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = io.WriteString(c, reply)
	}
	_ = c.Close()
}

type limitConn struct {
	net.Conn
	p      *Proxy
	client *clientUse // nil: not counted per client
	once   sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.p.conns.Add(-1)
		if c.client != nil {
			c.client.conns.Add(-1)
			c.p.clients.put(c.client)
		}
	})
	return err
}
