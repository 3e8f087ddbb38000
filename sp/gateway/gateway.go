// Package gateway is the SP in front of an application (DESIGN.md section
// 8): every path that is not the SP's own goes to the upstream, with a
// session, for a user the --allow rules admit, and with the identity in
// headers only the SP sets. A path is decided on in its one canonical form
// (package access); an API call without a session gets 401 and creates no
// login state; a browser is sent to log in and back.
package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"

	"github.com/crewjam/saml/samlsp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/samlha/samlha/sp/access"
	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/identity"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/stickyproxy/forward"
	"github.com/samlha/samlha/stickyproxy/upstream"
)

// DefaultUpstreamHeaderTimeout bounds how long the gateway waits for the
// upstream's response headers (Options.UpstreamHeaderTimeout).
const DefaultUpstreamHeaderTimeout = time.Minute

// Options configure a Gateway.
type Options struct {
	Upstream    *url.URL
	PublicPaths access.PublicPaths
	Allow       access.Rules
	// RootURL is the SP's public URL: the upstream is told it is its host
	// and scheme (X-Forwarded-Host, X-Forwarded-Proto), whatever Host the
	// client sent.
	RootURL *url.URL
	// TrustedProxies are the peers whose X-Forwarded-For is kept (and
	// appended to); from anyone else it is replaced.
	TrustedProxies forward.Trusted
	// Transport reaches the upstream; nil: a transport tuned for one busy
	// upstream, whose response headers must come within
	// UpstreamHeaderTimeout (default DefaultUpstreamHeaderTimeout).
	Transport             http.RoundTripper
	UpstreamHeaderTimeout time.Duration
	// FlushInterval is ReverseProxy's: 0 flushes server-sent events and
	// responses of unknown length at every write, -1 every write of every
	// response.
	FlushInterval time.Duration
	// OwnPath reports whether a path is the SP's own (never proxied).
	OwnPath func(string) bool

	Engine    *login.Engine
	Identity  *identity.Headers
	Responder *respond.Responder
	Registry  prometheus.Registerer
	Logger    *slog.Logger
}

// Gateway serves every path of the application.
type Gateway struct {
	o     Options
	proxy *httputil.ReverseProxy
	// engine and pool are the fast hop to the upstream (package upstream,
	// stickyproxy's): for a plain http upstream and a plain request without
	// a body, driven from the request's goroutine, where ReverseProxy and
	// http.Transport hand each request between three goroutines and flush
	// the reply's head apart from its body. nil: everything goes through
	// proxy (a Transport of the caller's, an https upstream or one with a
	// path, a positive FlushInterval).
	engine    *upstream.Engine
	pool      upstream.Pool
	exchanges sync.Pool // *exchange
	engBufs   sync.Pool // *[]byte, the engine's copy buffers
	// fwd tells the upstream who asked and where, by the one rule every
	// samlha proxy follows: X-Forwarded-For appended to from a trusted
	// proxy and replaced from anyone else; X-Forwarded-Host and -Proto the
	// root URL's, never a client's choice; X-Real-IP the client address the
	// SP found; a client's copies of these dropped under any spelling.
	fwd      forward.Policy
	requests *prometheus.CounterVec // outcome
	stripped prometheus.Counter
	// The requests counters of each outcome, looked up once.
	cAuthenticated, cPublic, cUnauthenticated, cForbidden prometheus.Counter
	cPathRefused, cUpstreamError, cClientGone             prometheus.Counter
}

// New returns the gateway o configures, with its metrics registered.
func New(o Options) *Gateway {
	g := &Gateway{o: o,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samlha_gateway_requests_total",
			Help: "Requests for the upstream by outcome: authenticated, public, unauthenticated (401, no login state), forbidden, path-refused, upstream-error, client-gone. Browser navigations without a session are counted as logins started.",
		}, []string{"outcome"}),
		stripped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "samlha_gateway_identity_headers_stripped_total",
			Help: "Identity headers (the gateway's prefix or a --pass-attribute header, under any spelling) a client sent, removed before anything else.",
		}),
	}
	o.Registry.MustRegister(g.requests, g.stripped)
	for c, outcome := range map[*prometheus.Counter]string{&g.cAuthenticated: "authenticated", &g.cPublic: "public",
		&g.cUnauthenticated: "unauthenticated", &g.cForbidden: "forbidden", &g.cPathRefused: "path-refused",
		&g.cUpstreamError: "upstream-error", &g.cClientGone: "client-gone"} {
		*c = g.requests.WithLabelValues(outcome)
	}
	g.fwd = forward.Policy{Trusted: o.TrustedProxies, PublicURL: o.RootURL}
	g.exchanges.New = func() any { return new(exchange) }
	g.proxy = g.newProxy()
	g.newEngine()
	return g
}

// Strip is middleware that removes, from every request, each header the
// gateway itself sets for the upstream, under any spelling
// (identity.Protected). Mount it first, before routing, so no handler and
// no upstream sees a client's copy.
func (g *Gateway) Strip(next http.Handler) http.Handler {
	prot := g.o.Identity.Protected()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := prot.Strip(r.Header); n > 0 {
			g.stripped.Add(float64(n))
		}
		next.ServeHTTP(w, r)
	})
}

// ServeHTTP serves every path that is not the SP's own.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.o.OwnPath(r.URL.Path) {
		http.NotFound(w, r)
		return
	}
	p, err := access.Canonical(r.URL.EscapedPath())
	if err != nil {
		g.cPathRefused.Inc()
		g.o.Responder.Fail(w, r, &failure.Failure{Cause: failure.CausePathNotCanonical, Op: "gateway",
			Detail: failure.Truncate(r.URL.EscapedPath(), 200) + ": " + err.Error(), Err: err})
		return
	}
	if g.o.PublicPaths.Match(p) {
		g.cPublic.Inc()
		g.forward(w, r, true, nil)
		return
	}
	if login.Navigation(r) {
		// A browser: RequireAccount logs it in (and back to this URL),
		// with its loop protection.
		g.o.Engine.RequireAccount(http.HandlerFunc(g.serveUpstream)).ServeHTTP(w, r)
		return
	}
	sess, _, ok := g.o.Engine.Session(w, r)
	if !ok {
		return
	}
	if sess == nil {
		// An API call: no login is started and no state is created.
		g.cUnauthenticated.Inc()
		g.o.Responder.Fail(w, r, &failure.Failure{Cause: failure.CauseSessionRequired, Op: "gateway", API: true,
			Detail: r.Method + " without a session, not a browser navigation", LoginURL: g.loginURL(r.URL.RequestURI())})
		return
	}
	g.serveSession(w, r, sess)
}

// loginURL is the URL that starts a login returning to rd.
func (g *Gateway) loginURL(rd string) string {
	return g.o.RootURL.JoinPath("/saml/login").String() + "?rd=" + url.QueryEscape(rd)
}

// serveUpstream authorizes the session in r's context for r's path and
// sends r upstream with the identity headers.
func (g *Gateway) serveUpstream(w http.ResponseWriter, r *http.Request) {
	g.serveSession(w, r, samlsp.SessionFromContext(r.Context()))
}

// serveSession authorizes sess for r's path and sends r upstream with the
// identity headers.
func (g *Gateway) serveSession(w http.ResponseWriter, r *http.Request, sess samlsp.Session) {
	id := identity.Of(sess)
	if f := g.o.Allow.Decide(r.URL.Path, id.User, id.Attrs); f != nil {
		f.Op = "gateway"
		g.cForbidden.Inc()
		g.o.Responder.Fail(w, r, f)
		return
	}
	x := g.getExchange()
	defer g.putExchange(x)
	var err error
	if x.fields, err = g.o.Identity.AppendFields(x.fields[:0], id); err != nil {
		g.o.Responder.Fail(w, r, &failure.Failure{Cause: failure.CauseInternal, Op: "gateway",
			Detail: "cannot sign the identity JWT: " + err.Error(), Err: err})
		return
	}
	g.cAuthenticated.Inc()
	g.forward(w, r, false, x)
}

// identityHeadersKey carries the identity headers from forward to the
// proxy's Rewrite.
type identityHeadersKey struct{}

// forward sends r to the upstream. Only here, for a request the gateway
// has admitted, are the server's whole-request deadlines lifted, so that
// server-sent events, WebSockets, long downloads and large uploads last as
// long as they last, while the SP's own routes (the ACS, login starts,
// refusals) keep them against slow clients. The write deadline is lifted
// at once. The read deadline is lifted at once for a request without a
// body (a WebSocket upgrade included) and for an authenticated one; an
// anonymous request to a public path keeps it until its body has fully
// arrived (README "Bounds on input": such an upload must arrive within
// --read-timeout), so a client trickling bodies cannot hold connections.
// It is lifted once the body is in, not left: net/http's background read
// would otherwise cut a long download or stream short.
//
// The identity headers in x (nil for a public path) are set on the
// outbound request after the hop-by-hop headers are removed, so a
// client's "Connection: X-Samlha-User" cannot strip them.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, anonymous bool, x *exchange) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // no deadline to lift: nothing to do
	noBody := r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	if !anonymous || noBody {
		_ = rc.SetReadDeadline(time.Time{}) // likewise
	} else {
		r.Body = &liftOnEnd{ReadCloser: r.Body, rc: rc}
	}
	if g.engine != nil && noBody && r.ContentLength == 0 && g.pool.Takes(r, false) {
		g.forwardFast(w, r, x)
		return
	}
	if x != nil {
		hdr := make(http.Header, len(x.fields))
		for _, f := range x.fields {
			hdr[f.Name] = []string{f.Value}
		}
		r = r.WithContext(context.WithValue(r.Context(), identityHeadersKey{}, hdr))
	}
	g.proxy.ServeHTTP(w, r)
}

// liftOnEnd lifts the connection's read deadline once the request body it
// wraps has been read to its end.
type liftOnEnd struct {
	io.ReadCloser
	rc     *http.ResponseController
	lifted bool
}

func (b *liftOnEnd) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.lifted {
		b.lifted = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// headerTimeout is the bound on the upstream's response headers.
func (g *Gateway) headerTimeout() time.Duration {
	if g.o.UpstreamHeaderTimeout <= 0 {
		return DefaultUpstreamHeaderTimeout
	}
	return g.o.UpstreamHeaderTimeout
}

// maxIdleUpstreamConns is how many idle connections to the upstream each
// hop keeps (Go's default of two per host would open a new one for most
// requests under load).
const maxIdleUpstreamConns = 1024

// newProxy is the reverse proxy to the upstream.
func (g *Gateway) newProxy() *httputil.ReverseProxy {
	tr := g.o.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = maxIdleUpstreamConns
		t.MaxIdleConnsPerHost = maxIdleUpstreamConns
		t.IdleConnTimeout = 90 * time.Second
		// An upstream that never answers does not hold a gateway
		// goroutine and connection forever (streams are fine: their
		// headers come at once).
		t.ResponseHeaderTimeout = g.headerTimeout()
		tr = t
	}
	return &httputil.ReverseProxy{
		Transport:     tr,
		FlushInterval: g.o.FlushInterval,
		BufferPool:    newBufferPool(),
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(g.o.Upstream)
			g.fwd.Set(pr.Out.Header, pr.In)
			login.StripOwnCookies(pr.Out.Header)
			if hdr, ok := pr.In.Context().Value(identityHeadersKey{}).(http.Header); ok {
				for k, v := range hdr {
					pr.Out.Header[k] = v
				}
			}
		},
		ErrorHandler: g.upstreamFailed,
	}
}

// upstreamFailed answers a request the upstream could not serve.
func (g *Gateway) upstreamFailed(w http.ResponseWriter, r *http.Request, err error) {
	f := &failure.Failure{Cause: failure.CauseUpstreamUnavailable, Op: "gateway", Detail: err.Error(), Err: err}
	var ne net.Error
	switch {
	case r.Context().Err() != nil:
		f.Cause = failure.CauseClientGone
		g.cClientGone.Inc()
	case errors.As(err, &ne) && ne.Timeout():
		f.Cause = failure.CauseUpstreamTimeout
		g.cUpstreamError.Inc()
	default:
		g.cUpstreamError.Inc()
	}
	g.o.Responder.Fail(w, r, f)
}

// bufferPool is httputil.BufferPool over sync.Pool: 32 KiB copy buffers,
// reused rather than allocated for every proxied body. It pools array
// pointers, so neither Get nor Put allocates.
type bufferPool struct{ p sync.Pool }

const proxyBufferSize = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([proxyBufferSize]byte) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*[proxyBufferSize]byte)[:] }

func (b *bufferPool) Put(x []byte) {
	if cap(x) >= proxyBufferSize {
		b.p.Put((*[proxyBufferSize]byte)(x[:proxyBufferSize]))
	}
}

// newEngine sets up the fast hop (g.engine) when it can do what the
// reverse proxy does: no Transport of the caller's (a test's, a TLS
// setting), a plain http upstream with no path or query to join, and a
// flush policy it has (FlushInterval -1: every write; 0: streams only).
func (g *Gateway) newEngine() {
	u := g.o.Upstream
	if g.o.Transport != nil || u == nil || u.Scheme != "http" || u.User != nil || u.Path != "" && u.Path != "/" ||
		u.RawQuery != "" || u.Fragment != "" || g.o.FlushInterval > 0 {
		return
	}
	g.pool.Init(u, maxIdleUpstreamConns)
	// As ReverseProxy's SetURL: the upstream's own host, not the client's.
	g.pool.Host = u.Host
	g.engBufs.New = func() any { b := make([]byte, proxyBufferSize); return &b }
	g.engine = &upstream.Engine{ResponseHeaderTimeout: g.headerTimeout(), Policy: &g.fwd,
		URIFromURL: true, FlushWrites: g.o.FlushInterval < 0, Bufs: &g.engBufs}
}

// forwardFast sends r, which has no body, to the upstream over the fast
// hop, with the same headers as the reverse proxy's Rewrite: the client's
// end-to-end headers but the forwarding ones and the SP's own cookies, the
// forwarding policy's, then the identity headers in x (nil: none).
func (g *Gateway) forwardFast(w http.ResponseWriter, r *http.Request, x *exchange) {
	login.StripOwnCookies(r.Header)
	if x == nil {
		x = g.getExchange()
		defer g.putExchange(x)
	}
	x.wroteHead = false
	err := g.engine.Forward(w, r, &g.pool, x)
	switch {
	case err == nil:
	case x.wroteHead:
		// The reply is under way: all that is left is to cut it, as
		// ReverseProxy does.
		panic(http.ErrAbortHandler)
	default:
		g.upstreamFailed(w, r, err)
	}
}

// exchange is one request's identity headers (pooled, so that they cost
// no allocation on the fast hop) and, on the fast hop (as its
// upstream.Exchange: no body), whether the reply's head went out.
type exchange struct {
	fields    []identity.Field
	wroteHead bool
}

func (g *Gateway) getExchange() *exchange { return g.exchanges.Get().(*exchange) }

// putExchange returns x to the pool, holding no identity.
func (g *Gateway) putExchange(x *exchange) {
	clear(x.fields)
	x.fields = x.fields[:0]
	g.exchanges.Put(x)
}

var _ upstream.Exchange = (*exchange)(nil)

func (*exchange) Sent(time.Time)         {}
func (*exchange) Answered(time.Duration) {}
func (*exchange) HasBody() bool          { return false }
func (*exchange) BodyRead() bool         { return false }
func (*exchange) BodyFailed() bool       { return false }

// AppendHead appends the identity headers, after every header of the
// client's: they are not among r.Header, so no Connection header of the
// client's can name them away.
func (x *exchange) AppendHead(b []byte) []byte {
	for _, f := range x.fields {
		b = append(append(append(append(b, f.Name...), ": "...), f.Value...), "\r\n"...)
	}
	return b
}

func (x *exchange) Decorate(http.Header, int) { x.wroteHead = true }
