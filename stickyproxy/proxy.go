package stickyproxy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/samlha/samlha/stickyproxy/affinity"
	"github.com/samlha/samlha/stickyproxy/forward"
	"github.com/samlha/samlha/stickyproxy/upstream"
)

// Response headers set on every reply.
const (
	HeaderTarget   = "X-Stickyproxy-Target"
	HeaderDecision = "X-Stickyproxy-Decision"
)

// Proxy is the sticky reverse proxy. It is an http.Handler for the public
// listener; Admin returns the handler for the admin listener and Run the
// active health checks.
type Proxy struct {
	cfg     Config
	targets []*target
	byName  map[string]*target
	sel     selector // balances requests that are not pinned
	codec   *affinity.Codec
	// unpinned turns stickiness off at run time (admin POST
	// /stickiness/off): every request is balanced, no cookie is set.
	unpinned atomic.Bool
	m        *metrics
	reg      *prometheus.Registry
	log      *slog.Logger
	now      func() time.Time
	imb      *imbalance

	inflight atomic.Int64

	fwd   forward.Policy     // X-Forwarded-*, X-Real-IP, Forwarded
	strip *forward.Protected // request headers no client may send on

	engine    upstream.Engine // the fast engine
	transport *http.Transport
	rp        *httputil.ReverseProxy
	bufs      sync.Pool // *[]byte, 32 KiB copy buffers
	openBufs  sync.Pool // *affinity.Buffer
	exchanges sync.Pool // *exchange

	durSec       int64
	cookieAttrs  string // "; Path=/; ..." after Expires
	twinName     string
	twinAttrs    string
	deleteCookie []string // Set-Cookie values that delete the cookie (and twin)

	clients  clientTable
	buffered atomic.Int64 // bytes of buffer reserved, all clients
	conns    atomic.Int64 // client connections open (Listener)
	samplers map[string]*logSampler

	fastMu   sync.Mutex
	fastSets []*fastConns // the fast loop's connections, per listener (Drain)

	checkMu   sync.Mutex // guards targets' rise/fall counters
	realClock bool       // Config.Now was nil: start and began are one reading
}

// New builds a Proxy from cfg (after cfg.Defaults and cfg.Validate).
func New(cfg Config) (*Proxy, error) {
	realClock := cfg.Now == nil
	cfg.Defaults()
	if probs := cfg.Validate(); len(probs) > 0 {
		return nil, fmt.Errorf("stickyproxy: invalid configuration: %w", errors.Join(probs...))
	}
	p := &Proxy{
		cfg:       cfg,
		byName:    map[string]*target{},
		clients:   clientTable{m: map[netip.Addr]*clientUse{}},
		log:       cfg.Logger,
		now:       cfg.Now,
		durSec:    int64(cfg.Duration / time.Second),
		realClock: realClock,
	}
	for i, tc := range cfg.Targets {
		u := *tc.URL
		t := &target{name: tc.Name, url: &u, weight: max(tc.Weight, 1), idx: i, hdrName: []string{tc.Name}}
		t.healthy.Store(true)
		t.pool.Init(&u, cfg.MaxIdleConnsPerHost)
		p.targets = append(p.targets, t)
		p.byName[t.name] = t
	}
	p.sel = selectors[cfg.Balance](p.targets)
	p.fwd = forward.Policy{Trusted: forward.NewTrusted(cfg.TrustedProxies)}
	strip, err := forward.NewProtected(cfg.StripRequestHeaders, cfg.StripRequestHeaderPrefixes)
	if err != nil { // Validate has said so already
		return nil, err
	}
	p.strip = strip
	if cfg.Stickiness != StickinessOff {
		c, err := affinity.New(cfg.CookieName, cfg.Keys...)
		if err != nil {
			return nil, err
		}
		p.codec = c
	}
	p.reg = cfg.Registry
	if p.reg == nil {
		p.reg = prometheus.NewRegistry()
	}
	p.imb = newImbalance(cfg.ImbalanceWindow, len(p.targets))
	p.m = newMetrics(p, p.reg)
	p.buildCookieAttrs()
	p.initSamplers()
	p.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	p.openBufs.New = func() any { return new(affinity.Buffer) }
	p.exchanges.New = func() any { return &exchange{p: p} }
	p.engine = upstream.Engine{ResponseHeaderTimeout: cfg.ResponseHeaderTimeout, Policy: &p.fwd,
		Strip: p.strip, OnStrip: p.m.stripped.Inc, Bufs: &p.bufs}
	p.transport = &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:           cfg.MaxIdleConnsPerHost * len(p.targets),
		MaxIdleConnsPerHost:    cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  cfg.ResponseHeaderTimeout,
		MaxResponseHeaderBytes: MaxResponseHeaderBytes,
		ExpectContinueTimeout:  time.Second,
		ForceAttemptHTTP2:      false,
		DisableCompression:     true,
		WriteBufferSize:        16 << 10,
		ReadBufferSize:         16 << 10,
	}
	p.rp = p.newReverseProxy()
	return p, nil
}

// Registry is the Prometheus registry the proxy's metrics are in.
func (p *Proxy) Registry() *prometheus.Registry { return p.reg }

// Close releases idle upstream connections.
func (p *Proxy) Close() {
	p.transport.CloseIdleConnections()
	for _, t := range p.targets {
		t.pool.CloseIdle()
	}
}

func (p *Proxy) buildCookieAttrs() {
	attrs := func(sameSite http.SameSite, secure bool) string {
		var b strings.Builder
		b.WriteString("; Path=")
		b.WriteString(p.cfg.CookiePath)
		if p.cfg.CookieDomain != "" {
			b.WriteString("; Domain=")
			b.WriteString(p.cfg.CookieDomain)
		}
		if !p.cfg.CookieScriptable {
			b.WriteString("; HttpOnly")
		}
		if secure {
			b.WriteString("; Secure")
		}
		switch sameSite {
		case http.SameSiteLaxMode:
			b.WriteString("; SameSite=Lax")
		case http.SameSiteStrictMode:
			b.WriteString("; SameSite=Strict")
		case http.SameSiteNoneMode:
			b.WriteString("; SameSite=None")
		}
		return b.String()
	}
	p.cookieAttrs = attrs(p.cfg.CookieSameSite, p.cfg.CookieSecure)
	del := []string{p.cfg.CookieName + "=" + p.cookieAttrs + "; Max-Age=0"}
	if p.cfg.CookieTwin {
		p.twinName = p.cfg.CookieName + "CORS"
		p.twinAttrs = attrs(http.SameSiteNoneMode, true)
		del = append(del, p.twinName+"="+p.twinAttrs+"; Max-Age=0")
	}
	p.deleteCookie = del[:len(del):len(del)]
}

// sealed returns t's Set-Cookie values for a response at now, sealing them
// at most once per target per second.
func (p *Proxy) sealed(t *target, now time.Time) *sealedCookie {
	exp := now.Unix() + p.durSec
	if c := t.cookie.Load(); c != nil && c.expires == exp {
		return c
	}
	v, err := p.codec.Seal(t.name, time.Unix(exp, 0))
	if err != nil { // only on a broken random source
		p.log.Error("sealing affinity cookie", "target", t.name, "err", err)
		return nil
	}
	expires := "; Expires=" + time.Unix(exp, 0).UTC().Format(http.TimeFormat)
	c := &sealedCookie{expires: exp, value: v}
	c.values = append(c.values, p.cfg.CookieName+"="+v+expires+p.cookieAttrs)
	if p.cfg.CookieTwin {
		c.values = append(c.values, p.twinName+"="+v+expires+p.twinAttrs)
	}
	c.values = c.values[:len(c.values):len(c.values)] // appends elsewhere must copy
	t.cookie.Store(c)
	return c
}

// exchange is the state of one request, pooled.
type exchange struct {
	p          *Proxy
	t          *target
	d          Decision
	first      *target // the target that could not be reached, if retried
	tried      []*target
	cookieErr  string    // why a cookie was treated as absent
	hadApp     bool      // app stickiness: the request carried the app cookie
	start      time.Time // by the proxy's clock, for cookies
	began      time.Time // by the real clock, for latency
	sent       time.Time
	upstream   time.Duration
	status     int
	wroteHead  bool
	abort      bool
	err        error
	body       *retryBody          // nil without a request body
	cbody      *clientBody         // nil without a request body or body timeout
	relayState string              // instance read from RelayState, for the log
	w          http.ResponseWriter // the client's, while the reverseproxy engine runs
	buffered   *bufferedBody       // the body, read whole before a slot was taken

	client     *clientUse // the client's share (referenced)
	clientAddr netip.Addr
	clientSlot bool  // x holds one of the client's in-flight requests
	slot       bool  // x holds one of x.t's in-flight slots
	streaming  bool  // x counts among the client's streamed bodies
	reserved   int64 // bytes of buffer x holds
	// unread: the request has a body not read whole; a refusal closes the
	// connection rather than let net/http read the rest first (which a
	// stalled client would hold up).
	unread bool
	// onlyIfAccepted: the request was routed by its RelayState or is a
	// cross-site POST without a valid cookie, so the reply pins the client
	// only if the target accepted it (2xx, 3xx).
	onlyIfAccepted bool
}

func (x *exchange) reset() {
	p, tried := x.p, x.tried[:0]
	*x = exchange{p: p, tried: tried}
}

// retryBody wraps a request body so that a failed dial neither closes it
// nor hides that it was never read, which makes a retry safe.
type retryBody struct {
	rc   io.ReadCloser
	read bool
}

func (b *retryBody) Read(p []byte) (int, error) {
	b.read = true
	return b.rc.Read(p)
}

// Close is a no-op: the server closes the real body after the handler.
func (b *retryBody) Close() error { return nil }

// bodyRead says whether any of a streamed request body has been read (a
// buffered one can be sent again).
func (x *exchange) bodyRead() bool { return x.body != nil && x.body.read }

// hasBody says whether the request has a body.
func (x *exchange) hasBody() bool { return x.body != nil || x.buffered != nil }

// clientBody is the request body as it comes from the client, under the
// ClientBodyTimeout deadline: it records a read error (the client's fault,
// never the target's) and lifts the deadline once the body is complete, so
// that a slow target does not make a finished request look timed out.
type clientBody struct {
	rc   io.ReadCloser
	w    http.ResponseWriter // to lift the read deadline
	cl   int64
	n    int64
	done bool
	err  error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n += int64(n)
	switch {
	case err == io.EOF || err == nil && b.cl >= 0 && b.n >= b.cl:
		if !b.done {
			b.done = true
			_ = setReadDeadline(b.w, time.Time{})
		}
	case err != nil:
		b.err = err
	}
	return n, err
}

func (b *clientBody) Close() error { return b.rc.Close() }

// setReadDeadline sets the client connection's read deadline, without
// http.NewResponseController's allocation when w is net/http's own.
func setReadDeadline(w http.ResponseWriter, t time.Time) error {
	if d, ok := w.(interface{ SetReadDeadline(time.Time) error }); ok {
		return d.SetReadDeadline(t)
	}
	return http.NewResponseController(w).SetReadDeadline(t)
}

// filter says which targets a pick may return.
type filter struct {
	now          int64 // unix nanoseconds
	sticky       bool  // for a pinned client: a draining target may still do (haproxy drain)
	ignoreHealth bool  // fail-open
	// balancing: a free choice, which passes over targets at their
	// in-flight limit (a pinned client is not moved for that).
	balancing bool
	tried     []*target
}

func (p *Proxy) ok(t *target, f *filter) bool {
	if !f.ignoreHealth && !t.up(f.now) {
		return false
	}
	if t.draining.Load() && !(f.sticky && p.cfg.DrainMode == DrainHAProxy) {
		return false
	}
	if f.balancing && p.cfg.MaxInFlightPerTarget > 0 && t.inflight.Load() >= int64(p.cfg.MaxInFlightPerTarget) {
		return false
	}
	for _, u := range f.tried {
		if u == t {
			return false
		}
	}
	return true
}

func (p *Proxy) pick(f *filter) *target { return p.sel.pick(p, *f) }

// ServeHTTP routes and forwards one request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.inflight.Add(1)
	defer p.inflight.Add(-1)
	x := p.exchanges.Get().(*exchange)
	defer p.done(r, x)
	x.began = time.Now()
	x.start = x.began
	if !p.realClock {
		x.start = p.now()
	}
	x.client, x.clientAddr = p.clientOf(r)
	if !p.admitBody(w, r, x) {
		return
	}
	p.route(x, r)
	switch x.d {
	case DecisionStrictRefused:
		p.refuse(w, x, fmt.Sprintf("stickyproxy: this client is pinned to target %s, which is down, and --on-pinned-down=strict refuses to move it.\nRetry later, or delete the %s cookie to be balanced anew.\n", x.t.name, p.cfg.CookieName))
	case DecisionNoTarget:
		p.refuse(w, x, "stickyproxy: no target is available (all are down or draining).\n")
	case DecisionTargetBusy:
		p.refuse(w, x, "stickyproxy: every available target has too many requests in flight; retry shortly.\n")
	default:
		if r.Body != nil && r.Body != http.NoBody && x.buffered == nil {
			// Not pooled with x: http.Transport may still read a body after
			// RoundTrip has returned.
			x.body = &retryBody{rc: r.Body}
			r.Body = x.body
		}
		p.forward(w, r, x)
	}
}

// done ends x: the metrics and the access log, then what x held.
func (p *Proxy) done(r *http.Request, x *exchange) {
	p.account(r, x)
	p.releaseClient(x)
	abort := x.abort
	x.reset()
	p.exchanges.Put(x)
	if abort {
		// The reply was cut short after its head went out: make the
		// server drop the connection rather than end it as if complete.
		panic(http.ErrAbortHandler)
	}
}

// admitBody applies the bounds on a request body before the request goes
// anywhere: the body deadline, then either the whole body read into a
// buffer (up to MaxBufferedBody, within the client's and the total
// buffer), or the body counted among the client's streamed ones (and a
// RelayState peek within its buffer). It has answered the client when it
// returns false.
func (p *Proxy) admitBody(w http.ResponseWriter, r *http.Request, x *exchange) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	x.unread = true
	if p.cfg.ClientBodyTimeout > 0 && setReadDeadline(w, x.began.Add(p.cfg.ClientBodyTimeout)) == nil {
		x.cbody = &clientBody{rc: r.Body, w: w, cl: r.ContentLength}
		r.Body = x.cbody
	}
	if r.ContentLength >= 0 && r.ContentLength <= p.cfg.MaxBufferedBody {
		return p.bufferBody(w, r, x)
	}
	if !addCapped(&x.client.streaming, 1, int64(p.cfg.MaxStreamingPerClient)) {
		p.limited(w, x, limitStreamingPerClient)
		return false
	}
	x.streaming = true
	if p.peeks(r) {
		n := p.cfg.RelayStatePeek
		if r.ContentLength >= 0 {
			n = min(n, r.ContentLength)
		}
		if lim := p.reserve(x, n); lim != "" {
			p.limited(w, x, lim)
			return false
		}
	}
	return true
}

// bufferBody reads r's whole body (of known length) into memory, the
// buffer growing with what arrives, never sized by Content-Length alone.
func (p *Proxy) bufferBody(w http.ResponseWriter, r *http.Request, x *exchange) bool {
	if lim := p.reserve(x, r.ContentLength); lim != "" {
		p.limited(w, x, lim)
		return false
	}
	buf, _, err := peek(r.Body, r.ContentLength, r.ContentLength)
	if err != nil {
		if x.cbody == nil || x.cbody.err == nil {
			x.cbody = &clientBody{err: err}
		}
		p.clientBodyFailed(w, x)
		return false
	}
	x.buffered = &bufferedBody{buf: buf}
	x.unread = false
	r.Body = x.buffered
	return true
}

// forward sends r to x.t, retrying on another target when the connection
// could not be established. Passive health counts only the target's own
// failures: a dial error, the response-header timeout, a reset or close
// before any byte of the reply to a request without a body, and, if
// Passive5xx is set, runs of 5xx replies. A client that went away or sent
// its body too slowly, a failure once the reply was under way, and 4xx
// replies are never counted; nor is a reset or close before the reply to a
// request with a body: that is how a target refuses a body over its limit,
// and "the whole body was sent" only means the kernel took it, which on
// loopback is megabytes the target may never have read.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, x *exchange) {
	for {
		if !p.acquire(w, x) {
			return
		}
		x.err = nil
		if x.buffered != nil {
			x.buffered.rewind()
		}
		if p.cfg.Engine == EngineFast && fastOK(r, x) {
			x.err = p.forwardFast(w, r, x)
		} else {
			p.forwardRP(w, r, x)
		}
		x.t.inflight.Add(-1)
		x.slot = false
		if x.err == nil {
			p.replied(x.t, x.status)
			return
		}
		if !p.failed(w, r, x) {
			return
		}
	}
}

// acquire takes one of the client's in-flight requests and one of x.t's
// slots, atomically against their limits. A target the balancer chose
// that is full is passed over for another; a pinned or RelayState-routed
// client is not moved (503 target-busy). It has answered the client when
// it returns false.
func (p *Proxy) acquire(w http.ResponseWriter, x *exchange) bool {
	if !x.clientSlot {
		if !addCapped(&x.client.inflight, 1, int64(p.cfg.MaxInFlightPerClient)) {
			p.limited(w, x, limitInFlightPerClient)
			return false
		}
		x.clientSlot = true
	}
	for !addCapped(&x.t.inflight, 1, int64(p.cfg.MaxInFlightPerTarget)) {
		if !x.d.balanced() {
			x.d = DecisionTargetBusy
			p.refuse(w, x, "stickyproxy: target "+x.t.name+" has too many requests in flight; retry shortly.\n")
			return false
		}
		d := x.d
		x.tried = append(x.tried, x.t)
		p.pickNew(x, &filter{now: p.now().UnixNano(), tried: x.tried, balancing: true})
		if x.t == nil {
			p.refuse(w, x, "stickyproxy: every available target has too many requests in flight; retry shortly.\n")
			return false
		}
		if x.d != DecisionFailOpen {
			x.d = d
		}
	}
	x.slot = true
	return true
}

// failed handles a forward that failed. It returns true when the request
// is to be sent again, to x.t: the connection to the first target could
// not be made, so nothing was sent.
func (p *Proxy) failed(w http.ResponseWriter, r *http.Request, x *exchange) bool {
	switch {
	case x.cbody != nil && x.cbody.err != nil:
		// The client's body failed (aborted, or slower than
		// ClientBodyTimeout): not the target's fault. (Checked first: a
		// failed body read also cancels the request's context.)
		p.clientBodyFailed(w, x)
	case r.Context().Err() != nil:
		// The client went away: not the target's fault. 499 is for the
		// log only (nginx's "client closed request").
		x.status, x.abort = 499, x.wroteHead
	case x.wroteHead:
		// The reply is under way; all we can do is cut it. Not counted: a
		// client that reads slowly can make a target give up here.
		p.m.upstreamErrors.WithLabelValues(x.t.name, "after-head").Inc()
		x.abort = true
	case !isDialError(x.err) || x.bodyRead():
		kind := "transport"
		if !x.hasBody() || isTimeout(x.err) {
			p.passiveFail(x.t, x.err)
		} else {
			kind = "refused-body"
		}
		p.m.upstreamErrors.WithLabelValues(x.t.name, kind).Inc()
		x.d = DecisionUpstreamError
		p.bad(w, x, http.StatusBadGateway, "stickyproxy: target "+x.t.name+" failed: "+x.err.Error()+"\n")
	default:
		return p.retry(w, x)
	}
	return false
}

// retry picks another target after a failed connection to x.t.
func (p *Proxy) retry(w http.ResponseWriter, x *exchange) bool {
	p.m.upstreamErrors.WithLabelValues(x.t.name, "dial").Inc()
	p.passiveFail(x.t, x.err)
	failed := x.t
	x.tried = append(x.tried, failed)
	p.pickNew(x, &filter{now: p.now().UnixNano(), tried: x.tried, balancing: true})
	if x.t == nil {
		x.t, x.d = failed, DecisionUpstreamError
		p.bad(w, x, http.StatusBadGateway, "stickyproxy: no target could be reached; last: "+failed.name+": "+x.err.Error()+"\n")
		return false
	}
	if x.first == nil {
		x.first = failed
	}
	x.d = DecisionRetried
	return true
}

// clientBodyFailed answers a request whose body the client failed to send
// (400, or 408 when it was too slow) and closes the connection; if the
// reply had begun, it is cut.
func (p *Proxy) clientBodyFailed(w http.ResponseWriter, x *exchange) {
	if x.wroteHead {
		x.abort = true
		return
	}
	status := http.StatusBadRequest
	if isTimeout(x.cbody.err) {
		status = http.StatusRequestTimeout
	}
	x.d = DecisionClientError
	w.Header().Set("Connection", "close")
	p.bad(w, x, status, "stickyproxy: reading the request body failed: "+x.cbody.err.Error()+"\n")
}

// isTimeout says whether err is a timeout (a deadline, the transport's
// response-header timeout).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// decorate adds the proxy's headers to a reply from x.t about to be
// written: target, decision and the affinity cookie.
func (x *exchange) decorate(h http.Header, status int) {
	p := x.p
	x.wroteHead = true
	x.status = status
	h[HeaderTarget] = x.t.hdrName
	h[HeaderDecision] = decisionHeader[x.d]
	if p.codec == nil || p.unpinned.Load() {
		return
	}
	set := x.d.pinsClient() || x.d == DecisionPinned // refresh the expiry on every reply
	if p.cfg.Stickiness == StickinessApp {
		switch appCookieSet(h["Set-Cookie"], p.cfg.AppCookie, x.start) {
		case appDeleted:
			h["Set-Cookie"] = appendHeader(h["Set-Cookie"], p.deleteCookie)
			return
		case appSet:
			set = true
		default:
			set = set && x.hadApp
		}
	}
	if x.onlyIfAccepted && status >= 400 {
		// A RelayState-routed or cross-site POST the target refused (a
		// forged login) moves nobody, even if the target set its own
		// cookie on the refusal (app stickiness).
		set = false
	}
	if !set {
		return
	}
	c := p.sealed(x.t, x.start)
	if c == nil {
		return
	}
	h["Set-Cookie"] = appendHeader(h["Set-Cookie"], c.values)
	if x.d != DecisionPinned {
		x.t.pinsIssued.Add(1)
	}
}

func appendHeader(have, add []string) []string {
	if len(have) == 0 {
		return add
	}
	return append(have[:len(have):len(have)], add...)
}

const (
	appUntouched = iota
	appSet
	appDeleted
)

// appCookieSet says whether the reply sets or deletes the app cookie.
func appCookieSet(setCookies []string, name string, now time.Time) int {
	for _, sc := range setCookies {
		if len(sc) <= len(name) || sc[len(name)] != '=' || !strings.EqualFold(sc[:len(name)], name) {
			continue
		}
		c, err := http.ParseSetCookie(sc)
		if err != nil || c.Name != name {
			continue
		}
		if c.MaxAge < 0 || c.Value == "" || !c.Expires.IsZero() && c.Expires.Before(now) {
			return appDeleted
		}
		return appSet
	}
	return appUntouched
}

// refuse writes a 503 decided by the proxy (strict, no target, busy).
func (p *Proxy) refuse(w http.ResponseWriter, x *exchange, msg string) {
	p.refuseStatus(w, x, http.StatusServiceUnavailable, msg)
}

// refuseStatus writes a refusal decided by the proxy, with Retry-After.
func (p *Proxy) refuseStatus(w http.ResponseWriter, x *exchange, status int, msg string) {
	if x.t == nil {
		w.Header()[HeaderTarget] = noTarget
		w.Header()[HeaderDecision] = decisionHeader[x.d]
		x.status = status
	} else {
		x.decorate(w.Header(), status)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", "5")
	if x.unread {
		w.Header().Set("Connection", "close")
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

var noTarget = []string{"none"}

// bad writes a 502 after an upstream failure, or a client error.
func (p *Proxy) bad(w http.ResponseWriter, x *exchange, status int, msg string) {
	h := w.Header()
	h[HeaderTarget] = noTarget
	if x.t != nil {
		h[HeaderTarget] = x.t.hdrName
	}
	h[HeaderDecision] = decisionHeader[x.d]
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	x.status = status
	x.wroteHead = true
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg)
}

// account counts the request in metrics and the access log.
func (p *Proxy) account(r *http.Request, x *exchange) {
	now := p.now()
	if x.t != nil {
		x.t.requests.Add(1)
		if x.d == DecisionPinned {
			x.t.pinnedRequests.Add(1)
		}
		x.t.mRequests[x.d].Inc()
		p.imb.add(now.UnixNano(), x.t.idx)
		if x.upstream > 0 {
			x.t.mLatency.Observe(x.upstream.Seconds())
		}
	} else {
		p.m.requests.WithLabelValues("none", x.d.String()).Inc()
	}
	switch p.cfg.AccessLog {
	case AccessLogOff:
		return
	case AccessLogAnomalies:
		if !x.d.anomaly() && x.status < 500 && x.status != 0 {
			return
		}
	}
	if !p.log.Enabled(r.Context(), slog.LevelInfo) {
		return
	}
	target := "none"
	if x.t != nil {
		target = x.t.name
	}
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs,
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", x.status),
		slog.String("target", target),
		slog.String("decision", x.d.String()),
		slog.Duration("latency", time.Since(x.began)),
		slog.Duration("upstream_latency", x.upstream),
		slog.String("client", x.clientAddr.String()),
	)
	if x.cookieErr != "" {
		attrs = append(attrs, slog.String("cookie", x.cookieErr))
	}
	if x.first != nil {
		attrs = append(attrs, slog.String("retried_from", x.first.name))
	}
	if x.relayState != "" {
		attrs = append(attrs, slog.String("relaystate_instance", x.relayState))
	}
	if x.err != nil {
		attrs = append(attrs, slog.String("err", x.err.Error()))
	}
	p.log.LogAttrs(r.Context(), slog.LevelInfo, "access", attrs...)
}

// isDialError says whether err means the connection to the target was never
// established, so that nothing was sent and a retry elsewhere is safe.
func isDialError(err error) bool {
	var d *upstream.DialError
	if errors.As(err, &d) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// passiveFail counts a failure of t itself. Past the threshold, only a
// target that is up now is marked down (under the health lock): the
// failures that follow while it is down take no lock.
func (p *Proxy) passiveFail(t *target, err error) {
	if p.cfg.PassiveFall == 0 {
		return
	}
	if int(t.passiveFails.Add(1)) >= p.cfg.PassiveFall && t.up(p.now().UnixNano()) {
		p.markDown(t, "passive", err.Error())
	}
}

// replied records a reply from t: a 5xx counts towards Passive5xx, anything
// else clears it, and any reply clears the failure count.
func (p *Proxy) replied(t *target, status int) {
	if p.cfg.Passive5xx > 0 {
		if status >= 500 {
			if int(t.fails5xx.Add(1)) >= p.cfg.Passive5xx && t.up(p.now().UnixNano()) {
				p.markDown(t, "passive-5xx", "status "+strconv.Itoa(status))
			}
			return
		}
		if t.fails5xx.Load() != 0 {
			t.fails5xx.Store(0)
		}
	}
	if t.passiveFails.Load() != 0 {
		t.passiveFails.Store(0)
	}
	if !t.healthy.Load() && p.cfg.HealthInterval == 0 && t.up(p.now().UnixNano()) {
		// The cool-down let a request through and it worked: back up.
		p.markUp(t, "passive")
	}
}

func (p *Proxy) markDown(t *target, cause, why string) {
	p.checkMu.Lock()
	defer p.checkMu.Unlock()
	t.rise = 0
	if p.cfg.HealthInterval == 0 {
		t.downUntil.Store(p.now().Add(p.cfg.PassiveCooldown).UnixNano())
	}
	if t.healthy.Swap(false) {
		p.m.transitions.WithLabelValues(t.name, "down", cause).Inc()
		p.log.Warn("target down", "target", t.name, "cause", cause, "why", why)
	}
}

func (p *Proxy) markUp(t *target, cause string) {
	p.checkMu.Lock()
	defer p.checkMu.Unlock()
	t.downUntil.Store(0)
	t.passiveFails.Store(0)
	t.fails5xx.Store(0)
	if !t.healthy.Swap(true) {
		p.m.transitions.WithLabelValues(t.name, "up", cause).Inc()
		p.log.Info("target up", "target", t.name, "cause", cause)
	}
}
