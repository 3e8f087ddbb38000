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
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Timings.
const (
	// startTimeout bounds the wait for a new server to answer.
	startTimeout = 15 * time.Second
	// stopTimeout bounds the wait for a server to exit after SIGTERM,
	// after which it is killed.
	stopTimeout = 10 * time.Second
	pollStep    = 10 * time.Millisecond
	// startTries is how many free ports Start tries: another process may
	// take a port between our finding it free and redis-server binding it.
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

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// Option configures Start.
type Option func(*config)

type config struct {
	password string
	args     []string
	tls      bool
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
		if err := writeTLSFiles(s.dir); err != nil {
			tb.Fatalf("redistest: TLS files: %v", err)
		}
	}
	s.launch()
	return s
}

// launch starts s on a free port, trying another if the port was taken.
func (s *Server) launch() {
	tb := s.tb
	tb.Helper()
	var err, lastErr error
	for range startTries {
		if s.port, err = freePort(); err != nil {
			tb.Fatalf("redistest: %v", err)
		}
		if lastErr = s.start(); lastErr == nil {
			tb.Cleanup(s.Stop)
			return
		}
	}
	tb.Fatalf("redistest: %v", lastErr)
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

// freePort returns a loopback TCP port that was free a moment ago.
// freePort returns a port on 127.0.0.1 that was free a moment ago, drawn at
// random from 20000-31999, below Linux's ephemeral range: ports the kernel
// hands to ":0" listeners and outgoing connections are reused soon after
// they are freed, and a server stopped for an outage test must get its port
// back on Restart.
func freePort() (int, error) {
	for range 50 {
		port := 20000 + mrand.IntN(12000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			l.Close()
			return port, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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

// start runs redis-server on s.port and waits until it answers.
func (s *Server) start() error {
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
			"--tls-cert-file", filepath.Join(s.dir, "server.pem"),
			"--tls-key-file", filepath.Join(s.dir, "server-key.pem"),
			"--tls-ca-cert-file", s.CAFile(),
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
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	setDeathSignal(cmd)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	if err := waitAnswer(s.Addr(), s.tls, done); err != nil {
		s.kill()
		return fmt.Errorf("redis-server on port %d: %w\n%s%s", s.port, err, stderr.Bytes(), tail(s.logPath()))
	}
	// Whoever answered may be another test's server that took the port
	// (ours then fails to bind and exits): check it is ours, or a test
	// would run against a stranger that may stop at any moment.
	if pid, err := serverPID(s.Addr(), s.tls, s.password); err != nil || pid != cmd.Process.Pid {
		s.kill()
		return fmt.Errorf("port %d is answered by another process (pid %d, ours %d; %v): it was taken while our server was stopped", s.port, pid, cmd.Process.Pid, err)
	}
	return nil
}

// serverPID asks the server at addr for its process ID (INFO server),
// authenticating first when it has a password.
func serverPID(addr string, useTLS bool, password string) (int, error) {
	c, err := dial(addr, useTLS)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	if password != "" {
		fmt.Fprintf(c, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password)
		if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
			return 0, fmt.Errorf("AUTH: %q %v", strings.TrimSpace(line), err)
		}
	}
	if _, err := c.Write([]byte("INFO server\r\n")); err != nil {
		return 0, err
	}
	head, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		return 0, fmt.Errorf("INFO: %q %v", strings.TrimSpace(head), err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil {
		return 0, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\r\n") {
		if v, ok := strings.CutPrefix(line, "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO server has no process_id")
}

// waitAnswer polls addr with PING until the server answers (any reply,
// NOAUTH included), the process exits, or startTimeout passes.
func waitAnswer(addr string, useTLS bool, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := ping(addr, useTLS)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("exited before answering")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer within %v: %w", startTimeout, err)
		}
		time.Sleep(pollStep)
	}
}

// ping sends one inline PING and reads one reply line.
func ping(addr string, useTLS bool) error {
	c, err := dial(addr, useTLS)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "-LOADING") {
		return errors.New("server is loading")
	}
	return nil
}

func dial(addr string, useTLS bool) (net.Conn, error) {
	d := &net.Dialer{Timeout: time.Second}
	if useTLS {
		// Only to talk to our own server: the certificate is our own.
		return tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	}
	return d.Dial("tcp", addr)
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
	if s.external != "" {
		return
	}
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(stopTimeout):
		cmd.Process.Kill()
		<-done
	}
}

// Kill kills the server with SIGKILL, as a crash would, and waits for it
// to exit.
func (s *Server) Kill() {
	s.tb.Helper()
	s.needPrivate("Kill")
	s.kill()
}

func (s *Server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Restart stops the server if it runs and starts it again on the same
// port, empty (nothing is saved), waiting until it answers.
func (s *Server) Restart() {
	s.tb.Helper()
	s.needPrivate("Restart")
	s.Stop()
	if err := s.start(); err != nil {
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

func (s *Server) signal(sig os.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.cmd.Process.Signal(sig)
	}
}

// Client returns a go-redis client of the server, closed when the test
// ends, for a test that needs to configure or inspect the server itself.
func (s *Server) Client() *goredis.Client {
	s.tb.Helper()
	if s.external != "" {
		unavailable(s.tb, "Client needs a private redis-server, and redis-server is not on PATH")
	}
	opts := &goredis.Options{Addr: s.Addr(), Password: s.password, DisableIdentity: true}
	if s.tls {
		pem, err := os.ReadFile(s.CAFile())
		if err != nil {
			s.tb.Fatalf("redistest: %v", err)
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		opts.TLSConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	c := goredis.NewClient(opts)
	s.tb.Cleanup(func() { c.Close() })
	return c
}
