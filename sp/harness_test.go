package sp_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/devidp"
	"github.com/samlha/samlha/sp/keypair"
	"github.com/samlha/samlha/sp/limits"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/sp/sptest/devidptest"
	"github.com/samlha/samlha/store"
)

// picker chooses the replica for the n-th request through the test proxy.
type picker func(n int64, r *http.Request) int

func roundRobin(replicas int) picker {
	return func(n int64, _ *http.Request) int { return int(n % int64(replicas)) }
}

// replica is one SP replica served on loopback.
type replica struct {
	ID  string
	SP  *sp.SP
	URL string
	Reg *prometheus.Registry
}

// topology is a devidp, N SP replicas and a reverse proxy in front, all real
// HTTP servers on 127.0.0.1.
type topology struct {
	IdP      *devidptest.IdP
	Replicas []*replica
	ProxyURL string
	requests atomic.Int64
}

type topologyConfig struct {
	Replicas int
	// Store returns replica i's store; nil for stateless.
	Store func(t testing.TB, i int) store.Store
	// Keys returns replica i's key pair; default: one pair for all.
	Keys        func(t testing.TB, i int) (crypto.Signer, *x509.Certificate)
	Pick        picker
	MaxRelogins int
	Clock       func(*sp.Config)
	// Configure changes replica i's configuration before sp.New.
	Configure func(i int, c *sp.Config)
	// Quiet discards the SPs' logs (benchmarks: a production logger, not
	// the test log, is what they should pay for).
	Quiet bool
	// LoginLimits of every replica; nil switches the rate limits off
	// (every test client is 127.0.0.1) and keeps the pending ceiling's
	// default.
	LoginLimits *limits.LoginLimits
	// TrustedProxies of every replica.
	TrustedProxies []netip.Prefix
}

func startTopology(t testing.TB, cfg topologyConfig) *topology {
	t.Helper()
	if cfg.Replicas == 0 {
		cfg.Replicas = 3
	}
	if cfg.Pick == nil {
		cfg.Pick = roundRobin(cfg.Replicas)
	}
	if cfg.Keys == nil {
		k, c := spKeyPair(t)
		cfg.Keys = func(testing.TB, int) (crypto.Signer, *x509.Certificate) { return k, c }
	}
	top := &topology{}
	top.IdP = devidptest.Start(t, devidp.Config{})

	proxy := httptest.NewUnstartedServer(nil)
	top.ProxyURL = "http://" + proxy.Listener.Addr().String()
	root, _ := url.Parse(top.ProxyURL)

	logw := devidptest.LogWriter(t)
	var targets []*url.URL
	for i := range cfg.Replicas {
		id := fmt.Sprintf("sp-%d", i+1)
		key, cert := cfg.Keys(t, i)
		var st store.Store
		if cfg.Store != nil {
			st = cfg.Store(t, i)
		}
		reg := prometheus.NewRegistry()
		c := sp.Config{
			InstanceID: id, RootURL: root, Store: st, Key: key, Certificate: cert,
			IDP:         &login.IDPMetadata{Static: top.IdP.Metadata()},
			MaxRelogins: cfg.MaxRelogins, StoreTimeout: 500 * time.Millisecond,
			Logger:   slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_replica", id),
			Registry: reg, TrustedProxies: cfg.TrustedProxies,
			LoginLimits: limits.LoginLimits{PerClientRate: -1, TotalRate: -1},
		}
		if cfg.LoginLimits != nil {
			c.LoginLimits = *cfg.LoginLimits
		}
		if cfg.Quiet {
			c.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
		}
		if cfg.Clock != nil {
			cfg.Clock(&c)
		}
		if cfg.Configure != nil {
			cfg.Configure(i, &c)
		}
		s, err := sp.New(c)
		if err != nil {
			t.Fatalf("sp.New(%s): %v", id, err)
		}
		if err := s.LoadIDPMetadata(context.Background()); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(s)
		t.Cleanup(srv.Close)
		u, _ := url.Parse(srv.URL)
		targets = append(targets, u)
		top.Replicas = append(top.Replicas, &replica{ID: id, SP: s, URL: srv.URL, Reg: reg})
	}
	proxy.Config.Handler = &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		n := top.requests.Add(1) - 1
		pr.SetURL(targets[cfg.Pick(n, pr.In)])
		pr.Out.Host = pr.In.Host
	}}
	proxy.Start()
	t.Cleanup(proxy.Close)

	// The IdP knows the service by the metadata it serves through the proxy.
	resp, err := http.Get(top.ProxyURL + "/saml/metadata")
	if err != nil {
		t.Fatal(err)
	}
	md, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	top.requests.Store(0)
	if resp.StatusCode != 200 {
		t.Fatalf("SP metadata: HTTP %d", resp.StatusCode)
	}
	if err := top.IdP.RegisterSPMetadata("samlha", md); err != nil {
		t.Fatal(err)
	}
	return top
}

var spKeys struct {
	once sync.Once
	key  crypto.Signer
	cert *x509.Certificate
}

// spKeyPair is one SP key pair per test process (RSA generation is slow);
// parallel tests share it.
func spKeyPair(t testing.TB) (crypto.Signer, *x509.Certificate) {
	t.Helper()
	spKeys.once.Do(func() { spKeys.key, spKeys.cert = newKeyPair(t) })
	return spKeys.key, spKeys.cert
}

func newKeyPair(t testing.TB) (crypto.Signer, *x509.Certificate) {
	t.Helper()
	k, c, err := keypair.Generate("samlha-test-sp", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return k, c
}

func (top *topology) browser() *sptest.Browser {
	return sptest.NewBrowser(sptest.Options{RequestTimeout: 10 * time.Second})
}

func (top *topology) login(t testing.TB, b *sptest.Browser, user string) *sptest.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return b.Login(ctx, top.ProxyURL+"/app", user, user+"-password")
}

// describe renders a result's hops for failure messages.
func describe(r *sptest.Result) string {
	s := fmt.Sprintf("ok=%v cause=%q err=%v start=%s acs=%s finish=%s\n", r.OK, r.Cause, r.Err, r.StartInstance, r.ACSInstance, r.FinishInstance)
	for _, h := range r.Hops {
		s += fmt.Sprintf("  %s %s -> %d instance=%s cause=%s\n", h.Method, h.URL, h.Status, h.Instance, h.Cause)
	}
	return s
}
