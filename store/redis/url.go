package redis

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/samlha/samlha/store"
)

// Defaults for parameters a URL leaves out.
const (
	DefaultPrefix      = "samlha:"
	DefaultTimeout     = 500 * time.Millisecond
	DefaultDialTimeout = time.Second
)

// Config is what a store URL says: the go-redis client options and ours.
type Config struct {
	// Client configures the go-redis UniversalClient. Its Addrs,
	// MasterName and IsClusterMode choose standalone, Sentinel or Cluster.
	Client goredis.UniversalOptions
	// Options configure the Store around the client.
	Options Options
	// Verify asks Open for a round trip before it returns (query
	// verify=false turns it off).
	Verify bool
}

// knownParams returns the query parameters scheme accepts, sorted, and
// false for a scheme of another backend.
func knownParams(scheme string) ([]string, bool) {
	known := []string{
		"prefix", "timeout", "dial_timeout", "pool_size", "min_idle", "verify",
		"tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name", "tls_insecure_skip_verify",
	}
	switch scheme {
	case "redis", "rediss":
	case "redis-sentinel":
		known = append(known, "db", "sentinel_username", "sentinel_password", "tls")
	case "redis-cluster":
		known = append(known, "tls")
	default:
		return nil, false
	}
	slices.Sort(known)
	return known, true
}

// ParseURL reads a store URL. The forms are:
//
//	redis://[user:password@]host[:port][/db]
//	rediss://[user:password@]host[:port][/db]             (TLS)
//	redis-sentinel://[user:password@]h1:p1,h2:p2/MASTER[?db=N&sentinel_password=...]
//	redis-cluster://[user:password@]h1:p1,h2:p2
//
// Default ports: 6379, and 26379 for Sentinels. The user and password are
// Redis's (ACL user, requirepass); sentinel_username and sentinel_password
// authenticate to the Sentinels. Query parameters, for every scheme:
//
//	prefix=samlha:         prepended to every key (prefix= for none)
//	timeout=500ms          bound on each call, through a context deadline and
//	                       the client's read and write timeouts
//	dial_timeout=1s        bound on opening a connection
//	pool_size=N            connections per node (go-redis default: 10 per CPU)
//	min_idle=N             idle connections kept open per node
//	verify=true            Open makes a round trip and fails if it cannot
//	tls=true               TLS for redis-sentinel and redis-cluster (rediss: always)
//	tls_ca_file=PATH       PEM roots to verify the server with, instead of the system's
//	tls_cert_file=PATH, tls_key_file=PATH   a client certificate
//	tls_server_name=NAME   name to verify the certificate against
//	tls_insecure_skip_verify=true           no verification (tests only)
//
// Unknown parameters are an error. Errors never contain the password.
// Hosts lists do not take bracketed IPv6 addresses.
func ParseURL(u *url.URL) (*Config, error) {
	known, ok := knownParams(u.Scheme)
	if !ok {
		return nil, fmt.Errorf("redis: unknown scheme %q (known: redis, rediss, redis-sentinel, redis-cluster)", u.Scheme)
	}
	cfg := &Config{
		Client: goredis.UniversalOptions{
			DialTimeout:           DefaultDialTimeout,
			ContextTimeoutEnabled: true,
			DisableIdentity:       true, // no CLIENT SETINFO round trip on each new connection
			// A refused connection fails the call at once, with its own
			// error, rather than after go-redis's default of five dials
			// 100ms apart, by which time our deadline has passed.
			DialerRetries:      2,
			DialerRetryTimeout: 20 * time.Millisecond,
			MaintNotificationsConfig: &maintnotifications.Config{
				Mode: maintnotifications.ModeDisabled,
			},
		},
		Options: Options{
			Prefix:   DefaultPrefix,
			Timeout:  DefaultTimeout,
			Kind:     u.Scheme,
			Location: store.Redact(u.String()),
		},
		Verify: true,
	}
	if u.Scheme == "rediss" {
		cfg.Options.Kind = "redis"
	}
	if u.Opaque != "" {
		return nil, fmt.Errorf("redis: write the URL as %s://host:port, with two slashes", u.Scheme)
	}
	if u.User != nil {
		cfg.Client.Username = u.User.Username()
		cfg.Client.Password, _ = u.User.Password()
	}

	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("redis: the URL's query does not parse")
	}
	for k := range q {
		if !slices.Contains(known, k) {
			return nil, fmt.Errorf("redis: unknown parameter %q for %s:// (known: %s)", k, u.Scheme, strings.Join(known, ", "))
		}
	}
	get := func(k string) (string, bool) {
		if v, ok := q[k]; ok {
			return v[len(v)-1], true
		}
		return "", false
	}

	defaultPort := "6379"
	if u.Scheme == "redis-sentinel" {
		defaultPort = "26379"
	}
	host := u.Host
	if host == "" {
		host = "localhost"
	}
	for _, h := range strings.Split(host, ",") {
		addr, err := withPort(h, defaultPort)
		if err != nil {
			return nil, err
		}
		cfg.Client.Addrs = append(cfg.Client.Addrs, addr)
	}
	path := strings.TrimPrefix(u.Path, "/")

	switch u.Scheme {
	case "redis", "rediss":
		if len(cfg.Client.Addrs) > 1 {
			return nil, fmt.Errorf("redis: %s:// takes one host; use redis-cluster:// or redis-sentinel:// for several", u.Scheme)
		}
		if path != "" {
			if cfg.Client.DB, err = dbNumber("path", path); err != nil {
				return nil, err
			}
		}
	case "redis-sentinel":
		if path == "" || strings.Contains(path, "/") {
			return nil, fmt.Errorf("redis: redis-sentinel:// needs the master's name as its path: redis-sentinel://host:26379,host2:26379/mymaster")
		}
		cfg.Client.MasterName = path
		if v, ok := get("db"); ok {
			if cfg.Client.DB, err = dbNumber("db", v); err != nil {
				return nil, err
			}
		}
		cfg.Client.SentinelUsername, _ = get("sentinel_username")
		cfg.Client.SentinelPassword, _ = get("sentinel_password")
	case "redis-cluster":
		if path != "" {
			return nil, fmt.Errorf("redis: redis-cluster:// takes no path: a cluster has only database 0")
		}
		cfg.Client.IsClusterMode = true // even with a single seed address
	}

	if v, ok := get("prefix"); ok {
		cfg.Options.Prefix = v
	}
	if v, ok := get("timeout"); ok {
		if cfg.Options.Timeout, err = positiveDuration("timeout", v); err != nil {
			return nil, err
		}
	}
	if v, ok := get("dial_timeout"); ok {
		if cfg.Client.DialTimeout, err = positiveDuration("dial_timeout", v); err != nil {
			return nil, err
		}
	}
	if v, ok := get("pool_size"); ok {
		if cfg.Client.PoolSize, err = count("pool_size", v, 1); err != nil {
			return nil, err
		}
	}
	if v, ok := get("min_idle"); ok {
		if cfg.Client.MinIdleConns, err = count("min_idle", v, 0); err != nil {
			return nil, err
		}
	}
	if v, ok := get("verify"); ok {
		if cfg.Verify, err = boolean("verify", v); err != nil {
			return nil, err
		}
	}
	// Each call is bounded by Timeout; the client's own timeouts match it,
	// so that a connection stuck on a read is given up at the same time.
	cfg.Client.ReadTimeout = cfg.Options.Timeout
	cfg.Client.WriteTimeout = cfg.Options.Timeout
	cfg.Client.PoolTimeout = cfg.Options.Timeout

	useTLS := u.Scheme == "rediss"
	if v, ok := get("tls"); ok {
		if useTLS, err = boolean("tls", v); err != nil {
			return nil, err
		}
	}
	if cfg.Client.TLSConfig, err = tlsConfig(useTLS, get); err != nil {
		return nil, err
	}
	return cfg, nil
}

func withPort(h, defaultPort string) (string, error) {
	if h == "" {
		return "", fmt.Errorf("redis: empty host in the URL's host list")
	}
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h, nil
	}
	if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
		return "", fmt.Errorf("redis: host %q is not host or host:port", h)
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), defaultPort), nil
}

func dbNumber(name, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("redis: database %s %q is not a number of zero or more", name, v)
	}
	return n, nil
}

func positiveDuration(name, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("redis: %s=%q is not a positive duration, such as 500ms", name, v)
	}
	return d, nil
}

func count(name, v string, min int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		return 0, fmt.Errorf("redis: %s=%q is not a whole number of at least %d", name, v, min)
	}
	return n, nil
}

func boolean(name, v string) (bool, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("redis: %s=%q is not true or false", name, v)
	}
	return b, nil
}

// tlsConfig builds the TLS configuration from the tls_* parameters, or nil
// without TLS (where tls_* parameters are an error).
func tlsConfig(on bool, get func(string) (string, bool)) (*tls.Config, error) {
	names := []string{"tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name", "tls_insecure_skip_verify"}
	if !on {
		for _, n := range names {
			if _, ok := get(n); ok {
				return nil, fmt.Errorf("redis: %s needs TLS: use rediss://, or tls=true for Sentinel and Cluster", n)
			}
		}
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if v, ok := get("tls_server_name"); ok {
		c.ServerName = v
	}
	if v, ok := get("tls_insecure_skip_verify"); ok {
		skip, err := boolean("tls_insecure_skip_verify", v)
		if err != nil {
			return nil, err
		}
		c.InsecureSkipVerify = skip
	}
	if path, ok := get("tls_ca_file"); ok {
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("redis: tls_ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis: tls_ca_file %s holds no PEM certificate", path)
		}
	}
	certFile, hasCert := get("tls_cert_file")
	keyFile, hasKey := get("tls_key_file")
	if hasCert != hasKey {
		return nil, fmt.Errorf("redis: tls_cert_file and tls_key_file go together")
	}
	if hasCert {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("redis: client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
