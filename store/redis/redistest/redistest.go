// Package redistest starts private redis-server processes for tests: one
// server on a free loopback port, or a Redis Cluster of several, each in a
// temporary directory of its own and stopped when the test ends.
//
// When redis-server is not on PATH, Start falls back to the server that
// REDIS_URL names, giving each test a key prefix of its own (it never
// flushes a server it did not start); without REDIS_URL it skips the test
// with the reason, except under CI=true, where it fails it. StartCluster
// and the methods that stop or restart a server need redis-server itself.
package redistest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/samlha/samlha/store/localproc"
	"github.com/samlha/samlha/store/redis"
)

// Timings.
const (
	// startTimeout bounds the wait for a new server to answer.
	startTimeout = 15 * time.Second
	// stopTimeout bounds the wait for a server to exit after SIGTERM,
	// after which it is killed.
	stopTimeout = 10 * time.Second
	// startTries is how many ports Start tries: another process may take a
	// port between its being picked and redis-server binding it.
	startTries = 3
)

// Server is a redis-server process started for one test, or, in the
// REDIS_URL fallback, a server shared with others.
type Server struct {
	tb       testing.TB
	bin      string
	dir      string
	port     int
	args     []string
	password string
	external string // REDIS_URL fallback: its URL, with a prefix of our own
	sentinel *sentinelConf
	tls      bool
	ca       *localproc.CA

	proc *localproc.Proc
}

// Option configures Start.
type Option func(*config)

type config struct {
	password string
	args     []string
	tls      bool
	ca       *localproc.CA // with tls: a CA shared with other servers; nil: one of its own
}

// WithPassword starts the server with requirepass, so that clients must
// authenticate. URL includes the password.
func WithPassword(password string) Option {
	return func(c *config) { c.password = password }
}

// WithArgs passes more arguments to redis-server, such as
// "--maxmemory", "2mb".
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Start starts a private redis-server on a free loopback port and stops it
// when the test ends. See the package documentation for what happens when
// redis-server is not on PATH.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	var c config
	for _, o := range opts {
		o(&c)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return external(tb, c)
	}
	s := &Server{tb: tb, bin: bin, dir: tb.TempDir(), password: c.password, args: c.args, tls: c.tls}
	if c.tls {
		s.ca = c.ca
		if s.ca == nil {
			if s.ca, err = localproc.NewCA(s.dir, "127.0.0.1", "localhost"); err != nil {
				tb.Fatalf("redistest: TLS files: %v", err)
			}
		}
	}
	s.launch()
	return s
}

// launch starts s on a port it really got, trying another if the port was
// taken (see localproc.Launch).
func (s *Server) launch() {
	s.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout*startTries)
	defer cancel()
	var lastErr error
	for range startTries {
		s.port = localproc.Port()
		if lastErr = s.start(ctx); lastErr == nil {
			s.tb.Cleanup(s.Stop)
			return
		}
		if !errors.Is(lastErr, localproc.ErrPortTaken) {
			break
		}
	}
	s.tb.Fatalf("redistest: %v", lastErr)
}

// external returns the REDIS_URL fallback, or skips (fails, under CI).
func external(tb testing.TB, c config) *Server {
	tb.Helper()
	raw := os.Getenv("REDIS_URL")
	if raw == "" {
		unavailable(tb, "redis-server is not on PATH and REDIS_URL is not set")
	}
	if c.password != "" || len(c.args) > 0 || c.tls {
		unavailable(tb, "this test needs a private redis-server (it sets a password or server arguments), and redis-server is not on PATH")
	}
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatalf("redistest: REDIS_URL does not parse as a URL")
	}
	q := u.Query()
	q.Set("prefix", "redistest-"+randomHex(tb, 8)+":")
	u.RawQuery = q.Encode()
	return &Server{tb: tb, external: u.String()}
}

// unavailable skips the test, or fails it when CI=true, since CI must run
// every test.
func unavailable(tb testing.TB, reason string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("redistest: %s (CI=true: install redis-server)", reason)
	}
	tb.Skipf("redistest: %s; install redis-server or set REDIS_URL to run this test", reason)
}

func randomHex(tb testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("redistest: random: %v", err)
	}
	return hex.EncodeToString(b)
}

// Addr returns the server's host:port.
func (s *Server) Addr() string {
	if s.external != "" {
		u, _ := url.Parse(s.external)
		return u.Host
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns a redis:// URL for the server, with its password if it has
// one. In the REDIS_URL fallback it is REDIS_URL with a prefix parameter
// unique to the test.
func (s *Server) URL() string {
	if s.external != "" {
		return s.external
	}
	u := url.URL{Scheme: "redis", Host: s.Addr()}
	if s.password != "" {
		u.User = url.UserPassword("", s.password)
	}
	if s.tls {
		u.Scheme = "rediss"
		u.RawQuery = url.Values{"tls_ca_file": {s.CAFile()}}.Encode()
	}
	return u.String()
}

// Password returns the password the server requires, or "".
func (s *Server) Password() string { return s.password }

// Dir returns the server's directory (its log is redis.log there).
func (s *Server) Dir() string { return s.dir }

func (s *Server) needPrivate(what string) {
	s.tb.Helper()
	if s.external != "" {
		unavailable(s.tb, what+" needs a private redis-server, and redis-server is not on PATH")
	}
}

func (s *Server) logPath() string { return filepath.Join(s.dir, "redis.log") }

// start runs redis-server on s.port and waits until it answers and is
// ours (its process_id); the error wraps localproc.ErrPortTaken when the
// port was taken.
func (s *Server) start(ctx context.Context) error {
	var args []string
	if s.sentinel != nil {
		conf, err := s.sentinel.write(s.dir)
		if err != nil {
			return err
		}
		args = append(args, conf, "--sentinel")
	}
	port := []string{"--port", strconv.Itoa(s.port)}
	if s.tls {
		port = []string{
			"--port", "0",
			"--tls-port", strconv.Itoa(s.port),
			"--tls-cert-file", s.ca.CertFile,
			"--tls-key-file", s.ca.KeyFile,
			"--tls-ca-cert-file", s.ca.CAFile,
			"--tls-auth-clients", "no",
		}
	}
	args = append(args, port...)
	args = append(args,
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--logfile", s.logPath(),
		"--daemonize", "no",
	)
	if s.sentinel == nil {
		args = append(args, "--save", "", "--appendonly", "no")
	}
	if s.password != "" {
		args = append(args, "--requirepass", s.password)
	}
	args = append(args, s.args...)
	s.proc = &localproc.Proc{Name: "redis-server", Path: s.bin, Args: args, Dir: s.dir, LogPath: filepath.Join(s.dir, "redis.out")}
	if err := s.proc.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	// A server that answers must be ours: another test's server may have
	// taken the port (ours then fails to bind and exits), and a test would
	// run against a stranger that may stop at any moment.
	if err := localproc.Ready(ctx, s.proc, []int{s.port}, localproc.RedisProbe(s.proc, s.options()), s.logPath()); err != nil {
		s.proc.Kill()
		return fmt.Errorf("redis-server on port %d: %w", s.port, err)
	}
	return nil
}

// options are go-redis options for the server.
func (s *Server) options() *goredis.Options {
	o := &goredis.Options{Addr: s.Addr(), Password: s.password, DisableIdentity: true}
	if s.tls {
		o.TLSConfig = &tls.Config{RootCAs: s.ca.Pool, MinVersion: tls.VersionTLS12}
	}
	return o
}

// tail returns the end of the file at path, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return "redis.log ends:\n" + string(b)
}

// Stop stops the server gracefully (SIGTERM, then SIGKILL after
// stopTimeout) and waits for it to exit. Stopping a stopped server does
// nothing. The test's cleanup calls it.
func (s *Server) Stop() {
	if s.proc != nil {
		s.proc.Stop(stopTimeout)
	}
}

// Kill kills the server with SIGKILL, as a crash would, and waits for it
// to exit.
func (s *Server) Kill() {
	s.tb.Helper()
	s.needPrivate("Kill")
	s.proc.Kill()
}

// Restart stops the server if it runs and starts it again on the same
// port, empty (nothing is saved), waiting until it answers.
func (s *Server) Restart() {
	s.tb.Helper()
	s.needPrivate("Restart")
	s.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.start(ctx); err != nil {
		s.tb.Fatalf("redistest: restart: %v", err)
	}
}

// Pause stops the process with SIGSTOP: it keeps its connections but
// answers nothing, as a hung server or a network partition would. Resume
// (or Stop) continues it.
func (s *Server) Pause() {
	s.tb.Helper()
	s.needPrivate("Pause")
	s.signal(syscall.SIGSTOP)
}

// Resume continues a paused server.
func (s *Server) Resume() {
	s.tb.Helper()
	s.needPrivate("Resume")
	s.signal(syscall.SIGCONT)
}

func (s *Server) signal(sig syscall.Signal) {
	if s.proc != nil {
		s.proc.Signal(sig)
	}
}

// Client returns a go-redis client of the server, closed when the test
// ends, for a test that needs to configure or inspect the server itself.
func (s *Server) Client() *goredis.Client {
	s.tb.Helper()
	if s.external != "" {
		unavailable(s.tb, "Client needs a private redis-server, and redis-server is not on PATH")
	}
	opts := s.options()
	c := goredis.NewClient(opts)
	s.tb.Cleanup(func() { c.Close() })
	return c
}

// replicateTimeout bounds WaitReplicating.
const replicateTimeout = 20 * time.Second

// WaitReplicating waits until s, a replica, reports its link to its master
// up (INFO replication), and fails the test with the end of s's log if it
// does not within replicateTimeout.
func (s *Server) WaitReplicating(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), replicateTimeout)
	defer cancel()
	var last string
	err := localproc.Poll(ctx, func(ctx context.Context) error {
		info, err := s.Client().Info(ctx, "replication").Result()
		if err != nil {
			return err
		}
		if last = redis.InfoField(info, "master_link_status"); last != "up" {
			return errors.New("not replicating yet")
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("redistest: replica %s: master_link_status %q after %v: %v\n%s", s.Addr(), last, replicateTimeout, err, tail(s.logPath()))
	}
}
