package redistest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy relays TCP connections to a server, and breaks them on demand the
// ways a network does: it stalls them (stops forwarding, without closing:
// a partition, a hung peer), cuts them (closes them: a reset), or drops a
// reply and the connection it came on (a failure after the server acted).
type Proxy struct {
	ln     net.Listener
	target string
	armed  atomic.Bool
	drops  atomic.Int32
	wg     sync.WaitGroup

	mu    sync.Mutex
	links map[*link]struct{}
}

// link is one client connection and its connection to the server.
type link struct {
	client, server net.Conn
	mu             sync.Mutex
	cond           *sync.Cond
	stalled        bool
	closed         bool
}

// StartProxy starts a proxy to target (host:port) on a free loopback port,
// stopped, with every connection closed, when the test ends.
func StartProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("redistest: proxy listen: %v", err)
	}
	p := &Proxy{ln: ln, target: target, links: map[*link]struct{}{}}
	p.wg.Go(p.serve)
	tb.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// Addr returns the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) serve() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		l := &link{client: client, server: server}
		l.cond = sync.NewCond(&l.mu)
		p.mu.Lock()
		p.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.pump(l, client, server, false) })
		p.wg.Go(func() { p.pump(l, server, client, true) })
	}
}

// pump copies from src to dst, holding each chunk while the link is
// stalled; a reply (from the server) is dropped with its connection when
// the proxy is armed.
func (p *Proxy) pump(l *link, src, dst net.Conn, reply bool) {
	defer p.close(l)
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if reply && p.armed.CompareAndSwap(true, false) {
				p.drops.Add(1)
				return
			}
			l.mu.Lock()
			for l.stalled && !l.closed {
				l.cond.Wait()
			}
			closed := l.closed
			l.mu.Unlock()
			if closed {
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proxy) close(l *link) {
	l.mu.Lock()
	l.closed = true
	l.cond.Broadcast()
	l.mu.Unlock()
	l.client.Close()
	l.server.Close()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

func (p *Proxy) each(fn func(l *link)) {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		fn(l)
	}
}

// Stall stops forwarding on every connection open now, in both directions,
// without closing them: what is sent is held. Connections opened later
// are forwarded. Resume lets the held ones go on.
func (p *Proxy) Stall() {
	p.each(func(l *link) {
		l.mu.Lock()
		l.stalled = true
		l.mu.Unlock()
	})
}

// Resume forwards again on every stalled connection, what was held first.
func (p *Proxy) Resume() {
	p.each(func(l *link) {
		l.mu.Lock()
		l.stalled = false
		l.cond.Broadcast()
		l.mu.Unlock()
	})
}

// Cut closes every connection open now, both sides.
func (p *Proxy) Cut() { p.each(p.close) }

// DropNextReply makes the proxy drop the next bytes the server sends, on
// any connection, and close that connection: the server has acted, and
// the client never learns it.
func (p *Proxy) DropNextReply() { p.armed.Store(true) }

// Dropped returns how many replies have been dropped.
func (p *Proxy) Dropped() int { return int(p.drops.Load()) }
