// Package upstream is the fast HTTP/1.1 hop to an upstream that
// stickyproxy's fast engine and the SP's gateway share: a pool of
// connections per upstream, driven from the request's own goroutine, with
// the common reply head parsed in place (replyhead.go). A caller keeps
// httputil.ReverseProxy for what Takes refuses (upgrades, trailers, large
// or unknown-length bodies, https).
package upstream

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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/samlha/samlha/stickyproxy/forward"
	"github.com/samlha/samlha/stickyproxy/httphead"
)

// The engine is an HTTP/1.1 client driven from the request's own
// goroutine: it takes an idle upstream connection (or dials one), writes the
// request, reads the reply's head (the common kind in place, replyhead.go;
// any other with http.ReadResponse, which does the framing: chunked, HEAD,
// 204/304, close-delimited) and copies the reply to the client. Unlike http.Transport it starts no goroutines per connection
// and hands nothing between goroutines, which is where a plain
// ReverseProxy spends much of its time on a small machine.
//
// It takes the plain requests: no upgrade, no request trailers, a body of
// known length up to fastMaxBody (written before the reply is read, so a
// target that answers early without reading a large body cannot stall it),
// an http:// target. Everything else goes through httputil.ReverseProxy.

const (
	// MaxBody is the largest request body of known length the engine
	// takes (a body already in memory may be larger).
	MaxBody = 1 << 20
	// idleCheckAfter is how long a pooled connection may sit idle before it
	// is checked for a close by the target before reuse.
	idleCheckAfter = 500 * time.Millisecond
	idleTimeout    = 90 * time.Second
)

// Takes says whether the engine can take r for cp's upstream: no upgrade,
// no trailers, and a body already in memory (buffered) of any size, else
// one of known length up to MaxBody.
func (cp *Pool) Takes(r *http.Request, buffered bool) bool {
	return cp.addr != "" && r.Trailer == nil && r.Header["Upgrade"] == nil &&
		(buffered || r.ContentLength >= 0 && r.ContentLength <= MaxBody)
}

// Plain says whether cp's upstream is plain http://, the only kind the
// engine takes (an https one goes through httputil.ReverseProxy).
func (cp *Pool) Plain() bool { return cp.addr != "" }

// Engine sends requests over Pools. Its fields are set before its first
// request and not changed after.
type Engine struct {
	// ResponseHeaderTimeout bounds writing a request and reading its
	// reply's head (0: no bound).
	ResponseHeaderTimeout time.Duration
	// Policy owns the forwarding headers: a client's are dropped, the
	// policy's are written.
	Policy *forward.Policy
	// Strip are request headers never sent on (nil: none); OnStrip, if
	// set, is called for each one dropped.
	Strip   *forward.Protected
	OnStrip func()
	// URIFromURL writes the request's URL (r.URL.RequestURI(), as
	// httputil.ReverseProxy does) as the request target, rather than the
	// target as the client sent it.
	URIFromURL bool
	// FlushWrites flushes each write of a reply's body to the client but
	// the last (the server flushes that one when the handler returns), as
	// ReverseProxy's FlushInterval -1 does; without it, only streams
	// (text/event-stream, unknown length) are flushed as they come.
	FlushWrites bool
	// Bufs holds *[]byte copy buffers (32 KiB).
	Bufs *sync.Pool
}

// Exchange is what the engine asks of its caller about one request.
type Exchange interface {
	// Sent is called when an attempt starts, Answered when the reply's head
	// has been read, d after the attempt's Sent.
	Sent(t time.Time)
	Answered(d time.Duration)
	// HasBody says whether the request has a body; BodyRead whether any
	// of a streamed body has been read (it cannot be sent again);
	// BodyFailed whether reading the client's body failed.
	HasBody() bool
	BodyRead() bool
	BodyFailed() bool
	// AppendHead appends the caller's own request header lines, after
	// the forwarding headers.
	AppendHead(b []byte) []byte
	// Decorate adds the caller's headers to the reply's just before they
	// are written.
	Decorate(h http.Header, status int)
}

// Buffered is a request body held whole in memory: it goes out with the
// request's head in one write.
type Buffered interface {
	Rest() []byte // what has not been sent
	Consume()     // all of it has been sent
}

// Pool is the connections to one upstream. Init it before use.
type Pool struct {
	// Host, if set, is the Host header of every request sent over the
	// pool; empty: the request's own.
	Host string

	addr   string // host:port; empty for https targets (not handled by the engine)
	max    int
	dialer net.Dialer
	mu     sync.Mutex
	idle   []*upConn
	// misses counts the replies not there yet at the first read, and the
	// first reads skipped since, from the last one that was (readHead).
	misses atomic.Uint32
}

type upConn struct {
	c         net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer // for bodies streamed from the client
	head      []byte        // the request head being written, reused
	abort     func()        // cuts the exchange short (the client left); made once
	idleSince time.Time
	nread     int64 // bytes read from c, to tell "closed before any reply byte"
	limit     int64 // while reading a reply's head: nread may not pass it (0: no limit)
	rh        replyHead

	// dl is the deadline set on c (zero: none). It is moved only when it
	// would fire before ResponseHeaderTimeout or later than a slack past
	// it (upDeadline), and lifted only before a read of a body would wait
	// (Read): not twice per request.
	dl time.Time
	// While an exchange runs: the client's request context, and the stop
	// of the hook that aborts the exchange when the client goes away. The
	// hook is armed only before something that may wait on the target (a
	// read that finds nothing yet, a request body), since under load the
	// whole reply is usually there at the first read, and arming costs an
	// allocation and two locks.
	ctx      context.Context
	stop     func() bool
	headDone bool // the reply's head is read: lift the deadline before waiting

	// readNow's: the connection's syscall.RawConn and read function (nil:
	// not available), its arguments and results.
	rc       syscall.RawConn
	readFn   func(uintptr) bool
	rbuf     []byte
	rn       int
	rerr     error
	nonblock bool // Read does not wait: errWouldBlock if nothing has arrived
}

// errWouldBlock is a read without waiting that found nothing.
var errWouldBlock = errors.New("would block")

// arm arms the abort hook for the running exchange, if it is not armed.
func (uc *upConn) arm() {
	if uc.stop == nil && uc.ctx != nil {
		if af, ok := uc.ctx.(AfterFuncer); ok {
			// A serve loop's request context with its own hook, without
			// context.AfterFunc's child context (four allocations).
			uc.stop = af.AfterFunc(uc.abort)
			return
		}
		uc.stop = context.AfterFunc(uc.ctx, uc.abort)
	}
}

// AfterFuncer is a request context with its own AfterFunc, with
// context.AfterFunc's meaning (stickyproxy's fast serve loop has one): the
// engine arms its abort hook through it directly.
type AfterFuncer interface {
	AfterFunc(func()) (stop func() bool)
}

// release ends the exchange's hold on uc: it disarms the hook and says
// whether the hook has not run (false: the connection was aborted, and
// its deadline is in the past).
func (uc *upConn) release() bool {
	ok := uc.stop == nil || uc.stop()
	uc.stop, uc.ctx, uc.headDone = nil, nil, false
	return ok
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
	var n int
	var err error
	if uc.nonblock {
		n, err = uc.readNow(p)
	} else {
		uc.arm()
		if uc.headDone && !uc.dl.IsZero() {
			// A body that takes its time is not bounded by the head's
			// deadline.
			uc.c.SetDeadline(time.Time{})
			uc.dl = time.Time{}
		}
		n, err = uc.c.Read(p)
	}
	uc.nread += int64(n)
	return n, err
}

// upDeadline makes sure uc's deadline fires between ResponseHeaderTimeout
// and that plus a slack (an eighth, at most a second) after sent, setting
// it only when it does not: once a slack per connection under load, not
// twice per request.
func (e *Engine) upDeadline(uc *upConn, sent time.Time) {
	rht := e.ResponseHeaderTimeout
	if rht <= 0 {
		return
	}
	want := sent.Add(rht)
	slack := min(rht/8, time.Second)
	if uc.dl.IsZero() || uc.dl.Before(want) || uc.dl.After(want.Add(slack)) {
		uc.dl = want.Add(slack)
		uc.c.SetDeadline(uc.dl)
	}
}

// Init readies cp for the upstream u (http only: for another scheme,
// Takes is false), keeping at most max idle connections.
func (cp *Pool) Init(u *url.URL, max int) {
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
// failure is returned as *DialError. check asks to check any idle connection
// for a close by the target, however briefly it was idle; fresh asks for a
// new connection.
func (cp *Pool) get(ctx context.Context, now time.Time, check, fresh bool) (*upConn, bool, error) {
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
		if !uc.dl.IsZero() && !uc.dl.After(now) {
			// Left from the last exchange and passed while idle: an
			// expired deadline would fail the check below, and any read.
			uc.c.SetDeadline(time.Time{})
			uc.dl = time.Time{}
		}
		if idle > idleTimeout || (check || idle > idleCheckAfter) && !connAlive(uc.c) {
			uc.c.Close()
			continue
		}
		return uc, true, nil
	}
	c, err := cp.dialer.DialContext(ctx, "tcp", cp.addr)
	if err != nil {
		return nil, false, &DialError{err}
	}
	uc := &upConn{c: c, bw: bufio.NewWriterSize(c, 8<<10)}
	uc.br = bufio.NewReaderSize(uc, 8<<10)
	uc.abort = func() { c.SetDeadline(time.Unix(1, 0)) }
	uc.initRaw()
	return uc, false, nil
}

func (cp *Pool) put(uc *upConn, now time.Time) {
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

// CloseIdle closes the idle connections.
func (cp *Pool) CloseIdle() {
	cp.mu.Lock()
	idle := cp.idle
	cp.idle = nil
	cp.mu.Unlock()
	for _, uc := range idle {
		uc.c.Close()
	}
}

// dropOnRequest are request headers the fast engine writes itself (Host,
// Content-Length) or never sends (Expect: the proxy answers 100-continue).
func dropOnRequest(k string) bool {
	return k == "Host" || k == "Content-Length" || k == "Expect"
}

// errStaleConn is a reused connection that the target had closed before
// any of the request could matter: retried on a fresh connection.
var errStaleConn = errors.New("reused connection closed by target")

// DialError marks a failure to connect: nothing was sent.
type DialError struct{ Err error }

func (e *DialError) Error() string { return "dial: " + e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// Forward forwards r over pool, for a request pool.Takes. An error before
// x.Decorate was called means nothing was written to w.
func (e *Engine) Forward(w http.ResponseWriter, r *http.Request, pool *Pool, x Exchange) error {
	err := e.fastOnce(w, r, pool, x, false)
	if err == errStaleConn && r.Context().Err() == nil {
		// Once more, on a new connection.
		err = e.fastOnce(w, r, pool, x, true)
	}
	return err
}

// fastOnce is one attempt: a connection, the request, the reply's head,
// then the reply to the client.
func (e *Engine) fastOnce(w http.ResponseWriter, r *http.Request, pool *Pool, x Exchange, fresh bool) error {
	sent := time.Now()
	x.Sent(sent)
	uc, reused, err := pool.get(r.Context(), sent, !replayable(r), fresh)
	if err != nil {
		return err
	}
	// Abort the exchange if the client goes away (uc.arm, before anything
	// that may wait). The hook is disarmed (release) before the connection
	// goes back to the pool, and a connection whose abort ran is not
	// pooled: its deadline is in the past.
	uc.ctx = r.Context()
	resp, err := e.fastExchange(uc, r, pool, x, sent, reused)
	if err != nil {
		uc.release()
		return err
	}
	x.Answered(time.Since(sent))
	closeAfter := false
	if resp == nil { // the head is in uc.rh
		err = e.fastReplyHead(w, x, uc)
		closeAfter = uc.rh.close
	} else {
		err = e.fastReply(w, r, x, resp)
		closeAfter = resp.Close
	}
	if err != nil {
		uc.c.Close()
		uc.release()
		return err
	}
	// Bytes beyond the reply (a 204 or 304 with a body, a miscounted
	// length) would be read as the next reply: such a connection is not
	// reused, as http.Transport drops an "unsolicited response".
	if !uc.release() || closeAfter || r.Close || uc.br.Buffered() > 0 {
		uc.c.Close()
	} else {
		pool.put(uc, time.Now())
	}
	return nil
}

// fastExchange writes r on uc and reads the reply's head: into uc.rh
// (resp nil) when it is of the common kind, else with http.ReadResponse.
// On an error uc is closed. errStaleConn means the target had closed a
// reused connection before the request could matter.
func (e *Engine) fastExchange(uc *upConn, r *http.Request, pool *Pool, x Exchange, sent time.Time, reused bool) (*http.Response, error) {
	// One deadline for writing the request (a target that does not take
	// the body would stall it) and reading the reply's head.
	e.upDeadline(uc, sent)
	if x.HasBody() {
		uc.arm() // writing the body may wait on the target
	}
	werr := e.writeRequest(uc, r, pool, x)
	switch {
	case werr == nil:
		// Let the other requests that are ready run before reading the
		// reply: under load the target has usually answered by then, which
		// saves a read that would find nothing (EAGAIN) and a trip through
		// the poller. When nothing else is ready this returns at once.
		// (Measured: 7 to 20% more requests per CPU second at 256
		// connections.)
		runtime.Gosched()
	case x.BodyFailed():
		uc.c.Close()
		return nil, fmt.Errorf("reading request body: %w", werr)
	case reused && !x.BodyRead() && replayable(r):
		uc.c.Close()
		return nil, errStaleConn
	}
	// After a write error the target may have answered (413, 400...) and
	// closed before taking the whole body: read its reply, if any, as
	// http.Transport does.
	resp, stale, err := readHead(pool, uc, r)
	if err != nil {
		uc.c.Close()
		if werr != nil {
			return nil, fmt.Errorf("writing request: %w", werr)
		}
		if stale && reused && !x.BodyRead() && replayable(r) {
			return nil, errStaleConn
		}
		return nil, fmt.Errorf("reading response: %w", err)
	}
	if werr != nil {
		// The request was cut short: never reuse.
		if resp == nil {
			uc.rh.close = true
		} else {
			resp.Close = true
		}
	}
	if resp != nil && resp.StatusCode == http.StatusSwitchingProtocols {
		uc.c.Close()
		return nil, errors.New("target switched protocols on a request that did not ask to upgrade")
	}
	return resp, nil
}

// readHead reads the reply's head: into uc.rh (resp nil) if it is of the
// common kind (replyHead.parse), else with http.ReadResponse, skipping 1xx
// replies (100 Continue is the proxy's own to send; others are
// informational and dropped), with the head bounded by
// MaxResponseHeaderBytes. stale says the target closed (or reset) the
// connection before any byte of a reply.
func readHead(cp *Pool, uc *upConn, r *http.Request) (resp *http.Response, stale bool, err error) {
	before := uc.nread
	uc.limit = before + MaxResponseHeaderBytes + int64(uc.br.Size())
	defer func() { uc.limit = 0 }()
	// First without waiting: if the reply is there, the exchange may end
	// without arming the abort hook (Read arms it before it waits). Under
	// load it usually is; when it is not (a light load, a slow target),
	// the attempt is a wasted read(2), so after 8 misses in a row only one
	// request in 4 tries (not fewer: misses come in bursts when the proxy
	// loses its CPU for a while, and each skip costs the hook).
	if m := cp.misses.Load(); m < 8 || m%4 == 0 {
		uc.nonblock = true
		_, err = uc.br.Peek(1)
		uc.nonblock = false
		if err == errWouldBlock {
			cp.misses.Add(1)
			_, err = uc.br.Peek(1)
		} else if m != 0 {
			cp.misses.Store(0)
		}
	} else {
		cp.misses.Add(1)
		_, err = uc.br.Peek(1)
	}
	if err != nil {
		// As http.ReadResponse reports them: a clean close as
		// io.ErrUnexpectedEOF, a reset as ECONNRESET.
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, uc.nread == before && (errors.Is(err, io.ErrUnexpectedEOF) || isReset(err)), err
	}
	if r.Method != http.MethodHead {
		b, _ := uc.br.Peek(uc.br.Buffered())
		if n, ok := uc.rh.parse(b); ok {
			uc.br.Discard(n)
			uc.headDone = true
			return nil, false, nil
		}
	}
	for {
		resp, err := http.ReadResponse(uc.br, r)
		if err != nil {
			// http.ReadResponse reports a clean close as
			// io.ErrUnexpectedEOF, a reset as ECONNRESET.
			stale := uc.nread == before && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err))
			return nil, stale, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			uc.headDone = true
			return resp, false, nil
		}
	}
}

// fastReplyHead is fastReply for a head parsed in place (uc.rh), whose
// body of rh.length bytes is read from uc.br: what is buffered already
// goes to the client from the read buffer.
func (e *Engine) fastReplyHead(w http.ResponseWriter, x Exchange, uc *upConn) error {
	rh := &uc.rh
	h := w.Header()
	h["Content-Type"] = nil // none from the target: none sniffed (see fastReply)
	vals := make([]string, len(rh.fields))
	for i, f := range rh.fields {
		if !forward.ForwardableWith(rh.conn, f.Key) {
			continue
		}
		vals[i] = f.Value
		if seenKey(rh.fields[:i], f.Key) {
			h[f.Key] = append(h[f.Key], f.Value)
		} else {
			h[f.Key] = vals[i : i+1 : i+1]
		}
	}
	if h["Content-Length"] == nil {
		h["Content-Length"] = []string{strconv.FormatInt(rh.length, 10)}
	}
	x.Decorate(h, rh.status)
	w.WriteHeader(rh.status)
	rerr, werr := e.copyLength(w, uc.br, rh.length, strings.HasPrefix(rh.ctype, "text/event-stream"))
	switch {
	case rerr != nil:
		return fmt.Errorf("reading response body: %w", rerr)
	case werr != nil:
		return fmt.Errorf("writing response body to client: %w", werr)
	}
	return nil
}

func seenKey(fs []httphead.Field, k string) bool {
	for _, f := range fs {
		if f.Key == k {
			return true
		}
	}
	return false
}

// copyLength copies n bytes from br to w, flushing after each write if
// flush (with FlushWrites, after each write but the last): first what br
// holds, written from its buffer, then the rest read into a pooled buffer.
func (e *Engine) copyLength(w http.ResponseWriter, br *bufio.Reader, n int64, flush bool) (rerr, werr error) {
	var fl http.Flusher
	if flush || e.FlushWrites {
		fl, _ = w.(http.Flusher)
	}
	var bufp *[]byte
	defer func() {
		if bufp != nil {
			e.Bufs.Put(bufp)
		}
	}()
	for n > 0 {
		var chunk []byte
		buffered := br.Buffered()
		if buffered > 0 {
			chunk, _ = br.Peek(int(min(int64(buffered), n)))
		} else {
			if bufp == nil {
				bufp = e.Bufs.Get().(*[]byte)
			}
			m, err := br.Read((*bufp)[:min(int64(len(*bufp)), n)])
			if m == 0 {
				if err == io.EOF || err == nil {
					err = io.ErrUnexpectedEOF
				}
				return err, nil
			}
			chunk = (*bufp)[:m]
		}
		_, werr = w.Write(chunk)
		if buffered > 0 {
			br.Discard(len(chunk))
		}
		if werr != nil {
			return nil, werr
		}
		n -= int64(len(chunk))
		if fl != nil && (flush || n > 0) {
			fl.Flush()
		}
	}
	return nil, nil
}

// fastReply writes the target's reply to the client: its end-to-end
// headers, the proxy's, the body (flushed as it comes when streamed) and
// its trailers.
func (e *Engine) fastReply(w http.ResponseWriter, r *http.Request, x Exchange, resp *http.Response) error {
	h := w.Header()
	// No Content-Type from the target means none to the client: a nil
	// value stops net/http from sniffing one from the body (which could
	// turn a target's untyped bytes into text/html).
	h["Content-Type"] = nil
	for k, vv := range resp.Header {
		if forward.Forwardable(resp.Header, k) {
			h[k] = vv
		}
	}
	if resp.ContentLength >= 0 && h["Content-Length"] == nil && r.Method != http.MethodHead {
		h["Content-Length"] = []string{strconv.FormatInt(resp.ContentLength, 10)}
	}
	for k := range resp.Trailer {
		h.Add("Trailer", k)
	}
	x.Decorate(h, resp.StatusCode)
	w.WriteHeader(resp.StatusCode)

	flush := resp.ContentLength < 0 || e.FlushWrites
	if ct := resp.Header["Content-Type"]; len(ct) > 0 && strings.HasPrefix(ct[0], "text/event-stream") {
		flush = true
	}
	bufp := e.Bufs.Get().(*[]byte)
	rerr, werr := copyBody(w, resp.Body, *bufp, flush)
	e.Bufs.Put(bufp)
	switch {
	case rerr != nil:
		return fmt.Errorf("reading response body: %w", rerr)
	case werr != nil:
		return fmt.Errorf("writing response body to client: %w", werr)
	}
	for k, vv := range resp.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	return nil
}

// copyBody copies src to w, flushing after each write if flush.
func copyBody(w http.ResponseWriter, src io.Reader, buf []byte, flush bool) (rerr, werr error) {
	var fl http.Flusher
	if flush {
		fl, _ = w.(http.Flusher)
	}
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr = w.Write(buf[:n]); werr != nil {
				return nil, werr
			}
			if fl != nil {
				fl.Flush()
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

// writeRequest writes r to uc as an HTTP/1.1 request: its end-to-end
// headers but those the forwarding policy owns and those stripped, the
// policy's, the caller's (x.AppendHead), and its body. The head is built
// in uc's buffer and written with the body, in one system call when the
// body fits.
func (e *Engine) writeRequest(uc *upConn, r *http.Request, pool *Pool, x Exchange) error {
	b := append(uc.head[:0], r.Method...)
	b = append(b, ' ')
	if uri := r.RequestURI; !e.URIFromURL && len(uri) > 0 && uri[0] == '/' {
		b = append(b, uri...)
	} else {
		b = appendRequestURI(b, r.URL)
	}
	host := pool.Host
	if host == "" {
		host = r.Host
	}
	b = append(append(append(b, " HTTP/1.1\r\nHost: "...), host...), "\r\n"...)
	for k, vv := range r.Header {
		if dropOnRequest(k) || !forward.Forwardable(r.Header, k) || e.Policy.Owns(k) {
			continue
		}
		if e.Strip.Match(k) {
			if e.OnStrip != nil {
				e.OnStrip()
			}
			continue
		}
		for _, v := range vv {
			b = append(append(append(append(b, k...), ": "...), v...), "\r\n"...)
		}
	}
	if te := r.Header["Te"]; len(te) > 0 && httpguts.HeaderValuesContainsToken(te, "trailers") {
		b = append(b, "Te: trailers\r\n"...)
	}
	b = e.Policy.Append(b, r)
	b = x.AppendHead(b)
	if r.ContentLength > 0 || r.ContentLength == 0 && (r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch) {
		b = strconv.AppendInt(append(b, "Content-Length: "...), r.ContentLength, 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	uc.head = b
	return uc.writeWithBody(b, r.Body, r.ContentLength)
}

// appendRequestURI appends u.RequestURI() to b, without allocating for
// the common URL (no opaque part, a path in its escaped form).
func appendRequestURI(b []byte, u *url.URL) []byte {
	if u.Opaque != "" {
		return append(b, u.RequestURI()...)
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	b = append(b, p...)
	if u.ForceQuery || u.RawQuery != "" {
		b = append(append(b, '?'), u.RawQuery...)
	}
	return b
}

// writeWithBody writes head and then n bytes of body. A body already in
// memory (Buffered) goes out with the head in one write.
func (uc *upConn) writeWithBody(head []byte, body io.Reader, n int64) error {
	if n <= 0 {
		_, err := uc.c.Write(head)
		return err
	}
	if bb, ok := body.(Buffered); ok && int64(len(bb.Rest())) == n {
		bufs := net.Buffers{head, bb.Rest()}
		_, err := bufs.WriteTo(uc.c)
		bb.Consume()
		return err
	}
	uc.bw.Reset(uc.c)
	uc.bw.Write(head)
	m, err := io.Copy(uc.bw, io.LimitReader(body, n))
	if err != nil {
		return err
	}
	if m != n {
		return fmt.Errorf("request body: %d of %d bytes", m, n)
	}
	return uc.bw.Flush()
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
