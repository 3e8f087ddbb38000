// Package sp is samlha's SAML service provider. This package assembles it:
// the configuration and its one validator (config.go), the modes a replica
// runs and the routes and header rules each mounts (this file), and the app
// mode's pages and the health endpoints (app.go). Each rule lives in the
// package named after it:
//
//	sp/login        the login engine: crewjam wiring, login start, ACS, IdP-initiated, logout and SLO
//	sp/loginstate   logins in flight: tracked requests, their codec, binding cookies
//	sp/session      sessions: sealed records, the store provider, revocation, replay, near cache
//	sp/keyring      the SP's own key ring
//	sp/identity     what the application learns: identity headers, the JWT, protected header names
//	sp/access       canonical paths, public paths, --allow rules
//	sp/returnurl    where a login may land
//	sp/limits       bounds on input: bodies, login starts, pending logins, client addresses
//	sp/gateway      the SP in front of an application
//	sp/forwardauth  /saml/auth for nginx, Caddy and Traefik
//	sp/failure      the failure taxonomy
//	sp/respond      pages, JSON and the one failure path
//
// Three strategies run from the same code (DESIGN.md section 1): store mode
// with a memory store (affinity), store mode with a shared store (Redis),
// and stateless mode (crewjam's signed cookies).
package sp

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/crewjam/saml"
	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/forwardauth"
	"github.com/samlha/samlha/sp/gateway"
	"github.com/samlha/samlha/sp/identity"
	"github.com/samlha/samlha/sp/keyring"
	"github.com/samlha/samlha/sp/limits"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/sp/returnurl"
	"github.com/samlha/samlha/stickyproxy/forward"
	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/web"
)

// Mode is what a replica serves; modes combine (ModeApp|ModeForwardAuth).
type Mode uint8

const (
	// ModeApp serves samlsp's own demonstration pages: /, /app, /whoami,
	// /logout.
	ModeApp Mode = 1 << iota
	// ModeGateway puts the SP in front of Gateway.Upstream: every path but
	// the SP's own is the application's.
	ModeGateway
	// ModeForwardAuth answers a front proxy's subrequests at /saml/auth.
	ModeForwardAuth
)

// Has reports whether m includes every mode of o.
func (m Mode) Has(o Mode) bool { return m&o == o }

func (m Mode) String() string {
	var names []string
	for _, n := range []struct {
		m    Mode
		name string
	}{{ModeApp, "app"}, {ModeGateway, "gateway"}, {ModeForwardAuth, "forward-auth"}} {
		if m.Has(n.m) {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// ParseMode parses a comma-separated list of app, gateway and
// forward-auth.
func ParseMode(s string) (Mode, error) {
	var m Mode
	for _, part := range strings.Split(s, ",") {
		switch strings.TrimSpace(part) {
		case "app":
			m |= ModeApp
		case "gateway":
			m |= ModeGateway
		case "forward-auth":
			m |= ModeForwardAuth
		case "":
		default:
			return 0, fmt.Errorf("mode %q: want app, gateway or forward-auth, or a comma-separated list of them", part)
		}
	}
	return m, nil
}

// Paths of the SP's own, in every mode.
const (
	PathLogout = "/saml/logout" // the logout page (GET) and its form (POST)
	PathLogin  = "/saml/login"  // start a login explicitly: ?rd=URL
)

// ownPath reports whether p is served by the SP itself in every mode, never
// by an upstream.
func ownPath(p string) bool {
	return p == "/saml" || strings.HasPrefix(p, "/saml/") || p == "/healthz" || p == "/readyz"
}

// SP is a SAML service provider. It is an http.Handler.
type SP struct {
	cfg       Config
	log       *slog.Logger
	storeKind string
	trusted   forward.Trusted // Config.TrustedProxies
	resp      *respond.Responder
	engine    *login.Engine
	logins    *limits.Gate
	ids       *identity.Headers // gateway and forward-auth
	gw        *gateway.Gateway  // gateway mode
	fa        *forwardauth.Handler
	requests  *prometheus.CounterVec // route, code
	handler   http.Handler
}

// New returns an SP. Call Run to load (and refresh) the IdP metadata.
func New(cfg Config) (*SP, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &SP{cfg: cfg, storeKind: "stateless"}
	if cfg.Store != nil {
		s.storeKind = "unknown"
		if d, ok := cfg.Store.(store.Describer); ok {
			s.storeKind = d.Kind()
		}
	}
	s.log = cfg.Logger.With("instance", cfg.InstanceID, "store", s.storeKind)
	s.trusted = forward.NewTrusted(cfg.TrustedProxies)
	s.registerMetrics()
	ring, err := keyring.ForSP(cfg.SessionKeys, cfg.Key, cfg.NextKey)
	if err != nil && (cfg.Store != nil || cfg.Handoff != nil) {
		return nil, err // stateless mode uses crewjam's cookies, signed with Key, and no ring
	}
	if cfg.stateless() && cfg.StoreHandoff != "" && cfg.Handoff == nil {
		return nil, fmt.Errorf("StoreHandoff %s: a stateless replica needs it opened, as Handoff", store.Redact(cfg.StoreHandoff))
	}
	s.logins = limits.NewGate(cfg.LoginLimits, cfg.RequestTTL+cfg.TombstoneTTL, cfg.Store == nil)
	s.logins.Register(cfg.Registry, s.now)
	s.log.Info("bounds on input", "limits", fmt.Sprintf("max-return-url=%d %s", cfg.MaxReturnURL, cfg.LoginLimits.Describe()),
		"trusted_proxies", fmt.Sprint(cfg.TrustedProxies), "mode", cfg.Mode.String())
	policy := s.returnPolicy()
	retry := "/app"
	if !cfg.Mode.Has(ModeApp) {
		retry = "/"
	}
	s.resp, err = respond.New(respond.Config{
		Context: failure.Context{Instance: cfg.InstanceID, StoreKind: s.storeKind, MetadataSource: cfg.IDP.Flag(),
			IDPInitiated: cfg.IDPInitiated != nil, LogoutPath: PathLogout},
		RetryPath: retry, Logger: s.log, Registry: cfg.Registry, Now: s.now})
	if err != nil {
		return nil, err
	}
	s.engine, err = login.New(login.Config{Instance: cfg.InstanceID, RootURL: cfg.RootURL, Store: cfg.Store, StoreKind: s.storeKind,
		Shared: cfg.Handoff, AcceptStateless: cfg.AcceptStateless,
		Key: cfg.Key, Certificate: cfg.Certificate, NextKey: cfg.NextKey, NextCertificate: cfg.NextCertificate, Ring: ring,
		IDP: cfg.IDP, SignAuthnRequests: cfg.SignAuthnRequests, NameIDFormat: nameIDFormat(cfg.NameIDFormat), RequestTTL: cfg.RequestTTL, TombstoneTTL: cfg.TombstoneTTL, SessionIdleTTL: cfg.SessionIdleTTL,
		SessionMaxTTL: cfg.SessionMaxTTL, StoreTimeout: s.storeCallTimeout(), BindingSameSite: cfg.BindingSameSite,
		MaxRelogins: cfg.MaxRelogins, IDPInitiated: cfg.IDPInitiated, SessionCacheTTL: cfg.SessionCacheTTL,
		SessionCacheEntries: cfg.SessionCacheEntries, Clock: cfg.Clock, Responder: s.resp, ReturnURL: policy,
		Gate: s.logins, Logger: s.log, Registry: cfg.Registry, Now: s.now})
	if err != nil {
		return nil, err
	}
	if err := s.newProtection(policy); err != nil {
		return nil, err
	}
	s.handler = s.routes()
	return s, nil
}

// returnPolicy is the return-URL policy of this replica's modes.
func (s *SP) returnPolicy() returnurl.Policy {
	p := returnurl.Policy{Root: s.cfg.RootURL, MaxLen: s.cfg.MaxReturnURL, Home: "/app"}
	if !s.cfg.Mode.Has(ModeApp) {
		p.Home = "/"
	}
	if s.cfg.Gateway != nil {
		p.AllowedHosts = s.cfg.Gateway.AllowedRedirectHosts
	}
	return p
}

// newProtection builds what gateway and forward-auth mode need.
func (s *SP) newProtection(policy returnurl.Policy) error {
	if !s.cfg.Mode.Has(ModeGateway) && !s.cfg.Mode.Has(ModeForwardAuth) {
		return nil
	}
	g := s.cfg.Gateway
	if g == nil {
		g = &Gateway{}
	}
	aud := s.cfg.RootURL.String()
	if g.Upstream != nil {
		aud = g.Upstream.String()
	}
	var err error
	if s.ids, err = identity.NewHeaders(g.identity(), s.cfg.RootURL.String(), aud, s.log, s.now); err != nil {
		return err
	}
	if s.cfg.Mode.Has(ModeGateway) {
		s.gw = gateway.New(gateway.Options{Upstream: g.Upstream, PublicPaths: g.PublicPaths, Allow: g.Allow,
			RootURL: s.cfg.RootURL, TrustedProxies: s.trusted, Transport: g.Transport,
			UpstreamHeaderTimeout: g.UpstreamHeaderTimeout, FlushInterval: flushInterval(g.FlushInterval), OwnPath: ownPath,
			Engine: s.engine, Identity: s.ids, Responder: s.resp, Registry: s.cfg.Registry, Logger: s.log})
	}
	if s.cfg.Mode.Has(ModeForwardAuth) {
		s.fa = forwardauth.New(forwardauth.Options{Allow: g.Allow, TrustedProxies: s.trusted, ReturnURL: policy,
			RootURL: s.cfg.RootURL, Engine: s.engine, Identity: s.ids, Responder: s.resp, Registry: s.cfg.Registry, Logger: s.log})
	}
	return nil
}

func (s *SP) now() time.Time {
	if s.cfg.Clock != nil {
		return s.cfg.Clock.Now()
	}
	return time.Now()
}

// Run loads the IdP metadata, retrying until it succeeds, and then
// refreshes it until ctx is done (see login.Engine.Run).
func (s *SP) Run(ctx context.Context) error { return s.engine.Run(ctx) }

// LoadIDPMetadata loads the IdP metadata once, for callers that want to
// fail fast instead of running Run in the background.
func (s *SP) LoadIDPMetadata(ctx context.Context) error { return s.engine.LoadIDPMetadata(ctx) }

// Close stops what the SP runs beside requests (the session cache's
// invalidation subscription). Call it after the server has shut down and
// before the store is closed.
func (s *SP) Close() error { return s.engine.Close() }

// Ready reports whether the SP can serve logins: the IdP metadata is loaded.
// (The store is checked by /readyz with a real round trip.)
func (s *SP) Ready() bool { return s.engine.Ready() }

// ServeHTTP implements http.Handler.
func (s *SP) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// MetricsHandler serves the SP's Prometheus metrics. It is not on the SP's
// own routes: serve it on a listener of its own (samlsp --metrics-listen),
// out of the public's reach.
func (s *SP) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{Registry: s.cfg.Registry})
}

// routes mounts the routes and header rules of the modes this replica runs,
// and only those.
func (s *SP) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(limits.ClientIP(s.trusted))
	if s.gw != nil {
		// First of all: no client's identity header gets any further.
		r.Use(s.gw.Strip)
	}
	r.Use(s.instanceHeader, s.securityHeaders, s.countRequests)
	e := s.engine
	r.Get("/saml/metadata", e.ServeMetadata)
	r.HandleFunc("/saml/acs", e.ServeACS)
	lo := e.Logout()
	r.HandleFunc("/saml/slo", lo.ServeSLO)
	r.HandleFunc(PathLogout, lo.ServePage)
	r.Get(login.PathSignedOut, lo.ServeSignedOut)
	loginStart := e.ServeLogin
	if s.fa != nil {
		loginStart = s.fa.ServeLogin // also reads nginx's X-Original-URI
	}
	r.Get(PathLogin, loginStart)
	r.Head(PathLogin, loginStart)
	r.Get(respond.StylePath, serveStyle)
	r.Get("/healthz", s.serveHealthz)
	r.Get("/readyz", s.serveReadyz)
	if s.cfg.Mode.Has(ModeApp) {
		r.Get("/", s.serveIndex)
		r.Handle("/app", e.RequireAccount(http.HandlerFunc(s.serveApp)))
		r.Get("/whoami", s.serveWhoami)
		r.HandleFunc("/logout", lo.ServePage)
		r.Get("/static/style.css", serveStyle) // the address of earlier releases' pages
	}
	if s.gw != nil {
		r.NotFound(s.gw.ServeHTTP) // every other path is the application's
	}
	if s.fa != nil {
		r.HandleFunc("/saml/auth", s.fa.ServeAuth) // any method: nginx's subrequest keeps the original one
	}
	if jwks := s.jwks(); jwks != nil {
		r.Get("/saml/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/jwk-set+json")
			w.Header().Set("Cache-Control", "public, max-age=300")
			_, _ = w.Write(jwks)
		})
	}
	return r
}

func (s *SP) jwks() []byte {
	if s.ids == nil {
		return nil
	}
	return s.ids.JWKS()
}

func (s *SP) instanceHeader(next http.Handler) http.Handler {
	// One value for every reply (full, so an Add elsewhere copies it):
	// Header.Set would make a slice per request.
	key, vals := http.CanonicalHeaderKey(respond.HeaderInstance), []string{s.cfg.InstanceID}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()[key] = vals[:1:1]
		next.ServeHTTP(w, r)
	})
}

// securityHeaders sets the baseline on every reply of the SP's own routes,
// before the handler runs, so a handler can replace any of them. In gateway
// mode the upstream's replies keep the upstream's own caching and framing
// policy; the SP's pages on those paths (logins, refusals) set theirs.
func (s *SP) securityHeaders(next http.Handler) http.Handler {
	base := respond.Baseline(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.gw != nil && !ownPath(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		base.ServeHTTP(w, r)
	})
}

func (s *SP) countRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := "other"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		code := ww.Status()
		if code == 0 { // nothing written: net/http sends 200
			code = http.StatusOK
		}
		s.requests.WithLabelValues(route, statusLabel(code)).Inc()
	})
}

// statusLabels are the status codes' label values, made once rather than
// on every request.
var statusLabels = func() (l [600]string) {
	for i := 100; i < len(l); i++ {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

func statusLabel(code int) string {
	if code >= 100 && code < len(statusLabels) {
		return statusLabels[code]
	}
	return strconv.Itoa(code)
}

// registerMetrics registers the replica's own series: requests by route,
// its identity, and the Go and process collectors.
func (s *SP) registerMetrics() {
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "samlha_sp_http_requests_total",
		Help: "HTTP requests served, by route pattern and status code.",
	}, []string{"route", "code"})
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "samlha_sp_info",
		Help:        "Constant 1, labelled with this replica's instance ID, store kind and mode.",
		ConstLabels: prometheus.Labels{"instance_id": s.cfg.InstanceID, "store": s.storeKind, "mode": s.cfg.Mode.String()},
	})
	info.Set(1)
	s.cfg.Registry.MustRegister(s.requests, info,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerStoreRetries(s.cfg.Registry, s.cfg.Store, s.cfg.Handoff)
}

// serveStyle serves the SP pages' style sheet. The SP's pages need only the
// style sheet; the lab's vendored chart library, also under static/, is not
// served.
func serveStyle(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=3600")
	http.ServeFileFS(w, r, web.Static(), "style.css")
}

// flushInterval is the gateway's flush interval: 0, the default, flushes
// every write at once (a stream with a Content-Length, such as /drip, is
// not held back until it ends).
func flushInterval(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// nameIDFormat is the validated NameID format.
func nameIDFormat(s string) saml.NameIDFormat {
	f, _ := ParseNameIDFormat(s)
	return f
}
