package stickyproxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/samlha/samlha/stickyproxy"
)

// hostile is a proxy in front of targets a test provides, served the way
// the command serves it (PublicServer, Listener).
type hostile struct {
	t     testing.TB
	srv   *http.Server
	proxy *stickyproxy.Proxy
	url   string // the public listener
	addr  string
}

// newHostile starts a proxy for targets (name=URL), with passive checks
// that mark a target down at its first counted failure and no active
// checks, so that one wrongly blamed request shows.
func newHostile(t testing.TB, engine stickyproxy.Engine, targets map[string]string, edit func(*stickyproxy.Config)) *hostile {
	t.Helper()
	cfg := stickyproxy.Config{
		Keys: [][32]byte{testKey}, Engine: engine, PassiveFall: 1, PassiveCooldown: time.Hour,
		AdminToken: testAdminToken,
	}
	for name, raw := range targets {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Targets = append(cfg.Targets, stickyproxy.Target{Name: name, URL: u})
	}
	if edit != nil {
		edit(&cfg)
	}
	p, err := stickyproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := p.PublicServer()
	go srv.Serve(p.Listener(ln))
	t.Cleanup(func() { srv.Close(); p.Close() })
	return &hostile{t: t, srv: srv, proxy: p, url: "http://" + ln.Addr().String(), addr: ln.Addr().String()}
}

func (h *hostile) healthy(name string) bool {
	for _, s := range h.proxy.Targets() {
		if s.Name == name {
			return s.Healthy
		}
	}
	h.t.Fatalf("no target %s", name)
	return false
}

// rawServer accepts connections on loopback and hands each to serve.
func rawServer(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// reset closes c with an RST (SO_LINGER 0).
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func post(t testing.TB, u string, body io.Reader, length int64) (int, error) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, body)
	req.ContentLength = length
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestPassiveHealthBlamesTargetOnly: each case sends requests through a
// proxy whose passive checks mark a target down at the first counted
// failure, against a real backend, and checks whether the target was
// marked down. A client can neither take a healthy target out of rotation
// by sending a body it refuses, by aborting, by stalling, nor by 4xx; a
// target that refuses connections, resets a request without a body, times
// out, or (when asked) answers 5xx runs is taken out.
func TestPassiveHealthBlamesTargetOnly(t *testing.T) {
	t.Parallel()
	// refuser reads the head and 1 KiB of body, then resets: what a
	// server does with a body over its limit.
	refuser := func(t *testing.T) string {
		return rawServer(t, func(c net.Conn, br *bufio.Reader) {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.CopyN(io.Discard, br, 1<<10)
			reset(c)
		})
	}
	// answerer413 answers 413 at once and closes, without reading the body.
	answerer413 := func(t *testing.T) string {
		return rawServer(t, func(c net.Conn, br *bufio.Reader) {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large")
			reset(c)
		})
	}
	// resetter takes the whole request, then resets without a reply.
	resetter := func(t *testing.T) string {
		return rawServer(t, func(c net.Conn, br *bufio.Reader) {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			reset(c)
		})
	}
	status := func(code int) func(t *testing.T) string {
		return func(t *testing.T) string {
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.WriteHeader(code)
			}))
			t.Cleanup(s.Close)
			return s.URL
		}
	}
	refusedPort := func(t *testing.T) string {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		u := "http://" + ln.Addr().String()
		ln.Close()
		return u
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	staller := func(t *testing.T) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		t.Cleanup(s.CloseClientConnections)
		return s.URL
	}
	bigBody := func(n int64) func(h *hostile) {
		return func(h *hostile) {
			post(h.t, h.url+"/upload", io.LimitReader(neverEnding('x'), n), n)
		}
	}
	tests := []struct {
		name    string
		backend func(t *testing.T) string
		edit    func(*stickyproxy.Config)
		send    func(h *hostile)
		repeat  int
		down    bool
	}{
		// Not the target's failure.
		{"body refused by reset, fast-engine size", refuser, nil, bigBody(512 << 10), 3, false},
		{"body refused by reset, 50 MB", refuser, nil, bigBody(50 << 20), 3, false},
		{"body refused with 413", answerer413, nil, bigBody(8 << 20), 3, false},
		{"4xx replies", status(404), nil, bigBody(10), 5, false},
		{"5xx replies without --passive-5xx", status(500), nil, bigBody(10), 5, false},
		{"client aborts mid-body", status(200), nil, func(h *hostile) {
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				h.t.Fatal(err)
			}
			fmt.Fprintf(c, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nabc")
			waitFor(h.t.(*testing.T), "the request in flight", func() bool {
				return gaugeValue(h.t.(*testing.T), h.proxy, "stickyproxy_in_flight_requests") == 1
			})
			reset(c)
		}, 3, false},
		{"client too slow for --client-body-timeout", status(200), func(c *stickyproxy.Config) {
			c.ClientBodyTimeout = 300 * time.Millisecond
		}, func(h *hostile) {
			pr, pw := io.Pipe()
			defer pw.Close()
			go pw.Write([]byte("abc"))
			code, err := post(h.t, h.url+"/x", pr, 100)
			if err != nil || code != http.StatusRequestTimeout {
				h.t.Errorf("slow body: %d, %v; want 408", code, err)
			}
		}, 2, false},
		// The target's failure.
		{"connection refused", refusedPort, nil, bigBody(10), 1, true},
		{"reset after the whole request, no body", resetter, nil, func(h *hostile) {
			if resp, err := http.Get(h.url + "/x"); err == nil {
				resp.Body.Close()
			}
		}, 1, true},
		// Ambiguous, so not counted: a reset after the kernel took a small
		// body is how a target refuses it too.
		{"reset after a small body", resetter, nil, bigBody(10), 3, false},
		{"response-header timeout", staller, func(c *stickyproxy.Config) {
			c.ResponseHeaderTimeout = 200 * time.Millisecond
		}, bigBody(10), 1, true},
		{"5xx run with --passive-5xx 3", status(503), func(c *stickyproxy.Config) { c.Passive5xx = 3 }, bigBody(10), 3, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
				edit := func(c *stickyproxy.Config) {
					c.Stickiness = stickyproxy.StickinessOff
					if tt.edit != nil {
						tt.edit(c)
					}
				}
				h := newHostile(t, engine, map[string]string{"sp-1": tt.backend(t)}, edit)
				for range tt.repeat {
					tt.send(h)
				}
				if tt.down {
					waitFor(t, "sp-1 marked down", func() bool { return !h.healthy("sp-1") })
					return
				}
				// The proxy has finished with every request once its
				// in-flight gauge is back to 0.
				waitFor(t, "requests finished", func() bool { return gaugeValue(t, h.proxy, "stickyproxy_in_flight_requests") == 0 })
				if !h.healthy("sp-1") {
					t.Fatal("sp-1 was marked down by a failure that was not its own")
				}
			})
		})
	}
}

type neverEnding byte

func (b neverEnding) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(b)
	}
	return len(p), nil
}

// stalledMemoryBound is the documented bound: at most this much heap and
// stack per stalled client connection (README, "Security and failure
// behaviour"). Before the peek buffer grew with the data it was sized by
// Content-Length: 64 KiB for each such client.
const stalledMemoryBound = 32 << 10

// TestStalledClientsBounded opens 2,000 client connections that send the
// head of an ACS POST announcing 10 MB and then stall. The proxy's memory
// grows by at most stalledMemoryBound per connection, other clients are
// served meanwhile, a connection over MaxClientConns gets 503, and the
// stalled ones are cut at ClientBodyTimeout.
func TestStalledClientsBounded(t *testing.T) {
	// Not parallel: it measures the process's memory.
	if testing.Short() {
		t.Skip("opens 4,000 loopback sockets")
	}
	const stalled = 2000
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	h := newHostile(t, stickyproxy.EngineFast, map[string]string{"sp-1": backend.URL}, func(c *stickyproxy.Config) {
		c.SAMLAware = true
		c.MaxClientConns = stalled + 10
		c.ClientBodyTimeout = 2 * time.Minute // longer than the test: cut explicitly below
		// One client here: its shares are what other tests bound.
		c.MaxConnsPerClient, c.MaxStreamingPerClient, c.MaxBufferPerClient = -1, -1, -1
	})
	measure := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc + ms.StackInuse
	}
	before := measure()
	conns := make([]net.Conn, 0, stalled)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	head := "POST /saml/acs HTTP/1.1\r\nHost: proxy\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000000\r\n\r\nSAMLResponse=PHNhbWw"
	deadline := time.Now().Add(2 * time.Minute)
	for len(conns) < stalled && time.Now().Before(deadline) {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatalf("after %d connections: %v", len(conns), err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every stalled client inside the proxy", func() bool {
		return gaugeValue(t, h.proxy, "stickyproxy_in_flight_requests") == stalled
	})
	grown := int64(measure()) - int64(before)
	t.Logf("%d stalled clients: %d KiB more heap and stack, %d B each (bound %d B)", stalled, grown>>10, grown/stalled, stalledMemoryBound)
	if grown > stalled*stalledMemoryBound {
		t.Errorf("memory grew by %d B for %d stalled clients, more than %d B each", grown, stalled, stalledMemoryBound)
	}
	// Others are served meanwhile.
	for i := range 5 {
		resp, err := http.Get(h.url + "/other")
		if err != nil {
			t.Fatalf("request %d beside the stalled clients: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d beside the stalled clients: %d", i, resp.StatusCode)
		}
	}
	// Past MaxClientConns: 503 at once.
	var extra []net.Conn
	defer func() {
		for _, c := range extra {
			c.Close()
		}
	}()
	for range 11 {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		extra = append(extra, c)
	}
	last := extra[len(extra)-1]
	last.SetReadDeadline(time.Now().Add(30 * time.Second))
	readAt := time.Now()
	line, err := bufio.NewReader(last).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 503") {
		// A close after ReadHeaderTimeout means it was admitted; at once,
		// that the refusal's reply was not written.
		t.Fatalf("connection over MaxClientConns: %q, %v after %v (refused so far: %v); want a 503", line, err,
			time.Since(readAt).Round(time.Millisecond), metricValue(t, h.proxy.Registry(), "stickyproxy_client_conns_refused_total", "reason", "total"))
	}
	if n := metricValue(t, h.proxy.Registry(), "stickyproxy_client_conns_refused_total", "reason", "total"); n < 1 {
		t.Errorf("refused connections counted %v", n)
	}
}

// TestClientBodyTimeoutCutsStalledClients: a client that stops sending its
// body is answered 408 and disconnected after ClientBodyTimeout, for the
// ACS peek and for a plain forward, with both engines.
func TestClientBodyTimeoutCutsStalledClients(t *testing.T) {
	t.Parallel()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(backend.Close)
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		h := newHostile(t, engine, map[string]string{"sp-1": backend.URL}, func(c *stickyproxy.Config) {
			c.SAMLAware = true
			c.ClientBodyTimeout = 300 * time.Millisecond
		})
		for _, path := range []string{"/saml/acs", "/upload"} {
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: p\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nRelayState=", path)
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout || resp.Header.Get(stickyproxy.HeaderDecision) != "client-error" {
				t.Errorf("%s: %d %s %q, want 408 client-error", path, resp.StatusCode, resp.Header.Get(stickyproxy.HeaderDecision), msg)
			}
		}
		if !h.healthy("sp-1") {
			t.Error("a slow client marked the target down")
		}
	})
}

// TestInFlightPerTargetCap: with MaxInFlightPerTarget 2, a third request
// to a target that holds two is refused 503 target-busy (a pinned client
// is not moved), and balancing passes over the full target.
func TestInFlightPerTargetCap(t *testing.T) {
	t.Parallel()
	hold := make(chan struct{})
	var held atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Samlha-Instance", "sp-1")
		if r.URL.Path == "/hold" {
			held.Add(1)
			<-hold
		}
	}))
	defer slow.Close()
	free := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Samlha-Instance", "sp-2")
	}))
	defer free.Close()
	h := newHostile(t, stickyproxy.EngineFast, map[string]string{"sp-1": slow.URL, "sp-2": free.URL}, func(c *stickyproxy.Config) {
		c.MaxInFlightPerTarget = 2
		c.Targets[0], c.Targets[1] = stickyproxy.Target{Name: "sp-1", URL: mustURL(slow.URL)}, stickyproxy.Target{Name: "sp-2", URL: mustURL(free.URL)}
	})
	// A cookie pinned to sp-1: the first balanced reply goes to sp-1.
	resp, err := http.Get(h.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get(stickyproxy.HeaderTarget) != "sp-1" {
		t.Fatalf("first request went to %s", resp.Header.Get(stickyproxy.HeaderTarget))
	}
	cookie := affinityCookie(resp, "AWSALB")
	get := func(path string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, h.url+path, nil)
		req.Header.Set("Cookie", cookie)
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Error(err)
			return nil
		}
		resp.Body.Close()
		return resp
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); get("/hold") }()
	}
	waitFor(t, "two requests held on sp-1", func() bool { return held.Load() == 2 })
	if r := get("/"); r == nil || r.StatusCode != 503 || r.Header.Get(stickyproxy.HeaderDecision) != "target-busy" {
		t.Errorf("pinned request to a full target: %v", r)
	}
	for range 4 {
		resp, err := http.Get(h.url + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get(stickyproxy.HeaderTarget); got != "sp-2" || resp.StatusCode != 200 {
			t.Errorf("balanced request with sp-1 full: %d from %s, want 200 from sp-2", resp.StatusCode, got)
		}
	}
	close(hold)
	wg.Wait()
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// TestAdminGuard: an admin call without the token, with a wrong one, or
// from another site changes nothing; with the token it works; without a
// configured token the guarded calls are refused unless AdminInsecure.
func TestAdminGuard(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stickyproxy.EngineFast, nil)
	call := func(method, path string, hdr ...string) int {
		req, _ := http.NewRequest(method, e.admin.URL+path, strings.NewReader(""))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	auth := "Bearer " + testAdminToken
	refused := []struct {
		name string
		hdr  []string
		want int
	}{
		{"no token", nil, 401},
		{"wrong token", []string{"Authorization", "Bearer " + strings.Repeat("x", len(testAdminToken))}, 401},
		{"basic scheme", []string{"Authorization", "Basic " + testAdminToken}, 401},
		{"cross-site Origin", []string{"Authorization", auth, "Origin", "http://evil.example", "Content-Type", "text/plain"}, 403},
		{"null Origin", []string{"Authorization", auth, "Origin", "null"}, 403},
		{"Sec-Fetch-Site cross-site", []string{"Authorization", auth, "Sec-Fetch-Site", "cross-site"}, 403},
		{"Sec-Fetch-Site same-site", []string{"Authorization", auth, "Sec-Fetch-Site", "same-site"}, 403},
	}
	for _, tt := range refused {
		if got := call(http.MethodPost, "/targets/sp-1/drain", tt.hdr...); got != tt.want {
			t.Errorf("drain, %s: %d, want %d", tt.name, got, tt.want)
		}
		if got := call(http.MethodGet, "/targets", tt.hdr...); got != tt.want {
			t.Errorf("GET /targets, %s: %d, want %d", tt.name, got, tt.want)
		}
		if got := call(http.MethodGet, "/metrics", tt.hdr...); got != tt.want {
			t.Errorf("GET /metrics, %s: %d, want %d", tt.name, got, tt.want)
		}
	}
	for _, s := range e.proxy.Targets() {
		if s.Draining {
			t.Fatalf("%s is draining after refused calls", s.Name)
		}
	}
	if got := call(http.MethodGet, "/healthz"); got != 200 {
		t.Errorf("/healthz without a token: %d", got)
	}
	if got := call(http.MethodPost, "/targets/sp-1/drain", "Authorization", auth, "Origin", e.admin.URL); got != 200 {
		t.Errorf("same-origin drain with the token: %d", got)
	}
	if n := metricValue(t, e.proxy.Registry(), "stickyproxy_admin_refused_total", "reason", "cross-site"); n != 12 {
		t.Errorf("cross-site refusals counted %v, want 12", n)
	}

	for _, insecure := range []bool{false, true} {
		p, err := stickyproxy.New(stickyproxy.Config{Targets: []stickyproxy.Target{{Name: "sp-1", URL: mustURL(e.backends[0].srv.URL)}},
			Keys: [][32]byte{testKey}, AdminInsecure: insecure})
		if err != nil {
			t.Fatal(err)
		}
		adm := httptest.NewServer(p.Admin())
		resp, err := http.Post(adm.URL+"/targets/sp-1/drain", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := map[bool]int{false: 403, true: 200}[insecure]
		if resp.StatusCode != want {
			t.Errorf("no token configured, insecure %v: %d, want %d", insecure, resp.StatusCode, want)
		}
		if p.Targets()[0].Draining != insecure {
			t.Errorf("no token configured, insecure %v: draining %v", insecure, p.Targets()[0].Draining)
		}
		if insecure {
			// DNS rebinding: a page at evil.example, resolved to 127.0.0.1,
			// is same-origin to itself. Without a token, a Host that is not
			// loopback is refused.
			req, _ := http.NewRequest(http.MethodPost, adm.URL+"/targets/sp-1/undrain", nil)
			req.Host = "evil.example:8090"
			req.Header.Set("Origin", "http://evil.example:8090")
			req.Header.Set("Sec-Fetch-Site", "same-origin")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 403 || !p.Targets()[0].Draining {
				t.Errorf("insecure admin, rebound Host: %d, draining %v; want 403 and nothing changed", resp.StatusCode, p.Targets()[0].Draining)
			}
		}
		adm.Close()
		p.Close()
	}
}

// nonce32 is a RelayState nonce of the SP's form.
const nonce32 = "AAAABBBBCCCCDDDDEEEEFFFFGGGGHHHH"

// TestSAMLAwareWithStickinessOff: with stickiness off, an ACS POST goes to
// the instance its RelayState names, sets no cookie, and the next request
// is balanced.
func TestSAMLAwareWithStickinessOff(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		e := newEnv(t, engine, func(c *stickyproxy.Config) {
			c.Stickiness, c.SAMLAware = stickyproxy.StickinessOff, true
		})
		for _, inst := range []string{"sp-3", "sp-1", "sp-2", "sp-3"} {
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/saml/acs",
				strings.NewReader("SAMLResponse=PHNhbWw%2B&RelayState="+inst+"~"+nonce32))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Sec-Fetch-Site", "cross-site")
			got, resp, _ := e.do(req)
			if got != ok(inst, "relaystate") {
				t.Errorf("ACS POST for %s: %+v", inst, got)
			}
			if sc := resp.Header.Values("Set-Cookie"); len(sc) != 0 {
				t.Errorf("stickiness off set %q", sc)
			}
		}
		seen := map[string]bool{}
		for range 3 {
			got, _ := e.get("/app")
			if got.Decision != "balanced" {
				t.Errorf("after the ACS: %+v, want balanced", got)
			}
			seen[got.Target] = true
		}
		if len(seen) != 3 {
			t.Errorf("after the ACS, three requests reached %v, want all three targets", seen)
		}
	})
}

// TestRefusedLoginMovesNobody: an ACS POST routed by a RelayState (or any
// cross-site POST without a valid cookie) that the target refuses sets no
// affinity cookie, so a forged login cannot re-pin a victim; an accepted
// one does.
func TestRefusedLoginMovesNobody(t *testing.T) {
	t.Parallel()
	acs := func(name string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Samlha-Instance", name)
			if r.URL.Path == "/saml/acs" {
				r.ParseForm()
				// The application's own cookie is set on refusals too (a
				// framework's session), which app stickiness follows.
				http.SetCookie(w, &http.Cookie{Name: "sid", Value: "x", Path: "/"})
				if r.PostForm.Get("SAMLResponse") != "good" {
					http.Error(w, "refused login", http.StatusForbidden)
					return
				}
				http.Redirect(w, r, "/app", http.StatusFound)
			}
		}))
		t.Cleanup(s.Close)
		return s.URL
	}
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		for _, app := range []bool{false, true} {
			h := newHostile(t, engine, map[string]string{"sp-1": acs("sp-1"), "sp-2": acs("sp-2")}, func(c *stickyproxy.Config) {
				c.SAMLAware = true
				if app {
					c.Stickiness, c.AppCookie = stickyproxy.StickinessApp, "sid"
				}
			})
			for _, tt := range []struct {
				name, body string
				wantStatus int
				wantCookie bool
			}{
				{"forged RelayState, refused", "SAMLResponse=forged&RelayState=sp-1~" + nonce32, 403, false},
				{"no RelayState, cross-site, refused", "SAMLResponse=forged", 403, false},
				{"accepted login", "SAMLResponse=good&RelayState=sp-1~" + nonce32, 302, true},
			} {
				req, _ := http.NewRequest(http.MethodPost, h.url+"/saml/acs", strings.NewReader(tt.body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Sec-Fetch-Site", "cross-site")
				resp, err := http.DefaultTransport.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				name := map[bool]string{false: "AWSALB", true: "AWSALBAPP"}[app]
				if resp.StatusCode != tt.wantStatus || (affinityCookie(resp, name) != "") != tt.wantCookie {
					t.Errorf("%s (app stickiness %v): %d, Set-Cookie %q; want %d, cookie %v", tt.name, app, resp.StatusCode,
						resp.Header.Values("Set-Cookie"), tt.wantStatus, tt.wantCookie)
				}
			}
		}
	})
}

// TestStaleConnectionRetried: a target that closes idle keep-alive
// connections shortly after replying (http.Server IdleTimeout) never makes
// a bodyless GET fail, with either engine: the request is sent again on a
// fresh connection when the pooled one was closed before any reply byte.
func TestStaleConnectionRetried(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		var closed atomic.Int32
		backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "ok")
		}))
		backend.Config.IdleTimeout = 100 * time.Millisecond
		backend.Config.ConnState = func(c net.Conn, s http.ConnState) {
			if s == http.StateClosed {
				closed.Add(1)
			}
		}
		backend.Start()
		defer backend.Close()
		h := newHostile(t, engine, map[string]string{"sp-1": backend.URL}, func(c *stickyproxy.Config) { c.PassiveFall = 0 })
		for i := range 6 {
			before := closed.Load()
			resp, err := http.Get(h.url + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "ok" {
				t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
			}
			// The target has closed the connection the proxy pooled.
			waitFor(t, "the target to close the idle connection", func() bool { return closed.Load() > before })
		}
	})
}

// On a TLS listener, a connection over MaxClientConns is closed without the
// plain-text 503 (a TLS client would read it as a broken handshake), and
// still counted.
func TestTLSConnOverLimitClosedQuietly(t *testing.T) {
	t.Parallel()
	p, err := stickyproxy.New(stickyproxy.Config{Targets: []stickyproxy.Target{{Name: "sp-1", URL: mustURL("http://127.0.0.1:1")}},
		Keys: [][32]byte{testKey}, MaxClientConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := p.TLSListener(ln)
	t.Cleanup(func() { lim.Close(); p.Close() })
	go func() {
		for {
			c, err := lim.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() }) // held open: the one allowed connection
		}
	}()
	first, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(second)
	if len(b) != 0 || err != nil {
		t.Fatalf("over-limit connection on a TLS listener read %q, %v; want a plain close and nothing written", b, err)
	}
	if n := metricValue(t, p.Registry(), "stickyproxy_client_conns_refused_total", "reason", "total"); n < 1 {
		t.Errorf("refused connections counted %v", n)
	}
}
