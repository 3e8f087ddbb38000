// Command samlsp is samlha's SAML service provider: one replica of a service
// that may run several behind a load balancer. Where it keeps login state
// (its own memory, a shared Redis, or signed cookies) is a flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"

	"github.com/samlha/samlha/cmd/internal/cli"
	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/keypair"
	"github.com/samlha/samlha/sp/limits"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/sp/relaystate"
	"github.com/samlha/samlha/store"
	_ "github.com/samlha/samlha/store/memory" // memory:// stores
	"github.com/samlha/samlha/store/redis"    // redis://, rediss://, redis-sentinel://, redis-cluster:// stores
)

const summary = `samlsp: a SAML service provider replica whose login state lives where --store says.

Usage:
  samlsp [flags]                      serve
  samlsp keygen --dir DIR             write sp.key and sp.crt (give the same pair to every replica)
  samlsp jwtkey --out FILE            write a signing key for --identity-jwt-key

Example (two replicas sharing Redis, behind a balancer at :8080):
  samlsp keygen --dir ./sp-keys
  samlsp --instance-id sp-1 --listen 127.0.0.1:8081 --root-url http://127.0.0.1:8080 \
         --idp-metadata-url http://127.0.0.1:9000/metadata --sp-key ./sp-keys/sp.key --sp-cert ./sp-keys/sp.crt \
         --store redis --store-url redis://127.0.0.1:6379/0

Protect an existing app (gateway mode; add --identity-jwt --identity-jwt-key DIR for a signed identity):
  samlsp ... --store redis --upstream http://127.0.0.1:3000 --pass-attribute mail=X-Email --allow /admin:groups=admins
Forward-auth behind nginx auth_request, Caddy forward_auth or Traefik forwardAuth: point them at /saml/auth
  (see deploy/nginx-forward-auth.conf, deploy/Caddyfile.forward-auth, deploy/traefik-forward-auth.yml).

Stores (--store):
  memory     state in this process: a login must finish on the replica that began it (needs a sticky balancer)
  redis      state in Redis (--store-url redis://, rediss://, redis-sentinel://, redis-cluster://): any replica finishes any login
  stateless  crewjam's signed cookies: any replica with the same --sp-key finishes any login; replay protection per replica
  memory with --store-handoff redis://...   a memory replica on its way to Redis (affinity to shared state, and back,
             without losing a login: README "Moving from affinity to shared state")
  stateless with --store-handoff redis://..., then redis with --accept-stateless   stateless to Redis without
             losing a login or a session (README "From stateless to shared state")
`

func main() {
	cli.Exit("samlsp", run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	listen, rootURL, instanceID                    string
	idpMetadataURL, idpMetadataFile                string
	idpRefresh                                     time.Duration
	idpMetadataCache                               string
	idpMaxStale                                    time.Duration
	spKey, spCert                                  string
	sessionKeys                                    cli.KeyRing
	sessionKeyRing                                 [][32]byte
	storeMode, storeURL                            string
	storeBudget                                    time.Duration // the --store-url's failover budget (redis-sentinel://)
	storeHandoff                                   string
	acceptStateless                                bool
	storeTimeout, storeWait                        time.Duration
	requestTTL, tombstoneTTL, sessionIdle, sessMax time.Duration
	cookieSameSite                                 cli.SameSite
	maxRelogins                                    int
	logFormat, logLevel                            string
	shutdownGrace                                  time.Duration

	// Bounds on input (README "Bounds on input").
	metricsListen                      string
	trustedProxies                     cli.StringList
	trustedPrefixes                    []netip.Prefix
	maxReturnURL                       int
	loginRatePerClient, loginRate      float64
	loginBurstPerClient, loginBurst    int
	maxPendingLogins, rateLimitClients int
	maxPendingPerClient                int
	maxConnections                     int
	readHeaderTimeout, readTimeout     time.Duration
	writeTimeout, idleTimeout          time.Duration
	mode                               string
	signAuthnRequests                  bool
	nameIDFormat                       string
	gw                                 gatewayOptions
	// parseFailed names the sp.Config fields whose flags could not be
	// parsed, so the SP's validator is not asked about them again.
	parseFailed map[string]bool
	cfg         sp.Config // what the flags build (without its store, logger and registry)
}

// maxHeaderBytes bounds the request line and headers of the public
// listener (Go's default is 1 MiB): the longest return URL (8 KiB) and a
// SAML redirect-binding message fit with room to spare; more gets 431.
const maxHeaderBytes = 64 << 10

func defaultInstanceID() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "sp"
	}
	return relaystate.SanitizeInstanceID(h)
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("samlsp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8081", "address to serve HTTP on")
	fs.StringVar(&o.rootURL, "root-url", "http://127.0.0.1:8080", "public URL of the service, the same on every replica (the load balancer's URL);\nthe entity ID, ACS and SLO URLs derive from it")
	fs.StringVar(&o.instanceID, "instance-id", defaultInstanceID(), "name of this replica in headers, logs, RelayStates and session IDs ([A-Za-z0-9._-], max 40);\nstickyproxy target names must match it")
	fs.StringVar(&o.idpMetadataURL, "idp-metadata-url", "", "URL of the IdP's SAML metadata, fetched at start (retried until it answers) and every --idp-metadata-refresh")
	fs.StringVar(&o.idpMetadataFile, "idp-metadata-file", "", "file holding the IdP's SAML metadata (instead of --idp-metadata-url)")
	fs.DurationVar(&o.idpRefresh, "idp-metadata-refresh", 10*time.Minute, "how often the IdP metadata is read again")
	fs.StringVar(&o.idpMetadataCache, "idp-metadata-cache", "", "with --idp-metadata-url: a file that keeps the last good metadata, so that a start while the IdP's\nmetadata URL is down is ready at once (with --store redis a copy is kept in Redis in any case)")
	fs.DurationVar(&o.idpMaxStale, "idp-metadata-max-stale", login.DefaultMetadataMaxStale, "how old a kept copy of the IdP metadata may be to be used at start (never past its validUntil)")
	fs.BoolVar(&o.signAuthnRequests, "sign-authn-requests", false, "sign every AuthnRequest with --sp-key (IdPs such as SimpleSAMLphp with validate.authnrequest,\n"+
		"Keycloak and samlp want them signed); they are signed anyway when the IdP's metadata says WantAuthnRequestsSigned=\"true\"")
	fs.StringVar(&o.nameIDFormat, "name-id-format", "transient", "NameID format asked of the IdP: transient, persistent, email, unspecified, or a format URN")
	fs.StringVar(&o.spKey, "sp-key", "", "PEM private key of the SP (required; every replica must use the same; create with: samlsp keygen)")
	fs.StringVar(&o.spCert, "sp-cert", "", "PEM certificate for --sp-key (required)")
	o.sessionKeys.Register(fs, "session-key", "`secret` of the SP's own key ring (repeatable; the first seals and signs, all open and verify), the same on every replica:\n"+
		"it salts the encryption of session records in the store, signs the per-login binding cookies and peppers revocation keys.\n"+
		"32 bytes as base64 or hex, or any string of 16+ bytes (stickyproxy's --cookie-key format). Without any, one key is derived from --sp-key.\n"+
		"Rotate: add the new key second on every replica, then move it first, then drop the old one after --session-max-ttl")
	fs.StringVar(&o.storeMode, "store", "memory", "where login state lives: memory, redis or stateless")
	fs.StringVar(&o.storeURL, "store-url", "", "store URL; default memory:// for --store memory, redis://127.0.0.1:6379/0 for --store redis\n(forms: memory://?max_entries=N, redis://[:password@]host:port/db, rediss://..., redis-sentinel://h1:p1,h2:p2/master, redis-cluster://h1:p1,h2:p2)")
	fs.StringVar(&o.storeHandoff, "store-handoff", "", "with --store memory: the shared store (redis://...) this replica is moving to. A miss reads through to it,\n"+
		"and on SIGTERM, before it stops accepting, the replica copies its live state there (time left kept) and then uses it only.\n"+
		"Roll every replica to it, then to --store redis --store-url <the same URL>: no login or session is lost (README \"Moving from affinity to shared state\").\n"+
		"With --store stateless: the replica still issues signed cookies, but also finishes logins begun on a Redis replica (taken once from the store),\n"+
		"reads the sessions kept there, and records assertions and logouts there (README \"From stateless to shared state\")")
	fs.BoolVar(&o.acceptStateless, "accept-stateless", false, "with --store redis: also accept what --store stateless replicas with the same --sp-key (or --sp-key-next) issued:\n"+
		"a login begun in a signed tracking cookie finishes here (its assertion recorded in the store), and a signed session cookie\n"+
		"is a session until it expires or is logged out. For the move from stateless to Redis; drop it --session-max-ttl after the move")
	fs.DurationVar(&o.storeTimeout, "store-timeout", 2*time.Second, "limit on each store call (logins and sessions add the store URL's failover_budget, redis-sentinel:// only)")
	fs.DurationVar(&o.storeWait, "store-wait", 10*time.Second, "how long to wait at start for the store to answer before giving up")
	fs.DurationVar(&o.requestTTL, "request-ttl", 10*time.Minute, "how long a login may take at the IdP (MFA, password reset)")
	fs.DurationVar(&o.tombstoneTTL, "tombstone-ttl", 15*time.Minute, "how long a used or expired login is remembered, to tell \"already used\" and \"expired\" from \"unknown\"")
	fs.DurationVar(&o.sessionIdle, "session-idle-ttl", 30*time.Minute, "a session ends after this long without requests")
	fs.DurationVar(&o.sessMax, "session-max-ttl", 8*time.Hour, "a session ends this long after login at the latest (or at the IdP's SessionNotOnOrAfter)")
	o.cookieSameSite = cli.SameSiteAuto
	fs.Var(&o.cookieSameSite, "cookie-samesite", "SameSite of the cookie that binds a login to its browser: "+cli.SameSiteHelp+";\nit must reach the ACS on the IdP's cross-site POST")
	fs.IntVar(&o.maxRelogins, "max-relogins", 2, "re-logins tried for a session cookie this replica cannot use before explaining instead of looping")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&o.shutdownGrace, "shutdown-grace", 10*time.Second, "on SIGTERM, how long in-flight requests may take to finish")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "address to serve Prometheus /metrics on, apart from the public --listen (e.g. 127.0.0.1:9081 or :9090 in a pod);\nempty: metrics are not served")
	fs.Var(&o.trustedProxies, "trusted-proxies", "comma-separated CIDRs of the proxies in front of this replica (e.g. 10.0.0.0/8,127.0.0.1/32): from them,\nthe client address is the first address of X-Forwarded-For, from the right, outside these; from any other peer\nthe header is ignored. Empty: the TCP peer is the client (behind a proxy, every user then shares the proxy's limits)")
	fs.IntVar(&o.maxReturnURL, "max-return-url", sp.DefaultMaxReturnURL, fmt.Sprintf("longest path and query (bytes) a login returns to; longer is refused with 414 return-url-too-long (at most %d)", sp.MaxStoredURI))
	fs.Float64Var(&o.loginRatePerClient, "login-rate-per-client", 2, "login starts per second one client may make on this replica; over it: 429 login-rate-limited; 0 switches it off")
	fs.IntVar(&o.loginBurstPerClient, "login-burst-per-client", 40, "login starts one client may make at once before --login-rate-per-client applies")
	fs.Float64Var(&o.loginRate, "login-rate", 50, "login starts per second of all clients together on this replica; over it: 429 login-rate-limited; 0 switches it off")
	fs.IntVar(&o.loginBurst, "login-burst", 200, "login starts all clients may make at once before --login-rate applies")
	fs.IntVar(&o.maxPendingLogins, "max-pending-logins", 20000, "ceiling of logins this replica began within the last --request-ttl + --tombstone-ttl (each may leave one key in the store,\nso a shared store holds at most replicas × this); over it: 503 store-full with Retry-After; 0 switches it off")
	fs.IntVar(&o.maxPendingPerClient, "max-pending-logins-per-client", 0, "the pending logins one client may hold (its starts in the window less the logins it finished); over it:\n429 login-rate-limited (client-share). 0: 1% of --max-pending-logins, at least 10. Off with --login-rate-per-client 0 and in stateless mode")
	fs.DurationVar(&o.readHeaderTimeout, "read-header-timeout", 10*time.Second, "time a client has to send a request's line and headers (slow clients are cut off)")
	fs.DurationVar(&o.readTimeout, "read-timeout", 30*time.Second, "time a client has to send a whole request, body included")
	fs.DurationVar(&o.writeTimeout, "write-timeout", 30*time.Second, "time to write a reply, from the end of the request's headers")
	fs.DurationVar(&o.idleTimeout, "idle-timeout", 2*time.Minute, "how long an idle keep-alive connection is held")
	fs.IntVar(&o.maxConnections, "max-connections", 4096, "connections the public listener holds at once; more wait in the kernel's accept queue until one closes")
	fs.IntVar(&o.rateLimitClients, "rate-limit-clients", 16384, "clients the per-client login limiter remembers (about 200 bytes each; the least recently seen is forgotten first)")
	fs.StringVar(&o.mode, "mode", "", "what this replica serves: app (samlsp's own pages /, /app, /whoami), gateway (every path but the SP's own\n"+
		"goes to --upstream), forward-auth (/saml/auth for nginx, Caddy, Traefik), or a comma-separated list (app,forward-auth).\n"+
		"Empty: gateway with --upstream, else app; forward-auth is never implied")
	o.gw.addFlags(fs)
	if err := cli.Parse(fs, args, "SAMLHA", summary); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q (flags only; see --help)", fs.Args())
	}
	return o, o.validate()
}

// fieldFlags names the flag of each sp.Config field the SP's validator can
// name (TestEveryConfigFieldHasAFlag holds it to sp's validator).
var fieldFlags = map[string]string{
	"InstanceID": "--instance-id", "StoreHandoff": "--store-handoff", "AcceptStateless": "--accept-stateless", "NameIDFormat": "--name-id-format", "RootURL": "--root-url", "Mode": "--mode", "StoreKind": "--store",
	"Key": "--sp-key/--sp-cert", "NextKey": "--sp-key-next/--sp-cert-next", "IDP": "--idp-metadata-url/--idp-metadata-file",
	"RequestTTL": "--request-ttl", "TombstoneTTL": "--tombstone-ttl", "SessionIdleTTL": "--session-idle-ttl",
	"SessionMaxTTL": "--session-max-ttl", "StoreTimeout": "--store-timeout", "BindingSameSite": "--cookie-samesite",
	"MaxRelogins": "--max-relogins", "TrustedProxies": "--trusted-proxies", "MaxReturnURL": "--max-return-url",
	"LoginLimits.PerClientRate": "--login-rate-per-client", "LoginLimits.PerClientBurst": "--login-burst-per-client",
	"LoginLimits.TotalRate": "--login-rate", "LoginLimits.TotalBurst": "--login-burst", "LoginLimits.Clients": "--rate-limit-clients",
	"LoginLimits.PerClientPending": "--max-pending-logins-per-client",
	"SessionCacheTTL":              "--session-cache-ttl",
	"Gateway.Upstream":             "--upstream", "Gateway.PublicPaths": "--public-path", "Gateway.HeaderPrefix": "--identity-header-prefix",
	"Gateway.PassAttributes": "--pass-attribute", "Gateway.AllowedRedirectHosts": "--allowed-redirect-hosts",
	"Gateway.UpstreamHeaderTimeout": "--upstream-header-timeout", "Gateway.JWT.Keys": "--identity-jwt-key",
	"Gateway.JWT.TTL": "--identity-jwt-ttl", "IDPInitiated": "--allow-idp-initiated",
	"IDPInitiated.RedirectPrefixes": "--idp-initiated-redirect", "IDP.CacheFile": "--idp-metadata-cache",
	"IDP.MaxStale": "--idp-metadata-max-stale",
}

// validate turns the flags into o.cfg: it parses what the flags name (URLs,
// addresses, files, keys) and then asks the SP's one validator
// (sp.Config.Validate), naming each problem by its flag. Every problem is
// reported at once.
func (o *options) validate() error {
	var p cli.Problems
	o.parseFailed = map[string]bool{}
	o.parseSource(&p)
	o.parseStore(&p)
	o.sessionKeyRing = o.sessionKeys.Keys(&p)
	o.parseBounds(&p)
	mode, err := sp.ParseMode(o.mode)
	if err != nil {
		p.Addf("--mode: %v", err)
	}
	gw := o.gw.build(&p)
	o.cfg = sp.Config{InstanceID: o.instanceID, Mode: mode, SignAuthnRequests: o.signAuthnRequests, NameIDFormat: o.nameIDFormat, StoreKind: o.storeMode, SessionKeys: o.sessionKeyRing,
		RequestTTL: o.requestTTL, TombstoneTTL: o.tombstoneTTL, SessionIdleTTL: o.sessionIdle, SessionMaxTTL: o.sessMax,
		StoreTimeout: o.storeTimeout, MaxRelogins: o.maxRelogins, TrustedProxies: o.trustedPrefixes,
		MaxReturnURL: o.maxReturnURL, LoginLimits: o.loginLimits(), Gateway: gw.Gateway, IDPInitiated: gw.IDPInitiated,
		NextKey: gw.NextKey, NextCertificate: gw.NextCertificate, SessionCacheTTL: gw.SessionCacheTTL, StoreHandoff: o.storeHandoff,
		AcceptStateless: o.acceptStateless}
	o.cfg.RootURL, _ = url.Parse(o.rootURL)
	if o.cfg.RootURL != nil {
		o.cfg.BindingSameSite = o.cookieSameSite.Mode(o.cfg.RootURL.Scheme == "https")
	}
	o.cfg.IDP = &login.IDPMetadata{File: o.idpMetadataFile, Refresh: o.idpRefresh, CacheFile: o.idpMetadataCache, MaxStale: o.idpMaxStale}
	if o.idpMetadataURL != "" {
		o.cfg.IDP.URL, _ = url.Parse(o.idpMetadataURL)
	}
	if o.spKey != "" && o.spCert != "" {
		if o.cfg.Key, o.cfg.Certificate, err = keypair.Load(o.spKey, o.spCert); err != nil {
			p.Addf("--sp-key/--sp-cert: %v", err)
			o.parseFailed["Key"] = true
		}
	}
	if err := o.cfg.Validate(); err != nil {
		var ps sp.Problems
		if !errors.As(err, &ps) {
			return err
		}
		for _, pr := range ps {
			if o.parseFailed[pr.Field] {
				continue // said above, as the flag's own problem
			}
			p.Addf("%s: %s", flagOf(pr.Field), pr.Msg)
		}
	}
	return p.Err()
}

// flagOf is the flag that sets an sp.Config field.
func flagOf(field string) string {
	if f, ok := fieldFlags[field]; ok {
		return f
	}
	return field
}

// parseSource checks where the SP's identity and the IdP metadata come
// from.
func (o *options) parseSource(p *cli.Problems) {
	if o.spKey != "" && o.spCert == "" || o.spKey == "" && o.spCert != "" {
		p.Addf("--sp-key and --sp-cert: give both")
	}
	if o.idpMetadataURL != "" {
		if u, err := url.Parse(o.idpMetadataURL); err != nil || u.Host == "" {
			p.Addf("--idp-metadata-url %q is not an absolute URL", o.idpMetadataURL)
		}
	}
}

// parseStore checks --store and --store-url against the store registry.
func (o *options) parseStore(p *cli.Problems) {
	o.storeBudget = 0
	switch o.storeMode {
	case "memory", "redis":
		if o.storeURL == "" {
			o.storeURL = map[string]string{"memory": "memory://", "redis": "redis://127.0.0.1:6379/0"}[o.storeMode]
		} else if backend, err := store.Backend(o.storeURL); err != nil {
			p.Addf("--store-url: %v", err)
			break
		} else if backend != o.storeMode {
			// The store registry knows which backend opens which schemes.
			p.Addf("--store %s takes a %s:// --store-url, not %q", o.storeMode,
				strings.Join(store.Schemes(o.storeMode), "://, "), store.Redact(o.storeURL))
			break
		}
		if o.storeMode == "redis" {
			// Read now, not at the first connection: a mistyped parameter is
			// reported with every other problem, and the failover budget
			// is checked against --write-timeout (checkWriteTimeout).
			if u, err := url.Parse(o.storeURL); err == nil {
				if cfg, err := redis.ParseURL(u); err != nil {
					p.Addf("--store-url: %v", err)
				} else {
					o.storeBudget = cfg.Options.FailoverBudget
				}
			}
		}
	case "stateless":
		if o.storeURL != "" {
			p.Addf("--store stateless keeps no server-side state; drop --store-url")
		}
	default:
		p.Addf("--store %q: want memory, redis or stateless", o.storeMode)
	}
}

// parseBounds parses the addresses, numbers and durations that bound input.
func (o *options) parseBounds(p *cli.Problems) {
	o.trustedPrefixes = nil
	for _, c := range o.trustedProxies {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			if a, aerr := netip.ParseAddr(c); aerr == nil {
				pfx = netip.PrefixFrom(a, a.BitLen())
			} else {
				p.Addf("--trusted-proxies: %q is not a CIDR (such as 10.0.0.0/8) or an address", c)
				continue
			}
		}
		o.trustedPrefixes = append(o.trustedPrefixes, pfx.Masked())
	}
	// A flag of 0 switches a rate or the ceiling off (sp.LoginLimits uses a
	// negative value for that): a negative flag would be read as off too,
	// so it is refused as the typo it is.
	for _, r := range []struct {
		flag string
		v    float64
	}{{"--login-rate-per-client", o.loginRatePerClient}, {"--login-rate", o.loginRate}} {
		if r.v < 0 || math.IsNaN(r.v) || math.IsInf(r.v, 0) {
			p.Addf("%s must be a number of starts per second, 0 or more, got %v", r.flag, r.v)
		}
	}
	if o.maxPendingLogins < 0 {
		p.Addf("--max-pending-logins must not be negative (0 switches it off)")
	}
	// The library reads 0 as its default; a flag of 0 is a mistake.
	for _, n := range []struct {
		flag, field string
		v           int
	}{{"--login-burst-per-client", "LoginLimits.PerClientBurst", o.loginBurstPerClient}, {"--login-burst", "LoginLimits.TotalBurst", o.loginBurst},
		{"--rate-limit-clients", "LoginLimits.Clients", o.rateLimitClients}, {"--max-connections", "", o.maxConnections}} {
		if n.v < 1 {
			p.Addf("%s must be at least 1, got %d", n.flag, n.v)
			o.parseFailed[n.field] = true
		}
	}
	// A zero duration would silently become the SP's default: refused, in
	// flag order, so the report reads the same every time.
	for _, d := range []struct {
		flag string
		d    time.Duration
	}{{"--idle-timeout", o.idleTimeout}, {"--idp-metadata-refresh", o.idpRefresh}, {"--read-header-timeout", o.readHeaderTimeout},
		{"--read-timeout", o.readTimeout}, {"--request-ttl", o.requestTTL}, {"--session-idle-ttl", o.sessionIdle},
		{"--session-max-ttl", o.sessMax}, {"--store-timeout", o.storeTimeout}, {"--tombstone-ttl", o.tombstoneTTL},
		{"--write-timeout", o.writeTimeout}} {
		if d.d <= 0 {
			p.Addf("%s must be positive, got %v", d.flag, d.d)
		}
	}
	o.checkWriteTimeout(p)
}

// checkWriteTimeout refuses a --write-timeout that a store call may
// outlast: the SP bounds each call by --store-timeout plus the store's
// failover budget (redis-sentinel://, failover_budget, default 5s), and the
// server cuts a reply at --write-timeout, so with a shorter one a login
// held through a failover would be lost with its answer on the way.
func (o *options) checkWriteTimeout(p *cli.Problems) {
	if o.storeTimeout <= 0 || o.writeTimeout <= 0 {
		return // refused above
	}
	if call := o.storeTimeout + o.storeBudget; call >= o.writeTimeout {
		p.Addf("--write-timeout %v must be longer than a store call may take, --store-timeout %v plus the --store-url's failover_budget %v: "+
			"a login held through a failover would be cut off before the store answers (raise --write-timeout, or lower --store-timeout or failover_budget)",
			o.writeTimeout, o.storeTimeout, o.storeBudget)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "keygen" {
		return keygen(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "jwtkey" {
		return jwtkey(args[1:], stdout, stderr)
	}
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	logger, err := cli.NewLogger(stderr, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	// go-redis's own messages (dial failures during an outage) go to the
	// same structured log, not to stderr.
	// Every line this replica writes names it: sp.New adds the instance
	// to the SP's own logger; ilog carries it for the rest (the store,
	// go-redis, the HTTP server).
	ilog := logger.With("instance", o.instanceID)
	redis.SetLibraryLogger(ilog)
	ctx, stop := cli.SignalContext(ctx)
	defer stop()

	var st store.Store
	if o.storeMode != "stateless" {
		st, err = openStore(ctx, o, o.storeURL, ilog)
		if err != nil {
			return err
		}
		if o.storeHandoff != "" {
			if st, err = withHandoff(ctx, o, st, ilog); err != nil {
				return err
			}
		}
		defer st.Close()
	}
	reg := prometheus.NewRegistry()
	cfg := o.cfg
	cfg.Store, cfg.StoreKind, cfg.Logger, cfg.Registry = st, "", logger, reg
	if st == nil && o.storeHandoff != "" {
		if cfg.Handoff, err = statelessHandoff(ctx, o, ilog); err != nil {
			return err
		}
		defer cfg.Handoff.Close()
	}
	s, err := sp.New(cfg)
	if err != nil {
		return err
	}
	defer s.Close() // before the store's Close (defers run last-in first)
	keySource := "derived from --sp-key"
	if len(o.sessionKeyRing) > 0 {
		keySource = fmt.Sprintf("--session-key (%d in the ring)", len(o.sessionKeyRing))
	}
	ilog.Info("samlsp starting", "root_url", o.rootURL, "store", o.storeMode,
		"store_url", store.Redact(o.storeURL), "key_fingerprint", keypair.Fingerprint(cfg.Certificate), "mode", cfg.Mode.String(), "session_keys", keySource,
		"upstream", o.gw.upstream, "identity_jwt", o.gw.identityJWT)
	if cfg.NextCertificate != nil {
		ilog.Info("SP key rollover: next certificate published, decrypting with both", "next_key_fingerprint", keypair.Fingerprint(cfg.NextCertificate))
	}

	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: o.readHeaderTimeout,
		ReadTimeout:       o.readTimeout,
		WriteTimeout:      o.writeTimeout,
		IdleTimeout:       o.idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(ilog.Handler(), slog.LevelWarn),
	}
	srv, err := cli.Listen("public", o.listen, hs)
	if err != nil {
		return err
	}
	// Each connection costs buffers and a goroutine: hold a bounded number.
	srv.Listener = netutil.LimitListener(srv.Listener, o.maxConnections)
	servers := []*cli.Server{srv}
	if o.metricsListen != "" {
		msrv, err := cli.Listen("metrics", o.metricsListen, &http.Server{
			Handler:           metricsMux(s),
			ReadHeaderTimeout: 10 * time.Second,
			WriteTimeout:      30 * time.Second,
			ErrorLog:          slog.NewLogLogger(ilog.Handler(), slog.LevelWarn),
		})
		if err != nil {
			srv.Listener.Close()
			return err
		}
		servers = append(servers, msrv)
	}
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	go func() {
		if err := s.Run(runCtx); err != nil {
			ilog.Error("IdP metadata loader stopped", "err", err)
		}
	}()
	serveCtx, release := handoffFirst(ctx, st, o.shutdownGrace, ilog)
	defer release()
	return cli.Serve(serveCtx, ilog, o.shutdownGrace, servers...)
}

// metricsMux serves /metrics, and nothing else, on the metrics listener.
func metricsMux(s *sp.SP) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.MetricsHandler())
	return mux
}

// loginLimits maps the flags to limits.LoginLimits, where a negative value,
// not 0, switches a limit off.
func (o *options) loginLimits() limits.LoginLimits {
	off := func(v float64) float64 {
		if v == 0 {
			return -1
		}
		return v
	}
	l := limits.LoginLimits{PerClientRate: off(o.loginRatePerClient), PerClientBurst: o.loginBurstPerClient,
		TotalRate: off(o.loginRate), TotalBurst: o.loginBurst, MaxPending: o.maxPendingLogins, Clients: o.rateLimitClients,
		PerClientPending: o.maxPendingPerClient}
	if l.MaxPending == 0 {
		l.MaxPending = -1
	}
	return l
}

// openStore opens the store, waiting up to --store-wait for it to answer,
// so that a replica does not start serving logins it cannot track.
func openStore(ctx context.Context, o *options, storeURL string, logger *slog.Logger) (store.Store, error) {
	try := func() (store.Store, error) {
		st, err := store.Open(ctx, storeURL, logger)
		if err != nil {
			return nil, err
		}
		pctx, cancel := context.WithTimeout(ctx, o.storeTimeout)
		defer cancel()
		if err := st.Ping(pctx); err != nil {
			st.Close()
			return nil, err
		}
		return st, nil
	}
	var last error
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval = 250*time.Millisecond, 2*time.Second
	st, err := backoff.Retry(ctx, try, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(o.storeWait),
		backoff.WithNotify(func(err error, wait time.Duration) {
			last = err
			logger.Warn("store not answering yet; retrying", "store_url", store.Redact(storeURL), "err", err,
				"retry_in", wait.Round(time.Millisecond))
		}))
	switch {
	case err == nil:
		return st, nil
	case ctx.Err() != nil && last != nil:
		return nil, fmt.Errorf("stopped while waiting for store %s: %w (last failure: %v)", store.Redact(storeURL), ctx.Err(), last)
	case ctx.Err() != nil:
		return nil, ctx.Err()
	}
	return nil, fmt.Errorf("store %s did not answer within --store-wait %v: %w", store.Redact(storeURL), o.storeWait, err)
}

func keygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("samlsp keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "./sp-keys", "directory to write sp.key and sp.crt into")
	cn := fs.String("cn", "samlha-sp", "certificate common name")
	force := fs.Bool("force", false, "overwrite existing files")
	if err := cli.Parse(fs, args, "SAMLHA_KEYGEN", "samlsp keygen: write an RSA-2048 key (sp.key) and a self-signed certificate (sp.crt) for the SP.\nGive the same pair to every replica.\n"); err != nil {
		return err
	}
	keyPath, certPath := filepath.Join(*dir, "sp.key"), filepath.Join(*dir, "sp.crt")
	if !*force {
		for _, p := range []string{keyPath, certPath} {
			if _, err := os.Stat(p); err == nil {
				return fmt.Errorf("%s exists; keep it (every replica must share one pair) or pass --force", p)
			}
		}
	}
	key, cert, err := keypair.Generate(*cn, time.Now())
	if err != nil {
		return err
	}
	if err := keypair.Write(keyPath, certPath, key, cert); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s\n", keyPath, certPath)
	return nil
}
