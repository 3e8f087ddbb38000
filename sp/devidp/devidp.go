// Package devidp is a development SAML identity provider, for samlha's
// tests, its lab and local runs (cmd/devidp). It is crewjam's samlidp with:
//
//   - users seeded from Config.Users (default alice / alice-password and
//     bob / bob-password, see DefaultUsers), hashed at a deliberately low
//     bcrypt cost so a small machine can run hundreds of logins a second;
//   - a signing key and certificate kept in a directory and reused on
//     restart (LoadOrCreateKeyPair), or given in memory;
//   - SPs registered from their metadata URLs, retried with backoff until
//     they answer (RegisterSPs), or from metadata in memory
//     (RegisterSPMetadata);
//   - a configurable IdP session lifetime, /healthz, /readyz (ready once
//     every configured SP is registered), Prometheus /metrics, and slog logs.
//
// For tests, sp/sptest/devidptest.Start serves one on loopback.
//
// It is not for production: passwords are stored with bcrypt's minimum
// cost, and its clock, keys and users are whatever the configuration says.
package devidp

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlidp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dsig "github.com/russellhaering/goxmldsig"
	"golang.org/x/crypto/bcrypt"
)

// DefaultSessionLifetime is how long a login at the IdP lasts unless
// Config.SessionLifetime says otherwise: samlidp's own fixed lifetime.
const DefaultSessionLifetime = time.Hour

// DefaultBcryptCost is the cost of the users' password hashes unless
// Config.BcryptCost says otherwise: bcrypt's minimum. It is a choice for
// development and load tests only: samlidp checks a password on every login
// with the form, and at bcrypt's default cost (10) that takes about 60 ms of
// CPU, which would cap a two-core lab at a few dozen logins per second and
// measure the IdP instead of the SPs. Never use it for real passwords.
const DefaultBcryptCost = bcrypt.MinCost

// Config configures a development IdP.
type Config struct {
	// PublicURL is the base URL at which browsers and SPs reach the IdP,
	// such as "http://127.0.0.1:9000". Its metadata is at PublicURL +
	// "/metadata" and its SSO endpoint at PublicURL + "/sso".
	PublicURL string

	// Key and Certificate sign the IdP's responses. If both are nil, they
	// are loaded from DataDir or, on first start, generated there (see
	// LoadOrCreateKeyPair), so that metadata an SP fetched stays valid
	// across restarts. Tests pass them in memory (see GenerateKeyPair).
	Key         crypto.Signer
	Certificate *x509.Certificate
	// DataDir holds the key pair when Key and Certificate are nil.
	DataDir string

	// Users are the users who can log in; nil means DefaultUsers().
	Users []User
	// BcryptCost is the cost of the password hashes (0: DefaultBcryptCost).
	BcryptCost int

	// SPMetadataURLs are the metadata URLs of the SPs to register; see
	// RegisterSPs. The IdP is ready (/readyz) once all are registered.
	SPMetadataURLs []string
	// MetadataClient fetches SP metadata (default: a client with a 10 s
	// timeout).
	MetadataClient *http.Client
	// RetryMin and RetryMax bound the backoff between attempts to fetch an
	// SP's metadata (defaults 200 ms and 5 s).
	RetryMin, RetryMax time.Duration

	// SessionLifetime is how long a login at the IdP lasts, during which
	// the browser is not asked for its password again (default
	// DefaultSessionLifetime). It also caps the SessionNotOnOrAfter of the
	// assertions.
	SessionLifetime time.Duration

	// Logger receives structured logs, samlidp's included (default: none).
	Logger *slog.Logger
	// Clock is the IdP's time source (default: the real clock).
	Clock *dsig.Clock
}

// Server is a development IdP: crewjam's samlidp with seeded users, SPs
// registered from their metadata, and health, readiness and metrics
// endpoints. It serves:
//
//	/metadata  the IdP's SAML metadata
//	/sso       SAML SSO (HTTP-Redirect and HTTP-POST bindings); shows the login form
//	/slo       SAML single logout
//	/login     the login form outside a SAML flow
//	/logout    IdP-initiated logout of the browser's IdP session
//	/healthz   200 while the process serves
//	/readyz    200 once every SP in Config.SPMetadataURLs is registered, else 503 naming the missing ones
//	/metrics   Prometheus metrics, from the server's own registry
//
// samlidp's administrative API (/services, /users, /sessions, /shortcuts)
// is not exposed: it is unauthenticated, and would let any local process
// change users or SPs.
type Server struct {
	cfg     Config
	log     *slog.Logger
	idp     *samlidp.Server
	handler http.Handler
	metrics *metrics

	mu      sync.Mutex
	pending map[string]error // configured SP metadata URLs not registered yet, with their last error
}

// inProcess marks the requests the Server makes to samlidp's
// administrative API itself.
type inProcess struct{}

// New returns a development IdP. It does not fetch SP metadata: call
// RegisterSPs for that (cmd/devidp does, in the background).
func New(cfg Config) (*Server, error) {
	base, err := parsePublicURL(cfg.PublicURL)
	if err != nil {
		return nil, err
	}
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	if err := cfg.loadKeyPair(base.Hostname()); err != nil {
		return nil, err
	}

	store := &sessionLifetimeStore{Store: &samlidp.MemoryStore{}, lifetime: cfg.SessionLifetime}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		metrics: newMetrics(),
		pending: map[string]error{},
	}
	for _, u := range cfg.SPMetadataURLs {
		s.pending[u] = nil
	}
	s.idp, err = samlidp.New(samlidp.Options{
		URL:         *base,
		Key:         cfg.Key,
		Signer:      cfg.Key,
		Certificate: cfg.Certificate,
		Logger:      slogAdapter{cfg.Logger},
		Store:       store,
		Clock:       cfg.Clock,
		AdminMiddleware: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Context().Value(inProcess{}) == nil {
					http.Error(w, "devidp does not expose samlidp's administrative API: set users with --users or --users-file and SPs with --sp-metadata", http.StatusForbidden)
					return
				}
				h.ServeHTTP(w, r)
			})
		},
	})
	if err != nil {
		return nil, err
	}
	if err := putUsers(store, cfg.Users, cfg.BcryptCost); err != nil {
		return nil, err
	}
	s.metrics.spsRegistered.Set(0)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.registry, promhttp.HandlerOpts{Registry: s.metrics.registry}))
	mux.HandleFunc("/", s.serveIdP)
	s.handler = s.instrument(mux)
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// Metadata returns the IdP's SAML metadata, for SPs built in the same
// process (tests).
func (s *Server) Metadata() *saml.EntityDescriptor { return s.idp.IDP.Metadata() }

// MetadataURL returns the URL of the IdP's metadata.
func (s *Server) MetadataURL() string { return s.idp.IDP.MetadataURL.String() }

// Certificate returns the IdP's signing certificate.
func (s *Server) Certificate() *x509.Certificate { return s.cfg.Certificate }

// Ready reports whether every SP in Config.SPMetadataURLs is registered.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending) == 0
}

func (s *Server) serveReady(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		io.WriteString(w, "ready\n")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintf(w, "waiting for the metadata of %d SP(s):\n", len(s.pending))
	for _, u := range s.cfg.SPMetadataURLs {
		if err, ok := s.pending[u]; ok {
			if err == nil {
				fmt.Fprintf(w, "  %s (not tried yet)\n", u)
			} else {
				fmt.Fprintf(w, "  %s: %v\n", u, err)
			}
		}
	}
}

// serveIdP serves samlidp's routes, counting logins by result and giving
// the IdP session cookie the configured lifetime.
func (s *Server) serveIdP(w http.ResponseWriter, r *http.Request) {
	login := false
	if r.Method == http.MethodPost && (r.URL.Path == "/sso" || r.URL.Path == "/login") {
		// samlidp parses the form itself; parsing it first changes nothing
		// for it (ParseForm does its work once).
		if err := r.ParseForm(); err == nil && r.PostForm.Get("user") != "" {
			login = true
		}
	}
	hw := &hookWriter{ResponseWriter: w, before: func(h http.Header, status int) {
		sessionSet := s.rewriteSessionCookie(h)
		if login {
			s.metrics.logins.WithLabelValues(loginResult(status, sessionSet)).Inc()
		}
	}}
	s.idp.ServeHTTP(hw, r)
	hw.flushHeader()
}

// loginResult names the outcome of a POST of credentials for the
// devidp_logins_total metric.
func loginResult(status int, sessionSet bool) string {
	switch {
	case sessionSet:
		return "success"
	case status == http.StatusForbidden:
		return "refused-cross-origin"
	case status >= 400:
		return "error"
	default:
		return "invalid-credentials"
	}
}

// sessionCookieName is samlidp's (fixed) IdP session cookie.
const sessionCookieName = "session"

// rewriteSessionCookie gives the IdP session cookie in h the configured
// lifetime (samlidp's is fixed at an hour), and reports whether h sets a
// new session.
func (s *Server) rewriteSessionCookie(h http.Header) bool {
	lines := h["Set-Cookie"] // edited in place
	set := false
	for i, line := range lines {
		c, err := http.ParseSetCookie(line)
		if err != nil || c.Name != sessionCookieName || c.Value == "" || c.MaxAge <= 0 {
			continue
		}
		set = true
		c.MaxAge = int(s.cfg.SessionLifetime / time.Second)
		lines[i] = c.String()
	}
	return set
}

// sessionLifetimeStore gives the sessions samlidp stores the configured
// lifetime: samlidp v0.6.3 fixes it at an hour (an unexported variable),
// and the Store is its only hook. The session is changed in place, so the
// assertion samlidp then makes (SessionNotOnOrAfter) and its deletion timer
// follow it.
type sessionLifetimeStore struct {
	samlidp.Store
	lifetime time.Duration
}

func (s *sessionLifetimeStore) Put(key string, value any) error {
	if strings.HasPrefix(key, "/sessions/") {
		var sess *saml.Session
		switch v := value.(type) {
		case **saml.Session:
			if v != nil {
				sess = *v
			}
		case *saml.Session:
			sess = v
		}
		if sess != nil && !sess.CreateTime.IsZero() {
			sess.ExpireTime = sess.CreateTime.Add(s.lifetime)
		}
	}
	return s.Store.Put(key, value)
}

// hookWriter calls before once, just before the header is written.
type hookWriter struct {
	http.ResponseWriter
	before func(h http.Header, status int)
	done   bool
}

func (w *hookWriter) WriteHeader(status int) {
	if !w.done {
		w.done = true
		w.before(w.Header(), status)
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *hookWriter) Write(b []byte) (int, error) {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// flushHeader writes the header of a handler that wrote nothing.
func (w *hookWriter) flushHeader() {
	if !w.done {
		w.WriteHeader(http.StatusOK)
	}
}

func (w *hookWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// parsePublicURL checks the IdP's public base URL.
func parsePublicURL(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errors.New("no public URL")
	}
	u, err := parseHTTPURL(raw)
	if err != nil {
		return nil, fmt.Errorf("public URL %q: %w", raw, err)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("public URL %q: want no query or fragment", raw)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// parseHTTPURL parses an absolute http or https URL.
func parseHTTPURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("want an absolute http:// or https:// URL")
	}
	return u, nil
}

func now(c *dsig.Clock) time.Time {
	if c != nil {
		return c.Now()
	}
	return time.Now()
}

// metrics are the server's Prometheus metrics, in a registry of its own.
type metrics struct {
	registry      *prometheus.Registry
	logins        *prometheus.CounterVec
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	spsRegistered prometheus.Gauge
	spFetches     *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "devidp_logins_total",
			Help: "Credentials posted to the login form, by result: success, invalid-credentials, refused-cross-origin (samlidp refuses a login POST from another origin), error.",
		}, []string{"result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "devidp_http_requests_total",
			Help: "HTTP requests served, by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "devidp_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"route"}),
		spsRegistered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "devidp_service_providers_registered",
			Help: "Service providers registered with the IdP.",
		}),
		spFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "devidp_sp_metadata_fetches_total",
			Help: "Attempts to fetch and register SP metadata, by result (registered, error).",
		}, []string{"result"}),
	}
	m.registry.MustRegister(m.logins, m.requests, m.duration, m.spsRegistered, m.spFetches,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{"success", "invalid-credentials", "refused-cross-origin", "error"} {
		m.logins.WithLabelValues(r)
	}
	return m
}

// routes are the route labels of the HTTP metrics; any other path is
// "other", so that the label stays bounded.
var routes = map[string]bool{
	"/metadata": true, "/sso": true, "/slo": true, "/login": true, "/logout": true,
	"/healthz": true, "/readyz": true, "/metrics": true,
}

// instrument counts and times every request, and logs it at debug level.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := r.URL.Path
		if !routes[route] {
			route = "other"
		}
		start := time.Now()
		status := 0
		hw := &hookWriter{ResponseWriter: w, before: func(_ http.Header, code int) { status = code }}
		next.ServeHTTP(hw, r)
		hw.flushHeader()
		d := time.Since(start)
		s.metrics.requests.WithLabelValues(route, fmt.Sprint(status)).Inc()
		s.metrics.duration.WithLabelValues(route).Observe(d.Seconds())
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", status, "duration", d)
	})
}

// withDefaults fills what cfg leaves out and checks what it sets.
func (cfg *Config) withDefaults() error {
	if cfg.Users == nil {
		cfg.Users = DefaultUsers()
	}
	if err := ValidateUsers(cfg.Users); err != nil {
		return err
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = DefaultBcryptCost
	}
	if cfg.BcryptCost < bcrypt.MinCost || cfg.BcryptCost > bcrypt.MaxCost {
		return fmt.Errorf("bcrypt cost %d: want %d to %d", cfg.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if cfg.SessionLifetime == 0 {
		cfg.SessionLifetime = DefaultSessionLifetime
	}
	if cfg.SessionLifetime < time.Second {
		return fmt.Errorf("session lifetime %s: want at least 1s", cfg.SessionLifetime)
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 200 * time.Millisecond
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(5*time.Second, cfg.RetryMin)
	}
	if cfg.MetadataClient == nil {
		cfg.MetadataClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	for _, u := range cfg.SPMetadataURLs {
		if _, err := parseHTTPURL(u); err != nil {
			return fmt.Errorf("SP metadata URL %q: %w", u, err)
		}
	}
	return nil
}

// loadKeyPair takes the key pair cfg gives, or loads (or creates) one in
// cfg.DataDir for host.
func (cfg *Config) loadKeyPair(host string) error {
	switch {
	case cfg.Key != nil && cfg.Certificate != nil:
		return nil
	case cfg.Key != nil || cfg.Certificate != nil:
		return errors.New("give both Key and Certificate, or neither (to use DataDir)")
	case cfg.DataDir == "":
		return errors.New("no Key and Certificate, and no DataDir to keep them in")
	}
	key, cert, created, err := LoadOrCreateKeyPair(cfg.DataDir, host, now(cfg.Clock))
	if err != nil {
		return err
	}
	cfg.Key, cfg.Certificate = key, cert
	if created {
		cfg.Logger.Info("generated the IdP key pair", "dir", cfg.DataDir)
	} else {
		cfg.Logger.Info("loaded the IdP key pair", "dir", cfg.DataDir)
	}
	return nil
}

// putUsers stores users in samlidp's store, their passwords hashed at cost.
func putUsers(store samlidp.Store, users []User, cost int) error {
	for _, u := range users {
		hash, err := bcrypt.GenerateFromPassword([]byte(u.Password), cost)
		if err != nil {
			return fmt.Errorf("user %q: %w", u.Name, err)
		}
		err = store.Put("/users/"+u.Name, samlidp.User{
			Name:           u.Name,
			HashedPassword: hash,
			Groups:         u.Groups,
			Email:          u.Email,
			CommonName:     u.CommonName,
			GivenName:      u.GivenName,
			Surname:        u.Surname,
		})
		if err != nil {
			return err
		}
	}
	return nil
}
