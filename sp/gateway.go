package sp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/crewjam/saml/samlsp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/samlha/samlha/sp/access"
	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/identity"
	"github.com/samlha/samlha/sp/returnurl"
)

// Gateway puts the SP in front of an application (DESIGN.md section 8):
// the upstream receives only authenticated requests, with the identity in
// headers that samlsp alone sets. With Upstream nil it serves forward-auth
// only (/saml/auth, /saml/login) for nginx, Caddy or Traefik.
type Gateway struct {
	// Upstream is the application's base URL; nil: forward-auth only.
	Upstream *url.URL
	// PublicPaths need no session: prefixes ("/static/", "/health"), or
	// path.Match patterns when they contain * ? or [. They get no
	// identity headers either.
	PublicPaths access.PublicPaths
	// HeaderPrefix prefixes the identity headers; every request header
	// with this prefix is removed from every client request before anything
	// else. Default identity.DefaultHeaderPrefix.
	HeaderPrefix string
	// PassAttributes are the session attributes sent as headers.
	PassAttributes []identity.PassAttribute
	// Allow restricts paths to users with given attribute values.
	Allow access.Rules
	// AllowedRedirectHosts may be named in an absolute return URL
	// (/saml/login?rd=, forward-auth): "host", "host:port", or ".domain"
	// for every subdomain. The root URL's host is always allowed.
	AllowedRedirectHosts []string
	// JWT, when set, signs a short-lived identity JWT sent in
	// <prefix>Jwt-Assertion; its public keys are at /saml/jwks.json.
	JWT *identity.JWT
	// Transport reaches the upstream; nil: a transport tuned for one busy
	// upstream (many idle connections kept).
	Transport http.RoundTripper
	// UpstreamHeaderTimeout bounds the wait for the upstream's response
	// headers (the default transport only); default
	// DefaultUpstreamHeaderTimeout. Past it the client gets 504.
	UpstreamHeaderTimeout time.Duration
	// FlushInterval is ReverseProxy's: 0 (the default) flushes
	// server-sent events and responses of unknown length at every write,
	// and buffers others; -1 flushes every write of every response.
	FlushInterval time.Duration
}

func (g *Gateway) setDefaults() {
	if g.HeaderPrefix == "" {
		g.HeaderPrefix = identity.DefaultHeaderPrefix
	}
	g.HeaderPrefix = http.CanonicalHeaderKey(g.HeaderPrefix)
}

func (g *Gateway) validate() []error {
	var errs []error
	if g.Upstream != nil && (g.Upstream.Host == "" || (g.Upstream.Scheme != "http" && g.Upstream.Scheme != "https")) {
		errs = append(errs, fmt.Errorf("upstream %q must be an absolute http or https URL", g.Upstream))
	}
	errs = append(errs, g.identity().Problems()...)
	for _, pp := range g.PublicPaths {
		if !strings.HasPrefix(pp, "/") {
			errs = append(errs, fmt.Errorf("public path %q must begin with /", pp))
		} else if err := access.CheckPublicPath(pp); err != nil {
			errs = append(errs, err)
		} else if ownPath(pp) {
			errs = append(errs, fmt.Errorf("public path %q is the SP's own", pp))
		}
	}
	for _, h := range g.AllowedRedirectHosts {
		if msg := returnurl.ValidAllowedHost(h); msg != "" {
			errs = append(errs, errors.New(msg))
		}
	}
	return errs
}

// identity is the identity headers' configuration.
func (g *Gateway) identity() identity.Config {
	return identity.Config{HeaderPrefix: g.HeaderPrefix, PassAttributes: g.PassAttributes, JWT: g.JWT}
}

// ownPath reports whether p is served by the SP itself, never upstream.
func ownPath(p string) bool {
	return p == "/saml" || strings.HasPrefix(p, "/saml/") || p == "/healthz" || p == "/readyz"
}

// stripIdentity removes, from every request, each header the gateway
// itself sets for the upstream, under any spelling (identity.Protected).
// It runs first, before routing, so no handler (and no upstream) can see a
// client's copy.
func (s *SP) stripIdentity(next http.Handler) http.Handler {
	prot := s.ids.Protected()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := len(prot.Strip(r.Header)); n > 0 {
			s.gm.identityStripped.Add(float64(n))
		}
		next.ServeHTTP(w, r)
	})
}

// browserNavigation reports whether r is a top-level navigation by a
// browser, which may be sent to log in: GET or HEAD asking for HTML, and
// not a fetch/XHR (Sec-Fetch-Mode, X-Requested-With).
func browserNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" && m != "navigate" {
		return false
	}
	if strings.EqualFold(r.Header.Get("X-Requested-With"), "XMLHttpRequest") {
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// serveGateway is every path that is not the SP's own, in gateway mode.
func (s *SP) serveGateway(authed http.Handler) http.HandlerFunc {
	g := s.cfg.Gateway
	return func(w http.ResponseWriter, r *http.Request) {
		if ownPath(r.URL.Path) {
			http.NotFound(w, r)
			return
		}
		p, err := access.Canonical(r.URL.EscapedPath())
		if err != nil {
			s.gm.requests.WithLabelValues("path-refused").Inc()
			s.resp.Fail(w, r, &failure.Failure{Cause: failure.CausePathNotCanonical, Op: "gateway",
				Detail: truncate(r.URL.EscapedPath(), 200) + ": " + err.Error(), Err: err})
			return
		}
		if g.PublicPaths.Match(p) {
			s.gm.requests.WithLabelValues("public").Inc()
			s.forward(w, r)
			return
		}
		if browserNavigation(r) {
			// A browser: requireAccount logs it in (and back to this URL),
			// with its loop protection.
			authed.ServeHTTP(w, r)
			return
		}
		rt := s.live(w, r)
		if rt == nil {
			return
		}
		sess, _, ok := s.sessionOf(w, r, rt)
		if !ok {
			return
		}
		if sess == nil {
			// An API call: no login is started and no state is created.
			s.gm.requests.WithLabelValues("unauthenticated").Inc()
			s.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseSessionRequired, Op: "gateway", API: true,
				Detail: r.Method + " without a session, not a browser navigation", LoginURL: s.loginURL(r.URL.RequestURI())})
			return
		}
		s.serveUpstream(w, r.WithContext(samlsp.ContextWithSession(r.Context(), sess)))
	}
}

// loginURL is the URL that starts a login returning to rd.
func (s *SP) loginURL(rd string) string {
	return s.cfg.RootURL.JoinPath("/saml/login").String() + "?rd=" + url.QueryEscape(rd)
}

// serveUpstream authorizes the session in r's context for r's path and
// sends r upstream with the identity headers.
func (s *SP) serveUpstream(w http.ResponseWriter, r *http.Request) {
	sess := samlsp.SessionFromContext(r.Context())
	id := identity.Of(sess)
	if f := s.cfg.Gateway.Allow.Decide(r.URL.Path, id.User, id.Attrs); f != nil {
		f.Op = "gateway"
		s.gm.requests.WithLabelValues("forbidden").Inc()
		s.resp.Fail(w, r, f)
		return
	}
	hdr := make(http.Header, 4+len(s.cfg.Gateway.PassAttributes))
	if err := s.ids.Set(hdr, id); err != nil {
		s.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseInternal, Detail: "cannot sign the identity JWT: " + err.Error(), Err: err})
		return
	}
	s.gm.requests.WithLabelValues("authenticated").Inc()
	// The headers are set on the outbound request in Rewrite, after
	// ReverseProxy has removed the hop-by-hop headers, so a client's
	// "Connection: X-Samlha-User" cannot strip them.
	s.forward(w, r.WithContext(context.WithValue(r.Context(), identityHeadersKey{}, hdr)))
}

// identityHeadersKey carries the identity headers from serveUpstream to
// the proxy's Rewrite.
type identityHeadersKey struct{}

// forward sends r to the upstream. Only here, for a request the gateway
// has admitted, are the server's whole-request read and write deadlines
// lifted: server-sent events, WebSockets, long downloads and large uploads
// last as long as they last, while the SP's own routes (the ACS, login
// starts, refusals) keep them against slow clients.
func (s *SP) forward(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Time{})  // no deadline to lift: nothing to do
	_ = rc.SetWriteDeadline(time.Time{}) // likewise
	s.proxy.ServeHTTP(w, r)
}

// DefaultUpstreamHeaderTimeout bounds how long the gateway waits for the
// upstream's response headers (Gateway.UpstreamHeaderTimeout).
const DefaultUpstreamHeaderTimeout = time.Minute

// newUpstreamProxy is the reverse proxy to g.Upstream.
func (s *SP) newUpstreamProxy() *httputil.ReverseProxy {
	g := s.cfg.Gateway
	tr := g.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// Go's default keeps two idle connections per host: under load,
		// most requests would open a new one.
		t.MaxIdleConns = 1024
		t.MaxIdleConnsPerHost = 1024
		t.IdleConnTimeout = 90 * time.Second
		// An upstream that never answers does not hold a gateway
		// goroutine and connection forever (streams are fine: their
		// headers come at once).
		t.ResponseHeaderTimeout = g.UpstreamHeaderTimeout
		if t.ResponseHeaderTimeout <= 0 {
			t.ResponseHeaderTimeout = DefaultUpstreamHeaderTimeout
		}
		tr = t
	}
	return &httputil.ReverseProxy{
		Transport:     tr,
		FlushInterval: g.FlushInterval,
		BufferPool:    newBufferPool(),
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(g.Upstream)
			s.setForwarded(pr)
			if hdr, ok := pr.In.Context().Value(identityHeadersKey{}).(http.Header); ok {
				for k, v := range hdr {
					pr.Out.Header[k] = v
				}
			}
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			f := &failure.Failure{Cause: failure.CauseUpstreamUnavailable, Op: "gateway", Detail: err.Error(), Err: err}
			var ne net.Error
			switch {
			case r.Context().Err() != nil:
				f.Cause = failure.CauseClientGone
				s.gm.requests.WithLabelValues("client-gone").Inc()
			case errors.As(err, &ne) && ne.Timeout():
				f.Cause = failure.CauseUpstreamTimeout
				s.gm.requests.WithLabelValues("upstream-error").Inc()
			default:
				s.gm.requests.WithLabelValues("upstream-error").Inc()
			}
			s.resp.Fail(w, r, f)
		},
	}
}

// setForwarded sets X-Forwarded-For/-Host/-Proto for the upstream. The
// inbound values are kept only from a peer in TrustedProxies; otherwise
// they are the peer's and this request's own.
func (s *SP) setForwarded(pr *httputil.ProxyRequest) {
	if s.peerTrusted(pr.In) {
		if xff := pr.In.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			pr.Out.Header["X-Forwarded-For"] = append([]string(nil), xff...)
		}
		pr.SetXForwarded()
		if v := pr.In.Header.Get("X-Forwarded-Host"); v != "" {
			pr.Out.Header.Set("X-Forwarded-Host", v)
		}
		if v := pr.In.Header.Get("X-Forwarded-Proto"); v == "http" || v == "https" {
			pr.Out.Header.Set("X-Forwarded-Proto", v)
		}
		return
	}
	pr.SetXForwarded()
}

// peerTrusted reports whether r's TCP peer is in TrustedProxies.
func (s *SP) peerTrusted(r *http.Request) bool {
	if len(s.cfg.TrustedProxies) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap().WithZone("")
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// gatewayMetrics are the gateway's series.
type gatewayMetrics struct {
	identityStripped prometheus.Counter
	requests         *prometheus.CounterVec // outcome
	forwardAuth      *prometheus.CounterVec // outcome
}

func newGatewayMetrics(reg prometheus.Registerer) *gatewayMetrics {
	m := &gatewayMetrics{
		identityStripped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "samlha_gateway_identity_headers_stripped_total",
			Help: "Identity headers (the gateway's prefix or a --pass-attribute header) a client sent, removed before anything else.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samlha_gateway_requests_total",
			Help: "Requests for the upstream by outcome: authenticated, public, unauthenticated (401, no login state), forbidden, path-refused, upstream-error, client-gone. Browser navigations without a session are counted as logins started.",
		}, []string{"outcome"}),
		forwardAuth: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "samlha_gateway_forward_auth_total",
			Help: "Answers of /saml/auth by outcome: ok, unauthenticated, redirect, forbidden, path-refused.",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.identityStripped, m.requests, m.forwardAuth)
	return m
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
