// Command samlsp is samlha's SAML service provider: one replica of a service
// that may run several behind a load balancer. Where it keeps login state
// (its own memory, a shared Redis, or signed cookies) is a flag.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/samlha/samlha/cmd/internal/cli"
	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/keypair"
	"github.com/samlha/samlha/sp/relaystate"
	"github.com/samlha/samlha/store"
	_ "github.com/samlha/samlha/store/memory" // memory:// stores
	"github.com/samlha/samlha/store/redis"    // redis://, rediss://, redis-sentinel://, redis-cluster:// stores
)

const summary = `samlsp: a SAML service provider replica whose login state lives where --store says.

Usage:
  samlsp [flags]                      serve
  samlsp keygen --dir DIR             write sp.key and sp.crt (give the same pair to every replica)

Example (two replicas sharing Redis, behind a balancer at :8080):
  samlsp keygen --dir ./sp-keys
  samlsp --instance-id sp-1 --listen 127.0.0.1:8081 --root-url http://127.0.0.1:8080 \
         --idp-metadata-url http://127.0.0.1:9000/metadata --sp-key ./sp-keys/sp.key --sp-cert ./sp-keys/sp.crt \
         --store redis --store-url redis://127.0.0.1:6379/0

Stores (--store):
  memory     state in this process: a login must finish on the replica that began it (needs a sticky balancer)
  redis      state in Redis (--store-url redis://, rediss://, redis-sentinel://, redis-cluster://): any replica finishes any login
  stateless  crewjam's signed cookies: any replica with the same --sp-key finishes any login; replay protection per replica
`

func main() {
	cli.Exit("samlsp", run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	listen, rootURL, instanceID                    string
	idpMetadataURL, idpMetadataFile                string
	idpRefresh                                     time.Duration
	spKey, spCert                                  string
	storeMode, storeURL                            string
	storeTimeout, storeWait                        time.Duration
	requestTTL, tombstoneTTL, sessionIdle, sessMax time.Duration
	cookieSameSite                                 cli.SameSite
	maxRelogins                                    int
	logFormat, logLevel                            string
	shutdownGrace                                  time.Duration
}

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
	fs.StringVar(&o.spKey, "sp-key", "", "PEM private key of the SP (required; every replica must use the same; create with: samlsp keygen)")
	fs.StringVar(&o.spCert, "sp-cert", "", "PEM certificate for --sp-key (required)")
	fs.StringVar(&o.storeMode, "store", "memory", "where login state lives: memory, redis or stateless")
	fs.StringVar(&o.storeURL, "store-url", "", "store URL; default memory:// for --store memory, redis://127.0.0.1:6379/0 for --store redis\n(forms: memory://?max_entries=N, redis://[:password@]host:port/db, rediss://..., redis-sentinel://h1:p1,h2:p2/master, redis-cluster://h1:p1,h2:p2)")
	fs.DurationVar(&o.storeTimeout, "store-timeout", 2*time.Second, "limit on each store call")
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
	if err := cli.Parse(fs, args, "SAMLHA", summary); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q (flags only; see --help)", fs.Args())
	}
	return o, o.validate()
}

func (o *options) validate() error {
	var p cli.Problems
	if o.spKey == "" || o.spCert == "" {
		p.Addf("--sp-key and --sp-cert are required: every replica must sign and decrypt with the same key pair, or logins fail on every replica but one (create one with: samlsp keygen --dir ./sp-keys)")
	}
	if (o.idpMetadataURL == "") == (o.idpMetadataFile == "") {
		p.Addf("give exactly one of --idp-metadata-url and --idp-metadata-file")
	}
	if o.idpMetadataURL != "" {
		if u, err := url.Parse(o.idpMetadataURL); err != nil || u.Host == "" {
			p.Addf("--idp-metadata-url %q is not an absolute URL", o.idpMetadataURL)
		}
	}
	if !relaystate.ValidInstanceID(o.instanceID) {
		p.Addf("--instance-id %q: use 1 to 40 characters of A-Z a-z 0-9 . _ -", o.instanceID)
	}
	if u, err := url.Parse(o.rootURL); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		p.Addf("--root-url %q must be an absolute http or https URL", o.rootURL)
	}
	switch o.storeMode {
	case "memory":
		if o.storeURL == "" {
			o.storeURL = "memory://"
		} else if !strings.HasPrefix(o.storeURL, "memory:") {
			p.Addf("--store memory takes a memory:// --store-url, not %q", store.Redact(o.storeURL))
		}
	case "redis":
		if o.storeURL == "" {
			o.storeURL = "redis://127.0.0.1:6379/0"
		} else if !strings.HasPrefix(o.storeURL, "redis") {
			p.Addf("--store redis takes a redis://, rediss://, redis-sentinel:// or redis-cluster:// --store-url, not %q", store.Redact(o.storeURL))
		}
	case "stateless":
		if o.storeURL != "" {
			p.Addf("--store stateless keeps no server-side state; drop --store-url")
		}
	default:
		p.Addf("--store %q: want memory, redis or stateless", o.storeMode)
	}
	if o.maxRelogins < 0 {
		p.Addf("--max-relogins must not be negative")
	}
	// In flag order, so the report reads the same every time.
	for _, d := range []struct {
		flag string
		d    time.Duration
	}{{"--idp-metadata-refresh", o.idpRefresh}, {"--request-ttl", o.requestTTL}, {"--session-idle-ttl", o.sessionIdle},
		{"--session-max-ttl", o.sessMax}, {"--store-timeout", o.storeTimeout}, {"--tombstone-ttl", o.tombstoneTTL}} {
		if d.d <= 0 {
			p.Addf("%s must be positive, got %v", d.flag, d.d)
		}
	}
	return p.Err()
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "keygen" {
		return keygen(args[1:], stdout, stderr)
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

	key, cert, err := keypair.Load(o.spKey, o.spCert)
	if err != nil {
		return fmt.Errorf("--sp-key/--sp-cert: %w", err)
	}
	rootURL, _ := url.Parse(o.rootURL)
	sameSite := o.cookieSameSite.Mode(rootURL.Scheme == "https")
	idp := &sp.IDPMetadata{File: o.idpMetadataFile, Refresh: o.idpRefresh}
	if o.idpMetadataURL != "" {
		idp.URL, _ = url.Parse(o.idpMetadataURL)
	}

	var st store.Store
	if o.storeMode != "stateless" {
		st, err = openStore(ctx, o, ilog)
		if err != nil {
			return err
		}
		defer st.Close()
	}
	reg := prometheus.NewRegistry()
	s, err := sp.New(sp.Config{
		InstanceID: o.instanceID, RootURL: rootURL, Store: st, Key: key, Certificate: cert, IDP: idp,
		RequestTTL: o.requestTTL, TombstoneTTL: o.tombstoneTTL, SessionIdleTTL: o.sessionIdle, SessionMaxTTL: o.sessMax,
		StoreTimeout: o.storeTimeout, BindingSameSite: sameSite, MaxRelogins: o.maxRelogins,
		Logger: logger, Registry: reg,
	})
	if err != nil {
		return err
	}
	ilog.Info("samlsp starting", "root_url", o.rootURL, "store", o.storeMode,
		"store_url", store.Redact(o.storeURL), "key_fingerprint", keypair.Fingerprint(cert))

	srv, err := cli.Listen("public", o.listen, &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(ilog.Handler(), slog.LevelWarn),
	})
	if err != nil {
		return err
	}
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	go func() {
		if err := s.Run(runCtx); err != nil {
			ilog.Error("IdP metadata loader stopped", "err", err)
		}
	}()
	return cli.Serve(ctx, ilog, o.shutdownGrace, srv)
}

// openStore opens the store, waiting up to --store-wait for it to answer,
// so that a replica does not start serving logins it cannot track.
func openStore(ctx context.Context, o *options, logger *slog.Logger) (store.Store, error) {
	deadline := time.Now().Add(o.storeWait)
	for {
		st, err := store.Open(ctx, o.storeURL, logger)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, o.storeTimeout)
			err = st.Ping(pctx)
			cancel()
			if err == nil {
				return st, nil
			}
			st.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("store %s did not answer within --store-wait %v: %w", store.Redact(o.storeURL), o.storeWait, err)
		}
		logger.Warn("store not answering yet; retrying", "store_url", store.Redact(o.storeURL), "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
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
