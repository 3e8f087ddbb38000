package stickyproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// The fast engine is an HTTP/1.1 client driven from the request's own
// goroutine: it takes an idle upstream connection (or dials one), writes the
// request, reads the reply with http.ReadResponse (which does the framing:
// Content-Length, chunked, HEAD, 204/304, close-delimited) and copies it to
// the client. Unlike http.Transport it starts no goroutines per connection
// and hands nothing between goroutines, which is where a plain
// ReverseProxy spends much of its time on a small machine.
//
// It takes the plain requests: no upgrade, no request trailers, a body of
// known length up to fastMaxBody (written before the reply is read, so a
// target that answers early without reading a large body cannot stall it),
// an http:// target. Everything else goes through httputil.ReverseProxy.

const (
	fastMaxBody = 1 << 20
	// idleCheckAfter is how long a pooled connection may sit idle before it
	// is checked for a close by the target before reuse.
	idleCheckAfter = 500 * time.Millisecond
	idleTimeout    = 90 * time.Second
)

// fastOK says whether the fast engine can take r for t.
func fastOK(r *http.Request, t *target) bool {
	return t.pool.addr != "" && r.Trailer == nil && r.ContentLength >= 0 && r.ContentLength <= fastMaxBody &&
		r.Header["Upgrade"] == nil
}

type connPool struct {
	addr   string // host:port; empty for https targets (not handled by the fast engine)
	max    int
	dialer net.Dialer
	mu     sync.Mutex
	idle   []*upConn
}

type upConn struct {
	c         net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
	nread     int64 // bytes read from c, to tell "closed before any reply byte"
	limit     int64 // while reading a reply's head: nread may not pass it (0: no limit)
}

// errHeadTooLarge is a reply head over MaxResponseHeaderBytes.
var errHeadTooLarge = fmt.Errorf("response headers over %d bytes", MaxResponseHeaderBytes)

// MaxResponseHeaderBytes bounds a target's reply head, in both engines.
const MaxResponseHeaderBytes = 1 << 20

// Read counts what the buffered reader takes from the connection.
func (uc *upConn) Read(p []byte) (int, error) {
	if uc.limit > 0 && uc.nread >= uc.limit {
		return 0, errHeadTooLarge
	}
	n, err := uc.c.Read(p)
	uc.nread += int64(n)
	return n, err
}

func (cp *connPool) init(u *url.URL, max int) {
	cp.max = max
	cp.dialer = net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	if u.Scheme != "http" {
		return
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	cp.addr = host
}

// get returns an idle connection (reused true) or a new one. A dial
// failure is returned as *dialError. check asks to check any idle connection
// for a close by the target, however briefly it was idle; fresh asks for a
// new connection.
func (cp *connPool) get(ctx context.Context, now time.Time, check, fresh bool) (*upConn, bool, error) {
	for !fresh {
		cp.mu.Lock()
		n := len(cp.idle)
		if n == 0 {
			cp.mu.Unlock()
			break
		}
		uc := cp.idle[n-1]
		cp.idle[n-1] = nil
		cp.idle = cp.idle[:n-1]
		cp.mu.Unlock()
		idle := now.Sub(uc.idleSince)
		if idle > idleTimeout || (check || idle > idleCheckAfter) && !connAlive(uc.c) {
			uc.c.Close()
			continue
		}
		return uc, true, nil
	}
	c, err := cp.dialer.DialContext(ctx, "tcp", cp.addr)
	if err != nil {
		return nil, false, &dialError{err}
	}
	uc := &upConn{c: c, bw: bufio.NewWriterSize(c, 8<<10)}
	uc.br = bufio.NewReaderSize(uc, 8<<10)
	return uc, false, nil
}

func (cp *connPool) put(uc *upConn, now time.Time) {
	uc.idleSince = now
	cp.mu.Lock()
	if len(cp.idle) < cp.max {
		cp.idle = append(cp.idle, uc)
		cp.mu.Unlock()
		return
	}
	cp.mu.Unlock()
	uc.c.Close()
}

func (cp *connPool) closeIdle() {
	cp.mu.Lock()
	idle := cp.idle
	cp.idle = nil
	cp.mu.Unlock()
	for _, uc := range idle {
		uc.c.Close()
	}
}

// hopHeaders are removed in both directions (RFC 9110 section 7.6.1), along
// with any header the Connection header names.
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true,
	"Proxy-Authenticate": true, "Proxy-Authorization": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
}

// dropOnRequest are request headers the proxy replaces or drops.
var dropOnRequest = map[string]bool{
	"X-Forwarded-For": true, "X-Forwarded-Proto": true, "X-Forwarded-Host": true,
	"Forwarded": true, "Expect": true, "Content-Length": true, "Host": true,
}

// errStaleConn is a reused connection that the target had closed before
// any of the request could matter: retried on a fresh connection.
var errStaleConn = errors.New("reused connection closed by target")

// forwardFast forwards r to x.t over the target's connection pool.
func (p *Proxy) forwardFast(w http.ResponseWriter, r *http.Request, x *exchange) error {
	err := p.fastOnce(w, r, x, false)
	if err == errStaleConn && r.Context().Err() == nil {
		// Once more, on a new connection.
		err = p.fastOnce(w, r, x, true)
	}
	return err
}

func (p *Proxy) fastOnce(w http.ResponseWriter, r *http.Request, x *exchange, fresh bool) error {
	t := x.t
	x.sent = time.Now()
	uc, reused, err := t.pool.get(r.Context(), x.sent, !replayable(r), fresh)
	if err != nil {
		return err
	}
	// Abort the exchange if the client goes away. stop must run before the
	// connection goes back to the pool, and a connection whose abort ran is
	// not pooled: its deadline is in the past.
	stop := context.AfterFunc(r.Context(), func() { uc.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if p.cfg.ResponseHeaderTimeout > 0 {
		// One deadline for writing the request (a target that does not
		// take the body would stall it) and reading the reply's head.
		uc.c.SetDeadline(x.sent.Add(p.cfg.ResponseHeaderTimeout))
	}
	werr := p.writeRequest(uc.bw, r)
	if werr != nil {
		if x.cbody != nil && x.cbody.err != nil {
			uc.c.Close()
			return fmt.Errorf("reading request body: %w", werr)
		}
		if reused && !x.bodyRead() && replayable(r) {
			uc.c.Close()
			return errStaleConn
		}
		// The target may have answered (413, 400...) and closed before
		// taking the whole body: read its reply, if any, as
		// http.Transport does.
	} else {
		// Let the other requests that are ready run before reading the
		// reply: under load the target has usually answered by then, which
		// saves a read that would find nothing (EAGAIN) and a trip through
		// the poller. When nothing else is ready this returns at once.
		// (Measured: 7 to 20% more requests per CPU second at 256
		// connections.)
		runtime.Gosched()
	}
	var resp *http.Response
	before := uc.nread
	uc.limit = before + MaxResponseHeaderBytes + int64(uc.br.Size())
	for {
		resp, err = http.ReadResponse(uc.br, r)
		if err != nil {
			uc.c.Close()
			if werr != nil {
				return fmt.Errorf("writing request: %w", werr)
			}
			// A pooled connection the target closed before any byte of
			// the reply: http.ReadResponse reports a clean close as
			// io.ErrUnexpectedEOF, a reset as ECONNRESET.
			stale := uc.nread == before && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err))
			if reused && stale && !x.bodyRead() && replayable(r) {
				return errStaleConn
			}
			return fmt.Errorf("reading response: %w", err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		// 1xx: 100 Continue is ours to send (the server does when the body is
		// read); others are informational and dropped.
	}
	uc.limit = 0
	if werr != nil {
		resp.Close = true // the request was cut short: never reuse
	}
	if p.cfg.ResponseHeaderTimeout > 0 {
		uc.c.SetDeadline(time.Time{})
	}
	x.upstream = time.Since(x.sent)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		uc.c.Close()
		return errors.New("target switched protocols on a request that did not ask to upgrade")
	}

	h := w.Header()
	// No Content-Type from the target means none to the client: a nil
	// value stops net/http from sniffing one from the body (which could
	// turn a target's untyped bytes into text/html).
	h["Content-Type"] = nil
	connTokens := resp.Header["Connection"]
	for k, vv := range resp.Header {
		if hopHeaders[k] || len(connTokens) > 0 && httpguts.HeaderValuesContainsToken(connTokens, k) {
			continue
		}
		h[k] = vv
	}
	if resp.ContentLength >= 0 && h["Content-Length"] == nil && r.Method != http.MethodHead {
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	if len(resp.Trailer) > 0 {
		for k := range resp.Trailer {
			h.Add("Trailer", k)
		}
	}
	x.decorate(h, resp.StatusCode)
	w.WriteHeader(resp.StatusCode)

	flush := resp.ContentLength < 0
	if ct := resp.Header["Content-Type"]; len(ct) > 0 && len(ct[0]) >= 17 && ct[0][:17] == "text/event-stream" {
		flush = true
	}
	bufp := p.bufs.Get().(*[]byte)
	rerr, werr := copyBody(w, resp.Body, *bufp, flush)
	p.bufs.Put(bufp)
	if rerr != nil || werr != nil {
		uc.c.Close()
		if rerr != nil {
			return fmt.Errorf("reading response body: %w", rerr)
		}
		return fmt.Errorf("writing response body to client: %w", werr)
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	// Bytes beyond the reply (a 204 or 304 with a body, a miscounted
	// length) would be read as the next reply: such a connection is not
	// reused, as http.Transport drops an "unsolicited response".
	if !stop() || resp.Close || r.Close || uc.br.Buffered() > 0 {
		uc.c.Close()
	} else {
		t.pool.put(uc, time.Now())
	}
	return nil
}

// copyBody copies src to w, flushing after each write if flush.
func copyBody(w http.ResponseWriter, src io.Reader, buf []byte, flush bool) (rerr, werr error) {
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr = w.Write(buf[:n]); werr != nil {
				return nil, werr
			}
			if flush {
				if werr = http.NewResponseController(w).Flush(); werr != nil {
					return nil, werr
				}
			}
		}
		if err == io.EOF {
			return nil, nil
		}
		if err != nil {
			return err, nil
		}
	}
}

// writeRequest writes r as an HTTP/1.1 request with the proxy's forwarding
// headers, without hop-by-hop headers, and its body.
func (p *Proxy) writeRequest(bw *bufio.Writer, r *http.Request) error {
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	if uri := r.RequestURI; len(uri) > 0 && uri[0] == '/' {
		bw.WriteString(uri)
	} else {
		bw.WriteString(r.URL.RequestURI())
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	connTokens := r.Header["Connection"]
	for k, vv := range r.Header {
		if hopHeaders[k] || dropOnRequest[k] || len(connTokens) > 0 && httpguts.HeaderValuesContainsToken(connTokens, k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if te := r.Header["Te"]; len(te) > 0 && httpguts.HeaderValuesContainsToken(te, "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	p.writeForwarded(bw, r)
	if r.ContentLength > 0 || r.ContentLength == 0 && (r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch) {
		bw.WriteString("Content-Length: ")
		var nb [20]byte
		bw.Write(strconv.AppendInt(nb[:0], r.ContentLength, 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	if r.ContentLength > 0 {
		n, err := io.Copy(bw, io.LimitReader(r.Body, r.ContentLength))
		if err != nil {
			return err
		}
		if n != r.ContentLength {
			return fmt.Errorf("request body: %d of %d bytes", n, r.ContentLength)
		}
	}
	return bw.Flush()
}

// writeForwarded is setForwarded for the fast engine, written straight to
// the wire.
func (p *Proxy) writeForwarded(bw *bufio.Writer, r *http.Request) {
	peer := clientIP(r.RemoteAddr)
	trusted := p.trusted(peer)
	bw.WriteString("X-Forwarded-For: ")
	if prior := r.Header["X-Forwarded-For"]; trusted && len(prior) > 0 {
		for _, v := range prior {
			bw.WriteString(v)
			bw.WriteString(", ")
		}
	}
	bw.WriteString(peer)
	bw.WriteString("\r\nX-Forwarded-Proto: ")
	if v := r.Header["X-Forwarded-Proto"]; trusted && len(v) > 0 {
		bw.WriteString(v[0])
	} else if r.TLS != nil {
		bw.WriteString("https")
	} else {
		bw.WriteString("http")
	}
	bw.WriteString("\r\nX-Forwarded-Host: ")
	if v := r.Header["X-Forwarded-Host"]; trusted && len(v) > 0 {
		bw.WriteString(v[0])
	} else {
		bw.WriteString(r.Host)
	}
	bw.WriteString("\r\n")
	if v := r.Header["Forwarded"]; trusted && len(v) > 0 {
		for _, f := range v {
			bw.WriteString("Forwarded: ")
			bw.WriteString(f)
			bw.WriteString("\r\n")
		}
	}
}

func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// replayable says whether r may be sent again on a fresh connection to the
// same target after a reused connection turned out closed, with no reply
// byte received: only idempotent requests without a body, as http.Transport
// does. Anything else gets a 502 rather than risk running twice.
func replayable(r *http.Request) bool {
	if r.ContentLength != 0 {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}
