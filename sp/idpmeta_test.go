package sp_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/devidp"
	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/limits"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/sp/session"
	"github.com/samlha/samlha/sp/sptest/devidptest"
	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/redis/redistest"
)

// TestRunRetriesTheFirstMetadataLoad checks that Run keeps trying an IdP
// whose metadata is not available yet, with backoff, and that the SP turns
// ready once it is; each failure is counted.
func TestRunRetriesTheFirstMetadataLoad(t *testing.T) {
	t.Parallel()
	idp := devidptest.Start(t, devidp.Config{})
	resp, err := http.Get(idp.URL + "/metadata")
	if err != nil {
		t.Fatal(err)
	}
	md, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	const failures = 2
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if calls.Add(1) <= failures {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Write(md)
	}))
	t.Cleanup(srv.Close)
	mdURL, _ := url.Parse(srv.URL + "/metadata")
	root, _ := url.Parse("http://127.0.0.1:8080")
	key, cert := spKeyPair(t)
	reg := prometheus.NewRegistry()
	s, err := sp.New(sp.Config{InstanceID: "sp-1", RootURL: root, Store: memoryStores(t, 0), Key: key, Certificate: cert,
		IDP: &login.IDPMetadata{URL: mdURL, Refresh: time.Hour}, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for !s.Ready() {
		if time.Now().After(deadline) {
			t.Fatalf("not ready 20s after start; the metadata server was asked %d times", calls.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := calls.Load(); got != failures+1 {
		t.Errorf("metadata fetched %d times, want %d (two failures, then success)", got, failures+1)
	}
	if got := counterValue(t, &replica{Reg: reg}, "samlha_sp_idp_metadata_errors_total", nil); got != failures {
		t.Errorf("samlha_sp_idp_metadata_errors_total = %v, want %d", got, failures)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v when its context ended, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of its context ending")
	}
}

// A replica that restarts while the IdP's metadata URL is down is ready at
// once with the last good copy another start kept: in Redis (shared with
// every replica) or, with CacheFile, on disk. The URL answers 503 for the
// second start from its first request, so readiness can only come from the
// copy.
func TestRestartIsReadyWithTheLastGoodMetadata(t *testing.T) {
	t.Parallel()
	for _, where := range []string{"redis", "file"} {
		t.Run(where, func(t *testing.T) {
			t.Parallel()
			idp := devidptest.Start(t, devidp.Config{})
			resp, err := http.Get(idp.URL + "/metadata")
			if err != nil {
				t.Fatal(err)
			}
			md, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var down atomic.Bool
			var fetches atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				fetches.Add(1)
				if down.Load() {
					http.Error(w, "down", http.StatusServiceUnavailable)
					return
				}
				w.Write(md)
			}))
			t.Cleanup(srv.Close)
			mdURL, _ := url.Parse(srv.URL + "/metadata")
			root, _ := url.Parse("http://127.0.0.1:8080")
			key, cert := spKeyPair(t)
			var stores func(testing.TB, int) store.Store
			cacheFile := ""
			if where == "redis" {
				stores = redisStores(redistest.Start(t).URL())
			} else {
				stores = memoryStores
				cacheFile = filepath.Join(t.TempDir(), "idp-metadata.xml")
			}
			start := func(i int) (*sp.SP, context.CancelFunc) {
				s, err := sp.New(sp.Config{InstanceID: fmt.Sprint("sp-", i), RootURL: root, Store: stores(t, i), Key: key, Certificate: cert,
					IDP: &login.IDPMetadata{URL: mdURL, Refresh: time.Hour, CacheFile: cacheFile}})
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(t.Context())
				go s.Run(ctx)
				t.Cleanup(cancel)
				return s, cancel
			}
			waitReady := func(s *sp.SP) {
				deadline := time.Now().Add(20 * time.Second)
				for !s.Ready() {
					if time.Now().After(deadline) {
						t.Fatalf("not ready 20s after start (%d fetches)", fetches.Load())
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			first, stop := start(1)
			waitReady(first)
			stop()
			down.Store(true)
			before := fetches.Load()
			second, _ := start(2)
			waitReady(second)
			if got := fetches.Load() - before; got > 1 {
				t.Logf("the second start fetched %d times before it was ready", got)
			}
			// It serves the SP's own metadata and would start a login
			// with the IdP named in the copy.
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/saml/login?rd=/app", nil)
			req.Header.Set("Accept", "text/html")
			second.ServeHTTP(rec, req)
			if rec.Code != http.StatusFound && rec.Code != http.StatusOK {
				t.Fatalf("a login start with the kept metadata: %d %s", rec.Code, rec.Body)
			}
			if loc := rec.Header().Get("Location"); rec.Code == http.StatusFound && !strings.HasPrefix(loc, idp.URL) {
				t.Fatalf("the login went to %q, not to the IdP of the kept copy %s", loc, idp.URL)
			}
		})
	}
}

// A replica that has not loaded the IdP metadata (it has just started, or
// the IdP is down) still serves the sessions it can read, from the shared
// store or a signed cookie: only a request that would have to log in (no
// session, or a forged one) is answered idp-metadata-unavailable. Before, every request was, and in a
// rolling restart a logged-in user's request that reached a replica still
// loading its metadata got a 503 (the lab's roundrobin-stateless-rolling,
// "follow-up errors 1: idp-metadata-unavailable").
func TestSessionsServedBeforeMetadata(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"shared-store", "stateless"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var st store.Store
			var stores func(testing.TB, int) store.Store
			if mode == "shared-store" {
				st = memoryStores(t, 0)
				stores = func(testing.TB, int) store.Store { return st }
			}
			top := startTopology(t, topologyConfig{Replicas: 1, Store: stores})
			b := top.browser()
			if res := top.login(t, b, "alice"); !res.OK {
				t.Fatalf("login: %s", describe(res))
			}
			root, _ := url.Parse(top.ProxyURL)
			// A replica with the same store and key whose IdP metadata URL
			// refuses connections: it never loads.
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			mdURL, _ := url.Parse("http://" + l.Addr().String() + "/metadata")
			l.Close()
			key, cert := spKeyPair(t)
			s, err := sp.New(sp.Config{InstanceID: "sp-2", RootURL: root, Store: st, Key: key, Certificate: cert,
				IDP:         &login.IDPMetadata{URL: mdURL, Refresh: time.Hour},
				LoginLimits: limits.LoginLimits{PerClientRate: -1, TotalRate: -1}})
			if err != nil {
				t.Fatal(err)
			}
			if s.Ready() {
				t.Fatal("the replica is ready without IdP metadata")
			}
			get := func(path string, cookies string) *httptest.ResponseRecorder {
				req := httptest.NewRequest("GET", top.ProxyURL+path, nil)
				req.Header.Set("Accept", "text/html")
				req.Header.Set("Sec-Fetch-Mode", "navigate")
				for _, c := range b.Cookies(root) {
					switch {
					case cookies == "none":
					case cookies == "forged" && c.Name == session.CookieName:
						// The same cookie with a character in its middle
						// changed (not the last, whose low bits base64
						// may ignore): a forged or tampered session.
						v := []byte(c.Value)
						if v[len(v)/2] == 'A' {
							v[len(v)/2] = 'B'
						} else {
							v[len(v)/2] = 'A'
						}
						req.AddCookie(&http.Cookie{Name: c.Name, Value: string(v)})
					default:
						req.AddCookie(c)
					}
				}
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, req)
				return rec
			}
			for _, path := range []string{"/app", "/whoami"} {
				if rec := get(path, "alice"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "alice") {
					t.Errorf("GET %s with alice's session before the metadata loaded: %d %s, want 200 with alice\n%s",
						path, rec.Code, rec.Header().Get("X-Samlha-Cause"), failure.Truncate(rec.Body.String(), 300))
				}
				// Without a session, or with a forged one, a login would
				// be needed: refused, and nothing of alice's shown.
				for _, cookies := range []string{"none", "forged"} {
					rec := get(path, cookies)
					if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("X-Samlha-Cause") != "idp-metadata-unavailable" ||
						strings.Contains(rec.Body.String(), "alice") {
						t.Errorf("GET %s with session cookie %s before the metadata loaded: %d %q, want 503 idp-metadata-unavailable without alice",
							path, cookies, rec.Code, rec.Header().Get("X-Samlha-Cause"))
					}
				}
			}
		})
	}
}
