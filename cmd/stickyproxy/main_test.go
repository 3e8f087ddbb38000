package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// freeAddr returns a loopback address that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// start runs the command with args until the returned cancel is called;
// wait returns its error once it has stopped.
func start(t *testing.T, args ...string) (cancel context.CancelFunc, wait func() error, logs *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var err error
	logs = &syncBuffer{}
	go func() { defer close(done); err = run(ctx, args, io.Discard, logs) }()
	wait = func() error {
		select {
		case <-done:
			return err
		case <-time.After(20 * time.Second):
			t.Error("stickyproxy did not stop")
			return nil
		}
	}
	t.Cleanup(func() { cancel(); wait() })
	return cancel, wait, logs
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(arrived)
			<-release
		}
		io.WriteString(w, "done")
	}))
	defer backend.Close()
	listen := freeAddr(t)
	cancel, wait, logs := start(t, "--listen", listen, "--admin-listen", "", "--target", "sp-1="+backend.URL,
		"--health-interval", "0", "--log-flush", "0")
	waitListening(t, listen)

	type result struct {
		status int
		body   string
		err    error
	}
	resc := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + listen + "/slow")
		if err != nil {
			resc <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resc <- result{status: resp.StatusCode, body: string(b)}
	}()
	<-arrived
	cancel() // SIGTERM, in effect, while /slow is in flight
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "shutting down") {
		if time.Now().After(deadline) {
			t.Fatal("no shutdown logged")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	if r := <-resc; r.err != nil || r.status != 200 || r.body != "done" {
		t.Fatalf("in-flight request: %+v", r)
	}
	if err := wait(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(logs.String(), "using a random key") {
		t.Error("no warning about the random cookie key")
	}
}

func TestTLSListenerAndTwinCookie(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Forwarded-Proto"))
	}))
	defer backend.Close()
	cert, key := selfSigned(t)
	listen := freeAddr(t)
	start(t, "--listen", listen, "--admin-listen", "", "--target", "sp-1="+backend.URL, "--tls-cert", cert, "--tls-key", key,
		"--cookie-twin", "--cookie-key", "a key of sixteen bytes or more", "--health-interval", "0")
	waitListening(t, listen)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get("https://" + listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "https" {
		t.Errorf("X-Forwarded-Proto seen by the target: %q", body)
	}
	var got []string
	for _, l := range resp.Header.Values("Set-Cookie") {
		name, rest, _ := strings.Cut(l, "=")
		_, attrs, _ := strings.Cut(rest, "; Path=")
		got = append(got, name+": Path="+attrs)
	}
	// Serving TLS makes the cookie Secure without --cookie-secure; HttpOnly
	// is the default.
	want := []string{"AWSALB: Path=/; HttpOnly; Secure; SameSite=Lax", "AWSALBCORS: Path=/; HttpOnly; Secure; SameSite=None"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("cookies:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestEveryProblemReported(t *testing.T) {
	t.Setenv("SAMLHA_PROXY_DRAIN_MODE", "sometimes")
	err := run(context.Background(), []string{"--cookie-samesite", "loose"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "cookie-samesite") || !strings.Contains(err.Error(), "auto") {
		t.Errorf("--cookie-samesite loose: %v", err)
	}
	err = run(context.Background(), []string{"--target", "bad target", "--stickiness", "maybe", "--cookie-key", "short",
		"--tls-cert", "x.pem", "--relaystate-peek", "1B", "--admin-insecure", "--admin-listen", "0.0.0.0:0"}, io.Discard, io.Discard)
	if err == nil {
		t.Fatal("no error")
	}
	for _, flag := range []string{"--target", "--cookie-key", "--tls-cert", "--admin-insecure"} {
		if !strings.Contains(err.Error(), flag) {
			t.Errorf("error does not name %s:\n%v", flag, err)
		}
	}
	// The first round (flag syntax) passed; the second reports config
	// problems, including one set from the environment.
	err = run(context.Background(), []string{"--target", "sp-1=http://127.0.0.1:1", "--stickiness", "maybe", "--relaystate-peek", "1B",
		"--cookie-samesite", "none", "--admin-token", "short", "--max-buffered-body", "1MiB", "--max-buffer-per-client", "512KiB",
		"--strip-request-header", "bad name", "--http-server", "nginx"}, io.Discard, io.Discard)
	for _, flag := range []string{"--stickiness", "--drain-mode", "--relaystate-peek", "--cookie-samesite", "--admin-token",
		"--max-buffer-per-client", "--strip-request-header", "--http-server"} {
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("error does not name %s:\n%v", flag, err)
		}
	}
}

func TestSize(t *testing.T) {
	for in, want := range map[string]int64{"64KiB": 64 << 10, "1MiB": 1 << 20, "100": 100, "2KB": 2000, "1.5k": 1536, "-1": -1, "-0": -1} {
		var s size
		if err := s.Set(in); err != nil || int64(s) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, s, err, want)
		}
	}
	var s size
	if err := s.Set("12 parsecs"); err == nil {
		t.Error("accepted a bad unit")
	}
}

func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
	return certFile, keyFile
}

func TestAdminTokenSubcommand(t *testing.T) {
	file := filepath.Join(t.TempDir(), "admin-token")
	var out strings.Builder
	if err := run(context.Background(), []string{"admin-token", "--file", file, "--print"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, %v; want mode 0600", fi, err)
	}
	tok := strings.TrimSpace(out.String())
	if len(tok) != 43 {
		t.Fatalf("token %q: want 43 base64url characters (32 bytes)", tok)
	}
	out.Reset()
	if err := run(context.Background(), []string{"admin-token", "--file", file, "--print"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != tok {
		t.Fatalf("second run made a new token %q, want the kept %q", got, tok)
	}
	if err := run(context.Background(), []string{"admin-token"}, io.Discard, io.Discard); err == nil {
		t.Fatal("admin-token without --file: no error")
	}
}

// TestAdminTokenFile: with --admin-token-file the admin calls need the
// token; without a token they are refused (403) and /healthz still answers;
// --admin-insecure serves them on loopback only.
func TestAdminTokenFile(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	file := filepath.Join(t.TempDir(), "token")
	os.WriteFile(file, []byte("  a-token-of-sixteen-bytes-or-more\n"), 0o600)
	get := func(u, token string) int {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		name      string
		args      []string
		token     string
		want      int
		wantNoTok int
	}{
		{"token file", []string{"--admin-token-file", file}, "a-token-of-sixteen-bytes-or-more", 200, 401},
		{"no token", nil, "", 403, 403},
		{"insecure on loopback", []string{"--admin-insecure"}, "", 200, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			listen, admin := freeAddr(t), freeAddr(t)
			start(t, append([]string{"--listen", listen, "--admin-listen", admin, "--target", "sp-1=" + backend.URL,
				"--health-interval", "0", "--stickiness", "off"}, tt.args...)...)
			waitListening(t, admin)
			if got := get("http://"+admin+"/targets", tt.token); got != tt.want {
				t.Errorf("GET /targets: %d, want %d", got, tt.want)
			}
			if got := get("http://"+admin+"/targets", ""); got != tt.wantNoTok {
				t.Errorf("GET /targets without a token: %d, want %d", got, tt.wantNoTok)
			}
			if got := get("http://"+admin+"/healthz", ""); got != 200 {
				t.Errorf("GET /healthz: %d", got)
			}
		})
	}
}
