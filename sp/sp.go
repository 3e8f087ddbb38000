// Package sp is samlha's SAML service provider: crewjam/saml's samlsp
// middleware with its hooks (SessionProvider, AssertionReplayCache,
// SessionRevocationStore) filled by adapters over a store.Store, a login
// tracker of its own, an ACS that names the cause of every failure, and
// the pages and endpoints an operator needs to see which replica did what.
//
// Three strategies run from the same code (DESIGN.md section 1):
//
//   - store mode with a memory store: state in each replica's memory (the
//     affinity strategy, which needs a sticky balancer);
//   - store mode with a shared store (Redis): any replica finishes any login;
//   - stateless mode: crewjam's signed cookies, unchanged.
package sp

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/identity"
	"github.com/samlha/samlha/sp/keyring"
	"github.com/samlha/samlha/sp/limits"
	"github.com/samlha/samlha/sp/loginstate"
	"github.com/samlha/samlha/sp/relaystate"
	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/sp/returnurl"
	"github.com/samlha/samlha/sp/session"
	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/web"
)

// Bounds of the return URL (README "Bounds on input").
const (
	// DefaultMaxReturnURL is the default of Config.MaxReturnURL.
	DefaultMaxReturnURL = 2 << 10
	// MaxStoredURI is the largest Config.MaxReturnURL accepted: the
	// tracked-request codec refuses longer strings on both sides.
	MaxStoredURI = loginstate.MaxURI
	// MaxStatelessReturnURL is the largest Config.MaxReturnURL in stateless
	// mode: crewjam's tracking cookie, a signed JWT holding the URL, is
	// 3,485 bytes with a 2,048-byte URL and passes the 4,096 bytes browsers
	// keep of a cookie at about 2.5 KiB.
	MaxStatelessReturnURL = DefaultMaxReturnURL
)

// Config configures an SP. Zero durations take the defaults shown.
type Config struct {
	// InstanceID names this replica in headers, logs, RelayStates and
	// session IDs ([A-Za-z0-9._-]{1,40}).
	InstanceID string
	// RootURL is the public URL of the service, the same on every replica
	// (the load balancer's URL): entity ID, ACS and SLO URLs derive from it.
	RootURL *url.URL

	// Store holds login state; nil selects stateless mode (crewjam's signed
	// cookies).
	Store store.Store

	// Key and Certificate sign SAML requests, decrypt assertions and, in
	// stateless mode, sign the cookies. Every replica must have the same.
	Key         crypto.Signer
	Certificate *x509.Certificate

	// SessionKeys are the SP's own keys (--session-key): the first seals
	// and signs, every one opens and verifies. They salt the encryption of
	// session records, sign the browser binding cookies and pepper the
	// revocation keys; every replica must have the same ring. Nil derives
	// one key from Key, which every replica shares already.
	SessionKeys [][32]byte

	// IDP provides the IdP's metadata (see IDPMetadata).
	IDP *IDPMetadata

	RequestTTL     time.Duration // how long a login may take at the IdP; default 10m
	TombstoneTTL   time.Duration // how long "already used"/"expired" is remembered; default 15m
	SessionIdleTTL time.Duration // default 30m
	SessionMaxTTL  time.Duration // default 8h, capped by the IdP's SessionNotOnOrAfter
	StoreTimeout   time.Duration // per store call; default 2s

	// BindingSameSite is the SameSite attribute of the cookie that binds a
	// login to its browser (and of crewjam's tracking cookie in stateless
	// mode). It must reach the ACS on the IdP's cross-site POST. Default:
	// None on https, Lax on http (None needs Secure).
	BindingSameSite http.SameSite
	// MaxRelogins caps how often a browser whose session cookie names a
	// session this replica cannot use is sent to log in again before the
	// SP stops and explains; default 2.
	MaxRelogins int

	// TrustedProxies are the peers whose X-Forwarded-For (client
	// address), X-Forwarded-Proto/-Host and forward-auth headers are
	// believed: the client address (for rate limits and logs) is the first
	// address of X-Forwarded-For, from the right, outside these prefixes.
	// Empty: none; the TCP peer is the client.
	TrustedProxies []netip.Prefix
	// MaxReturnURL is the longest path and query a login returns to, in
	// bytes; a longer one is refused with return-url-too-long (414).
	// Default 2 KiB, at most MaxStoredURI.
	MaxReturnURL int
	// LoginLimits bound login starts per client, per replica, and the
	// pending state they leave.
	LoginLimits limits.LoginLimits

	// Gateway, when set, protects an upstream application (reverse proxy
	// mode) and serves forward-auth; see Gateway.
	Gateway *Gateway

	// NextKey and NextCertificate are the SP key pair being rolled in:
	// published in the metadata beside the current one, and used to
	// decrypt responses encrypted to it; Key still signs.
	NextKey         crypto.Signer
	NextCertificate *x509.Certificate

	// SessionCacheTTL, when positive (store mode), serves a session from
	// this replica's memory for that long after reading it from the store:
	// a session ended elsewhere is refused here at most that much later.
	// SessionCacheEntries bounds the cache (default 100000).
	SessionCacheTTL     time.Duration
	SessionCacheEntries int

	// IDPInitiated, when set, accepts IdP-initiated logins.
	IDPInitiated *IDPInitiated

	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Clock is the time source of the SP and of crewjam; nil is the real
	// clock.
	Clock *dsig.Clock
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.RequestTTL, 10*time.Minute)
	def(&c.TombstoneTTL, 15*time.Minute)
	def(&c.SessionIdleTTL, 30*time.Minute)
	def(&c.SessionMaxTTL, 8*time.Hour)
	def(&c.StoreTimeout, 2*time.Second)
	if c.MaxRelogins == 0 {
		c.MaxRelogins = 2
	}
	if c.MaxReturnURL == 0 {
		c.MaxReturnURL = DefaultMaxReturnURL
	}
	c.LoginLimits.SetDefaults()
	if c.BindingSameSite == 0 {
		if c.RootURL != nil && c.RootURL.Scheme == "https" {
			c.BindingSameSite = http.SameSiteNoneMode
		} else {
			c.BindingSameSite = http.SameSiteLaxMode
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	if c.Gateway != nil {
		c.Gateway.setDefaults()
	}
}

// Validate reports every problem with c at once.
func (c *Config) Validate() error {
	var errs []error
	if !relaystate.ValidInstanceID(c.InstanceID) {
		errs = append(errs, fmt.Errorf("instance ID %q must be 1 to 40 characters of A-Z a-z 0-9 . _ -", c.InstanceID))
	}
	if c.RootURL == nil || c.RootURL.Host == "" || (c.RootURL.Scheme != "http" && c.RootURL.Scheme != "https") {
		errs = append(errs, errors.New("root URL must be an absolute http or https URL"))
	}
	if c.Key == nil || c.Certificate == nil {
		errs = append(errs, errors.New("a key and certificate are required, the same on every replica"))
	}
	if c.IDP == nil {
		errs = append(errs, errors.New("IdP metadata source is required"))
	}
	if c.BindingSameSite == http.SameSiteNoneMode && c.RootURL != nil && c.RootURL.Scheme != "https" {
		errs = append(errs, errors.New("SameSite=None cookies need https: browsers refuse them without Secure"))
	}
	if c.Gateway != nil {
		errs = append(errs, c.Gateway.validate()...)
	}
	if (c.NextKey == nil) != (c.NextCertificate == nil) {
		errs = append(errs, errors.New("give both the next key and the next certificate, or neither"))
	}
	if c.IDPInitiated != nil {
		errs = append(errs, c.IDPInitiated.validate(c.Store)...)
	}
	if c.SessionCacheTTL < 0 || c.SessionCacheTTL > time.Minute {
		errs = append(errs, fmt.Errorf("session cache TTL %v: want 0 (off) to 1m; it is how late a logout elsewhere reaches this replica", c.SessionCacheTTL))
	}
	if c.SessionCacheTTL > 0 && c.Store == nil {
		errs = append(errs, errors.New("the session cache is for store mode; stateless sessions are read from the cookie"))
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{{"request TTL", c.RequestTTL}, {"tombstone TTL", c.TombstoneTTL}, {"session idle TTL", c.SessionIdleTTL},
		{"session max TTL", c.SessionMaxTTL}, {"store timeout", c.StoreTimeout}} {
		if d.d < 0 {
			errs = append(errs, fmt.Errorf("%s %v is negative", d.name, d.d))
		}
	}
	if c.MaxReturnURL < 1 || c.MaxReturnURL > MaxStoredURI {
		errs = append(errs, fmt.Errorf("max return URL %d must be 1 to %d bytes", c.MaxReturnURL, MaxStoredURI))
	}
	if c.Store == nil && c.MaxReturnURL > MaxStatelessReturnURL {
		errs = append(errs, fmt.Errorf("max return URL %d: in stateless mode the return URL travels in crewjam's signed tracking cookie, "+
			"which passes browsers' 4 KiB cookie limit above %d bytes", c.MaxReturnURL, MaxStatelessReturnURL))
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("trusted proxy prefix %v is not valid", p))
		}
	}
	errs = append(errs, c.LoginLimits.Validate()...)
	return errors.Join(errs...)
}

// SP is a SAML service provider. It is an http.Handler.
type SP struct {
	cfg       Config
	log       *slog.Logger
	m         *metrics
	storeKind string
	cookies   loginstate.CookieSettings
	ring      *keyring.Ring
	resp      *respond.Responder
	returnURL returnurl.Policy
	handler   http.Handler
	logins    *limits.Gate

	tracker  *loginstate.StoreTracker // store mode
	sessions *session.Provider        // store mode
	replay   saml.AssertionReplayCache
	revoked  samlsp.SessionRevocationStore

	rt atomic.Pointer[liveConfig] // nil until the IdP metadata is loaded
	// metadataOnly serves this SP's metadata until the IdP's is loaded, so
	// the IdP can register the SP first.
	metadataOnly *samlsp.Middleware

	proxy http.Handler      // gateway mode: the upstream
	ids   *identity.Headers // gateway and forward-auth: the identity headers
	gm    *gatewayMetrics
	cache *session.Cache // store mode with SessionCacheTTL
}

// liveConfig is what depends on the IdP metadata; it is rebuilt, and swapped
// in atomically, each time the metadata changes.
type liveConfig struct {
	mw    *samlsp.Middleware
	state loginstate.Tracker
	// parser is the ServiceProvider the ACS parses responses with. In
	// store mode it is mw.ServiceProvider without its ReplayCache: the ACS
	// records the assertion together with the session, in one round trip
	// (see commitLogin). crewjam's other flows (logout requests,
	// artifacts) still use mw.ServiceProvider and its ReplayCache.
	parser *saml.ServiceProvider
	// idpParser is parser accepting unsolicited responses (IDPInitiated).
	idpParser *saml.ServiceProvider
}

// New returns an SP. Call Run to load (and refresh) the IdP metadata.
func New(cfg Config) (*SP, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &SP{cfg: cfg, storeKind: "stateless"}
	var err error
	if cfg.Store != nil {
		s.storeKind = "unknown"
		if d, ok := cfg.Store.(store.Describer); ok {
			s.storeKind = d.Kind()
		}
	}
	s.log = cfg.Logger.With("instance", cfg.InstanceID, "store", s.storeKind)
	s.m = newMetrics(cfg.Registry, cfg.InstanceID, s.storeKind)
	if s.ring, err = keyring.ForSP(cfg.SessionKeys, cfg.Key, cfg.NextKey); err != nil && cfg.Store != nil {
		return nil, err // stateless mode uses crewjam's cookies, signed with Key, and no ring
	}
	s.logins = limits.NewGate(cfg.LoginLimits, cfg.RequestTTL+cfg.TombstoneTTL, cfg.Store == nil)
	s.logins.Register(cfg.Registry, s.now)
	s.log.Info("bounds on input", "limits", fmt.Sprintf("max-return-url=%d %s", cfg.MaxReturnURL, cfg.LoginLimits.Describe()), "trusted_proxies", fmt.Sprint(cfg.TrustedProxies))
	s.cookies = loginstate.CookieSettings{Secure: cfg.RootURL.Scheme == "https", SameSite: cfg.BindingSameSite, Ring: s.ring}
	s.returnURL = returnurl.Policy{Root: cfg.RootURL, MaxLen: cfg.MaxReturnURL, Home: "/app"}
	if cfg.Gateway != nil {
		s.returnURL.AllowedHosts, s.returnURL.Home = cfg.Gateway.AllowedRedirectHosts, "/"
	}
	logoutPath := "/logout"
	if cfg.Gateway != nil && cfg.Gateway.Upstream != nil {
		logoutPath = "/saml/logout"
	}
	s.resp, err = respond.New(respond.Config{
		Context: failure.Context{Instance: cfg.InstanceID, StoreKind: s.storeKind, MetadataSource: cfg.IDP.flag(),
			IDPInitiated: cfg.IDPInitiated != nil, LogoutPath: logoutPath},
		RetryPath: "/app", Logger: s.log, Registry: cfg.Registry, Now: s.now})
	if err != nil {
		return nil, err
	}
	if cfg.Store != nil {
		onErr := s.storeError
		s.tracker = loginstate.NewStoreTracker(loginstate.StoreConfig{Store: cfg.Store, StoreKind: s.storeKind, Instance: cfg.InstanceID,
			TTL: cfg.RequestTTL, Tombstone: cfg.TombstoneTTL, Timeout: cfg.StoreTimeout, Now: s.now,
			Cookie: s.cookies, OnStoreError: onErr})
		s.replay = session.NewReplayCache(cfg.Store, cfg.StoreTimeout, s.now, onErr)
		s.sessions = session.NewProvider(session.ProviderConfig{Store: cfg.Store, StoreKind: s.storeKind, Instance: cfg.InstanceID,
			Idle: cfg.SessionIdleTTL, Absolute: cfg.SessionMaxTTL, Timeout: cfg.StoreTimeout, Now: s.now,
			Ring: s.ring, Cookie: session.CookieSettings{Secure: s.cookies.Secure}, OnStoreError: onErr})
		s.revoked = s.sessions.Revocations()
		if cfg.SessionCacheTTL > 0 {
			n := cfg.SessionCacheEntries
			if n <= 0 {
				n = 100000
			}
			s.cache = session.NewCache(s.sessions, cfg.SessionCacheTTL, n, s.now)
		}
	} else {
		// Stateless: crewjam's own in-process stores, as they are. They
		// protect one replica only; that is the point of this mode.
		rc := samlsp.NewMemoryReplayCache(100000)
		rc.Clock = cfg.Clock
		s.replay = rc
		rv := samlsp.NewMemorySessionRevocationStore(samlsp.DefaultMaxSessionRevocations)
		rv.Clock = cfg.Clock
		s.revoked = rv
	}
	if s.metadataOnly, err = samlsp.New(s.middlewareOptions(nil)); err != nil {
		return nil, fmt.Errorf("configure SAML middleware: %w", err)
	}
	if g := cfg.Gateway; g != nil {
		s.gm = newGatewayMetrics(cfg.Registry)
		if g.Upstream != nil {
			s.proxy = s.newUpstreamProxy()
		}
		aud := cfg.RootURL.String()
		if g.Upstream != nil {
			aud = g.Upstream.String()
		}
		if s.ids, err = identity.NewHeaders(g.identity(), cfg.RootURL.String(), aud, s.log, s.now); err != nil {
			return nil, err
		}
	}
	s.handler = s.routes()
	return s, nil
}

func (s *SP) now() time.Time {
	if s.cfg.Clock != nil {
		return s.cfg.Clock.Now()
	}
	return time.Now()
}

func (s *SP) storeError(op string, err error) {
	s.m.storeErrors.WithLabelValues(op).Inc()
	s.log.Warn("store operation failed", "op", op, "err", err)
}

// Ready reports whether the SP can serve logins: the IdP metadata is loaded.
// (The store is checked by /readyz with a real round trip.)
func (s *SP) Ready() bool { return s.rt.Load() != nil }

// middlewareOptions are crewjam's options for IdP metadata md (nil before
// it is loaded: enough to serve this SP's own metadata).
func (s *SP) middlewareOptions(md *saml.EntityDescriptor) samlsp.Options {
	return samlsp.Options{
		URL:                  *s.cfg.RootURL,
		Key:                  s.cfg.Key,
		Certificate:          s.cfg.Certificate,
		IDPMetadata:          md,
		CookieName:           session.CookieName,
		CookieSameSite:       s.cfg.BindingSameSite,
		TrackedRequestMaxAge: s.cfg.RequestTTL,
		ReplayCache:          s.replay,
		SessionRevocations:   s.revoked,
		Clock:                s.cfg.Clock,
		RelayStateFunc: func(http.ResponseWriter, *http.Request) string {
			return relaystate.New(s.cfg.InstanceID)
		},
		LogoutBindings: []string{saml.HTTPPostBinding, saml.HTTPRedirectBinding},
		// The single logout profile requires signed logout messages over
		// the front-channel bindings, and IdPs (samlidp among them) refuse
		// unsigned ones; it also puts the signing key in our metadata.
		SignLogout: true,
	}
}

// setIDPMetadata builds the crewjam middleware for md and swaps it in.
func (s *SP) setIDPMetadata(md *saml.EntityDescriptor) error {
	opts := s.middlewareOptions(md)
	mw, err := samlsp.New(opts)
	if err != nil {
		return fmt.Errorf("configure SAML middleware: %w", err)
	}
	mw.OnError = s.onLibraryError
	// mw.RequestTracker stays crewjam's default and is never read: only
	// crewjam's ServeACS, HandleStartAuthFlow and RequireAccount read it,
	// and the SP mounts none of them (rt.state tracks logins instead).
	// Only the logout page's form may start a logout (see serveLogout).
	mw.RequirePOSTToStartLogout = true
	s.applyRollover(&mw.ServiceProvider)
	rt := &liveConfig{mw: mw, parser: &mw.ServiceProvider}
	if s.cfg.Store != nil {
		parser := mw.ServiceProvider
		parser.ReplayCache = nil
		rt.parser = &parser
		mw.Session = s.sessions
		if s.cache != nil {
			mw.Session = s.cache
		}
		rt.state = s.tracker
	} else {
		tr := samlsp.DefaultRequestTracker(opts, &mw.ServiceProvider)
		tr.SameSite = s.cfg.BindingSameSite
		rt.state = loginstate.NewStateless(tr, s.cfg.InstanceID, s.cfg.TombstoneTTL)
		cp := mw.Session.(samlsp.CookieSessionProvider)
		cp.MaxAge = s.cfg.SessionMaxTTL
		codec := cp.Codec.(samlsp.JWTSessionCodec)
		codec.MaxAge = s.cfg.SessionMaxTTL
		cp.Codec = codec
		cp.SameSite = http.SameSiteLaxMode
		mw.Session = cp
	}
	if s.cfg.IDPInitiated != nil {
		p := *rt.parser
		p.AllowIDPInitiated = true
		rt.idpParser = &p
	}
	if s.sessions != nil {
		s.sessions.SetCodec(samlsp.JWTSessionCodec{MaxAge: s.cfg.SessionMaxTTL, Clock: s.cfg.Clock,
			Audience: s.cfg.RootURL.String(), Issuer: s.cfg.RootURL.String()})
	}
	s.rt.Store(rt)
	s.m.idpMetadata.Set(1)
	return nil
}

// live returns the configuration that depends on the IdP metadata or, if
// it is not loaded yet, answers idp-metadata-unavailable and returns nil.
func (s *SP) live(w http.ResponseWriter, r *http.Request) *liveConfig {
	rt := s.rt.Load()
	if rt == nil {
		s.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseIdPMetadataUnavailable, Detail: "IdP metadata not loaded yet"})
	}
	return rt
}

// ServeHTTP implements http.Handler.
func (s *SP) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

func (s *SP) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(limits.ClientIP(s.cfg.TrustedProxies))
	if s.cfg.Gateway != nil {
		// First of all: no client's identity header gets any further.
		r.Use(s.stripIdentity)
	}
	r.Use(s.instanceHeader, s.securityHeaders, s.countRequests)
	if s.proxy == nil {
		r.Get("/", s.serveIndex)
		r.Handle("/app", s.requireAccount(http.HandlerFunc(s.serveApp)))
		r.Get("/whoami", s.serveWhoami)
		r.HandleFunc("/logout", s.serveLogout)
		// The SP's pages need only the style sheet; the lab's vendored chart
		// library, also under static/, is not served.
		r.Get("/static/style.css", serveStyle) // the address of earlier releases' pages
	} else {
		// Gateway: every other path is the upstream's.
		gw := s.serveGateway(s.requireAccount(http.HandlerFunc(s.serveUpstream)))
		r.NotFound(gw)
	}
	if s.cfg.Gateway != nil {
		r.Get("/saml/auth", s.serveAuth)
		r.Head("/saml/auth", s.serveAuth)
		r.Get("/saml/login", s.serveLoginRD)
		r.HandleFunc("/saml/logout", s.serveLogout)
		if jwks := s.ids.JWKS(); jwks != nil {
			r.Get("/saml/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/jwk-set+json")
				w.Header().Set("Cache-Control", "public, max-age=300")
				_, _ = w.Write(jwks)
			})
		}
	}
	r.Get(respond.StylePath, serveStyle)
	r.Get("/saml/metadata", s.serveMetadata)
	r.HandleFunc("/saml/acs", s.serveACS)
	r.HandleFunc("/saml/slo", s.serveSLO)
	r.Get("/healthz", s.serveHealthz)
	r.Get("/readyz", s.serveReadyz)
	return r
}

// MetricsHandler serves the SP's Prometheus metrics. It is not on the SP's
// own routes: serve it on a listener of its own (samlsp --metrics-listen),
// out of the public's reach.
func (s *SP) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{Registry: s.cfg.Registry})
}

func (s *SP) instanceHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(respond.HeaderInstance, s.cfg.InstanceID)
		next.ServeHTTP(w, r)
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
		s.m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	})
}

// securityHeaders sets the baseline on every reply of the SP's own routes,
// before the handler runs, so a handler can replace any of them. In gateway
// mode the upstream's replies keep the upstream's own caching and framing
// policy; the SP's pages on those paths (logins, refusals) set theirs.
func (s *SP) securityHeaders(next http.Handler) http.Handler {
	base := respond.Baseline(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.proxy != nil && !ownPath(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		base.ServeHTTP(w, r)
	})
}

// serveStyle serves the SP pages' style sheet. The SP's pages need only the
// style sheet; the lab's vendored chart library, also under static/, is not
// served.
func serveStyle(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=3600")
	http.ServeFileFS(w, r, web.Static(), "style.css")
}

// admitLogin checks the return URL and the login limits for a login r is
// about to start. It returns the URI to store and the time the start was
// counted at (for limits.Gate.Release), or answers r and returns false.
func (s *SP) admitLogin(w http.ResponseWriter, r *http.Request, target string) (string, time.Time, bool) {
	uri, f := s.returnURL.FromRequest(r)
	if target != "" {
		uri, f = s.returnURL.Check(target)
	}
	if f != nil {
		s.resp.Fail(w, r, f)
		return "", time.Time{}, false
	}
	now := s.now()
	client := limits.ClientAddress(r)
	if f, wait := s.logins.Admit(client, now); f != nil {
		f.RetryAfter = wait
		s.resp.Fail(w, r, f) // logged by sample under a flood; counted in full
		return "", time.Time{}, false
	}
	return uri, now, true
}
