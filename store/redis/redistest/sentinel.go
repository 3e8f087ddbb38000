package redistest

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sentinelConf is what a Sentinel is told to monitor, and how.
type sentinelConf struct {
	master          *Server
	masterName      string
	downAfter       time.Duration
	quorum          int
	failoverTimeout time.Duration
	password        string // the Sentinel's own (requirepass)
}

// SentinelOption configures StartSentinel.
type SentinelOption func(*sentinelConf)

// WithDownAfter sets the Sentinel's down-after-milliseconds: how long the
// master must fail to answer before the Sentinel takes it for down and
// fails over (default 1s here; Redis's own default is 30s).
func WithDownAfter(d time.Duration) SentinelOption {
	return func(c *sentinelConf) { c.downAfter = d }
}

// WithQuorum sets how many Sentinels must agree that the master is down
// before one of them may fail over (default 1). With several Sentinels the
// one that fails over must also be elected by a majority of those it
// knows, whatever the quorum.
func WithQuorum(n int) SentinelOption {
	return func(c *sentinelConf) { c.quorum = n }
}

// WithFailoverTimeout sets the Sentinel's failover-timeout (default 180s,
// Redis's): among other things, how long a Sentinel waits before it tries
// again after an election that chose nobody (twice this), which happens
// when two Sentinels ask for votes in the same epoch.
func WithFailoverTimeout(d time.Duration) SentinelOption {
	return func(c *sentinelConf) { c.failoverTimeout = d }
}

// WithSentinelPassword makes the Sentinel require password of its clients
// (requirepass in sentinel.conf); SentinelsURL then carries it as
// sentinel_password.
func WithSentinelPassword(password string) SentinelOption {
	return func(c *sentinelConf) { c.password = password }
}

// write writes the Sentinel's configuration file (Sentinel insists on one
// it can rewrite) into dir and returns its path.
func (c *sentinelConf) write(dir string) (string, error) {
	host, port, _ := strings.Cut(c.master.Addr(), ":")
	conf := fmt.Sprintf("sentinel monitor %s %s %s %d\nsentinel down-after-milliseconds %s %d\n",
		c.masterName, host, port, c.quorum, c.masterName, c.downAfter.Milliseconds())
	if c.password != "" {
		// sentinel-pass: what it gives the other Sentinels, which have
		// the same password.
		conf += fmt.Sprintf("requirepass %s\nsentinel sentinel-pass %s\n", c.password, c.password)
	}
	if c.failoverTimeout > 0 {
		conf += fmt.Sprintf("sentinel failover-timeout %s %d\n", c.masterName, c.failoverTimeout.Milliseconds())
	}
	if pw := c.master.password; pw != "" {
		conf += fmt.Sprintf("sentinel auth-pass %s %s\n", c.masterName, pw)
	}
	path := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		return "", fmt.Errorf("write sentinel configuration: %w", err)
	}
	return path, nil
}

// Sentinel is a private Redis Sentinel that monitors one master.
type Sentinel struct {
	*Server
	master     *Server
	masterName string
}

// StartSentinel starts a private Redis Sentinel (redis-server --sentinel)
// on a free loopback port that monitors master under masterName, with a
// quorum of one unless WithQuorum says otherwise. It stops when the test ends. Without redis-server on PATH
// it skips the test (fails it under CI=true).
func StartSentinel(tb testing.TB, master *Server, masterName string, opts ...SentinelOption) *Sentinel {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil || master.external != "" {
		unavailable(tb, "a Sentinel needs redis-server on PATH")
	}
	conf := &sentinelConf{master: master, masterName: masterName, downAfter: time.Second, quorum: 1}
	for _, o := range opts {
		o(conf)
	}
	s := &Server{tb: tb, bin: bin, dir: tb.TempDir(), sentinel: conf, password: conf.password}
	if master.tls {
		// A Sentinel of a TLS master speaks TLS only too, to its clients
		// and to the servers it watches, under the master's CA.
		s.tls, s.ca = true, master.ca
		s.args = append(s.args, "--tls-replication", "yes")
	}
	s.launch()
	return &Sentinel{Server: s, master: master, masterName: masterName}
}

// URL returns a redis-sentinel:// URL that finds the master through this
// Sentinel, with the master's password if it has one.
func (s *Sentinel) URL() string { return SentinelsURL(s) }

// SentinelsURL returns a redis-sentinel:// URL that lists all of ss (which
// monitor the same master under the same name), in that order, with the
// master's password and the Sentinels' (the first's) if they have them, and
// tls=true with the CA's file for Sentinels of a TLS master.
func SentinelsURL(ss ...*Sentinel) string {
	addrs := make([]string, len(ss))
	for i, s := range ss {
		addrs[i] = s.Addr()
	}
	u := url.URL{Scheme: "redis-sentinel", Host: strings.Join(addrs, ","), Path: "/" + ss[0].masterName}
	if pw := ss[0].master.password; pw != "" {
		u.User = url.UserPassword("", pw)
	}
	q := url.Values{}
	if pw := ss[0].sentinel.password; pw != "" {
		q.Set("sentinel_password", pw)
	}
	if ss[0].tls {
		q.Set("tls", "true")
		q.Set("tls_ca_file", ss[0].ca.CAFile)
	}
	u.RawQuery = q.Encode()
	return u.String()
}
