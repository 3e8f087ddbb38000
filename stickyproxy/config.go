package stickyproxy

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/samlha/samlha/sp/relaystate"
	"github.com/samlha/samlha/stickyproxy/forward"
)

// Stickiness selects how a client is pinned to a target.
type Stickiness string

const (
	// StickinessOff balances every request anew: the broken setup from the
	// field, for comparison.
	StickinessOff Stickiness = "off"
	// StickinessDuration pins by the proxy's own cookie, refreshed on every
	// response (AWS ALB's duration-based AWSALB model, HAProxy's
	// "cookie insert").
	StickinessDuration Stickiness = "duration"
	// StickinessApp pins while the application's own cookie exists: the proxy
	// issues its cookie when the application sets its cookie, honours it only
	// alongside the application's cookie, and drops it when the application
	// deletes its cookie (ALB's application-based AWSALBAPP model).
	StickinessApp Stickiness = "app"
)

// Balance selects the balancing algorithm for requests that are not pinned.
type Balance string

const (
	// RoundRobin cycles through the targets, in proportion to their weights.
	RoundRobin Balance = "round-robin"
	// LeastOutstanding picks the target with the fewest in-flight requests
	// relative to its weight (ALB's least_outstanding_requests).
	LeastOutstanding Balance = "least-outstanding"
)

// DrainMode selects what a draining target still receives.
type DrainMode string

const (
	// DrainALB: a draining target receives no new requests, sticky ones
	// included; they are re-pinned elsewhere (AWS ALB deregistration).
	DrainALB DrainMode = "alb"
	// DrainHAProxy: a draining target keeps serving clients pinned to it but
	// gets no new ones (HAProxy's "drain" state, weight 0).
	DrainHAProxy DrainMode = "haproxy"
)

// PinnedDown selects what happens when the pinned target is unhealthy.
type PinnedDown string

const (
	// PinnedDownRepin sends the request to another target and re-pins the
	// client there (ALB and HAProxy).
	PinnedDownRepin PinnedDown = "repin"
	// PinnedDownStrict refuses the request with 503 and a clear body
	// (Envoy's strict stateful sessions).
	PinnedDownStrict PinnedDown = "strict"
)

// AllDown selects what happens when no target is healthy.
type AllDown string

const (
	// AllDownFailOpen routes among all targets as if they were healthy
	// (ALB's fail-open).
	AllDownFailOpen AllDown = "fail-open"
	// AllDown503 answers 503.
	AllDown503 AllDown = "503"
)

// AccessLog selects which requests the access log records.
type AccessLog string

const (
	// AccessLogAll logs every request.
	AccessLogAll AccessLog = "all"
	// AccessLogAnomalies logs requests whose decision is anything but new,
	// pinned or balanced, or whose status is 5xx: what a person looks for.
	AccessLogAnomalies AccessLog = "anomalies"
	// AccessLogOff logs no requests.
	AccessLogOff AccessLog = "off"
)

// Engine selects the forwarding path.
type Engine string

const (
	// EngineFast is stickyproxy's own HTTP/1.1 forwarding path: a pool of
	// upstream connections driven from the request's goroutine. Upgrades
	// (WebSocket) still go through EngineReverseProxy.
	EngineFast Engine = "fast"
	// EngineReverseProxy is net/http/httputil.ReverseProxy with Rewrite over
	// one shared http.Transport.
	EngineReverseProxy Engine = "reverseproxy"
)

// HTTPServer selects what serves the public listener's HTTP/1.1 (through
// Listener).
type HTTPServer string

const (
	// HTTPServerFast is stickyproxy's own serve loop for plain keep-alive
	// requests (serveloop.go), with net/http's server taking over any
	// connection that sends something else. It serves only with the fast
	// engine and http:// targets; otherwise net/http serves everything.
	HTTPServerFast HTTPServer = "fast"
	// HTTPServerNetHTTP is net/http's server for every request.
	HTTPServerNetHTTP HTTPServer = "net/http"
)

// Target is a named upstream. The name is what the affinity cookie (sealed)
// and the X-Stickyproxy-Target header carry; for samlha it is the SP
// replica's instance ID.
type Target struct {
	Name   string
	URL    *url.URL
	Weight int // relative share of new clients; 0 means 1
}

// ParseTarget parses "name=URL" or "name=URL;weight=N" (the --target flag).
func ParseTarget(s string) (Target, error) {
	name, rest, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok {
		return Target{}, fmt.Errorf("target %q: want name=URL", s)
	}
	if !relaystate.ValidInstanceID(name) {
		return Target{}, fmt.Errorf("target %q: name must be 1 to 40 characters of [A-Za-z0-9._-], the SP's instance ID", s)
	}
	raw, opts, _ := strings.Cut(rest, ";")
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Target{}, fmt.Errorf("target %q: want an http:// or https:// URL with a host", s)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return Target{}, fmt.Errorf("target %q: URL must not have a path or query", s)
	}
	u.Path = ""
	t := Target{Name: name, URL: u, Weight: 1}
	if opts != "" {
		k, v, _ := strings.Cut(opts, "=")
		w, err := strconv.Atoi(v)
		if k != "weight" || err != nil || w < 1 || w > 1000 {
			return Target{}, fmt.Errorf("target %q: option %q: want weight=N with N in 1..1000", s, opts)
		}
		t.Weight = w
	}
	return t, nil
}

// Config is everything New needs. Zero values take the documented defaults
// (see Defaults); Validate lists every problem.
type Config struct {
	Targets []Target
	Balance Balance

	Stickiness Stickiness
	// Duration is the affinity cookie's lifetime, refreshed on every
	// response: 1s to 7 days.
	Duration time.Duration
	// CookieName is the proxy's cookie: AWSALB for duration stickiness,
	// AWSALBAPP for app stickiness, unless set.
	CookieName string
	// AppCookie is the application's cookie that app stickiness follows.
	AppCookie string
	// CookieTwin also sets <CookieName>CORS with SameSite=None; Secure, as
	// ALB does, so that cross-site POSTs carry affinity.
	CookieTwin   bool
	CookiePath   string
	CookieDomain string
	// CookieSecure marks the cookie Secure. The command sets it whenever it
	// serves TLS; the twin is always Secure.
	CookieSecure bool
	// CookieScriptable leaves HttpOnly off the cookie and its twin, so that
	// page scripts can read it. Off (HttpOnly) by default.
	CookieScriptable bool
	CookieSameSite   http.SameSite
	// Keys seal (the first) and open (all) the affinity cookie.
	Keys [][32]byte

	// SAMLAware routes a POST to ACSPath without a valid affinity cookie to
	// the target named in its RelayState.
	SAMLAware      bool
	ACSPath        string
	RelayStatePeek int64 // bytes of body read at most to find RelayState

	HealthPath     string
	HealthInterval time.Duration // 0 disables active checks
	HealthTimeout  time.Duration
	HealthRise     int // consecutive successes to mark a target up
	HealthFall     int // consecutive failures to mark a target down
	// PassiveFall is the number of consecutive failures of the target
	// itself (see the package doc, "Passive health") that mark it down; 0
	// disables passive checks.
	PassiveFall int
	// Passive5xx is the number of consecutive 5xx replies that mark a
	// target down; 0 (the default) disables it: a client can often provoke
	// a 5xx.
	Passive5xx      int
	PassiveCooldown time.Duration

	DrainMode    DrainMode
	OnPinnedDown PinnedDown
	AllDown      AllDown

	// TrustedProxies are the peers whose X-Forwarded-* headers are kept
	// (forward.Policy) and through whose X-Forwarded-For the client is
	// found (forward.Trusted.ClientAddr).
	TrustedProxies []netip.Prefix
	// StripRequestHeaders and StripRequestHeaderPrefixes name request
	// headers no client may send on (identity headers an application
	// behind the proxy trusts): they are removed before forwarding,
	// compared case-insensitively with '_' and '-' alike
	// (forward.Protected). None by default.
	StripRequestHeaders        []string
	StripRequestHeaderPrefixes []string

	AccessLog       AccessLog
	ImbalanceWindow time.Duration
	Engine          Engine
	HTTPServer      HTTPServer

	// Client bounds (see the README's "Security and failure behaviour").
	// ReadHeaderTimeout and IdleTimeout are for PublicServer;
	// ClientBodyTimeout is how long a request body may take to arrive,
	// counted from the end of its headers (0 disables); MaxClientConns caps
	// open client connections (Listener; 0 disables); MaxInFlightPerTarget
	// caps requests forwarded to one target at once (0 disables).
	ReadHeaderTimeout    time.Duration
	IdleTimeout          time.Duration
	ClientBodyTimeout    time.Duration
	MaxClientConns       int
	MaxInFlightPerTarget int

	// A client's share (the TCP peer, or the address a trusted peer's
	// X-Forwarded-For names; IPv6 by its /64). Each takes a negative
	// value to mean "no limit".
	//
	// MaxBufferedBody: a request body of known length up to this is read
	// whole before the request takes a target's in-flight slot, so a
	// client that stalls its body holds no slot; a larger or chunked body
	// streams and holds a slot meanwhile (MaxStreamingPerClient).
	// MaxBufferPerClient bounds the bytes one client's bodies being
	// buffered and RelayState peeks may take at once, MaxBufferTotal those
	// of all clients. MaxConnsPerClient bounds one TCP peer's connections
	// (Listener; a trusted peer is not limited), MaxInFlightPerClient one
	// client's requests forwarded at once.
	MaxBufferedBody       int64
	MaxBufferPerClient    int64
	MaxBufferTotal        int64
	MaxConnsPerClient     int
	MaxInFlightPerClient  int
	MaxStreamingPerClient int

	// AdminToken guards the admin API (Admin): every call but /healthz
	// and /readyz needs "Authorization: Bearer <AdminToken>". Without a
	// token those calls are refused, unless AdminInsecure is set, which the
	// command accepts only for a loopback admin address.
	AdminToken    string
	AdminInsecure bool

	// Transport tuning.
	MaxIdleConnsPerHost   int
	DialTimeout           time.Duration
	ResponseHeaderTimeout time.Duration

	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Defaults of the client bounds.
const (
	DefaultMaxClientConns        = 10000
	DefaultMaxInFlightPerTarget  = 1000
	DefaultMaxBufferedBody       = 256 << 10
	DefaultMaxBufferPerClient    = 2 << 20
	DefaultMaxBufferTotal        = 256 << 20
	DefaultMaxConnsPerClient     = 512
	DefaultMaxInFlightPerClient  = 256
	DefaultMaxStreamingPerClient = 16
)

// Defaults fills zero fields with the defaults. The bounds take a negative
// value to mean "none" (MaxClientConns, MaxInFlightPerTarget,
// ClientBodyTimeout and the client shares).
func (c *Config) Defaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def((*string)(&c.Balance), string(RoundRobin))
	def((*string)(&c.Stickiness), string(StickinessDuration))
	if c.Stickiness == StickinessApp {
		def(&c.CookieName, "AWSALBAPP")
	}
	def(&c.CookieName, "AWSALB")
	def(&c.CookiePath, "/")
	def(&c.ACSPath, "/saml/acs")
	def(&c.HealthPath, "/healthz")
	def((*string)(&c.DrainMode), string(DrainALB))
	def((*string)(&c.OnPinnedDown), string(PinnedDownRepin))
	def((*string)(&c.AllDown), string(AllDownFailOpen))
	def((*string)(&c.AccessLog), string(AccessLogAll))
	def((*string)(&c.Engine), string(EngineFast))
	def((*string)(&c.HTTPServer), string(HTTPServerFast))
	if c.CookieSameSite == 0 {
		c.CookieSameSite = http.SameSiteLaxMode
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.Duration, 24 * time.Hour}, {&c.HealthTimeout, time.Second}, {&c.PassiveCooldown, 10 * time.Second},
		{&c.ImbalanceWindow, time.Minute}, {&c.DialTimeout, 2 * time.Second}, {&c.ResponseHeaderTimeout, time.Minute},
		{&c.ReadHeaderTimeout, 10 * time.Second}, {&c.IdleTimeout, 2 * time.Minute}, {&c.ClientBodyTimeout, time.Minute},
	} {
		defInt(d.v, d.def)
	}
	for _, d := range []struct {
		v   *int
		def int
	}{
		{&c.HealthRise, 2}, {&c.HealthFall, 2}, {&c.MaxIdleConnsPerHost, 1024},
		{&c.MaxClientConns, DefaultMaxClientConns}, {&c.MaxInFlightPerTarget, DefaultMaxInFlightPerTarget},
		{&c.MaxConnsPerClient, DefaultMaxConnsPerClient}, {&c.MaxInFlightPerClient, DefaultMaxInFlightPerClient},
		{&c.MaxStreamingPerClient, DefaultMaxStreamingPerClient},
	} {
		defInt(d.v, d.def)
	}
	defInt(&c.RelayStatePeek, 64<<10)
	defInt(&c.MaxBufferedBody, DefaultMaxBufferedBody)
	defInt(&c.MaxBufferPerClient, DefaultMaxBufferPerClient)
	defInt(&c.MaxBufferTotal, DefaultMaxBufferTotal)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

func defInt[T int | int64 | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// FieldError is one problem with a Config field. Field is the Go name of
// the field (Targets, CookieSameSite...); a command maps it to its flag.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate returns every problem with c (after Defaults), each a
// *FieldError naming the Config field.
func (c *Config) Validate() []error {
	var p problems
	c.validateTargets(&p)
	c.validateStickiness(&p)
	c.validateCookie(&p)
	c.validateHealth(&p)
	c.validateBounds(&p)
	oneOf(p.add, "Balance", c.Balance, RoundRobin, LeastOutstanding)
	oneOf(p.add, "DrainMode", c.DrainMode, DrainALB, DrainHAProxy)
	oneOf(p.add, "OnPinnedDown", c.OnPinnedDown, PinnedDownRepin, PinnedDownStrict)
	oneOf(p.add, "AllDown", c.AllDown, AllDownFailOpen, AllDown503)
	oneOf(p.add, "AccessLog", c.AccessLog, AccessLogAll, AccessLogAnomalies, AccessLogOff)
	oneOf(p.add, "Engine", c.Engine, EngineFast, EngineReverseProxy)
	oneOf(p.add, "HTTPServer", c.HTTPServer, HTTPServerFast, HTTPServerNetHTTP)
	p.check(c.ImbalanceWindow >= time.Second, "ImbalanceWindow", "%v, want at least 1s", c.ImbalanceWindow)
	p.check(c.AdminToken == "" || len(c.AdminToken) >= 16, "AdminToken", "%d bytes, want at least 16", len(c.AdminToken))
	if _, err := forward.NewProtected(c.StripRequestHeaders, nil); err != nil {
		p.add("StripRequestHeaders", "%v", err)
	}
	if _, err := forward.NewProtected(nil, c.StripRequestHeaderPrefixes); err != nil {
		p.add("StripRequestHeaderPrefixes", "%v", err)
	}
	return p.errs
}

// problems collects FieldErrors.
type problems struct{ errs []error }

func (p *problems) add(field, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// check adds the problem unless ok.
func (p *problems) check(ok bool, field, format string, args ...any) {
	if !ok {
		p.add(field, format, args...)
	}
}

func (c *Config) validateTargets(p *problems) {
	p.check(len(c.Targets) > 0, "Targets", "at least one target is needed")
	seen := map[string]bool{}
	for _, t := range c.Targets {
		p.check(!seen[t.Name], "Targets", "name %q given twice", t.Name)
		seen[t.Name] = true
		p.check(relaystate.ValidInstanceID(t.Name), "Targets", "name %q must be 1 to 40 characters of [A-Za-z0-9._-], the SP's instance ID", t.Name)
		p.check(t.URL != nil, "Targets", "%s: no URL", t.Name)
	}
}

func (c *Config) validateStickiness(p *problems) {
	oneOf(p.add, "Stickiness", c.Stickiness, StickinessOff, StickinessDuration, StickinessApp)
	p.check(c.Stickiness != StickinessApp || c.AppCookie != "", "AppCookie", "app stickiness needs the name of the application's cookie")
	p.check(c.Duration >= time.Second && c.Duration <= 7*24*time.Hour, "Duration", "%v, want 1s to 168h (7 days)", c.Duration)
	p.check(c.Stickiness == StickinessOff || len(c.Keys) > 0, "Keys", "no key given (a library caller must set Keys)")
	p.check(strings.HasPrefix(c.ACSPath, "/"), "ACSPath", "%q, want an absolute path", c.ACSPath)
	p.check(c.RelayStatePeek >= 1<<10 && c.RelayStatePeek <= 16<<20, "RelayStatePeek", "%d bytes, want 1KiB to 16MiB", c.RelayStatePeek)
}

func (c *Config) validateCookie(p *problems) {
	p.check(validCookieName(c.CookieName), "CookieName", "%q is not a valid cookie name", c.CookieName)
	if c.AppCookie != "" {
		p.check(validCookieName(c.AppCookie), "AppCookie", "%q is not a valid cookie name", c.AppCookie)
		p.check(c.AppCookie != c.CookieName, "AppCookie", "must differ from CookieName %q", c.CookieName)
	}
	p.check(strings.HasPrefix(c.CookiePath, "/") && validCookieAttr(c.CookiePath), "CookiePath", "%q, want an absolute path", c.CookiePath)
	p.check(!strings.ContainsRune(c.CookieDomain, ' ') && validCookieAttr(c.CookieDomain), "CookieDomain", "%q is not a domain", c.CookieDomain)
	p.check(c.CookieSameSite != http.SameSiteNoneMode || c.CookieSecure, "CookieSameSite", "None needs CookieSecure (browsers drop SameSite=None cookies that are not Secure)")
}

func (c *Config) validateHealth(p *problems) {
	p.check(strings.HasPrefix(c.HealthPath, "/"), "HealthPath", "%q, want an absolute path", c.HealthPath)
	p.check(c.HealthInterval == 0 || c.HealthInterval >= 10*time.Millisecond, "HealthInterval", "%v, want 0 (off) or at least 10ms", c.HealthInterval)
	p.check(c.HealthTimeout > 0, "HealthTimeout", "%v, want > 0", c.HealthTimeout)
	for _, n := range []struct {
		field    string
		v, least int
		want     string
	}{
		{"HealthRise", c.HealthRise, 1, "at least 1"}, {"HealthFall", c.HealthFall, 1, "at least 1"},
		{"PassiveFall", c.PassiveFall, 0, "0 (off) or more"}, {"Passive5xx", c.Passive5xx, 0, "0 (off) or more"},
		{"MaxIdleConnsPerHost", c.MaxIdleConnsPerHost, 1, "at least 1"},
	} {
		p.check(n.v >= n.least, n.field, "%d, want %s", n.v, n.want)
	}
}

// validateBounds checks the client bounds: a buffer share that could not
// hold one buffered body (or one RelayState peek) would refuse every such
// request.
func (c *Config) validateBounds(p *problems) {
	p.check(c.ReadHeaderTimeout >= 0, "ReadHeaderTimeout", "%v, want > 0", c.ReadHeaderTimeout)
	p.check(c.IdleTimeout >= 0, "IdleTimeout", "%v, want > 0", c.IdleTimeout)
	p.check(c.MaxBufferedBody <= 64<<20, "MaxBufferedBody", "%d bytes, want at most 64MiB (or negative: stream every body)", c.MaxBufferedBody)
	perClient, total := c.MaxBufferPerClient, c.MaxBufferTotal
	for _, need := range []struct {
		what string
		n    int64
	}{{"MaxBufferedBody", c.MaxBufferedBody}, {"RelayStatePeek", c.RelayStatePeek}} {
		p.check(perClient < 0 || need.n <= perClient, "MaxBufferPerClient", "%d bytes, less than %s (%d): such requests would all be refused", perClient, need.what, need.n)
		p.check(total < 0 || need.n <= total, "MaxBufferTotal", "%d bytes, less than %s (%d): such requests would all be refused", total, need.what, need.n)
	}
}

// oneOf reports v, the value of field, unless it is one of allowed:
// `Engine: "turbo", want fast or reverseproxy`.
func oneOf[T ~string](add func(string, string, ...any), field string, v T, allowed ...T) {
	names := make([]string, len(allowed))
	for i, a := range allowed {
		if a == v {
			return
		}
		names[i] = string(a)
	}
	want := names[0]
	if n := len(names); n > 1 {
		want = strings.Join(names[:n-1], ", ") + " or " + names[n-1]
	}
	add(field, "%q, want %s", v, want)
}

// validCookieName is net/http's rule for a cookie name.
func validCookieName(s string) bool {
	return (&http.Cookie{Name: s}).Valid() == nil
}

// validCookieAttr refuses what would break out of a Set-Cookie attribute.
func validCookieAttr(s string) bool {
	return !strings.ContainsAny(s, ";\r\n")
}
