package stickyproxy

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
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

// refuseWriteTimeout bounds the write of a refusal's reply.
const refuseWriteTimeout = 2 * time.Second

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
// once a second).
//
// Its connections also spare net/http a system call per request: see
// clientConn.
//
// With HTTPServerFast (the default; with the fast engine and http://
// targets), the connections are served by the fast loop (serveloop.go)
// and Accept returns only those it hands to net/http's server; after the
// server's Shutdown, Drain waits for the others.
func (p *Proxy) Listener(ln net.Listener) net.Listener {
	l := &limitListener{Listener: ln, p: p, closed: make(chan struct{})}
	if p.fastServing() {
		l.fast = &fastConns{m: map[*fastConn]struct{}{}}
		l.handoffs = make(chan net.Conn)
		l.errs = make(chan error)
		p.fastMu.Lock()
		p.fastSets = append(p.fastSets, l.fast)
		p.fastMu.Unlock()
	}
	return l
}

// TLSListener is Listener for a listener that TLS will wrap (ServeTLS): a
// connection over a limit is closed without the plain-text reply, which a
// TLS client would read as a broken handshake; the metric and the log
// still count it.
// net/http's server serves every connection.
func (p *Proxy) TLSListener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, p: p, silent: true, closed: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	p      *Proxy
	silent bool // TLS follows: close without the plain-text reply

	closed    chan struct{}
	closeOnce sync.Once

	// The fast loop's (nil without it): its connections, those handed to
	// net/http, and errors of the real Accept for net/http to judge.
	fast      *fastConns
	handoffs  chan net.Conn
	errs      chan error
	startOnce sync.Once
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		if l.fast != nil {
			l.fast.drain()
		}
	})
	return l.Listener.Close()
}

func (l *limitListener) Accept() (net.Conn, error) {
	if l.fast != nil {
		l.startOnce.Do(func() { go l.fastListen() })
		select {
		case c := <-l.handoffs:
			return c, nil
		case err := <-l.errs:
			return nil, err
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
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
	lc := &clientConn{Conn: c, p: p, wake: make(chan struct{}, 1)}
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
	// guards against the impossible. It is not shorter: it counts from
	// SetWriteDeadline, and on a loaded machine the goroutine may wait
	// that long for a CPU before the write, which then fails at once and
	// the client gets a bare close instead of the reply (it was 100 ms,
	// and TestStalledClientsBounded failed so under a CI run's load).
	if !l.silent {
		_ = c.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
		_, _ = io.WriteString(c, reply)
	}
	_ = c.Close()
}

// clientConn is a client connection counted against the limits. It also
// defers net/http's background read.
//
// While a handler runs, net/http keeps a one-byte read pending on the
// connection, to notice a client that goes away; when the handler returns
// it aborts that read by setting a read deadline in the past. On Linux a
// read that finds nothing (EAGAIN) and the trip through the poller cost
// several microseconds per request, most of a proxied request's own
// work. So a one-byte read (net/http reads one byte only there) first
// waits up to backgroundReadDelay, without a system call, for a read
// deadline: one in the past ends it as the real read would (a timeout,
// which net/http expects of its abort); if none comes in time, the real
// read is made, and a client that left a long request is noticed then.
type clientConn struct {
	net.Conn
	p      *Proxy
	client *clientUse // nil: not counted per client
	once   sync.Once

	rdl   atomic.Int64  // read deadline, unix nanoseconds; 0: none
	wake  chan struct{} // a read deadline was set
	timer *time.Timer   // the deferred read's (one at a time)
	wrote atomic.Bool   // written to since the last read

	// The read deadline is set on Conn lazily: net/http sets it four or
	// five times per request (header, whole request, the background
	// read's abort twice, idle), each a trip into the runtime's timers,
	// while only a read that waits needs it. So SetReadDeadline records
	// it (want), and it is set on Conn (set) before a read, or at once if
	// a read is under way, deadlineSlack later than asked; a deadline
	// already set that fires no earlier and at most deadlineSlack later
	// than the one asked for is kept.
	dmu     sync.Mutex
	want    time.Time
	set     time.Time
	reading int // reads under way on Conn
}

// deadlineSlack is how much later than asked a client's read deadline
// (ReadHeaderTimeout, IdleTimeout, ClientBodyTimeout) may fire.
const deadlineSlack = 100 * time.Millisecond

// backgroundReadDelay is how long a client that leaves during a request
// may go unnoticed (the request's context is cancelled that much later).
const backgroundReadDelay = 250 * time.Millisecond

func (c *clientConn) Read(b []byte) (int, error) {
	if len(b) == 1 {
		if err := c.deferRead(); err != nil {
			return 0, err
		}
	} else if c.wrote.Swap(false) {
		// The reply went out: let the other ready requests run before
		// reading the next one, which by then has usually arrived (a read
		// that finds nothing costs a system call and a trip through the
		// poller). When nothing else is ready this returns at once.
		runtime.Gosched()
	}
	return c.readDirect(b)
}

// readDirect is Read without the deferral of one-byte reads or the
// yield: the fast loop's client-gone watcher.
func (c *clientConn) readDirect(b []byte) (int, error) {
	c.dmu.Lock()
	err := c.applyDeadline()
	if err != nil {
		c.dmu.Unlock()
		return 0, err
	}
	c.reading++
	c.dmu.Unlock()
	n, err := c.Conn.Read(b)
	c.dmu.Lock()
	c.reading--
	c.dmu.Unlock()
	return n, err
}

// applyDeadline sets the read deadline asked for on Conn, unless the one
// set there fires no earlier and at most deadlineSlack later. It sets it
// deadlineSlack later than asked, so that the deadlines that follow (each
// request's idle deadline a little later than the last) keep it for that
// long. c.dmu is held.
func (c *clientConn) applyDeadline() error {
	if c.set.Equal(c.want) || !c.want.IsZero() && !c.set.IsZero() && !c.set.Before(c.want) && !c.set.After(c.want.Add(deadlineSlack)) {
		return nil
	}
	t := c.want
	if !t.IsZero() {
		t = t.Add(deadlineSlack)
	}
	if err := c.Conn.SetReadDeadline(t); err != nil {
		return err
	}
	c.set = t
	return nil
}

func (c *clientConn) Write(b []byte) (int, error) {
	c.wrote.Store(true)
	return c.Conn.Write(b)
}

// deferRead waits for a read deadline that has passed (returned as the
// real read would fail), or for backgroundReadDelay (nil: read now).
func (c *clientConn) deferRead() error {
	if c.timer == nil {
		c.timer = time.NewTimer(backgroundReadDelay)
	} else {
		c.timer.Reset(backgroundReadDelay)
	}
	defer c.timer.Stop()
	for {
		if d := c.rdl.Load(); d != 0 && d <= time.Now().UnixNano() {
			return os.ErrDeadlineExceeded
		}
		select {
		case <-c.wake:
		case <-c.timer.C:
			return nil
		}
	}
}

func (c *clientConn) noteReadDeadline(t time.Time) {
	var n int64
	if !t.IsZero() {
		n = t.UnixNano()
	}
	c.rdl.Store(n)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *clientConn) SetReadDeadline(t time.Time) error {
	c.noteReadDeadline(t)
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.want = t
	if c.reading > 0 {
		return c.applyDeadline()
	}
	return nil
}

func (c *clientConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

func (c *clientConn) Close() error {
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
