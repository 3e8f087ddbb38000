// Command stickyproxy is a cookie-affinity reverse proxy with AWS ALB and
// HAProxy semantics that says, on every response, which target served it
// and why. See stickyproxy/README.md.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/samlha/samlha/cmd/internal/cli"
	"github.com/samlha/samlha/stickyproxy"
	"github.com/samlha/samlha/stickyproxy/affinity"
	"github.com/samlha/samlha/stickyproxy/forward"
)

const summary = `stickyproxy: a cookie-affinity reverse proxy (AWS ALB and HAProxy semantics)
that names, on every response, the target that served it (X-Stickyproxy-Target)
and why (X-Stickyproxy-Decision).

Subcommand:
  stickyproxy admin-token --file FILE [--print]   make the admin token file (kept if present)

Example:
  stickyproxy --target sp-1=http://127.0.0.1:8081 --target sp-2=http://127.0.0.1:8082 \
      --stickiness duration --saml-aware --cookie-key "$(cat key)"
`

func main() {
	cli.Exit("stickyproxy", run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	listen, adminListen, tlsCert, tlsKey string
	targets                              cli.StringList
	targetsFile                          string
	keys                                 cli.KeyRing
	sameSite                             cli.SameSite
	httpOnly                             bool
	adminToken, adminTokenFile           string
	trusted                              cli.StringList
	strip, stripPrefix                   cli.StringList
	peek                                 size
	maxBuffered, bufPerClient, bufTotal  size
	logFormat, logLevel                  string
	grace, logFlush                      time.Duration
	pprof                                bool
	cfg                                  stickyproxy.Config
}

func flags(fs *flag.FlagSet) *options {
	o := &options{peek: 64 << 10, maxBuffered: stickyproxy.DefaultMaxBufferedBody,
		bufPerClient: stickyproxy.DefaultMaxBufferPerClient, bufTotal: stickyproxy.DefaultMaxBufferTotal}
	c := &o.cfg
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "public `address` to listen on")
	fs.StringVar(&o.adminListen, "admin-listen", "127.0.0.1:8090", "admin API, /healthz and /metrics `address` (keep it private: loopback or an internal network); empty disables")
	fs.StringVar(&o.adminToken, "admin-token", "", "bearer `token` (16+ bytes) that admin calls other than /healthz and /readyz need (Authorization: Bearer <token>).\nWithout a token those calls are refused, unless --admin-insecure. Prefer --admin-token-file: a flag shows in ps")
	fs.StringVar(&o.adminTokenFile, "admin-token-file", "", "`file` holding the admin token (surrounding whitespace trimmed), e.g. a mounted secret")
	fs.BoolVar(&o.cfg.AdminInsecure, "admin-insecure", false, "serve the admin calls without a token; accepted only with a loopback --admin-listen (local development)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "serve the public listener over TLS with this certificate `file` (PEM); needs --tls-key")
	fs.StringVar(&o.tlsKey, "tls-key", "", "private key `file` (PEM) for --tls-cert")
	fs.Var(&o.targets, "target", "a target as `name=URL` or name=URL;weight=N (repeatable; in the environment, comma-separated).\nThe name is the SP replica's --instance-id, e.g. sp-1=http://127.0.0.1:8081")
	fs.StringVar(&o.targetsFile, "targets-file", "", "`file` with one target (as --target) per line; lines starting with # are comments")
	fs.StringVar((*string)(&c.Balance), "balance", "round-robin", "balancing for requests that are not pinned: round-robin or least-outstanding")
	fs.StringVar((*string)(&c.Stickiness), "stickiness", "duration", "off (balance every request), duration (the proxy's cookie, ALB AWSALB) or app (follow --app-cookie, ALB AWSALBAPP)")
	fs.DurationVar(&c.Duration, "cookie-duration", 24*time.Hour, "affinity cookie lifetime, refreshed on every response: 1s to 168h")
	fs.StringVar(&c.CookieName, "cookie-name", "", "the proxy's affinity cookie (default AWSALB, or AWSALBAPP with --stickiness app); the twin is <name>CORS")
	fs.StringVar(&c.AppCookie, "app-cookie", "", "with --stickiness app: the application's cookie to follow (e.g. the SP's session cookie)")
	fs.BoolVar(&c.CookieTwin, "cookie-twin", false, "also set <cookie-name>CORS with SameSite=None; Secure (ALB's AWSALBCORS), so cross-site POSTs keep affinity")
	fs.StringVar(&c.CookiePath, "cookie-path", "/", "affinity cookie Path")
	fs.StringVar(&c.CookieDomain, "cookie-domain", "", "affinity cookie Domain (empty: host-only)")
	fs.BoolVar(&c.CookieSecure, "cookie-secure", false, "mark the affinity cookie Secure (always on with --tls-cert; the twin is always Secure)")
	fs.BoolVar(&o.httpOnly, "cookie-httponly", true, "mark the affinity cookie and its twin HttpOnly (--cookie-httponly=false lets page scripts read them)")
	o.sameSite = cli.SameSiteLax
	fs.Var(&o.sameSite, "cookie-samesite", "affinity cookie SameSite: "+cli.SameSiteHelp+" (none needs --cookie-secure or --tls-cert)")
	o.keys.Register(fs, "cookie-key", "`secret` that seals and opens the affinity cookie (repeatable; the first seals, all open).\n32 bytes as base64 or hex, or any string of 16+ bytes. Proxies that share keys accept each other's cookies.\nWithout any key a random one is made, and other proxy instances will not accept its cookies")
	fs.BoolVar(&c.SAMLAware, "saml-aware", false, "route a POST to --acs-path without a valid affinity cookie to the instance named in its RelayState (<instance>~<nonce>)")
	fs.StringVar(&c.ACSPath, "acs-path", "/saml/acs", "the SP's Assertion Consumer Service path, for --saml-aware")
	fs.Var(&o.peek, "relaystate-peek", "read at most this much of an ACS POST body to find RelayState (`size`: 64KiB, 1MiB, ...)")
	fs.StringVar(&c.HealthPath, "health-path", "/healthz", "path of each target's liveness check")
	fs.DurationVar(&c.HealthInterval, "health-interval", 2*time.Second, "interval of active health checks; 0 disables them")
	fs.DurationVar(&c.HealthTimeout, "health-timeout", time.Second, "timeout of one health check")
	fs.IntVar(&c.HealthRise, "health-rise", 2, "consecutive passing checks that mark a down target up")
	fs.IntVar(&c.HealthFall, "health-fall", 2, "consecutive failing checks that mark an up target down")
	fs.IntVar(&c.PassiveFall, "passive-fall", 3, "consecutive failures of a target itself (connect errors; resets, closes or --response-header-timeout after the whole request was sent) that mark it down; 0 disables.\nA client that aborts or is slow, a body the target refuses and 4xx replies never count")
	fs.IntVar(&c.Passive5xx, "passive-5xx", 0, "consecutive 5xx replies that mark a target down; 0 disables (a client can often provoke a 5xx)")
	fs.DurationVar(&c.PassiveCooldown, "passive-cooldown", 10*time.Second, "with --health-interval 0: how long a passively failed target is left alone before it is tried again")
	fs.StringVar((*string)(&c.DrainMode), "drain-mode", "alb", "what a draining target still gets: alb (nothing, pinned clients are re-pinned) or haproxy (its pinned clients, no new ones)")
	fs.StringVar((*string)(&c.OnPinnedDown), "on-pinned-down", "repin", "when the pinned target is down: repin (as ALB and HAProxy) or strict (503, as Envoy's strict mode)")
	fs.StringVar((*string)(&c.AllDown), "all-down", "fail-open", "when no target is healthy: fail-open (route anyway, as ALB) or 503")
	fs.Var(&o.trusted, "trusted-proxies", "`CIDRs` of peers whose X-Forwarded-For/-Proto/-Host are kept (comma-separated or repeated); others' are dropped")
	fs.Var(&o.strip, "strip-request-header", "request header `name` no client may send to a target (an identity header the application trusts), removed under any case and with '_' for '-' (repeatable or comma-separated)")
	fs.Var(&o.stripPrefix, "strip-request-header-prefix", "request header `prefix` (e.g. X-Remote-) whose headers no client may send to a target; like --strip-request-header (repeatable or comma-separated)")
	fs.StringVar((*string)(&c.AccessLog), "access-log", "all", "access log: all, anomalies (decisions other than new/pinned/balanced, and 5xx) or off")
	fs.DurationVar(&c.ImbalanceWindow, "imbalance-window", time.Minute, "sliding window of the load-imbalance gauge")
	fs.StringVar((*string)(&c.HTTPServer), "http-server", "fast", "public listener's HTTP/1.1 server: fast (own serve loop for plain keep-alive requests, net/http for the rest of a connection that sends anything else; with --engine fast and http:// targets) or net/http (net/http's server for everything)")
	fs.StringVar((*string)(&c.Engine), "engine", "fast", "forwarding path: fast (own HTTP/1.1 client; upgrades and large or chunked bodies still use ReverseProxy) or reverseproxy (httputil.ReverseProxy for everything)")
	fs.IntVar(&c.MaxIdleConnsPerHost, "max-idle-conns-per-target", 1024, "idle upstream connections kept per target (size it for the concurrency)")
	fs.DurationVar(&c.DialTimeout, "dial-timeout", 2*time.Second, "timeout to connect to a target")
	fs.DurationVar(&c.ResponseHeaderTimeout, "response-header-timeout", 60*time.Second, "timeout for a target to take the request and send its response headers")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "time a client has to send its request line and headers")
	fs.DurationVar(&c.ClientBodyTimeout, "client-body-timeout", 60*time.Second, "time a client has to send its whole request body, from the end of its headers (a slower client gets 408 and its connection closed); negative disables")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", 2*time.Minute, "how long an idle client keep-alive connection is kept")
	fs.IntVar(&c.MaxClientConns, "max-client-conns", stickyproxy.DefaultMaxClientConns, "open client connections at most; one more is answered 503 and closed; negative disables")
	fs.IntVar(&c.MaxInFlightPerTarget, "max-in-flight-per-target", stickyproxy.DefaultMaxInFlightPerTarget, "requests forwarded to one target at once at most; balancing passes over a full target, a client pinned to it gets 503 target-busy; negative disables")
	fs.Var(&o.maxBuffered, "max-buffered-body", "a request body of known length up to this `size` is read whole before the request takes a target's in-flight slot (a client stalling its body holds none);\nlarger or chunked bodies stream and hold a slot meanwhile; negative streams every body")
	fs.Var(&o.bufPerClient, "max-buffer-per-client", "bytes (`size`) one client's bodies being read whole and RelayState peeks may take at once; past it 429 client-limit; negative disables")
	fs.Var(&o.bufTotal, "max-buffer-total", "bytes (`size`) all clients' bodies being read whole and RelayState peeks may take at once; past it 503 proxy-busy; negative disables")
	fs.IntVar(&c.MaxConnsPerClient, "max-conns-per-client", stickyproxy.DefaultMaxConnsPerClient, "open connections from one client address (IPv6: its /64) at most; one more is answered 429 and closed; trusted proxies are not limited; negative disables")
	fs.IntVar(&c.MaxInFlightPerClient, "max-in-flight-per-client", stickyproxy.DefaultMaxInFlightPerClient, "requests of one client (the address a trusted proxy names, else the peer; IPv6: its /64) forwarded at once at most; past it 429 client-limit; negative disables")
	fs.IntVar(&c.MaxStreamingPerClient, "max-streaming-bodies-per-client", stickyproxy.DefaultMaxStreamingPerClient, "requests of one client whose body streams to a target (over --max-buffered-body, or chunked) at once at most; past it 429 client-limit; negative disables")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error (the access log is at info)")
	fs.DurationVar(&o.logFlush, "log-flush", 100*time.Millisecond, "write logs in batches at this interval (one system call per batch, not per line); 0 writes each line at once")
	fs.DurationVar(&o.grace, "shutdown-grace", 15*time.Second, "on SIGTERM, how long in-flight requests may take to finish")
	fs.BoolVar(&o.pprof, "admin-pprof", false, "serve net/http/pprof under /debug/pprof/ on the admin listener")
	return o
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "admin-token" {
		return adminToken(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("stickyproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := flags(fs)
	if err := cli.Parse(fs, args, "SAMLHA_PROXY", summary); err != nil {
		return err
	}
	// Logs (the access log above all) are written in batches, at most
	// o.logFlush late; everything is flushed on exit.
	var logOut io.Writer = stderr
	if o.logFlush > 0 {
		fw := newFlushWriter(stderr, o.logFlush)
		defer fw.Close()
		logOut = fw
	}
	logger, err := cli.NewLogger(logOut, o.logFormat, o.logLevel)
	if err != nil {
		return err
	}
	cfg, problems := o.config()
	if len(problems) == 0 && len(cfg.Keys) == 0 && cfg.Stickiness != stickyproxy.StickinessOff {
		k, _ := affinity.DeriveKey(affinity.NewKey())
		cfg.Keys = [][32]byte{k}
		logger.Warn("no --cookie-key given: using a random key; cookies will not survive a restart and other proxy instances will not accept them")
	}
	cfg.Logger = logger
	if len(problems) == 0 {
		cfg.Defaults()
		for _, err := range cfg.Validate() {
			problems.Addf("%s", flagError(err))
		}
	}
	if err := problems.Err(); err != nil {
		return err
	}
	p, err := stickyproxy.New(cfg)
	if err != nil {
		return err
	}
	defer p.Close()

	var servers []*cli.Server
	pub, err := cli.Listen("public", o.listen, p.PublicServer())
	if err != nil {
		return err
	}
	if o.tlsCert != "" {
		pub.Listener = p.TLSListener(pub.Listener)
	} else {
		pub.Listener = p.Listener(pub.Listener)
	}
	pub.CertFile, pub.KeyFile = o.tlsCert, o.tlsKey
	pub.Drain = p.Drain
	servers = append(servers, pub)
	if o.adminListen != "" {
		h := p.Admin()
		if o.pprof {
			pp := http.NewServeMux()
			pp.HandleFunc("/debug/pprof/", pprof.Index)
			pp.HandleFunc("/debug/pprof/profile", pprof.Profile)
			pp.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			pp.HandleFunc("/debug/pprof/trace", pprof.Trace)
			mux := http.NewServeMux()
			mux.Handle("/", h)
			mux.Handle("/debug/pprof/", p.Guard(pp))
			h = mux
		}
		adm, err := cli.Listen("admin", o.adminListen, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout: 30 * time.Second, MaxHeaderBytes: 16 << 10,
			ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)})
		if err != nil {
			pub.Listener.Close()
			return err
		}
		servers = append(servers, adm)
		switch {
		case cfg.AdminToken != "":
		case cfg.AdminInsecure:
			logger.Warn("admin API without a token (--admin-insecure): anyone who can reach " + adm.Listener.Addr().String() + " can drain targets")
		default:
			logger.Warn("no --admin-token-file: the admin API serves /healthz and /readyz only; /targets, drain, undrain and /metrics answer 403")
		}
	}
	names := make([]string, 0, len(cfg.Targets))
	for _, t := range cfg.Targets {
		names = append(names, t.Name+"="+t.URL.String())
	}
	logger.Info("stickyproxy starting", "targets", strings.Join(names, ","), "stickiness", string(cfg.Stickiness),
		"balance", string(cfg.Balance), "saml_aware", cfg.SAMLAware, "drain_mode", string(cfg.DrainMode),
		"on_pinned_down", string(cfg.OnPinnedDown), "all_down", string(cfg.AllDown), "engine", string(cfg.Engine))

	ctx, stop := cli.SignalContext(ctx)
	defer stop()
	go p.Run(ctx)
	return cli.Serve(ctx, logger, o.grace, servers...)
}

// config turns the parsed flags into a Config, collecting every problem.
func (o *options) config() (stickyproxy.Config, cli.Problems) {
	var probs cli.Problems
	cfg := o.cfg
	lines := append([]string(nil), o.targets...)
	if o.targetsFile != "" {
		fl, err := cli.ReadLines(o.targetsFile)
		if err != nil {
			probs.Addf("--targets-file: %v", err)
		}
		lines = append(lines, fl...)
	}
	for _, l := range lines {
		t, err := stickyproxy.ParseTarget(l)
		if err != nil {
			probs.Addf("--target: %v", err)
			continue
		}
		cfg.Targets = append(cfg.Targets, t)
	}
	cfg.Keys = o.keys.Keys(&probs)
	tls := o.tlsCert != ""
	cfg.CookieSameSite = o.sameSite.Mode(tls)
	cfg.CookieSecure = cfg.CookieSecure || tls
	cfg.CookieScriptable = !o.httpOnly
	cfg.AdminToken = o.adminToken
	if o.adminTokenFile != "" {
		if o.adminToken != "" {
			probs.Addf("--admin-token and --admin-token-file: give one")
		}
		b, err := os.ReadFile(o.adminTokenFile)
		if err != nil {
			probs.Addf("--admin-token-file: %v", err)
		} else if cfg.AdminToken = strings.TrimSpace(string(b)); cfg.AdminToken == "" {
			probs.Addf("--admin-token-file: %s is empty", o.adminTokenFile)
		}
	}
	if cfg.AdminInsecure && o.adminListen != "" && !loopback(o.adminListen) {
		probs.Addf("--admin-insecure: only with a loopback --admin-listen, not %q", o.adminListen)
	}
	if o.adminListen != "" && o.adminListen == o.listen {
		probs.Addf("--admin-listen: must differ from --listen")
	}
	cfg.RelayStatePeek = int64(o.peek)
	cfg.MaxBufferedBody, cfg.MaxBufferPerClient, cfg.MaxBufferTotal = int64(o.maxBuffered), int64(o.bufPerClient), int64(o.bufTotal)
	for _, s := range o.trusted {
		pfx, err := forward.ParsePrefix(s)
		if err != nil {
			probs.Addf("--trusted-proxies: %v", err)
			continue
		}
		cfg.TrustedProxies = append(cfg.TrustedProxies, pfx)
	}
	cfg.StripRequestHeaders = o.strip
	cfg.StripRequestHeaderPrefixes = o.stripPrefix
	if (o.tlsCert == "") != (o.tlsKey == "") {
		probs.Addf("--tls-cert and --tls-key: give both or neither")
	}
	return cfg, probs
}

// adminToken makes the file an admin token is read from (--admin-token-file):
// 32 random bytes as base64url, mode 0600, only when the file is missing or
// empty, so that running it again keeps the token clients already have.
func adminToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stickyproxy admin-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "`file` to write the token to (required); an existing non-empty file is kept")
	printTok := fs.Bool("print", false, "write the token to standard output (after making it if needed)")
	if err := cli.Parse(fs, args, "SAMLHA_PROXY_TOKEN", "stickyproxy admin-token: make the admin API's bearer token file for --admin-token-file.\n"); err != nil {
		return err
	}
	if *file == "" {
		return errors.New("admin-token: --file is required")
	}
	b, err := os.ReadFile(*file)
	switch {
	case err == nil && len(strings.TrimSpace(string(b))) > 0:
		fmt.Fprintf(stderr, "keeping the admin token in %s\n", *file)
	case err == nil || errors.Is(err, os.ErrNotExist):
		tok := make([]byte, 32)
		if _, err := rand.Read(tok); err != nil {
			return err
		}
		b = []byte(base64.RawURLEncoding.EncodeToString(tok) + "\n")
		if err := os.WriteFile(*file, b, 0o600); err != nil {
			return fmt.Errorf("admin-token: %w", err)
		}
		fmt.Fprintf(stderr, "wrote a new admin token to %s\n", *file)
	default:
		return fmt.Errorf("admin-token: %w", err)
	}
	if *printTok {
		fmt.Fprintln(stdout, strings.TrimSpace(string(b)))
	}
	return nil
}

// loopback says whether addr (host:port) binds loopback only: 127.0.0.0/8,
// ::1 or localhost.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// flagNames maps stickyproxy.Config fields to the flags that set them.
var flagNames = map[string]string{
	"Targets": "--target", "Balance": "--balance", "Stickiness": "--stickiness", "Duration": "--cookie-duration",
	"CookieName": "--cookie-name", "AppCookie": "--app-cookie", "CookiePath": "--cookie-path",
	"CookieDomain": "--cookie-domain", "CookieSameSite": "--cookie-samesite", "Keys": "--cookie-key",
	"ACSPath": "--acs-path", "RelayStatePeek": "--relaystate-peek", "HealthPath": "--health-path",
	"HealthInterval": "--health-interval", "HealthTimeout": "--health-timeout", "HealthRise": "--health-rise",
	"HealthFall": "--health-fall", "PassiveFall": "--passive-fall", "Passive5xx": "--passive-5xx",
	"DrainMode": "--drain-mode", "OnPinnedDown": "--on-pinned-down", "AllDown": "--all-down",
	"AccessLog": "--access-log", "Engine": "--engine", "HTTPServer": "--http-server", "ImbalanceWindow": "--imbalance-window",
	"MaxIdleConnsPerHost": "--max-idle-conns-per-target", "ReadHeaderTimeout": "--read-header-timeout",
	"IdleTimeout": "--idle-timeout", "AdminToken": "--admin-token",
	"StripRequestHeaders": "--strip-request-header", "StripRequestHeaderPrefixes": "--strip-request-header-prefix",
	"MaxBufferedBody": "--max-buffered-body", "MaxBufferPerClient": "--max-buffer-per-client", "MaxBufferTotal": "--max-buffer-total",
	"MaxConnsPerClient": "--max-conns-per-client", "MaxInFlightPerClient": "--max-in-flight-per-client",
	"MaxStreamingPerClient": "--max-streaming-bodies-per-client", "MaxClientConns": "--max-client-conns",
	"MaxInFlightPerTarget": "--max-in-flight-per-target", "ClientBodyTimeout": "--client-body-timeout",
	"TrustedProxies": "--trusted-proxies", "DialTimeout": "--dial-timeout", "ResponseHeaderTimeout": "--response-header-timeout",
	"PassiveCooldown": "--passive-cooldown",
}

// flagError words a Config problem in terms of the command's flags.
func flagError(err error) string {
	var fe *stickyproxy.FieldError
	if errors.As(err, &fe) {
		if f, ok := flagNames[fe.Field]; ok {
			msg := fe.Msg
			if fe.Field == "CookieSameSite" {
				msg = "none needs --cookie-secure or --tls-cert (browsers drop SameSite=None cookies that are not Secure)"
			}
			return f + ": " + msg
		}
	}
	return err.Error()
}

// size is a byte count flag with an optional unit: B, KiB, MiB, GiB (or KB,
// MB, GB as powers of 1000).
//
// Not docker/go-units: its RAMInBytes reads KB as 1024 and its
// FromHumanSize reads KiB as 1000, so either would change what a value
// already in use (the README's "64KiB", a "2KB") means.
type size int64

func (s *size) String() string { return formatSize(int64(*s)) }

func formatSize(n int64) string {
	switch {
	case n < 0:
		return "-1 (none)"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

// Set parses a size; a negative one ("-1") means "no limit" where a flag
// says so.
func (s *size) Set(v string) error {
	v = strings.TrimSpace(v)
	if rest, ok := strings.CutPrefix(v, "-"); ok {
		if err := s.Set(rest); err != nil {
			return err
		}
		*s = -*s
		if *s == 0 {
			*s = -1
		}
		return nil
	}
	i := strings.IndexFunc(v, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := v, ""
	if i >= 0 {
		num, unit = v[:i], strings.TrimSpace(v[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return fmt.Errorf("%q: want a size such as 64KiB", v)
	}
	mult := map[string]float64{"": 1, "b": 1, "kib": 1 << 10, "k": 1 << 10, "mib": 1 << 20, "m": 1 << 20, "gib": 1 << 30,
		"kb": 1e3, "mb": 1e6, "gb": 1e9}[strings.ToLower(unit)]
	if mult == 0 {
		return fmt.Errorf("%q: unknown unit %q (B, KiB, MiB, GiB, KB, MB, GB)", v, unit)
	}
	*s = size(f * mult)
	return nil
}
