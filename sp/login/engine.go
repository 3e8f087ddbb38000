// Package login is the SP's login engine: crewjam/saml's service provider
// with its hooks filled (engine.go), the IdP metadata that configures it
// (idpmeta.go), starting a login (start.go), the ACS that finishes one and
// names the cause of every failure (acs.go), IdP-initiated logins
// (idpinitiated.go), what a request's session is (account.go), logout and
// single logout (logout.go), the screen that refuses DTDs before crewjam
// parses (xmlguard.go), and the SP's own metadata (rollover.go).
package login

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
	"github.com/prometheus/client_golang/prometheus"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/keyring"
	"github.com/samlha/samlha/sp/limits"
	"github.com/samlha/samlha/sp/loginstate"
	"github.com/samlha/samlha/sp/relaystate"
	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/sp/returnurl"
	"github.com/samlha/samlha/sp/session"
	"github.com/samlha/samlha/store"
)

// Config configures the engine. Durations must be set (the SP's defaults
// are applied by package sp).
type Config struct {
	Instance string
	RootURL  *url.URL
	// Store holds login state; nil is stateless mode (crewjam's signed
	// cookies).
	Store     store.Store
	StoreKind string
	// Shared, in stateless mode, is the shared store a move to it reads
	// (README "From stateless to shared state"): logins tracked there are
	// finished (taken once), sessions kept there are read, and assertions
	// and revocations are recorded there. New logins and sessions stay
	// crewjam's signed cookies.
	Shared store.Store
	// AcceptStateless, in store mode, also accepts what a stateless
	// replica with the same Key issued: a login tracked in crewjam's signed
	// cookie is finished (its assertion recorded in the store), and its
	// signed session JWT is a session until it expires or is revoked.
	AcceptStateless bool

	Key             crypto.Signer
	Certificate     *x509.Certificate
	NextKey         crypto.Signer // the pair being rolled in, if any
	NextCertificate *x509.Certificate
	// Ring is the SP's own key ring (store mode).
	Ring *keyring.Ring

	IDP *IDPMetadata
	// SignAuthnRequests signs every AuthnRequest; they are signed anyway
	// when the IdP's metadata says WantAuthnRequestsSigned="true".
	SignAuthnRequests bool
	// NameIDFormat is asked for in every AuthnRequest's NameIDPolicy and
	// published in the metadata; "" is transient.
	NameIDFormat saml.NameIDFormat

	RequestTTL, TombstoneTTL      time.Duration
	SessionIdleTTL, SessionMaxTTL time.Duration
	StoreTimeout                  time.Duration
	BindingSameSite               http.SameSite
	MaxRelogins                   int
	IDPInitiated                  *IDPInitiated
	SessionCacheTTL               time.Duration
	SessionCacheEntries           int
	Clock                         *dsig.Clock
	Responder                     *respond.Responder
	ReturnURL                     returnurl.Policy
	Gate                          *limits.Gate
	Logger                        *slog.Logger
	Registry                      prometheus.Registerer
	Now                           func() time.Time
}

// Engine runs logins for one SP replica.
type Engine struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	resp    *respond.Responder
	cookies loginstate.CookieSettings

	tracker  *loginstate.StoreTracker // store mode
	sessions *session.Provider        // store mode
	cache    *session.Cache           // shared store with invalidations (startCache)
	recent   *recent                  // logins whose response was parsed here
	replay   saml.AssertionReplayCache
	revoked  samlsp.SessionRevocationStore

	rt atomic.Pointer[liveConfig] // nil until the IdP metadata is loaded
	// metadataOnly serves this SP's metadata until the IdP's is loaded, so
	// the IdP can register the SP first.
	metadataOnly *samlsp.Middleware
	// provider is where sessions are read and ended (sessionProvider),
	// built once: it needs no IdP metadata, so a replica that has just
	// started, or whose IdP is down, serves the sessions it can read, and
	// every liveConfig's middleware uses it.
	provider samlsp.SessionProvider
}

// liveConfig is what depends on the IdP metadata; it is rebuilt, and swapped
// in atomically, each time the metadata changes.
type liveConfig struct {
	mw    *samlsp.Middleware
	state loginstate.Tracker
	// parser is the ServiceProvider the ACS parses responses with. In
	// store mode it is mw.ServiceProvider without its ReplayCache: the ACS
	// records the assertion together with the session, in one round trip
	// (see commit). crewjam's other flows (logout requests) still use
	// mw.ServiceProvider and its ReplayCache.
	parser *saml.ServiceProvider
	// idpParser is parser accepting unsolicited responses (IDPInitiated).
	idpParser *saml.ServiceProvider
}

// New returns an engine. Call Run to load (and refresh) the IdP metadata.
func New(cfg Config) (*Engine, error) {
	e := &Engine{cfg: cfg, log: cfg.Logger, resp: cfg.Responder, recent: newRecent(cfg.RequestTTL + cfg.TombstoneTTL)}
	e.m = newMetrics(cfg.Registry)
	e.cookies = loginstate.CookieSettings{Secure: cfg.RootURL.Scheme == "https", SameSite: cfg.BindingSameSite, Ring: cfg.Ring}
	switch {
	case cfg.Store != nil:
		e.onStore(cfg.Store, cfg.StoreKind)
		e.revoked = e.sessions.Revocations()
		if err := e.startCache(); err != nil {
			return nil, err
		}
	case cfg.Shared != nil:
		// Stateless on the way to a shared store: the store's replay
		// record and revocations, shared with the store replicas.
		e.onStore(cfg.Shared, "shared")
		e.revoked = e.sessions.JWTRevocations()
	default:
		// Stateless: crewjam's own in-process stores, as they are. They
		// protect one replica only; that is the point of this mode.
		rc := samlsp.NewMemoryReplayCache(100000)
		rc.Clock = cfg.Clock
		e.replay = rc
		rv := samlsp.NewMemorySessionRevocationStore(samlsp.DefaultMaxSessionRevocations)
		rv.Clock = cfg.Clock
		e.revoked = rv
	}
	var err error
	if e.metadataOnly, err = samlsp.New(e.middlewareOptions(nil)); err != nil {
		return nil, fmt.Errorf("configure SAML middleware: %w", err)
	}
	e.applySP(&e.metadataOnly.ServiceProvider)
	e.provider = e.sessionProvider(e.cookieSessions(e.metadataOnly))
	return e, nil
}

// onStore tracks logins, records assertions and keeps sessions in st.
func (e *Engine) onStore(st store.Store, kind string) {
	cfg := e.cfg
	onErr := e.storeError
	e.tracker = loginstate.NewStoreTracker(loginstate.StoreConfig{Store: st, StoreKind: kind, Instance: cfg.Instance,
		TTL: cfg.RequestTTL, Tombstone: cfg.TombstoneTTL, Timeout: cfg.StoreTimeout, Now: cfg.Now,
		Cookie: e.cookies, OnStoreError: onErr})
	e.replay = session.NewReplayCache(st, cfg.StoreTimeout, cfg.Now, onErr)
	e.sessions = session.NewProvider(session.ProviderConfig{Store: st, StoreKind: kind, Instance: cfg.Instance,
		Idle: cfg.SessionIdleTTL, Absolute: cfg.SessionMaxTTL, Timeout: cfg.StoreTimeout, Now: cfg.Now,
		Ring: cfg.Ring, Cookie: session.CookieSettings{Secure: e.cookies.Secure}, OnStoreError: onErr})
	e.sessions.SetCodec(samlsp.JWTSessionCodec{MaxAge: cfg.SessionMaxTTL, Clock: cfg.Clock,
		Audience: cfg.RootURL.String(), Issuer: cfg.RootURL.String()})
}

// Close stops what the engine runs beside requests (the session cache's
// subscription); call it before closing the store.
func (e *Engine) Close() error {
	if e.cache != nil {
		return e.cache.Close()
	}
	return nil
}

// startCache puts the session cache in front of the store's sessions when
// it is asked for (SessionCacheTTL > 0) and the store carries
// invalidations (a store.Notifier: Redis, and the memory store in
// process). The memory store gains from it too: its reads are in-process,
// but every read still opens the sealed record and decodes the session,
// which was most of its cost per request (more than a cached Redis
// session's).
func (e *Engine) startCache() error {
	cfg := e.cfg
	n, ok := cfg.Store.(store.Notifier)
	switch {
	case cfg.SessionCacheTTL <= 0:
		return nil
	case !ok:
		e.log.Warn("session cache off: the store carries no invalidations, so a logout on another replica could not reach this one's memory", "store", cfg.StoreKind)
		return nil
	}
	entries := cfg.SessionCacheEntries
	if entries <= 0 {
		entries = 100000
	}
	c, err := session.NewCache(e.sessions, session.CacheConfig{MaxAge: cfg.SessionCacheTTL, MaxEntries: entries,
		Now: cfg.Now, Logger: e.log, Notifier: n})
	if err != nil {
		return fmt.Errorf("session cache: subscribe to invalidations: %w", err)
	}
	e.cache = c
	e.m.cacheTrusted(cfg.Registry, c.Trusted)
	e.log.Info("session cache on", "max_age", c.MaxAge(), "entries", entries, "invalidation_bound", n.DeliveryBound())
	return nil
}

func (e *Engine) storeError(op string, err error) {
	e.m.storeErrors.WithLabelValues(op).Inc()
	e.log.Warn("store operation failed", "op", op, "err", err)
}

// Ready reports whether the engine can serve logins: the IdP metadata is
// loaded.
func (e *Engine) Ready() bool { return e.rt.Load() != nil }

// Shared reports whether other replicas see this replica's logins and
// sessions (a shared store); false for a per-replica store and stateless
// mode.
func (e *Engine) Shared() bool { return e.tracker != nil && e.tracker.Shared() }

// middlewareOptions are crewjam's options for IdP metadata md (nil before
// it is loaded: enough to serve this SP's own metadata).
func (e *Engine) middlewareOptions(md *saml.EntityDescriptor) samlsp.Options {
	return samlsp.Options{
		URL:                  *e.cfg.RootURL,
		Key:                  e.cfg.Key,
		Certificate:          e.cfg.Certificate,
		IDPMetadata:          md,
		CookieName:           session.CookieName,
		CookieSameSite:       e.cfg.BindingSameSite,
		TrackedRequestMaxAge: e.cfg.RequestTTL,
		ReplayCache:          e.replay,
		SessionRevocations:   e.revoked,
		Clock:                e.cfg.Clock,
		RelayStateFunc: func(http.ResponseWriter, *http.Request) string {
			return relaystate.New(e.cfg.Instance)
		},
		LogoutBindings: []string{saml.HTTPPostBinding, saml.HTTPRedirectBinding},
		// The ACS serves the HTTP-POST binding only (an artifact would
		// make the SP fetch the response from the IdP, and the ACS refuses
		// SAMLart): the metadata advertises only what is served.
		AssertionConsumerServiceBindings: []string{saml.HTTPPostBinding},
		SignRequest:                      e.cfg.SignAuthnRequests || idpWantsSignedRequests(md),
		// The single logout profile requires signed logout messages over
		// the front-channel bindings, and IdPs (samlidp among them) refuse
		// unsigned ones; it also puts the signing key in our metadata.
		SignLogout: true,
	}
}

// setIDPMetadata builds the crewjam middleware for md and swaps it in.
func (e *Engine) setIDPMetadata(md *saml.EntityDescriptor) error {
	opts := e.middlewareOptions(md)
	mw, err := samlsp.New(opts)
	if err != nil {
		return fmt.Errorf("configure SAML middleware: %w", err)
	}
	mw.OnError = e.onLibraryError
	e.applySP(&mw.ServiceProvider)
	if !e.cfg.SignAuthnRequests && idpWantsSignedRequests(md) {
		e.log.Info("signing AuthnRequests: the IdP's metadata asks for it (WantAuthnRequestsSigned)")
	}
	// mw.RequestTracker stays crewjam's default and is never read: only
	// crewjam's ServeACS, HandleStartAuthFlow and RequireAccount read it,
	// and the SP mounts none of them (rt.state tracks logins instead).
	// Only the logout page's form may start a logout (see ServeLogout).
	mw.RequirePOSTToStartLogout = true
	applyRollover(&mw.ServiceProvider, e.cfg.NextKey)
	rt := &liveConfig{mw: mw, parser: &mw.ServiceProvider}
	mw.Session = e.provider
	tracker := e.cookieTracker(opts, mw)
	if e.cfg.Store != nil {
		parser := mw.ServiceProvider
		parser.ReplayCache = nil
		rt.parser = &parser
		rt.state = e.tracker
		if e.cfg.AcceptStateless {
			rt.state = loginstate.Either{Cookies: tracker, Store: e.tracker}
		}
	} else {
		rt.state = tracker
		if e.tracker != nil { // on the way to a shared store
			rt.state = loginstate.Either{Cookies: tracker, Store: e.tracker, CookiesFirst: true}
		}
	}
	if e.cfg.IDPInitiated != nil {
		p := *rt.parser
		p.AllowIDPInitiated = true
		rt.idpParser = &p
	}
	e.rt.Store(rt)
	e.m.idpMetadata.Set(1)
	return nil
}

// sessionProvider is where this engine's sessions are read and ended: the
// store's (through the session cache when it runs), crewjam's signed
// cookies (cookies) in stateless mode, or either while moving between the
// two. None of it depends on the IdP metadata (e.provider is built with it
// once, in New, after the cache).
func (e *Engine) sessionProvider(cookies samlsp.CookieSessionProvider) samlsp.SessionProvider {
	if e.cfg.Store != nil {
		var sessions samlsp.SessionProvider = e.sessions
		if e.cache != nil {
			sessions = e.cache
		}
		if e.cfg.AcceptStateless {
			return session.Either{Store: sessions, Cookies: cookies}
		}
		return sessions
	}
	if e.tracker != nil { // on the way to a shared store
		return session.Either{Store: e.sessions, Cookies: cookies, CookiesFirst: true}
	}
	return cookies
}

// cookieSessions is crewjam's signed-cookie session provider of mw as
// stateless mode runs it; on a replica that shares a store its
// revocations are kept there.
func (e *Engine) cookieSessions(mw *samlsp.Middleware) samlsp.CookieSessionProvider {
	cp := mw.Session.(samlsp.CookieSessionProvider)
	cp.MaxAge = e.cfg.SessionMaxTTL
	codec := cp.Codec.(samlsp.JWTSessionCodec)
	codec.MaxAge = e.cfg.SessionMaxTTL
	cp.Codec = session.JWTCodec{JWTSessionCodec: codec, Next: e.nextKeys()}
	cp.SameSite = http.SameSiteLaxMode
	if e.sessions != nil {
		cp.Revocations = e.sessions.JWTRevocations()
	}
	return cp
}

// cookieTracker is stateless mode's tracker: crewjam's signed tracking
// cookies, verified with the SP key and, during a rollover, the next one.
func (e *Engine) cookieTracker(opts samlsp.Options, mw *samlsp.Middleware) *loginstate.StatelessTracker {
	tr := samlsp.DefaultRequestTracker(opts, &mw.ServiceProvider)
	tr.SameSite = e.cfg.BindingSameSite
	if c, ok := tr.Codec.(samlsp.JWTTrackedRequestCodec); ok {
		tr.Codec = loginstate.KeysCodec{JWTTrackedRequestCodec: c, Next: e.nextKeys()}
	}
	return loginstate.NewStateless(tr, e.cfg.Instance, e.cfg.TombstoneTTL)
}

// nextKeys are the keys a signed cookie may also verify with: the SP key
// being rolled in.
func (e *Engine) nextKeys() []crypto.Signer {
	if e.cfg.NextKey == nil {
		return nil
	}
	return []crypto.Signer{e.cfg.NextKey}
}

// live returns the configuration that depends on the IdP metadata or, if
// it is not loaded yet, answers idp-metadata-unavailable and returns nil.
func (e *Engine) live(w http.ResponseWriter, r *http.Request) *liveConfig {
	rt := e.rt.Load()
	if rt == nil {
		e.resp.Fail(w, r, errMetadataNotLoaded())
	}
	return rt
}

func errMetadataNotLoaded() *failure.Failure {
	return &failure.Failure{Cause: failure.CauseIdPMetadataUnavailable, Detail: "IdP metadata not loaded yet"}
}

// MetadataValidity is how long the SP metadata says it is valid
// (validUntil): long enough that a copy an IdP was given by hand outlives
// any ordinary change window. IdPs that fetch /saml/metadata refresh it as
// cacheDuration (a day) says, and a key rollover takes a refresh anyway
// (README, "SP certificate rollover").
const MetadataValidity = 30 * 24 * time.Hour

// applySP sets what crewjam's options cannot: the NameID format asked for
// and the metadata's validity.
func (e *Engine) applySP(sp *saml.ServiceProvider) {
	sp.AuthnNameIDFormat = e.cfg.NameIDFormat
	// Asked for by name, "unspecified" is spelled out (crewjam leaves an
	// unspecified format out, which means the same, but some IdPs differ).
	sp.SendUnspecifiedNameIDFormat = e.cfg.NameIDFormat == saml.UnspecifiedNameIDFormat
	sp.MetadataValidDuration = MetadataValidity
}

// idpWantsSignedRequests reports whether the IdP's metadata asks for
// signed AuthnRequests.
func idpWantsSignedRequests(md *saml.EntityDescriptor) bool {
	if md == nil {
		return false
	}
	for _, d := range md.IDPSSODescriptors {
		if d.WantAuthnRequestsSigned != nil && *d.WantAuthnRequestsSigned {
			return true
		}
	}
	return false
}
