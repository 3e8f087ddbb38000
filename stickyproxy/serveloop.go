package stickyproxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/samlha/samlha/stickyproxy/upstream"
)

// The fast serve loop: stickyproxy's own HTTP/1.1 server for plain
// keep-alive requests, in place of net/http's, which spent about half of
// the proxy's user time per request (its request parse, the response's
// header clone, sort and write, the background read it starts for every
// request and its hand-off, the request's context).
//
// Listener runs one loop per connection (HTTPServerFast, with the fast
// engine and http:// targets). The loop reads a request head into a
// reused buffer and parses it in place (reqhead.go), fills a request and
// a header map it reuses, and calls ServeHTTP with a ResponseWriter that
// writes the reply head and body straight into the connection's write
// buffer. The first head it does not take (malformed or unusual: see
// reqhead.go; or larger than the read buffer) is left unread and the
// connection handed, with the bytes already read, to net/http's server
// through Listener's Accept, which serves it from then on exactly as
// before. So everything that is not a plain request, and every refusal of
// a malformed one, is still net/http's.
//
// What net/http's server does for a request and the loop does too: the
// read-header, idle and client-body deadlines (the same clientConn, so the
// same lazy deadlines), Connection: close both ways, HEAD, 1xx/204/304
// without a body, Content-Length or chunked replies (with trailers) as
// net/http chooses them, the Date header, closing after a reply cut short
// (http.ErrAbortHandler) or a body left unread, and a request context
// that is cancelled when the client goes away while the proxy waits on a
// target: the context's AfterFunc (which the fast engine arms only when a
// read from the target has to wait) starts, once the wait has lasted
// backgroundReadDelay, a one-byte read of the client, as net/http's
// background read (deferred the same way by clientConn), and stopping it
// aborts that read and keeps any byte it got.

// readBufSize is the fast loop's read buffer; a request head that does
// not fit goes to net/http (whose limit is MaxHeaderBytes).
const readBufSize = 4 << 10

// bufferBeforeChunking is how much of a reply of unknown length is held
// to send it with a Content-Length if the handler ends first (net/http's
// figure).
const bufferBeforeChunking = 2048

// fastServing says whether the listener's connections are served by the
// fast loop.
func (p *Proxy) fastServing() bool {
	if p.cfg.HTTPServer != HTTPServerFast || p.cfg.Engine != EngineFast {
		return false
	}
	for _, t := range p.targets {
		if !t.pool.Plain() {
			return false
		}
	}
	return true
}

// fastConns tracks the connections a listener's fast loops serve, for
// draining.
type fastConns struct {
	mu       sync.Mutex
	m        map[*fastConn]struct{}
	draining atomic.Bool
}

func (fs *fastConns) add(fc *fastConn) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.draining.Load() {
		return false
	}
	fs.m[fc] = struct{}{}
	return true
}

func (fs *fastConns) remove(fc *fastConn) {
	fs.mu.Lock()
	delete(fs.m, fc)
	fs.mu.Unlock()
}

func (fs *fastConns) count() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.m)
}

// drain stops new requests: connections waiting for one are woken (a read
// deadline in the past) and close; the others close after their reply,
// which says Connection: close.
func (fs *fastConns) drain() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.draining.Store(true)
	for fc := range fs.m {
		if fc.idle.Load() {
			_ = fc.c.SetReadDeadline(time.Unix(1, 0))
		}
	}
}

// closeAll closes every connection at once.
func (fs *fastConns) closeAll() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for fc := range fs.m {
		_ = fc.c.Conn.Close()
	}
}

// Drain waits for the connections the fast loop serves on the proxy's
// listeners to finish their requests and close, after the listeners have
// been closed (http.Server.Shutdown closes them; it does not see these
// connections). When ctx is done first it closes them and returns ctx's
// error. With the net/http server only, it returns at once.
func (p *Proxy) Drain(ctx context.Context) error {
	p.fastMu.Lock()
	sets := p.fastSets
	p.fastMu.Unlock()
	wait := time.Millisecond
	for {
		n := 0
		for _, fs := range sets {
			fs.drain()
			n += fs.count()
		}
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			for _, fs := range sets {
				fs.closeAll()
			}
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// fastListen runs l's accept loop for the fast serve loop: connections
// are served here, and Accept returns only those handed to net/http.
func (l *limitListener) fastListen() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case l.errs <- err: // net/http decides: back off and call again, or stop
				continue
			case <-l.closed:
				return
			}
		}
		lc := l.admit(c)
		if lc == nil {
			continue
		}
		fc := newFastConn(l, lc.(*clientConn))
		if !l.fast.add(fc) {
			_ = lc.Close()
			continue
		}
		go fc.serve()
	}
}

// handoff gives c to net/http's server (Accept), or closes it once the
// listener is closed.
func (l *limitListener) handoff(c net.Conn) {
	select {
	case l.handoffs <- c:
	case <-l.closed:
		_ = c.Close()
	}
}

// handoffConn is a connection handed to net/http: the bytes the fast loop
// had read come first, and the read-header deadline the loop had set for
// the head it hands over still holds: net/http's read deadlines are kept
// no later than it until net/http clears the deadline, which it does once
// the head is read. (Otherwise a head over the loop's buffer, sent slowly,
// would get the timeout twice.)
type handoffConn struct {
	*clientConn
	pre      []byte
	hdrLimit atomic.Int64 // unix nanoseconds; 0: none (any more)
}

func (h *handoffConn) SetReadDeadline(t time.Time) error {
	if lim := h.hdrLimit.Load(); lim != 0 {
		if t.IsZero() {
			h.hdrLimit.Store(0)
		} else if t.UnixNano() > lim {
			t = time.Unix(0, lim)
		}
	}
	return h.clientConn.SetReadDeadline(t)
}

func (h *handoffConn) SetDeadline(t time.Time) error {
	if err := h.clientConn.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return h.SetReadDeadline(t)
}

func (h *handoffConn) Read(b []byte) (int, error) {
	if len(h.pre) > 0 {
		n := copy(b, h.pre)
		h.pre = h.pre[n:]
		return n, nil
	}
	return h.clientConn.Read(b)
}

// fastConn is one client connection served by the fast loop.
type fastConn struct {
	p      *Proxy
	l      *limitListener
	c      *clientConn
	br     *bufio.Reader
	bw     *bufio.Writer
	ctx    *connCtx
	r      *http.Request // reused, with ctx
	hdr    http.Header   // reused
	vals   []string      // backing of hdr's values, reused
	rq     reqHead
	body   fastBody
	w      fastWriter
	remote string
	// pend holds a byte the client-gone watcher read (a pipelined
	// request's first): read before the connection's next bytes. hasPend
	// says so (the watcher's goroutine writes it).
	pend    []byte
	hasPend atomic.Bool
	// hdrDeadline is the read-header deadline of the head being read
	// (zero: none), kept on a hand-off (handoffConn).
	hdrDeadline time.Time
	idle        atomic.Bool // waiting for a request: drain may close it
}

func newFastConn(l *limitListener, c *clientConn) *fastConn {
	fc := &fastConn{p: l.p, l: l, c: c, hdr: http.Header{}, remote: c.RemoteAddr().String()}
	fc.ctx = &connCtx{fc: fc, done: make(chan struct{})}
	fc.r = new(http.Request).WithContext(fc.ctx)
	fc.br = bufio.NewReaderSize(fastReader{fc}, readBufSize)
	fc.body.fc = fc
	fc.w.fc = fc
	fc.idle.Store(true)
	return fc
}

// fastReader reads the connection for fc.br: first a byte the watcher
// read, if any.
type fastReader struct{ fc *fastConn }

func (r fastReader) Read(b []byte) (int, error) {
	if r.fc.hasPend.Load() {
		n := copy(b, r.fc.pend)
		r.fc.pend = r.fc.pend[n:]
		if len(r.fc.pend) == 0 {
			r.fc.hasPend.Store(false)
		}
		return n, nil
	}
	return r.fc.c.Read(b)
}

// serve serves requests until the connection closes, fails, is to close
// after a reply, or is handed to net/http.
func (fc *fastConn) serve() {
	p := fc.p
	handedOff := false
	defer func() {
		fc.l.fast.remove(fc)
		if !handedOff {
			if fc.body.n > 0 {
				fc.lingerClose()
			}
			_ = fc.c.Close()
		}
	}()
	if d := p.cfg.ReadHeaderTimeout; d > 0 {
		fc.hdrDeadline = time.Now().Add(d)
		_ = fc.c.SetReadDeadline(fc.hdrDeadline)
	}
	for first := true; ; first = false {
		if !first {
			if d := p.cfg.IdleTimeout; d > 0 {
				_ = fc.c.SetReadDeadline(time.Now().Add(d))
			} else {
				_ = fc.c.SetReadDeadline(time.Time{})
			}
			fc.idle.Store(true)
		}
		if fc.l.fast.draining.Load() {
			return
		}
		if fc.br.Buffered() == 0 && !fc.hasPend.Load() {
			if _, err := fc.br.Peek(1); err != nil {
				return
			}
		}
		fc.idle.Store(false)
		if d := p.cfg.ReadHeaderTimeout; !first && d > 0 {
			fc.hdrDeadline = time.Now().Add(d)
			_ = fc.c.SetReadDeadline(fc.hdrDeadline)
		}
		n, ok, err := fc.readHead()
		if err != nil {
			return // as net/http: a timeout or a close before the head is whole gets no reply
		}
		if !ok || fc.rq.length > 0 && fc.rq.length > p.cfg.MaxBufferedBody {
			// Not ours, or a body that streams (larger than the buffered
			// ones, which are read whole before anything waits on a
			// target): net/http's from here.
			handedOff = true
			fc.handoff()
			return
		}
		_ = fc.c.SetReadDeadline(time.Time{})
		if !fc.serveOne(n) {
			return
		}
	}
}

// lingerTime bounds how long a request body left unread is read and
// dropped before a close (net/http's figure).
const lingerTime = 500 * time.Millisecond

// lingerClose prepares the close of a connection whose request body was
// left unread (a refusal): it ends the sending side, then reads what the
// client still sends, for up to lingerTime and lingerBytes, so that the
// close does not reset the connection before the client has read the
// reply (a close with unread data sends RST, and the client's stack may
// drop the reply it had not read yet). net/http's server does the same
// (closeWriteAndWait), sleeping rather than reading.
func (fc *fastConn) lingerClose() {
	if cw, ok := fc.c.Conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = fc.c.SetReadDeadline(time.Now().Add(lingerTime))
	_, _ = io.Copy(io.Discard, fc.br)
}

// readHead reads until the buffered bytes hold a whole head the parse
// takes (ok) or refuses, or the buffer is full (not ok: net/http's).
func (fc *fastConn) readHead() (n int, ok bool, err error) {
	for {
		b, _ := fc.br.Peek(fc.br.Buffered())
		n, st := fc.rq.parse(b)
		switch {
		case st == reqParsed:
			return n, true, nil
		case st == reqRefused || len(b) >= readBufSize:
			return 0, false, nil
		}
		if _, err := fc.br.Peek(len(b) + 1); err != nil {
			if len(b) > 0 && !isTimeout(err) {
				// Part of a head, then the end: net/http answers that.
				return 0, false, nil
			}
			return 0, false, err // a timeout gets no reply, as from net/http
		}
	}
}

// handoff hands the connection, with what was read of it, to net/http.
func (fc *fastConn) handoff() {
	b, _ := fc.br.Peek(fc.br.Buffered())
	pre := append([]byte(nil), b...)
	if fc.hasPend.Load() {
		pre = append(pre, fc.pend...)
	}
	hc := &handoffConn{clientConn: fc.c, pre: pre}
	if !fc.hdrDeadline.IsZero() {
		hc.hdrLimit.Store(fc.hdrDeadline.UnixNano())
	}
	fc.l.handoff(hc)
}

// serveOne serves the request whose head is the first n buffered bytes.
// It says whether the connection may serve another.
func (fc *fastConn) serveOne(n int) (keep bool) {
	r := fc.fillRequest()
	fc.br.Discard(n)
	w := &fc.w
	w.reset(r)
	aborted := false
	func() {
		defer func() {
			if v := recover(); v != nil {
				aborted = true
				if v != http.ErrAbortHandler {
					const size = 64 << 10
					buf := make([]byte, size)
					buf = buf[:runtime.Stack(buf, false)]
					fc.p.log.Error("panic serving", "client", fc.remote, "panic", fmt.Sprint(v), "stack", string(buf))
				}
			}
		}()
		fc.p.ServeHTTP(w, r)
	}()
	fc.ctx.endRequest()
	if aborted {
		// As net/http: what is still buffered is dropped (a reply not yet
		// sent is not sent at all; one under way is cut).
		fc.bw.Reset(fc.c)
		return false
	}
	w.finish()
	if err := fc.bw.Flush(); err != nil {
		return false
	}
	return !w.closeAfter && fc.body.n == 0 && fc.ctx.Err() == nil
}

// fillRequest fills the reused request from the parsed head.
func (fc *fastConn) fillRequest() *http.Request {
	rq := &fc.rq
	clear(fc.hdr)
	vals := fc.vals[:0]
	for _, f := range rq.fields {
		if f.Key == "Host" {
			continue // net/http's server keeps it only in Host
		}
		if have, ok := fc.hdr[f.Key]; ok {
			fc.hdr[f.Key] = append(have, f.Value)
			continue
		}
		vals = append(vals, f.Value)
		fc.hdr[f.Key] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	fc.vals = vals
	r := fc.r
	if r.URL == nil {
		r.URL = new(url.URL)
	}
	u := r.URL
	*u = url.URL{}
	u.Path, u.RawQuery, u.ForceQuery = rq.path, rq.query, rq.forceQuery
	r.Method = rq.method
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.Header = fc.hdr
	r.ContentLength = rq.length
	r.Body = http.NoBody
	fc.body.n, fc.body.err = rq.length, nil
	if rq.length > 0 {
		r.Body = &fc.body
	}
	r.GetBody = nil
	r.TransferEncoding = nil
	r.Close = rq.close
	r.Host = rq.host
	r.Form, r.PostForm, r.MultipartForm = nil, nil, nil
	r.Trailer = nil
	r.RemoteAddr = fc.remote
	r.RequestURI = rq.uri
	r.TLS = nil
	r.Response = nil
	r.Pattern = ""
	return r
}

// fastBody is a request body of known length read from the connection.
type fastBody struct {
	fc  *fastConn
	n   int64 // bytes left
	err error
}

func (b *fastBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.fc.br.Read(p)
	b.n -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// Close leaves what is unread: the connection is not reused then.
func (b *fastBody) Close() error { return nil }

// fastWriter is the http.ResponseWriter of the fast loop.
type fastWriter struct {
	fc         *fastConn
	r          *http.Request
	h          http.Header
	status     int
	wroteHead  bool // the final status is set
	headOut    bool // the head is in the write buffer
	head       bool // a HEAD request: writes are eaten
	noBody     bool // 1xx, 204, 304
	chunked    bool
	cl         int64 // Content-Length the handler set; -1 none
	written    int64
	pend       []byte // a body of unknown length held (bufferBeforeChunking)
	pending    bool   // the head waits for the end of the handler or the buffer to fill
	closeAfter bool
	hb         []byte // head scratch
}

func (w *fastWriter) reset(r *http.Request) {
	if w.h == nil {
		w.h = http.Header{}
	}
	clear(w.h)
	w.r = r
	w.status, w.wroteHead, w.headOut, w.head, w.noBody, w.chunked = 0, false, false, r.Method == http.MethodHead, false, false
	w.cl, w.written, w.pend, w.pending = -1, 0, w.pend[:0], false
	w.closeAfter = r.Close
	if w.fc.bw == nil {
		w.fc.bw = bufio.NewWriterSize(w.fc.c, 4<<10)
	}
}

func (w *fastWriter) Header() http.Header { return w.h }

// SetReadDeadline and SetWriteDeadline are http.ResponseController's.
func (w *fastWriter) SetReadDeadline(t time.Time) error  { return w.fc.c.SetReadDeadline(t) }
func (w *fastWriter) SetWriteDeadline(t time.Time) error { return w.fc.c.SetWriteDeadline(t) }

func (w *fastWriter) WriteHeader(code int) {
	if w.wroteHead {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// Informational: out now, the final status follows.
		w.hb = w.appendStatus(w.hb[:0], code)
		w.hb = w.appendFields(w.hb, nil)
		w.hb = append(w.hb, "\r\n"...)
		_, _ = w.fc.bw.Write(w.hb)
		_ = w.fc.bw.Flush()
		return
	}
	w.wroteHead, w.status = true, code
	h := w.h
	delete(h, "Transfer-Encoding")
	if code == http.StatusNotModified || code == http.StatusNoContent || code < 200 {
		w.noBody = true
		if code == http.StatusNotModified {
			delete(h, "Content-Type")
		}
		delete(h, "Content-Length")
		w.writeHead()
		return
	}
	if v := h["Content-Length"]; len(v) > 0 {
		cl, err := strconv.ParseInt(v[0], 10, 64)
		if err == nil && cl >= 0 {
			w.cl = cl
			w.writeHead()
			return
		}
		delete(h, "Content-Length")
	}
	w.pending = true
}

// writeHead writes the head into the write buffer: the status line, the
// handler's headers (without nil ones and trailer declarations of
// TrailerPrefix), Date, then the framing and Connection the loop chose.
func (w *fastWriter) writeHead() {
	w.headOut = true
	h := w.h
	if c := h["Connection"]; len(c) > 0 && c[0] == "close" || w.fc.l.fast.draining.Load() {
		w.closeAfter = true
	}
	if !w.noBody && !w.head && w.fc.body.n > 0 {
		// The request's body is not all read: the next bytes are not a
		// request. (net/http reads up to 256 KiB of it to keep the
		// connection; the fast loop closes.)
		w.closeAfter = true
	}
	b := w.appendStatus(w.hb[:0], w.status)
	b = w.appendFields(b, nil)
	if h["Date"] == nil {
		b = appendDate(b, time.Now())
	}
	if w.chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if w.closeAfter && (len(h["Connection"]) == 0 || h["Connection"][0] != "close") {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	w.hb = b
	_, _ = w.fc.bw.Write(b)
}

func (w *fastWriter) appendStatus(b []byte, code int) []byte {
	if code == http.StatusOK {
		return append(b, "HTTP/1.1 200 OK\r\n"...)
	}
	b = strconv.AppendInt(append(b, "HTTP/1.1 "...), int64(code), 10)
	b = append(append(append(b, ' '), http.StatusText(code)...), "\r\n"...)
	return b
}

// appendFields appends the header's fields as net/http's Header.Write
// does (invalid names left out, line breaks in values made spaces), but
// for the trailers, or only the named ones (only non-nil).
func (w *fastWriter) appendFields(b []byte, only map[string]bool) []byte {
	for k, vv := range w.h {
		if only != nil && !only[k] || only == nil && strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		name := strings.TrimPrefix(k, http.TrailerPrefix)
		if !validFieldName(name) {
			continue
		}
		for _, v := range vv {
			if strings.ContainsAny(v, "\r\n") {
				v = strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(v)
			}
			v = textproto.TrimString(v)
			b = append(append(append(append(b, name...), ": "...), v...), "\r\n"...)
		}
	}
	return b
}

func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return false
		}
	}
	return true
}

func (w *fastWriter) Write(b []byte) (int, error) {
	if !w.wroteHead {
		w.WriteHeader(http.StatusOK)
	}
	if w.noBody {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(b))
	if w.cl >= 0 && w.written > w.cl {
		return 0, http.ErrContentLength
	}
	if w.pending {
		if len(w.pend)+len(b) <= bufferBeforeChunking {
			w.pend = append(w.pend, b...)
			return len(b), nil
		}
		w.startStream()
	}
	if w.head {
		return len(b), nil
	}
	if w.chunked {
		if len(b) == 0 {
			return 0, nil
		}
		w.hb = append(strconv.AppendInt(w.hb[:0], int64(len(b)), 16), "\r\n"...)
		_, _ = w.fc.bw.Write(w.hb)
		if _, err := w.fc.bw.Write(b); err != nil {
			return 0, err
		}
		_, err := w.fc.bw.WriteString("\r\n")
		return len(b), err
	}
	return w.fc.bw.Write(b)
}

func (w *fastWriter) WriteString(s string) (int, error) {
	return w.Write([]byte(s))
}

// startStream sends the head of a reply of unknown length before its end:
// chunked (a HEAD reply: neither length nor chunking), then what was held.
func (w *fastWriter) startStream() {
	w.pending = false
	w.chunked = !w.head
	w.writeHead()
	if len(w.pend) > 0 {
		pend := w.pend
		w.pend = w.pend[:0]
		w.written -= int64(len(pend))
		_, _ = w.Write(pend)
	}
}

func (w *fastWriter) Flush() {
	_ = w.FlushError()
}

func (w *fastWriter) FlushError() error {
	if !w.wroteHead {
		w.WriteHeader(http.StatusOK)
	}
	if w.pending {
		w.startStream()
	}
	return w.fc.bw.Flush()
}

// finish ends the reply after the handler returned: a held body goes out
// with its length (chunked when trailers are declared), a chunked one
// gets its last chunk and trailers.
func (w *fastWriter) finish() {
	if !w.wroteHead {
		w.WriteHeader(http.StatusOK)
	}
	if w.pending {
		if w.h["Trailer"] != nil || w.hasPrefixedTrailers() {
			w.startStream()
		} else {
			w.pending = false
			if !w.head || len(w.pend) > 0 {
				w.h["Content-Length"] = []string{strconv.Itoa(len(w.pend))}
			}
			w.writeHead()
			if !w.head {
				_, _ = w.fc.bw.Write(w.pend)
			}
		}
	}
	switch {
	case w.chunked:
		b := append(w.hb[:0], "0\r\n"...)
		b = w.appendFields(b, w.trailerNames())
		b = append(b, "\r\n"...)
		w.hb = b
		_, _ = w.fc.bw.Write(b)
	case w.cl >= 0 && !w.head && !w.noBody && w.written != w.cl:
		w.closeAfter = true // too short: the client sees the cut
	}
}

func (w *fastWriter) hasPrefixedTrailers() bool {
	for k := range w.h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

// trailerNames are the keys of w.h sent as trailers: those the Trailer
// header declared, and those of TrailerPrefix.
func (w *fastWriter) trailerNames() map[string]bool {
	names := map[string]bool{}
	for _, v := range w.h["Trailer"] {
		for _, k := range strings.Split(v, ",") {
			if k = textproto.TrimString(k); k != "" {
				names[http.CanonicalHeaderKey(k)] = true
			}
		}
	}
	for k := range w.h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			names[k] = true
		}
	}
	for k := range names {
		if k == "Trailer" || k == "Content-Length" || k == "Transfer-Encoding" {
			delete(names, k)
		}
	}
	return names
}

// dateLine is the Date header of the current second, made once a second.
type dateLine struct {
	sec  int64
	line []byte
}

var curDate atomic.Pointer[dateLine]

func appendDate(b []byte, now time.Time) []byte {
	sec := now.Unix()
	d := curDate.Load()
	if d == nil || d.sec != sec {
		d = &dateLine{sec: sec, line: now.UTC().AppendFormat([]byte("Date: "), http.TimeFormat)}
		d.line = append(d.line, "\r\n"...)
		curDate.Store(d)
	}
	return append(b, d.line...)
}

// connCtx is the fast loop's request context, one per connection: done
// when the client went away while a request was served. It implements
// context.AfterFunc's hook: a function registered starts the watcher, a
// one-byte read of the client; stopping the last one aborts that read.
type connCtx struct {
	fc       *fastConn
	done     chan struct{}
	watched  chan struct{} // closed when the running watcher ends
	mu       sync.Mutex
	err      error
	fns      []afterFn
	next     uint64
	timer    *time.Timer // starts the watcher (startWatch)
	watching bool
	stopping bool
}

var _ upstream.AfterFuncer = (*connCtx)(nil)

type afterFn struct {
	id uint64
	f  func()
}

func (c *connCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *connCtx) Done() <-chan struct{}       { return c.done }
func (c *connCtx) Value(any) any               { return nil }

func (c *connCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// AfterFunc is what context.AfterFunc (and a child context) call, and the
// fast engine's abort hook directly (upstream.AfterFuncer).
func (c *connCtx) AfterFunc(f func()) func() bool {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	c.next++
	id := c.next
	c.fns = append(c.fns, afterFn{id, f})
	// The watcher starts only if the wait lasts backgroundReadDelay (as
	// net/http's deferred background read, clientConn), and not while
	// the request's body is unread: it would take the body's bytes (a
	// client that leaves then fails the body's read).
	if !c.watching && c.fc.body.n == 0 {
		if c.timer == nil {
			c.timer = time.AfterFunc(backgroundReadDelay, c.startWatch)
		} else {
			c.timer.Reset(backgroundReadDelay)
		}
	}
	c.mu.Unlock()
	return func() bool { return c.stop(id) }
}

// startWatch starts the watcher, on the timer's goroutine, if a function
// is still registered.
func (c *connCtx) startWatch() {
	c.mu.Lock()
	if len(c.fns) == 0 || c.watching || c.err != nil {
		c.mu.Unlock()
		return
	}
	c.watching, c.stopping = true, false
	c.watched = make(chan struct{})
	c.mu.Unlock()
	c.watch()
}

func (c *connCtx) stop(id uint64) bool {
	c.mu.Lock()
	i := 0
	for i < len(c.fns) && c.fns[i].id != id {
		i++
	}
	if i == len(c.fns) {
		c.mu.Unlock()
		return false // ran, or stopped before
	}
	c.fns = append(c.fns[:i], c.fns[i+1:]...)
	if len(c.fns) > 0 {
		c.mu.Unlock()
		return true
	}
	if !c.watching {
		if c.timer != nil {
			c.timer.Stop() // if it fires meanwhile, startWatch finds nothing to watch for
		}
		c.mu.Unlock()
		return true
	}
	c.abortWatch()
	_ = c.fc.c.SetReadDeadline(time.Time{}) // lazily: no system call
	return true
}

// endRequest drops what is still registered when a request ends (each
// registration is stopped by its owner; this is a safety net): no
// watcher may read the client while the loop reads the next request.
func (c *connCtx) endRequest() {
	c.mu.Lock()
	if len(c.fns) == 0 && !c.watching {
		c.mu.Unlock()
		return
	}
	c.fns = nil
	if !c.watching {
		if c.timer != nil {
			c.timer.Stop()
		}
		c.mu.Unlock()
		return
	}
	c.abortWatch()
}

// abortWatch ends the running watcher's read and waits for it to end.
// c.mu is held, and released.
func (c *connCtx) abortWatch() {
	c.stopping = true
	watched := c.watched
	c.mu.Unlock()
	_ = c.fc.c.SetReadDeadline(time.Unix(1, 0))
	<-watched
}

// watch reads one byte of the client: an error (not the abort of stop)
// means it went away; a byte is kept for the next request.
func (c *connCtx) watch() {
	var b [1]byte
	n, err := c.fc.c.readDirect(b[:])
	c.mu.Lock()
	if n > 0 {
		c.fc.pend = append(c.fc.pend, b[0])
		c.fc.hasPend.Store(true)
	}
	var fns []afterFn
	if n == 0 && err != nil && !c.stopping && !isTimeout(err) {
		c.err = context.Canceled
		fns, c.fns = c.fns, nil
		close(c.done)
	}
	c.watching = false
	close(c.watched)
	c.mu.Unlock()
	for _, f := range fns {
		f.f()
	}
}
