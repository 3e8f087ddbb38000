// Package devidptest starts the development IdP (package devidp) for one
// test, on loopback, with a key pair made once per test process. It lives
// beside the tests so the shipped devidp binary links no "testing".
package devidptest

import (
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/samlha/samlha/sp/devidp"
)

// testKeys is one key pair per test process: generating an RSA key takes a
// noticeable fraction of a second.
var testKeys struct {
	once sync.Once
	key  *rsa.PrivateKey
	cert *x509.Certificate
	err  error
}

// KeyPair returns a key pair generated once per process, for tests.
func KeyPair(tb testing.TB) (*rsa.PrivateKey, *x509.Certificate) {
	tb.Helper()
	testKeys.once.Do(func() {
		testKeys.key, testKeys.cert, testKeys.err = devidp.GenerateKeyPair("devidp-test", time.Now())
	})
	if testKeys.err != nil {
		tb.Fatalf("generating the test key pair: %v", testKeys.err)
	}
	return testKeys.key, testKeys.cert
}

// IdP is a development IdP served on loopback for one test.
type IdP struct {
	*devidp.Server
	// URL is the IdP's public base URL (Config.PublicURL).
	URL string
	// Addr is the address it listens on, "127.0.0.1:port": the address to
	// resolve the host of URL to when it is a name (sptest.Options.Resolve).
	Addr string
}

// Start serves a development IdP made from cfg on an httptest server on
// 127.0.0.1 until the test ends. Defaults for a test: PublicURL is
// "http://127.0.0.1:<port>"; a PublicURL without a port, such as
// "http://idp.samlha-idp.test", gets the listener's port (resolve the name
// to Addr in the browser); Key and Certificate are KeyPair's; Logger
// writes to the test log at debug level.
func Start(tb testing.TB, cfg devidp.Config) *IdP {
	tb.Helper()
	srv := httptest.NewUnstartedServer(nil)
	addr := srv.Listener.Addr().(*net.TCPAddr)
	switch {
	case cfg.PublicURL == "":
		cfg.PublicURL = fmt.Sprintf("http://127.0.0.1:%d", addr.Port)
	default:
		u, err := url.Parse(cfg.PublicURL)
		if err != nil {
			tb.Fatalf("public URL: %v", err)
		}
		if u.Port() == "" {
			u.Host = net.JoinHostPort(u.Hostname(), fmt.Sprint(addr.Port))
			cfg.PublicURL = u.String()
		}
	}
	if cfg.Key == nil && cfg.Certificate == nil && cfg.DataDir == "" {
		cfg.Key, cfg.Certificate = KeyPair(tb)
	}
	if cfg.Logger == nil {
		// The writer is made first, so it stops after the server closed.
		cfg.Logger = slog.New(slog.NewTextHandler(LogWriter(tb), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := devidp.New(cfg)
	if err != nil {
		srv.Close()
		tb.Fatalf("devidp.New: %v", err)
	}
	srv.Config.Handler = s
	srv.Start()
	tb.Cleanup(srv.Close)
	return &IdP{Server: s, URL: cfg.PublicURL, Addr: addr.String()}
}

// LogWriter returns a writer that sends each write to the test log
// until the test's cleanups run, and drops writes after that (a goroutine
// such as RegisterSPs may outlive the test). Create it before the servers
// that write to it, so that its cleanup runs after theirs.
func LogWriter(tb testing.TB) io.Writer {
	w := &tbWriter{tb: tb}
	tb.Cleanup(w.stop)
	return w
}

type tbWriter struct {
	tb      testing.TB
	mu      sync.Mutex
	stopped bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tbWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
}
