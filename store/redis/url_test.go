package redis_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/samlha/samlha/store/redis"
)

// parsed is the part of a Config that the URL decides, for comparison.
type parsed struct {
	Addrs            []string
	Username         string
	Password         string
	DB               int
	MasterName       string
	SentinelUsername string
	SentinelPassword string
	Cluster          bool
	TLS              bool
	TLSServerName    string
	TLSSkipVerify    bool
	Prefix           string
	Timeout          time.Duration
	DialTimeout      time.Duration
	PoolSize         int
	MinIdle          int
	NoVerify         bool
	Heartbeat        time.Duration
	Liveness         time.Duration
	FailoverBudget   time.Duration
	Kind             string
	Location         string
}

func summarize(c *redis.Config) parsed {
	p := parsed{
		Addrs:            c.Client.Addrs,
		Username:         c.Client.Username,
		Password:         c.Client.Password,
		DB:               c.Client.DB,
		MasterName:       c.Client.MasterName,
		SentinelUsername: c.Client.SentinelUsername,
		SentinelPassword: c.Client.SentinelPassword,
		Cluster:          c.Client.IsClusterMode,
		TLS:              c.Client.TLSConfig != nil,
		Prefix:           c.Options.Prefix,
		Timeout:          c.Options.Timeout,
		DialTimeout:      c.Client.DialTimeout,
		PoolSize:         c.Client.PoolSize,
		MinIdle:          c.Client.MinIdleConns,
		NoVerify:         !c.Verify,
		Heartbeat:        c.Options.Heartbeat,
		Liveness:         c.Options.Liveness,
		FailoverBudget:   c.Options.FailoverBudget,
		Kind:             c.Options.Kind,
		Location:         c.Options.Location,
	}
	if c.Client.TLSConfig != nil {
		p.TLSServerName = c.Client.TLSConfig.ServerName
		p.TLSSkipVerify = c.Client.TLSConfig.InsecureSkipVerify
	}
	return p
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	const ms = time.Millisecond
	def := func(p parsed) parsed { // fills the defaults
		if p.Prefix == "" {
			p.Prefix = "samlha:"
		}
		if p.Timeout == 0 {
			p.Timeout = 500 * ms
		}
		if p.DialTimeout == 0 {
			p.DialTimeout = time.Second
		}
		if p.Kind == "redis-sentinel" && p.FailoverBudget == 0 {
			p.FailoverBudget = redis.DefaultFailoverBudget
		} else if p.FailoverBudget < 0 {
			p.FailoverBudget = 0 // failover_budget=0, said in the URL
		}
		return p
	}
	tests := []struct {
		url  string
		want parsed
	}{
		{"redis://", def(parsed{Addrs: []string{"localhost:6379"}, Kind: "redis", Location: "redis:"})},
		{"redis://127.0.0.1:6380/3", def(parsed{Addrs: []string{"127.0.0.1:6380"}, DB: 3, Kind: "redis", Location: "redis://127.0.0.1:6380/3"})},
		{"redis://app:s3cret@cache/1?prefix=x%3A&timeout=250ms&dial_timeout=2s&pool_size=20&min_idle=2&verify=false",
			def(parsed{Addrs: []string{"cache:6379"}, Username: "app", Password: "s3cret", DB: 1, Prefix: "x:", Timeout: 250 * ms,
				DialTimeout: 2 * time.Second, PoolSize: 20, MinIdle: 2, NoVerify: true, Kind: "redis",
				Location: "redis://app:xxxxx@cache/1?dial_timeout=2s&min_idle=2&pool_size=20&prefix=x%3A&timeout=250ms&verify=false"})},
		{"rediss://:pw@cache.example:6380?tls_server_name=redis.internal&tls_insecure_skip_verify=true",
			def(parsed{Addrs: []string{"cache.example:6380"}, Password: "pw", TLS: true, TLSServerName: "redis.internal", TLSSkipVerify: true, Kind: "redis",
				Location: "rediss://:xxxxx@cache.example:6380?tls_insecure_skip_verify=true&tls_server_name=redis.internal"})},
		{"redis-sentinel://:pw@s1,s2:5000/mymaster?db=2&sentinel_password=spw",
			def(parsed{Addrs: []string{"s1:26379", "s2:5000"}, Password: "pw", DB: 2, MasterName: "mymaster", SentinelPassword: "spw", Kind: "redis-sentinel",
				Location: "redis-sentinel://:xxxxx@s1,s2:5000/mymaster?db=2&sentinel_password=xxxxx"})},
		{"redis-cluster://n1:7000,n2:7001?tls=true&prefix=",
			def(parsed{Addrs: []string{"n1:7000", "n2:7001"}, Cluster: true, TLS: true, Prefix: "", Kind: "redis-cluster",
				Location: "redis-cluster://n1:7000,n2:7001?prefix=&tls=true"})},
		{"redis://h?heartbeat=50ms&liveness=200ms",
			def(parsed{Addrs: []string{"h:6379"}, Heartbeat: 50 * ms, Liveness: 200 * ms, Kind: "redis",
				Location: "redis://h?heartbeat=50ms&liveness=200ms"})},
		{"redis-cluster://n1:7000",
			def(parsed{Addrs: []string{"n1:7000"}, Cluster: true, Kind: "redis-cluster", Location: "redis-cluster://n1:7000"})},
		// The credentials and hosts of each form reach the right go-redis
		// fields through go-redis's own parsers.
		{"redis-cluster://app:pw@n1,n3,n2:7001",
			def(parsed{Addrs: []string{"n1:6379", "n3:6379", "n2:7001"}, Username: "app", Password: "pw", Cluster: true, Kind: "redis-cluster",
				Location: "redis-cluster://app:xxxxx@n1,n3,n2:7001"})},
		{"redis-sentinel://app:pw@s1:5000/m?sentinel_username=watch&sentinel_password=spw",
			def(parsed{Addrs: []string{"s1:5000"}, Username: "app", Password: "pw", MasterName: "m", SentinelUsername: "watch", SentinelPassword: "spw",
				Kind: "redis-sentinel", Location: "redis-sentinel://app:xxxxx@s1:5000/m?sentinel_password=xxxxx&sentinel_username=watch"})},
		{"redis-sentinel://s1,s2,s3/m",
			def(parsed{Addrs: []string{"s1:26379", "s2:26379", "s3:26379"}, MasterName: "m", Kind: "redis-sentinel", Location: "redis-sentinel://s1,s2,s3/m"})},
		{"redis-sentinel://s1/m?failover_budget=2500ms",
			def(parsed{Addrs: []string{"s1:26379"}, MasterName: "m", FailoverBudget: 2500 * ms, Kind: "redis-sentinel", Location: "redis-sentinel://s1/m?failover_budget=2500ms"})},
		{"redis-sentinel://s1/m?failover_budget=20s",
			def(parsed{Addrs: []string{"s1:26379"}, MasterName: "m", FailoverBudget: 20 * time.Second, Kind: "redis-sentinel", Location: "redis-sentinel://s1/m?failover_budget=20s"})},
		{"redis-sentinel://s1/m?failover_budget=0",
			def(parsed{Addrs: []string{"s1:26379"}, MasterName: "m", FailoverBudget: -1, Kind: "redis-sentinel", Location: "redis-sentinel://s1/m?failover_budget=0"})},
		{"redis://[::1]:6380/2",
			def(parsed{Addrs: []string{"[::1]:6380"}, DB: 2, Kind: "redis", Location: "redis://[::1]:6380/2"})},
		{"redis://%2Fodd:p%40ss%3Aw0rd@h",
			def(parsed{Addrs: []string{"h:6379"}, Username: "/odd", Password: "p@ss:w0rd", Kind: "redis", Location: "redis://%2Fodd:xxxxx@h"})},
	}
	// Location is store.Redact's: the query is re-encoded in sorted order.
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := redis.ParseURL(u)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			want := tc.want
			if strings.HasSuffix(tc.url, "prefix=") {
				want.Prefix = ""
			}
			if diff := cmp.Diff(want, summarize(cfg)); diff != "" {
				t.Fatalf("ParseURL mismatch (-want +got):\n%s", diff)
			}
			if cfg.Client.ReadTimeout != cfg.Options.Timeout || cfg.Client.WriteTimeout != cfg.Options.Timeout {
				t.Fatalf("read/write timeouts %v/%v, want the call timeout %v", cfg.Client.ReadTimeout, cfg.Client.WriteTimeout, cfg.Options.Timeout)
			}
		})
	}
}

func TestParseURLErrors(t *testing.T) {
	t.Parallel()
	const secret = "hunter2-secret"
	tests := []struct{ url, want string }{
		{"redis://:" + secret + "@h/x", "database"},
		{"redis://:" + secret + "@h/-1", "database"},
		{"redis://:" + secret + "@h1,h2", "one host"},
		{"redis://:" + secret + "@h?timeout=0s", "timeout"},
		{"redis://:" + secret + "@h?timeout=soon", "timeout"},
		{"redis://:" + secret + "@h?dial_timeout=-1s", "dial_timeout"},
		{"redis://:" + secret + "@h?pool_size=0", "pool_size"},
		{"redis://:" + secret + "@h?min_idle=-1", "min_idle"},
		{"redis://:" + secret + "@h?verify=maybe", "verify"},
		{"redis://:" + secret + "@h?heartbeat=0s", "heartbeat"},
		{"redis://:" + secret + "@h?liveness=x", "liveness"},
		{"redis://:" + secret + "@h?heartbeat=1s&liveness=1s", "less than twice"},
		{"redis://:" + secret + "@h?tls_ca_file=/x", "needs TLS"},
		{"redis://:" + secret + "@h?db=1", `unknown parameter "db"`},
		{"redis://:" + secret + "@h?password=" + secret, `unknown parameter "password"`},
		{"rediss://:" + secret + "@h?tls_ca_file=/nonexistent/ca.pem", "tls_ca_file"},
		{"rediss://:" + secret + "@h?tls_cert_file=/x", "go together"},
		{"redis-sentinel://:" + secret + "@s1,s2", "master's name"},
		{"redis-sentinel://:" + secret + "@s1/m/x", "master's name"},
		{"redis-sentinel://:" + secret + "@s1/m?db=x", "database"},
		{"redis-sentinel://:" + secret + "@s1/m?db=-1", "database"},
		{"redis-sentinel://:" + secret + "@s1/m?failover_budget=-1s", "failover_budget"},
		{"redis-sentinel://:" + secret + "@s1/m?failover_budget=soon", "failover_budget"},
		{"redis-sentinel://:" + secret + "@s1/m?failover_budget=21s", "is over 20s"},
		{"redis://:" + secret + "@h?failover_budget=5s", `unknown parameter "failover_budget"`},
		{"redis://:" + secret + "@h/1/2", "path"},
		{"redis-cluster://:" + secret + "@n1/0", "no path"},
		{"redis-cluster://:" + secret + "@n1,,n2", "empty host"},
		{"redis-cluster://:" + secret + "@n1:1:2", "host"},
		{"redis:" + secret, "two slashes"},
		{"memcached://h", "unknown scheme"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatalf("url.Parse: %v", err)
			}
			_, err = redis.ParseURL(u)
			switch {
			case err == nil:
				t.Fatalf("ParseURL(%s) succeeded, want an error about %s", u.Redacted(), tc.want)
			case !strings.Contains(err.Error(), tc.want):
				t.Fatalf("ParseURL(%s) = %q, want an error about %q", u.Redacted(), err, tc.want)
			case strings.Contains(err.Error(), secret):
				t.Fatalf("ParseURL error %q contains the password", err)
			}
		})
	}
}
