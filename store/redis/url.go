package redis

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
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

// form is one of samlha's store URL forms: the query parameters it takes
// beyond the common ones, the default port of its hosts, and how its URL
// becomes go-redis options, through one of go-redis's own URL parsers.
type form struct {
	params      []string
	defaultPort string
	client      func(u *url.URL, hosts []string, q url.Values) (goredis.UniversalOptions, error)
}

var forms = map[string]form{
	"redis":          {defaultPort: "6379", client: standalone},
	"rediss":         {defaultPort: "6379", client: standalone},
	"redis-sentinel": {params: []string{"db", "sentinel_username", "sentinel_password", "tls", "failover_budget"}, defaultPort: "26379", client: sentinel},
	"redis-cluster":  {params: []string{"tls"}, defaultPort: "6379", client: cluster},
}

// commonParams are the query parameters of every form, each with what it
// sets. The tls_* parameters are read by tlsConfig.
var commonParams = map[string]func(c *Config, v string) error{
	"prefix": func(c *Config, v string) error { c.Options.Prefix = v; return nil },
	"timeout": func(c *Config, v string) (err error) {
		c.Options.Timeout, err = positiveDuration("timeout", v)
		return err
	},
	"dial_timeout": func(c *Config, v string) (err error) {
		c.Client.DialTimeout, err = positiveDuration("dial_timeout", v)
		return err
	},
	"pool_size": func(c *Config, v string) (err error) {
		c.Client.PoolSize, err = count("pool_size", v, 1)
		return err
	},
	"min_idle": func(c *Config, v string) (err error) {
		c.Client.MinIdleConns, err = count("min_idle", v, 0)
		return err
	},
	"heartbeat": func(c *Config, v string) (err error) {
		c.Options.Heartbeat, err = positiveDuration("heartbeat", v)
		return err
	},
	"liveness": func(c *Config, v string) (err error) {
		c.Options.Liveness, err = positiveDuration("liveness", v)
		return err
	},
	"verify": func(c *Config, v string) (err error) {
		c.Verify, err = boolean("verify", v)
		return err
	},
}

var tlsParams = []string{"tls_ca_file", "tls_cert_file", "tls_key_file", "tls_server_name", "tls_insecure_skip_verify"}

// knownParams returns the query parameters f accepts, sorted.
func (f form) knownParams() []string {
	known := append(slices.Collect(maps.Keys(commonParams)), tlsParams...)
	known = append(known, f.params...)
	slices.Sort(known)
	return known
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
//	heartbeat=250ms        how often a subscription proves itself alive
//	liveness=1s            how long a subscription stays live unproven: the
//	                       Notifier's DeliveryBound (at least 2 heartbeats)
//	tls=true               TLS for redis-sentinel and redis-cluster (rediss: always)
//	failover_budget=5s     redis-sentinel only: how much longer than timeout a
//	                       call may wait and retry while the master fails over
//	                       (0: retries only within timeout; at most 20s); see Store
//	tls_ca_file=PATH       PEM roots to verify the server with, instead of the system's
//	tls_cert_file=PATH, tls_key_file=PATH   a client certificate
//	tls_server_name=NAME   name to verify the certificate against
//	tls_insecure_skip_verify=true           no verification (tests only)
//
// Each form is rewritten into the URL that go-redis's ParseURL,
// ParseFailoverURL or ParseClusterURL reads (hosts, credentials, database,
// master name); the parameters above are samlha's own. Unknown parameters
// are an error. Errors never contain the password. Host lists do not take
// bracketed IPv6 addresses.
func ParseURL(u *url.URL) (*Config, error) {
	f, ok := forms[u.Scheme]
	if !ok {
		return nil, fmt.Errorf("redis: unknown scheme %q (known: redis, rediss, redis-sentinel, redis-cluster)", u.Scheme)
	}
	if u.Opaque != "" {
		return nil, fmt.Errorf("redis: write the URL as %s://host:port, with two slashes", u.Scheme)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("redis: the URL's query does not parse")
	}
	known := f.knownParams()
	for k := range q {
		if !slices.Contains(known, k) {
			return nil, fmt.Errorf("redis: unknown parameter %q for %s:// (known: %s)", k, u.Scheme, strings.Join(known, ", "))
		}
	}
	hosts, err := hostList(u.Host, f.defaultPort)
	if err != nil {
		return nil, err
	}
	client, err := f.client(u, hosts, q)
	if err != nil {
		return nil, err
	}
	cfg := &Config{Client: client, Verify: true,
		Options: Options{Prefix: DefaultPrefix, Timeout: DefaultTimeout, Kind: u.Scheme, Location: store.Redact(u.String())}}
	if u.Scheme == "rediss" {
		cfg.Options.Kind = "redis"
	}
	setClientDefaults(&cfg.Client)
	if err := cfg.setParams(u.Scheme, q); err != nil {
		return nil, err
	}
	if u.Scheme == "redis-sentinel" {
		cfg.Options.FailoverBudget = DefaultFailoverBudget
		if v, ok := last(q, "failover_budget"); ok {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("redis: failover_budget=%q is not a duration of zero or more, such as 5s", v)
			}
			if d > MaxFailoverBudget {
				return nil, fmt.Errorf("redis: failover_budget=%v is over %v: a request would outwait the SP's write timeout and every balancer's, holding its connection for nothing", d, MaxFailoverBudget)
			}
			cfg.Options.FailoverBudget = d
		}
	}
	if o := cfg.Options; o.Heartbeat > 0 && o.Liveness > 0 && o.Liveness < 2*o.Heartbeat {
		return nil, fmt.Errorf("redis: liveness=%v is less than twice heartbeat=%v", o.Liveness, o.Heartbeat)
	}
	return cfg, nil
}

// setClientDefaults sets the go-redis options samlha always uses.
func setClientDefaults(c *goredis.UniversalOptions) {
	c.DialTimeout = DefaultDialTimeout
	c.ContextTimeoutEnabled = true
	c.DisableIdentity = true // no CLIENT SETINFO round trip on each new connection
	// A refused connection fails the call at once, with its own error,
	// rather than after go-redis's default of five dials 100ms apart, by
	// which time our deadline has passed.
	c.DialerRetries, c.DialerRetryTimeout = 2, 20*time.Millisecond
	c.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
}

// setParams applies samlha's own query parameters (the common ones and
// TLS) to cfg.
func (cfg *Config) setParams(scheme string, q url.Values) error {
	for _, k := range slices.Sorted(maps.Keys(commonParams)) {
		if v, ok := last(q, k); ok {
			if err := commonParams[k](cfg, v); err != nil {
				return err
			}
		}
	}
	// Each call is bounded by Timeout; the client's own timeouts match it,
	// so that a connection stuck on a read is given up at the same time.
	cfg.Client.ReadTimeout = cfg.Options.Timeout
	cfg.Client.WriteTimeout = cfg.Options.Timeout
	cfg.Client.PoolTimeout = cfg.Options.Timeout

	useTLS := scheme == "rediss"
	if v, ok := last(q, "tls"); ok {
		var err error
		if useTLS, err = boolean("tls", v); err != nil {
			return err
		}
	}
	var err error
	cfg.Client.TLSConfig, err = tlsConfig(useTLS, func(k string) (string, bool) { return last(q, k) })
	return err
}

// last returns the last value of query parameter k.
func last(q url.Values, k string) (string, bool) {
	if v, ok := q[k]; ok {
		return v[len(v)-1], true
	}
	return "", false
}

// hostList splits a URL's host part into host:port addresses.
func hostList(host, defaultPort string) ([]string, error) {
	if host == "" {
		host = "localhost"
	}
	var addrs []string
	for _, h := range strings.Split(host, ",") {
		addr, err := withPort(h, defaultPort)
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, addr)
	}
	return addrs, nil
}

// goredisURL is the URL one of go-redis's parsers reads: scheme redis (TLS
// is configured apart), the first address as its host, the others as addr
// parameters.
func goredisURL(user *url.Userinfo, hosts []string, path string, q url.Values) string {
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	return (&url.URL{Scheme: "redis", User: user, Host: hosts[0], Path: path, RawQuery: q.Encode()}).String()
}

// parserError rewords an error of go-redis's parsers: one from net/url
// would quote the URL, password and all.
func parserError(err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return fmt.Errorf("redis: the URL does not parse")
	}
	return err
}

// standalone is redis:// and rediss://, through go-redis's ParseURL.
func standalone(u *url.URL, hosts []string, _ url.Values) (goredis.UniversalOptions, error) {
	if len(hosts) > 1 {
		return goredis.UniversalOptions{}, fmt.Errorf("redis: %s:// takes one host; use redis-cluster:// or redis-sentinel:// for several", u.Scheme)
	}
	o, err := goredis.ParseURL(goredisURL(u.User, hosts, u.Path, url.Values{}))
	if err != nil {
		return goredis.UniversalOptions{}, parserError(err)
	}
	if o.DB < 0 {
		return goredis.UniversalOptions{}, fmt.Errorf("redis: database path %d is not a number of zero or more", o.DB)
	}
	return goredis.UniversalOptions{Addrs: []string{o.Addr}, Username: o.Username, Password: o.Password, DB: o.DB}, nil
}

// sentinel is redis-sentinel://, through go-redis's ParseFailoverURL, whose
// URL carries the Sentinels' credentials where ours has Redis's.
func sentinel(u *url.URL, hosts []string, q url.Values) (goredis.UniversalOptions, error) {
	master := strings.TrimPrefix(u.Path, "/")
	if master == "" || strings.Contains(master, "/") {
		return goredis.UniversalOptions{}, fmt.Errorf("redis: redis-sentinel:// needs the master's name as its path: redis-sentinel://host:26379,host2:26379/mymaster")
	}
	fq := url.Values{"master_name": {master}}
	if u.User != nil {
		fq.Set("username", u.User.Username())
		if pw, ok := u.User.Password(); ok {
			fq.Set("password", pw)
		}
	}
	path := ""
	if db, ok := last(q, "db"); ok {
		if _, err := dbNumber("db", db); err != nil {
			return goredis.UniversalOptions{}, err
		}
		path = "/" + db
	}
	var sentinelUser *url.Userinfo
	su, _ := last(q, "sentinel_username")
	if sp, ok := last(q, "sentinel_password"); ok || su != "" {
		sentinelUser = url.UserPassword(su, sp)
	}
	o, err := goredis.ParseFailoverURL(goredisURL(sentinelUser, hosts, path, fq))
	if err != nil {
		return goredis.UniversalOptions{}, parserError(err)
	}
	return goredis.UniversalOptions{Addrs: o.SentinelAddrs, MasterName: o.MasterName, DB: o.DB,
		Username: o.Username, Password: o.Password, SentinelUsername: o.SentinelUsername, SentinelPassword: o.SentinelPassword}, nil
}

// cluster is redis-cluster://, through go-redis's ParseClusterURL.
func cluster(u *url.URL, hosts []string, _ url.Values) (goredis.UniversalOptions, error) {
	if u.Path != "" {
		return goredis.UniversalOptions{}, fmt.Errorf("redis: redis-cluster:// takes no path: a cluster has only database 0")
	}
	o, err := goredis.ParseClusterURL(goredisURL(u.User, hosts, "", url.Values{}))
	if err != nil {
		return goredis.UniversalOptions{}, parserError(err)
	}
	// IsClusterMode: a cluster even with a single seed address.
	return goredis.UniversalOptions{Addrs: o.Addrs, Username: o.Username, Password: o.Password, IsClusterMode: true}, nil
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
	if !on {
		for _, n := range tlsParams {
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
