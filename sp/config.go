package sp

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/crewjam/saml"
	"github.com/prometheus/client_golang/prometheus"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/samlha/samlha/sp/access"
	"github.com/samlha/samlha/sp/gateway"
	"github.com/samlha/samlha/sp/identity"
	"github.com/samlha/samlha/sp/limits"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/sp/loginstate"
	"github.com/samlha/samlha/sp/relaystate"
	"github.com/samlha/samlha/sp/returnurl"
	"github.com/samlha/samlha/store"
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
	// DefaultSessionCacheTTL is the default of SessionCacheTTL.
	DefaultSessionCacheTTL = time.Minute
	// MaxSessionCacheTTL is the longest SessionCacheTTL.
	MaxSessionCacheTTL = time.Minute
	// MaxIdentityJWTTTL is the longest identity JWT lifetime.
	MaxIdentityJWTTTL = time.Hour
)

// Config configures an SP. Zero durations take the defaults shown.
type Config struct {
	// InstanceID names this replica in headers, logs, RelayStates and
	// session IDs ([A-Za-z0-9._-]{1,40}).
	InstanceID string
	// RootURL is the public URL of the service, the same on every replica
	// (the load balancer's URL): entity ID, ACS and SLO URLs derive from it.
	RootURL *url.URL
	// Mode is what this replica serves (see Mode); zero is ModeGateway
	// when Gateway.Upstream is set, else ModeApp. Forward-auth is never
	// implied: ask for it.
	Mode Mode

	// Store holds login state; nil selects stateless mode (crewjam's signed
	// cookies).
	Store store.Store
	// StoreKind, when Store is nil, says what the store will be, so that a
	// program can validate the configuration before it opens the store:
	// "stateless" (or ""), "memory" (per replica) or another kind (shared).
	StoreKind string
	// StoreHandoff is the URL of a shared store (redis://...) that a
	// memory or stateless replica moves to. A memory replica reads through
	// to it on a miss and, on shutdown, hands its state over
	// (store/handoff): the program opens it and wraps the memory store. A
	// stateless replica also finishes logins tracked there and reads
	// sessions kept there, and records assertions and revocations there,
	// while it still issues signed cookies: the program opens it and
	// passes it as Handoff. It is validated here so that a mistake is
	// reported with the other problems.
	StoreHandoff string
	// Handoff is the store StoreHandoff names, opened, for a stateless
	// replica (README "From stateless to shared state").
	Handoff store.Store
	// AcceptStateless lets a replica on a shared store also accept what
	// stateless replicas with the same Key (or NextKey) issued: a login
	// tracked in crewjam's signed cookie is finished here, its assertion
	// recorded in the store as any other, and a signed session JWT is a
	// session until it expires or is revoked (revocations kept in the
	// store). For the move from stateless mode to a shared store; drop it
	// SessionMaxTTL after the move.
	AcceptStateless bool

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

	// IDP provides the IdP's metadata.
	IDP *login.IDPMetadata
	// SignAuthnRequests signs every AuthnRequest (SimpleSAMLphp with
	// validate.authnrequest, Keycloak's default, samlp want them); they are
	// signed anyway when the IdP's metadata says WantAuthnRequestsSigned.
	SignAuthnRequests bool
	// NameIDFormat is the NameID format asked of the IdP: transient (the
	// default), persistent, email, unspecified, or a format URN.
	NameIDFormat string

	RequestTTL     time.Duration // how long a login may take at the IdP; default 10m
	TombstoneTTL   time.Duration // how long "already used"/"expired" is remembered; default 15m
	SessionIdleTTL time.Duration // default 30m
	SessionMaxTTL  time.Duration // default 8h, capped by the IdP's SessionNotOnOrAfter
	StoreTimeout   time.Duration // per store call; default 2s (logins and sessions add the store's failover budget, store.FailoverBudget)

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
	// MaxReturnURL is the longest URL a login returns to, in bytes; a
	// longer one is refused with return-url-too-long (414). Default 2 KiB,
	// at most MaxStoredURI.
	MaxReturnURL int
	// LoginLimits bound login starts per client, per replica, and the
	// pending state they leave.
	LoginLimits limits.LoginLimits

	// Gateway configures the modes that protect an application: gateway
	// (Upstream) and forward-auth.
	Gateway *Gateway

	// NextKey and NextCertificate are the SP key pair being rolled in:
	// published in the metadata beside the current one, and used to
	// decrypt responses encrypted to it; Key still signs.
	NextKey         crypto.Signer
	NextCertificate *x509.Certificate

	// SessionCacheTTL is how long a session read from a shared store is
	// served from this replica's memory before it is read again (and its
	// idle timeout slid in the store); default DefaultSessionCacheTTL,
	// capped at a quarter of SessionIdleTTL; negative: no cache. The cache
	// needs a store that carries invalidations (store.Notifier over a
	// network, i.e. Redis): a session ended on any replica (logout, single
	// logout, a new login replacing it) is dropped from every replica's
	// cache as soon as the invalidation arrives (milliseconds), and a
	// replica whose invalidation channel is down (for at most the store's
	// delivery bound, 1 s) reads every session from the store until the
	// channel is proven again. The memory store's channel is in-process
	// (always live): the cache saves opening the sealed record on every
	// request. SessionCacheEntries bounds it (default 100000).
	SessionCacheTTL     time.Duration
	SessionCacheEntries int

	// IDPInitiated, when set, accepts IdP-initiated logins.
	IDPInitiated *login.IDPInitiated

	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Clock is the time source of the SP and of crewjam; nil is the real
	// clock.
	Clock *dsig.Clock
}

// Gateway configures gateway mode (the SP in front of Upstream) and
// forward-auth (a front proxy asks /saml/auth).
type Gateway struct {
	// Upstream is the application's base URL (gateway mode).
	Upstream *url.URL
	// PublicPaths need no session (gateway mode).
	PublicPaths access.PublicPaths
	// HeaderPrefix prefixes the identity headers; every request header
	// with this prefix, under any spelling, is removed from every client
	// request in gateway mode and refused at /saml/auth. Default
	// identity.DefaultHeaderPrefix.
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
	// upstream.
	Transport http.RoundTripper
	// UpstreamHeaderTimeout bounds the wait for the upstream's response
	// headers; default gateway.DefaultUpstreamHeaderTimeout. Past it the
	// client gets 504.
	UpstreamHeaderTimeout time.Duration
	// FlushInterval is how often a response is flushed to the client
	// while it streams; 0 (the default) flushes every write at once, so a
	// stream with a Content-Length is not held back until it ends.
	FlushInterval time.Duration
}

// identity is the identity headers' configuration.
func (g *Gateway) identity() identity.Config {
	return identity.Config{HeaderPrefix: g.HeaderPrefix, PassAttributes: g.PassAttributes, JWT: g.JWT}
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
	if c.SessionCacheTTL == 0 && !c.stateless() {
		c.SessionCacheTTL = DefaultSessionCacheTTL
	}
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
	if c.Mode == 0 {
		c.Mode = ModeApp
		if c.Gateway != nil && c.Gateway.Upstream != nil {
			c.Mode = ModeGateway
		}
	}
	if c.Gateway != nil {
		if c.Gateway.HeaderPrefix == "" {
			c.Gateway.HeaderPrefix = identity.DefaultHeaderPrefix
		}
		c.Gateway.HeaderPrefix = http.CanonicalHeaderKey(c.Gateway.HeaderPrefix)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
}

// stateless reports whether logins are tracked in cookies (no store).
func (c *Config) stateless() bool {
	return c.Store == nil && (c.StoreKind == "" || c.StoreKind == "stateless")
}

// shared reports whether the store is shared between replicas.
func (c *Config) shared() bool {
	if c.Store != nil {
		return store.Shared(c.Store)
	}
	return !c.stateless() && c.StoreKind != "memory"
}

// Problem is one problem with a Config field. Field is the field's path
// in Config ("Gateway.Upstream"), for a program to name its flag.
type Problem struct {
	Field string
	Msg   string
}

func (p *Problem) Error() string { return p.Field + ": " + p.Msg }

// Problems is every problem Validate found, in a fixed order.
type Problems []*Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return "invalid SP configuration:\n  - " + strings.Join(lines, "\n  - ")
}

func (ps *Problems) add(field, format string, args ...any) {
	*ps = append(*ps, &Problem{Field: field, Msg: fmt.Sprintf(format, args...)})
}

// Validate reports every problem with c, with the defaults applied, at
// once, as Problems (nil if none). It is the one validator of an SP's
// configuration: programs map each Problem's Field to their own flag name
// and check nothing else.
func (c Config) Validate() error {
	c.setDefaults()
	return c.validate()
}

func (c *Config) validate() error {
	var ps Problems
	c.validateIdentity(&ps)
	c.validateMode(&ps)
	c.validateState(&ps)
	c.validateLimits(&ps)
	if c.Gateway != nil {
		c.validateGateway(&ps)
	}
	if c.IDPInitiated != nil {
		c.validateIDPInitiated(&ps)
	}
	if len(ps) == 0 {
		return nil
	}
	return ps
}

// validateIdentity checks who this replica is and how it speaks SAML.
func (c *Config) validateIdentity(ps *Problems) {
	if !relaystate.ValidInstanceID(c.InstanceID) {
		ps.add("InstanceID", "%q must be 1 to 40 characters of A-Z a-z 0-9 . _ -", c.InstanceID)
	}
	if c.RootURL == nil || c.RootURL.Host == "" || (c.RootURL.Scheme != "http" && c.RootURL.Scheme != "https") {
		ps.add("RootURL", "must be an absolute http or https URL")
	}
	if c.Key == nil || c.Certificate == nil {
		ps.add("Key", "a key pair is required, the same on every replica, or logins fail on every replica but one (samlsp keygen --dir ./sp-keys makes one)")
	}
	if (c.NextKey == nil) != (c.NextCertificate == nil) {
		ps.add("NextKey", "give both the next key and the next certificate, or neither")
	}
	if c.IDP == nil {
		ps.add("IDP", "an IdP metadata source is required")
	} else if err := c.IDP.Check(); err != nil {
		ps.add("IDP", "%v", err)
	} else {
		if c.IDP.CacheFile != "" && c.IDP.URL == nil {
			ps.add("IDP.CacheFile", "keeps the last good copy of metadata fetched from a URL; with a metadata file there is nothing to keep")
		}
		if c.IDP.MaxStale < 0 {
			ps.add("IDP.MaxStale", "%v is negative", c.IDP.MaxStale)
		}
	}
	if _, err := ParseNameIDFormat(c.NameIDFormat); err != nil {
		ps.add("NameIDFormat", "%v", err)
	}
	if c.BindingSameSite == http.SameSiteNoneMode && c.RootURL != nil && c.RootURL.Scheme != "https" {
		ps.add("BindingSameSite", "SameSite=None cookies need https: browsers refuse them without Secure")
	}
	for _, p := range c.TrustedProxies {
		if !p.IsValid() {
			ps.add("TrustedProxies", "prefix %v is not valid", p)
		}
	}
}

// validateMode checks that the modes make sense together and have what
// they need.
func (c *Config) validateMode(ps *Problems) {
	m := c.Mode
	switch {
	case m&^(ModeApp|ModeGateway|ModeForwardAuth) != 0:
		ps.add("Mode", "unknown mode bits %#x", uint8(m))
	case m.Has(ModeApp) && m.Has(ModeGateway):
		ps.add("Mode", "app and gateway cannot run together: in gateway mode every path but the SP's own (/saml/*, /healthz, /readyz) is the application's, the app pages' paths included")
	}
	up := c.Gateway != nil && c.Gateway.Upstream != nil
	switch {
	case m.Has(ModeGateway) && !up:
		ps.add("Gateway.Upstream", "gateway mode needs the application to protect")
	case !m.Has(ModeGateway) && up:
		ps.add("Gateway.Upstream", "an upstream is for gateway mode, which is not on (mode %s)", m)
	}
	if m.Has(ModeApp) && !m.Has(ModeForwardAuth) && c.Gateway != nil && c.Gateway.used() {
		ps.add("Mode", "identity headers, --allow rules, redirect hosts and the identity JWT are for gateway or forward-auth mode; add forward-auth to the mode, or drop them")
	}
}

// used reports whether any setting of g would take effect.
func (g *Gateway) used() bool {
	return len(g.PublicPaths) > 0 || len(g.PassAttributes) > 0 || len(g.Allow) > 0 || len(g.AllowedRedirectHosts) > 0 ||
		g.JWT != nil || (g.HeaderPrefix != "" && g.HeaderPrefix != identity.DefaultHeaderPrefix)
}

// validateState checks where state lives, and for how long.
func (c *Config) validateState(ps *Problems) {
	for _, d := range []struct {
		field string
		d     time.Duration
	}{{"RequestTTL", c.RequestTTL}, {"TombstoneTTL", c.TombstoneTTL}, {"SessionIdleTTL", c.SessionIdleTTL},
		{"SessionMaxTTL", c.SessionMaxTTL}, {"StoreTimeout", c.StoreTimeout}} {
		if d.d < 0 {
			ps.add(d.field, "%v is negative", d.d)
		}
	}
	if c.SessionCacheTTL > MaxSessionCacheTTL {
		ps.add("SessionCacheTTL", "%v: want at most %v (negative: no cache); it is how long a session is served from memory before the store is read again", c.SessionCacheTTL, MaxSessionCacheTTL)
	}
	if c.SessionCacheTTL > 0 && c.stateless() {
		ps.add("SessionCacheTTL", "the session cache is for a store (memory or redis); stateless sessions are read from the cookie")
	}
	if c.MaxRelogins < 0 {
		ps.add("MaxRelogins", "must not be negative")
	}
	if c.Store != nil && c.StoreKind == "stateless" {
		ps.add("StoreKind", "stateless, but a store is given")
	}
	c.validateHandoff(ps)
}

// validateHandoff checks the moves to a shared store: a memory or
// stateless replica with StoreHandoff, a shared-store replica that
// accepts stateless artifacts.
func (c *Config) validateHandoff(ps *Problems) {
	if c.AcceptStateless {
		switch {
		case c.stateless():
			ps.add("AcceptStateless", "a stateless replica accepts signed cookies anyway: this is for a replica on a shared store (redis) that stateless replicas move to")
		case !c.shared():
			ps.add("AcceptStateless", "needs a shared store (redis): on a per-replica store (memory) a stateless login's replay record would be per replica")
		case c.StoreHandoff != "":
			ps.add("AcceptStateless", "is for a replica on a shared store; a memory replica with a handoff is another move")
		}
	}
	if c.Handoff != nil && (!c.stateless() || c.StoreHandoff == "") {
		ps.add("StoreHandoff", "an opened handoff store is for a stateless replica with StoreHandoff; a memory replica's is wrapped around its store")
	}
	if c.StoreHandoff == "" {
		return
	}
	if c.Store == nil && c.StoreKind != "memory" && !c.stateless() {
		ps.add("StoreHandoff", "moves a memory or stateless replica to a shared store: the store is %s already", c.StoreKind)
	}
	switch backend, err := store.Backend(c.StoreHandoff); {
	case err != nil:
		ps.add("StoreHandoff", "%v", err)
	case backend == "memory":
		ps.add("StoreHandoff", "%q is another process's memory: hand off to a shared store (redis://, rediss://, redis-sentinel://, redis-cluster://)", store.Redact(c.StoreHandoff))
	}
}

// validateLimits checks the bounds on input.
func (c *Config) validateLimits(ps *Problems) {
	if c.MaxReturnURL < 1 || c.MaxReturnURL > MaxStoredURI {
		ps.add("MaxReturnURL", "%d must be 1 to %d bytes", c.MaxReturnURL, MaxStoredURI)
	} else if c.stateless() && c.MaxReturnURL > MaxStatelessReturnURL {
		ps.add("MaxReturnURL", "%d: in stateless mode the return URL travels in crewjam's signed tracking cookie, "+
			"which passes browsers' 4 KiB cookie limit above %d bytes", c.MaxReturnURL, MaxStatelessReturnURL)
	}
	l := c.LoginLimits
	for _, r := range []struct {
		field string
		v     float64
	}{{"LoginLimits.PerClientRate", l.PerClientRate}, {"LoginLimits.TotalRate", l.TotalRate}} {
		if math.IsNaN(r.v) || math.IsInf(r.v, 0) {
			ps.add(r.field, "%v is not a number of starts per second", r.v)
		}
	}
	if l.PerClientRate >= 0 && l.PerClientBurst < 1 {
		ps.add("LoginLimits.PerClientBurst", "%d must be at least 1", l.PerClientBurst)
	}
	if l.TotalRate >= 0 && l.TotalBurst < 1 {
		ps.add("LoginLimits.TotalBurst", "%d must be at least 1", l.TotalBurst)
	}
	if l.Clients < 1 {
		ps.add("LoginLimits.Clients", "%d must be at least 1", l.Clients)
	}
	if l.PerClientPending < -1 {
		ps.add("LoginLimits.PerClientPending", "%d must not be negative (0: 1%% of the pending-logins ceiling, at least 10)", l.PerClientPending)
	} else if l.MaxPending > 0 && l.PerClientPending > l.MaxPending {
		ps.add("LoginLimits.PerClientPending", "%d is over the pending-logins ceiling %d", l.PerClientPending, l.MaxPending)
	}
}

// validateGateway checks the gateway and forward-auth settings.
func (c *Config) validateGateway(ps *Problems) {
	g := c.Gateway
	if u := g.Upstream; u != nil && (u.Host == "" || (u.Scheme != "http" && u.Scheme != "https")) {
		ps.add("Gateway.Upstream", "%q must be an absolute http or https URL", u)
	}
	if len(g.PublicPaths) > 0 && !c.Mode.Has(ModeGateway) {
		ps.add("Gateway.PublicPaths", "public paths are for gateway mode")
	}
	for _, p := range g.PublicPaths {
		if err := access.CheckPublicPath(p); err != nil {
			ps.add("Gateway.PublicPaths", "%v", err)
		} else if ownPath(p) {
			ps.add("Gateway.PublicPaths", "%q is the SP's own path", p)
		}
	}
	if err := identity.CheckPrefix(g.HeaderPrefix); err != nil {
		ps.add("Gateway.HeaderPrefix", "%v", err)
	}
	for _, a := range g.PassAttributes {
		if err := identity.CheckPassAttribute(a); err != nil {
			ps.add("Gateway.PassAttributes", "%v", err)
		}
	}
	for _, h := range g.AllowedRedirectHosts {
		if msg := returnurl.ValidAllowedHost(h); msg != "" {
			ps.add("Gateway.AllowedRedirectHosts", "%s", msg)
		}
	}
	if g.UpstreamHeaderTimeout < 0 {
		ps.add("Gateway.UpstreamHeaderTimeout", "%v: want more than 0 (0: the default, %v)", g.UpstreamHeaderTimeout, gateway.DefaultUpstreamHeaderTimeout)
	}
	if j := g.JWT; j != nil {
		for _, err := range j.KeyProblems() {
			ps.add("Gateway.JWT.Keys", "%v", err)
		}
		if j.TTL < 0 || j.TTL > MaxIdentityJWTTTL {
			ps.add("Gateway.JWT.TTL", "%v: want more than 0 (0: the default, 2m) and at most %v (it is meant to be short)", j.TTL, MaxIdentityJWTTTL)
		}
	}
}

// validateIDPInitiated checks that an IdP-initiated response cannot be
// replayed to another replica unnoticed, unless that is accepted.
func (c *Config) validateIDPInitiated(ps *Problems) {
	if !c.shared() && !c.IDPInitiated.AcceptLocalReplay {
		what := "stateless mode keeps its replay cache in each replica's memory"
		if !c.stateless() {
			what = "the memory store is per replica"
		}
		ps.add("IDPInitiated", "an IdP-initiated response has no login state to consume, so only the assertion replay record stops its replay, and %s: "+
			"a response replayed to another replica would log in again. Use a shared store (redis), or accept that risk explicitly", what)
	}
	for _, p := range c.IDPInitiated.RedirectPrefixes {
		if _, err := access.Canonical(p); err != nil {
			ps.add("IDPInitiated.RedirectPrefixes", "%q must be a canonical local path: %v", p, err)
		}
	}
}

// nameIDFormats are the short names of the NameID formats.
var nameIDFormats = map[string]saml.NameIDFormat{
	"transient":   saml.TransientNameIDFormat,
	"persistent":  saml.PersistentNameIDFormat,
	"email":       saml.EmailAddressNameIDFormat,
	"unspecified": saml.UnspecifiedNameIDFormat,
}

// ParseNameIDFormat turns a short name (transient, persistent, email,
// unspecified) or a format URN into the format; "" is transient.
func ParseNameIDFormat(s string) (saml.NameIDFormat, error) {
	if s == "" {
		return saml.TransientNameIDFormat, nil
	}
	if f, ok := nameIDFormats[s]; ok {
		return f, nil
	}
	if strings.HasPrefix(s, "urn:") && !strings.ContainsAny(s, " \t\r\n<>\"&") {
		return saml.NameIDFormat(s), nil
	}
	return "", fmt.Errorf("NameID format %q: want transient, persistent, email, unspecified or a format URN", s)
}
