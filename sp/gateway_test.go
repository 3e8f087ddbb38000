package sp_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/access"
	"github.com/samlha/samlha/sp/identity"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/memory"
)

// upstreamApp is the application behind the gateway: it records the
// headers of every request and echoes the user it was told about in
// X-Samlha-User, as the browser's success check expects.
type upstreamApp struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
	// extra serves paths under /x/ (streaming tests).
	extra http.Handler
}

func startUpstream(t testing.TB, extra http.Handler) *upstreamApp {
	t.Helper()
	u := &upstreamApp{extra: extra}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.seen = append(u.seen, r.Header.Clone())
		u.mu.Unlock()
		if u.extra != nil && strings.HasPrefix(r.URL.Path, "/x/") {
			u.extra.ServeHTTP(w, r)
			return
		}
		w.Header().Set(respond.HeaderUser, r.Header.Get("X-Samlha-User"))
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "upstream %s\n", r.URL.Path)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstreamApp) last() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return nil
	}
	return u.seen[len(u.seen)-1]
}

func (u *upstreamApp) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

type gatewayEnv struct {
	top   *topology
	up    *upstreamApp
	store *memory.Store
}

// startGateway runs replicas sharing one memory store (one process, so any
// replica sees every key) in gateway mode in front of an upstream.
func startGateway(t testing.TB, replicas int, extra http.Handler, gw func(*sp.Gateway), more ...func(*sp.Config)) *gatewayEnv {
	t.Helper()
	env := &gatewayEnv{up: startUpstream(t, extra), store: memory.New(memory.Options{})}
	t.Cleanup(func() { env.store.Close() })
	upURL, _ := url.Parse(env.up.URL)
	env.top = startTopology(t, topologyConfig{Replicas: replicas,
		Store: func(testing.TB, int) store.Store { return env.store },
		Configure: func(_ int, c *sp.Config) {
			g := &sp.Gateway{Upstream: upURL, PassAttributes: []identity.PassAttribute{
				{Attribute: "mail", Header: "X-Email"}, {Attribute: "eduPersonAffiliation", Header: "X-Groups"}}}
			if gw != nil {
				gw(g)
			}
			c.Gateway = g
			for _, f := range more {
				f(c)
			}
		}})
	return env
}

func newBrowser() *sptest.Browser {
	return sptest.NewBrowser(sptest.Options{RequestTimeout: 20 * time.Second})
}

func loginVia(t *testing.T, env *gatewayEnv, b *sptest.Browser, user, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := b.Login(ctx, env.top.ProxyURL+path, user, user+"-password")
	if !res.OK {
		t.Fatalf("login of %s through the gateway failed:\n%s", user, describe(res))
	}
}

// The upstream gets the identity, and only the gateway's: the client's
// copies of the identity headers are removed, also on an authenticated
// request, also under odd capitalisation.
func TestGatewayIdentityHeadersOnlyFromGateway(t *testing.T) {
	t.Parallel()
	env := startGateway(t, 2, nil, nil)
	b := newBrowser()
	loginVia(t, env, b, "bob", "/app")
	h := env.up.last()
	want := map[string]string{"X-Samlha-User": "bob", "X-Email": "bob@example.com", "X-Groups": "staff, admins"}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("upstream got %s = %q, want %q", k, got, v)
		}
	}
	if h.Get("X-Samlha-Name-Id") == "" {
		t.Errorf("upstream got no X-Samlha-Name-Id: %v", h)
	}

	// A request with the session and forged identity headers.
	// Straight to a replica: the test balancer in front would drop the
	// Connection header and what it names.
	req, _ := http.NewRequest(http.MethodGet, env.top.Replicas[0].URL+"/api/thing", nil)
	for _, c := range b.Cookies(mustURL(env.top.ProxyURL)) {
		req.AddCookie(c)
	}
	req.Header["x-samlha-user"] = []string{"mallory"}
	req.Header.Set("X-Samlha-Admin", "yes")
	req.Header.Set("X-Email", "mallory@evil.test")
	// Hop-by-hop tricks must not remove the gateway's headers either.
	req.Header.Set("Connection", "X-Samlha-User, X-Email")
	resp := do(t, req)
	if resp.StatusCode != 200 {
		t.Fatalf("authenticated API call: %d", resp.StatusCode)
	}
	h = env.up.last()
	if h.Get("X-Samlha-User") != "bob" || h.Get("X-Email") != "bob@example.com" || h.Get("X-Samlha-Admin") != "" || len(h.Values("X-Email")) != 1 {
		t.Fatalf("the upstream did not get exactly the gateway's identity: %v", h)
	}

	// Without a session, nothing of the client's identity reaches it either
	// (a public path).
}

// An API call without a session gets 401 JSON and leaves no state in the
// store; a browser navigation starts a login that returns to the same URL.
func TestGatewayAPICallCreatesNoLoginState(t *testing.T) {
	t.Parallel()
	env := startGateway(t, 1, nil, nil)
	before := env.store.Len()
	for _, tc := range []struct {
		method string
		accept string
		header map[string]string
	}{
		{http.MethodGet, "application/json", nil},
		{http.MethodPost, "text/html", nil},
		{http.MethodGet, "text/html", map[string]string{"Sec-Fetch-Mode": "cors"}},
		{http.MethodGet, "text/html", map[string]string{"X-Requested-With": "XMLHttpRequest"}},
		{http.MethodDelete, "", nil},
	} {
		req, _ := http.NewRequest(tc.method, env.top.ProxyURL+"/api/x?y=1", strings.NewReader("{}"))
		req.Header.Set("Accept", tc.accept)
		for k, v := range tc.header {
			req.Header.Set(k, v)
		}
		resp := do(t, req)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("Content-Type"), "json") {
			t.Errorf("%s with Accept %q %v: %d %s, want 401 JSON", tc.method, tc.accept, tc.header, resp.StatusCode, body)
		}
	}
	if after := env.store.Len(); after != before {
		t.Fatalf("API calls without a session changed the store: %d keys before, %d after", before, after)
	}
	if env.up.count() != 0 {
		t.Fatalf("the upstream was reached without a session")
	}
	// A browser navigation to a deep URL logs in and lands there.
	b := sptest.NewBrowser(sptest.Options{RequestTimeout: 20 * time.Second, SuccessPath: "/deep/page"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := b.Login(ctx, env.top.ProxyURL+"/deep/page?q=1", "alice", "alice-password")
	if !res.OK {
		t.Fatalf("login to a deep URL:\n%s", describe(res))
	}
	if last := res.Hops[len(res.Hops)-1].URL; !strings.HasSuffix(last, "/deep/page?q=1") {
		t.Fatalf("login ended at %s, want the URL it began at", last)
	}
}

// --allow: alice (staff) is refused /admin with cause forbidden, bob
// (admins) passes; everyone passes elsewhere.
func TestGatewayAllowRules(t *testing.T) {
	t.Parallel()
	rule, err := access.ParseRule("/admin:eduPersonAffiliation=admins")
	if err != nil {
		t.Fatal(err)
	}
	env := startGateway(t, 1, nil, func(g *sp.Gateway) { g.Allow = access.Rules{rule} })
	for _, tc := range []struct {
		user  string
		path  string
		code  int
		cause string
	}{
		{"alice", "/admin/users", 403, "forbidden"},
		{"alice", "/admin", 403, "forbidden"},
		{"alice", "/administrator", 200, ""},
		{"alice", "/app", 200, ""},
		{"bob", "/admin/users", 200, ""},
	} {
		b := newBrowser()
		loginVia(t, env, b, tc.user, "/app")
		req, _ := http.NewRequest(http.MethodGet, env.top.ProxyURL+tc.path, nil)
		for _, c := range b.Cookies(mustURL(env.top.ProxyURL)) {
			req.AddCookie(c)
		}
		resp := do(t, req)
		if resp.StatusCode != tc.code || resp.Header.Get(respond.HeaderCause) != tc.cause {
			t.Errorf("%s %s: %d cause %q, want %d %q", tc.user, tc.path, resp.StatusCode, resp.Header.Get(respond.HeaderCause), tc.code, tc.cause)
		}
	}
	if got := counterValue(t, env.top.Replicas[0], "samlha_sp_failures_total", map[string]string{"cause": "forbidden"}); got != 2 {
		t.Errorf("samlha_sp_failures_total{cause=forbidden} = %v, want 2", got)
	}
}

// Public paths need no session; non-canonical paths are refused rather
// than matched against the public prefixes.
func TestGatewayPublicPaths(t *testing.T) {
	t.Parallel()
	env := startGateway(t, 1, nil, func(g *sp.Gateway) { g.PublicPaths = []string{"/public/", "/*.ico"} })
	for _, tc := range []struct {
		path string
		code int
	}{
		{"/public/a.css", 200},
		{"/favicon.ico", 200},
		{"/publicity", 401},
		{"/public/../admin", 400},
		{"/public//x", 400},
		{"/public/%2e%2e/admin", 400},
		{"/public/..;/admin", 400},
		{"/public/.;x/a.css", 400},
		{"/public/%5c..%5cadmin", 400},
		{"/saml/nothing", 404},
	} {
		req, _ := http.NewRequest(http.MethodGet, env.top.ProxyURL+tc.path, nil)
		req.Header.Set("X-Samlha-User", "mallory")
		resp := do(t, req)
		if resp.StatusCode != tc.code {
			t.Errorf("%s: %d, want %d", tc.path, resp.StatusCode, tc.code)
		}
		if tc.code == 200 && env.up.last().Get("X-Samlha-User") != "" {
			t.Errorf("%s: a client's identity header reached the upstream", tc.path)
		}
	}
}

// Streams, server-sent events, WebSocket upgrades and large bodies pass
// through the gateway to a real upstream.
func TestGatewayStreamingUpgradeAndLargeBodies(t *testing.T) {
	t.Parallel()
	second := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/x/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select { // the second event only after the client read the first
		case <-second:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, "data: two\n\n")
	})
	mux.HandleFunc("/x/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
	mux.HandleFunc("/x/download", func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096)
		for range 512 { // 32 MiB
			_, _ = w.Write(chunk)
		}
	})
	mux.HandleFunc("/x/ws", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		line, err := rw.ReadString('\n') // echo one line, upper-cased
		if err != nil {
			return
		}
		fmt.Fprint(rw, strings.ToUpper(line))
		rw.Flush()
	})
	env := startGateway(t, 1, mux, nil)
	b := newBrowser()
	loginVia(t, env, b, "alice", "/app")
	cookies := b.Cookies(mustURL(env.top.ProxyURL))
	auth := func(req *http.Request) *http.Request {
		for _, c := range cookies {
			req.AddCookie(c)
		}
		return req
	}

	t.Run("sse", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, env.top.ProxyURL+"/x/sse", nil)
		resp := do(t, auth(req))
		br := bufio.NewReader(resp.Body)
		if l, err := br.ReadString('\n'); err != nil || l != "data: one\n" {
			t.Fatalf("first event: %q %v", l, err)
		}
		close(second)
		rest, _ := io.ReadAll(br)
		if !strings.Contains(string(rest), "data: two") {
			t.Fatalf("second event missing: %q", rest)
		}
	})
	t.Run("upload", func(t *testing.T) {
		body := bytes.Repeat([]byte("x"), 64<<20)
		sum := sha256.Sum256(body)
		req, _ := http.NewRequest(http.MethodPost, env.top.ProxyURL+"/x/upload", bytes.NewReader(body))
		resp := do(t, auth(req))
		got, _ := io.ReadAll(resp.Body)
		if want := fmt.Sprintf("%d %s", len(body), hex.EncodeToString(sum[:])); string(got) != want {
			t.Fatalf("upload: upstream saw %q, want %q", got, want)
		}
	})
	t.Run("download", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, env.top.ProxyURL+"/x/download", nil)
		resp := do(t, auth(req))
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || n != 32<<20 {
			t.Fatalf("download: %d bytes, %v", n, err)
		}
	})
	t.Run("websocket", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(env.top.ProxyURL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		req, _ := http.NewRequest(http.MethodGet, env.top.ProxyURL+"/x/ws", nil)
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Connection", "Upgrade")
		if err := auth(req).Write(conn); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, req)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		fmt.Fprint(conn, "hello\n")
		if l, err := br.ReadString('\n'); err != nil || l != "HELLO\n" {
			t.Fatalf("echo through the upgraded connection: %q %v", l, err)
		}
	})
}

// The identity JWT verifies with an independent JOSE library (go-jose)
// against /saml/jwks.json, for ES256 and EdDSA, through a key rotation:
// the ring publishes every key, the first signs.
func TestGatewayIdentityJWTVerifiesWithGoJose(t *testing.T) {
	t.Parallel()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	for _, tc := range []struct {
		name string
		ring []crypto.Signer
		alg  jose.SignatureAlgorithm
	}{
		{"ES256", []crypto.Signer{ec, ed}, jose.ES256},
		{"EdDSA-after-rotation", []crypto.Signer{ed, ec}, jose.EdDSA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := startGateway(t, 1, nil, func(g *sp.Gateway) { g.JWT = &identity.JWT{Keys: tc.ring} })
			b := newBrowser()
			loginVia(t, env, b, "bob", "/app")
			tok := env.up.last().Get("X-Samlha-Jwt-Assertion")
			if tok == "" {
				t.Fatal("no identity JWT reached the upstream")
			}
			resp, err := http.Get(env.top.ProxyURL + "/saml/jwks.json")
			if err != nil {
				t.Fatal(err)
			}
			var set jose.JSONWebKeySet
			if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if len(set.Keys) != 2 {
				t.Fatalf("JWKS has %d keys, want both of the ring", len(set.Keys))
			}
			parsed, err := josejwt.ParseSigned(tok, []jose.SignatureAlgorithm{tc.alg})
			if err != nil {
				t.Fatal(err)
			}
			keys := set.Key(parsed.Headers[0].KeyID)
			if len(keys) != 1 {
				t.Fatalf("kid %q names %d keys in the JWKS", parsed.Headers[0].KeyID, len(keys))
			}
			var claims josejwt.Claims
			var extra struct {
				User  string              `json:"user"`
				Attrs map[string][]string `json:"attrs"`
			}
			if err := parsed.Claims(keys[0].Key, &claims, &extra); err != nil {
				t.Fatalf("go-jose does not verify the identity JWT: %v", err)
			}
			err = claims.ValidateWithLeeway(josejwt.Expected{Issuer: env.top.ProxyURL, AnyAudience: josejwt.Audience{env.up.URL}, Time: time.Now()}, 0)
			if err != nil {
				t.Fatalf("claims: %v (%+v)", err, claims)
			}
			if claims.Subject == "" || extra.User != "bob" || extra.Attrs["mail"][0] != "bob@example.com" {
				t.Fatalf("claims: sub %q user %q attrs %v", claims.Subject, extra.User, extra.Attrs)
			}
			if ttl := claims.Expiry.Time().Sub(claims.IssuedAt.Time()); ttl > 5*time.Minute {
				t.Fatalf("identity JWT lives %v: not short-lived", ttl)
			}
			// A token for another audience must not pass the same check.
			if err := claims.Validate(josejwt.Expected{AnyAudience: josejwt.Audience{"http://other.test"}, Time: time.Now()}); err == nil {
				t.Fatal("the audience check passes for any audience")
			}
		})
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func do(t testing.TB, req *http.Request) *http.Response {
	t.Helper()
	c := &http.Client{Timeout: 60 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// startForwardAuth runs one replica in forward-auth mode (no upstream),
// trusting proxies in trusted.
func startForwardAuth(t testing.TB, trusted string, gw func(*sp.Gateway)) *topology {
	t.Helper()
	return startTopology(t, topologyConfig{Replicas: 1,
		Store: func(testing.TB, int) store.Store { return memory.New(memory.Options{}) },
		Configure: func(_ int, c *sp.Config) {
			c.Mode = sp.ModeApp | sp.ModeForwardAuth // the app pages to log in on, and /saml/auth
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix(trusted)}
			g := &sp.Gateway{PassAttributes: []identity.PassAttribute{{Attribute: "mail", Header: "X-Email"}}}
			if gw != nil {
				gw(g)
			}
			c.Gateway = g
		}})
}

// /saml/auth: 200 with the identity for a session, 403 on a forbidden
// path, a redirect into the login for a trusted proxy's browser
// navigation, 401 otherwise; never a redirect off-site.
func TestForwardAuth(t *testing.T) {
	t.Parallel()
	rule, _ := access.ParseRule("/admin:eduPersonAffiliation=admins")
	top := startForwardAuth(t, "127.0.0.1/32", func(g *sp.Gateway) { g.Allow = access.Rules{rule} })
	untrusted := startForwardAuth(t, "10.0.0.0/8", nil)
	b := top.browser()
	if res := top.login(t, b, "alice"); !res.OK {
		t.Fatalf("login: %s", describe(res))
	}
	session := b.Cookies(mustURL(top.ProxyURL))
	host := strings.TrimPrefix(top.ProxyURL, "http://")
	nav := map[string]string{"Accept": "text/html", "X-Forwarded-Method": "GET", "X-Forwarded-Proto": "http", "X-Forwarded-Host": host}
	for _, tc := range []struct {
		name     string
		base     string
		cookies  bool
		header   map[string]string
		uri      string
		code     int
		location string
		user     string
	}{
		{name: "session", base: top.Replicas[0].URL, cookies: true, uri: "/page", code: 200, user: "alice"},
		// A client's copy of an identity header, under any spelling, or a
		// Connection header naming one, is refused: a proxy that copies
		// only the headers the SP sends would pass the client's copy of
		// one the SP does not send (an attribute the user lacks).
		{name: "session, forged identity in the auth request", base: top.Replicas[0].URL, cookies: true, uri: "/page", code: 403,
			header: map[string]string{"X-Samlha-User": "mallory"}},
		{name: "session, forged underscore identity", base: top.Replicas[0].URL, cookies: true, uri: "/page", code: 403,
			header: map[string]string{"X_Email": "admin@example.com"}},
		{name: "no session, forged identity", base: top.Replicas[0].URL, uri: "/page", code: 403,
			header: map[string]string{"x-samlha_user": "mallory"}},
		{name: "session, Connection names an identity header", base: top.Replicas[0].URL, cookies: true, uri: "/page", code: 403,
			header: map[string]string{"Connection": "X-Samlha-User"}},
		{name: "session, forbidden path", base: top.Replicas[0].URL, cookies: true, uri: "/admin/x", code: 403},
		{name: "session, nginx X-Original-URI forbidden", base: top.Replicas[0].URL, cookies: true, code: 403,
			header: map[string]string{"X-Original-URI": "/admin"}},
		{name: "session, path unknown while rules are per path", base: top.Replicas[0].URL, cookies: true, code: 403},
		{name: "session, non-canonical path", base: top.Replicas[0].URL, cookies: true, uri: "/a/../admin", code: 400},
		{name: "no session, trusted navigation", base: top.Replicas[0].URL, header: nav, uri: "/page?x=1", code: 302,
			location: top.ProxyURL + "/saml/login?rd=" + url.QueryEscape(top.ProxyURL+"/page?x=1")},
		{name: "no session, API call", base: top.Replicas[0].URL, uri: "/api",
			header: map[string]string{"Accept": "application/json", "X-Forwarded-Method": "GET", "X-Forwarded-Proto": "http", "X-Forwarded-Host": host}, code: 401},
		{name: "no session, POST", base: top.Replicas[0].URL, uri: "/page",
			header: map[string]string{"Accept": "text/html", "X-Forwarded-Method": "POST", "X-Forwarded-Proto": "http", "X-Forwarded-Host": host}, code: 401},
		{name: "no session, foreign host", base: top.Replicas[0].URL, uri: "/page",
			header: map[string]string{"Accept": "text/html", "X-Forwarded-Method": "GET", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.test"}, code: 401},
		{name: "no session, userinfo host", base: top.Replicas[0].URL, uri: "/page",
			header: map[string]string{"Accept": "text/html", "X-Forwarded-Method": "GET", "X-Forwarded-Proto": "http", "X-Forwarded-Host": host + "@evil.test"}, code: 401},
		{name: "no session, scheme-relative uri", base: top.Replicas[0].URL, uri: "//evil.test/x",
			header: nav, code: 401},
		{name: "no session, untrusted peer", base: untrusted.Replicas[0].URL, header: nav, uri: "/page", code: 401},
		{name: "no session, nginx", base: top.Replicas[0].URL, header: map[string]string{"X-Original-URI": "/page"}, code: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, tc.base+"/saml/auth", nil)
			if tc.cookies {
				for _, c := range session {
					req.AddCookie(c)
				}
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			if tc.uri != "" {
				req.Header.Set("X-Forwarded-Uri", tc.uri)
			}
			resp := do(t, req)
			if resp.StatusCode != tc.code {
				body, _ := io.ReadAll(resp.Body)
				t.Fatalf("%d, want %d: %s", resp.StatusCode, tc.code, body)
			}
			if got := resp.Header.Get("Location"); got != tc.location {
				t.Errorf("Location %q, want %q", got, tc.location)
			}
			if tc.user != "" && (resp.Header.Get("X-Samlha-User") != tc.user || resp.Header.Get("X-Email") != tc.user+"@example.com") {
				t.Errorf("identity headers %v, want user %s", resp.Header, tc.user)
			}
		})
	}
}

// /saml/login?rd= refuses off-site return URLs with a named cause, and
// brings the user back to an allowed one after login.
func TestLoginRDRefusesOpenRedirects(t *testing.T) {
	t.Parallel()
	top := startForwardAuth(t, "127.0.0.1/32", nil)
	for _, rd := range []string{"//evil.test", "/\\evil.test", "https:evil.test", "https://evil.test/", "http://127.0.0.1@evil.test/", "/x\r\nLocation: //evil"} {
		resp := do(t, mustGet(top.ProxyURL+"/saml/login?rd="+url.QueryEscape(rd)))
		if resp.StatusCode != 400 || resp.Header.Get(respond.HeaderCause) != "redirect-refused" {
			t.Errorf("rd=%q: %d cause %q, want 400 redirect-refused", rd, resp.StatusCode, resp.Header.Get(respond.HeaderCause))
		}
	}
	b := sptest.NewBrowser(sptest.Options{RequestTimeout: 20 * time.Second, SuccessPath: "/app"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := b.Login(ctx, top.ProxyURL+"/saml/login?rd="+url.QueryEscape(top.ProxyURL+"/app?from=rd"), "alice", "alice-password")
	if !res.OK || !strings.HasSuffix(res.Hops[len(res.Hops)-1].URL, "/app?from=rd") {
		t.Fatalf("login through /saml/login?rd=:\n%s", describe(res))
	}
	// With a session, /saml/login goes straight to rd.
	page, err := b.Get(ctx, top.ProxyURL+"/saml/login?rd=/whoami")
	if err != nil || page.URL.Path != "/whoami" || page.Status != 200 {
		t.Fatalf("with a session: %v %v", page, err)
	}
}

func mustGet(u string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		panic(err)
	}
	return req
}

// X-Forwarded-For reaches the upstream appended to from a trusted proxy and
// replaced from anyone else; X-Forwarded-Host and -Proto are the SP's root
// URL's whoever sent what (a client must not choose the host the app
// believes it serves: password-reset links, redirects); X-Real-IP is the
// client address the SP found, never a client's copy; the SP's own cookies
// stay with the SP, the application's pass.
func TestGatewayForwardedHeadersAreTheGatewaysOwn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		trusted, wantXFF, wantRealIP, wantForwarded string
	}{
		{"127.0.0.1/32", "203.0.113.9, 127.0.0.1", "203.0.113.9", "for=198.51.100.66;host=evil.example.test"}, // a trusted proxy's, passed on
		{"10.0.0.0/8", "127.0.0.1", "127.0.0.1", ""},
	} {
		env := startGateway(t, 1, nil, nil, func(c *sp.Config) {
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix(tc.trusted)}
		})
		b := newBrowser()
		loginVia(t, env, b, "alice", "/app")
		req := mustGet(env.top.Replicas[0].URL + "/x")
		for _, c := range b.Cookies(mustURL(env.top.ProxyURL)) {
			req.AddCookie(c)
		}
		req.AddCookie(&http.Cookie{Name: "app_pref", Value: "dark"})
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		req.Header.Set("X-Forwarded-Host", "evil.example.test")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("X-Real-IP", "198.51.100.66")
		req.Header["X_Real_IP"] = []string{"198.51.100.67"}
		req.Header["X_Forwarded_Host"] = []string{"evil2.example.test"}
		req.Header.Set("Forwarded", "for=198.51.100.66;host=evil.example.test")
		if resp := do(t, req); resp.StatusCode != 200 {
			t.Fatalf("trusted %s: %d", tc.trusted, resp.StatusCode)
		}
		h := env.up.last()
		root := mustURL(env.top.ProxyURL)
		if got := strings.Join(h.Values("X-Forwarded-For"), ", "); got != tc.wantXFF || h.Get("X-Forwarded-Host") != root.Host ||
			h.Get("X-Forwarded-Proto") != root.Scheme || h.Get("X-Real-Ip") != tc.wantRealIP || h.Get("Forwarded") != tc.wantForwarded {
			t.Errorf("trusted %s: upstream got X-Forwarded-For %q Host %q Proto %q X-Real-IP %q Forwarded %q; want %q %q %q %q %q", tc.trusted,
				got, h.Get("X-Forwarded-Host"), h.Get("X-Forwarded-Proto"), h.Get("X-Real-Ip"), h.Get("Forwarded"),
				tc.wantXFF, root.Host, root.Scheme, tc.wantRealIP, tc.wantForwarded)
		}
		for k := range h {
			if strings.Contains(k, "_") {
				t.Errorf("trusted %s: an underscore copy of a forwarding header reached the upstream: %s: %v", tc.trusted, k, h[k])
			}
		}
		if c := h.Get("Cookie"); strings.Contains(c, "samlha_") || !strings.Contains(c, "app_pref=dark") {
			t.Errorf("trusted %s: the upstream got Cookie %q: the SP's cookies must stay with the SP, the app's pass", tc.trusted, c)
		}
	}
}

// The server's whole-request deadlines are lifted for what the gateway
// proxies, and only for that: a stream from the upstream outlives the write
// deadline, a client trickling a body to the ACS is still cut off at the
// read deadline, and an upstream that never sends its headers gets the
// client a 504 after Gateway.UpstreamHeaderTimeout.
func TestGatewayDeadlines(t *testing.T) {
	t.Parallel()
	stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/x/hang" {
			<-r.Context().Done()
			return
		}
		for i := range 3 {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(250 * time.Millisecond)
		}
	})
	env := startGateway(t, 1, stream, func(g *sp.Gateway) {
		g.PublicPaths = []string{"/x/"}
		g.UpstreamHeaderTimeout = 300 * time.Millisecond
	})
	srv := httptest.NewUnstartedServer(env.top.Replicas[0].SP)
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 300*time.Millisecond, 300*time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/x/stream")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.Contains(string(body), "chunk 2") {
		t.Errorf("a 750 ms stream through a server with a 300 ms write deadline: %q, %v; want all three chunks", body, err)
	}

	resp, err = (&http.Client{Timeout: 5 * time.Second}).Get(srv.URL + "/x/hang")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("an upstream that never answers: %d, want 504", resp.StatusCode)
	}

	// A body that has arrived lifts the read deadline: the stream after it
	// is not cut by net/http's background read.
	resp, err = http.Post(srv.URL+"/x/stream", "text/plain", strings.NewReader("an upload"))
	if err != nil {
		t.Fatal(err)
	}
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.Contains(string(body), "chunk 2") {
		t.Errorf("a 750 ms stream after an upload: %q, %v; want all three chunks", body, err)
	}

	// An anonymous client trickling its body to a public path is cut off
	// at the read deadline, as on the SP's own routes.
	for _, path := range []string{"/x/upload", "/saml/acs"} {
		trickleCutOff(t, srv.Listener.Addr().String(), path)
	}
}

// trickleCutOff sends headers announcing a 100-byte body to path and only
// part of it, and fails unless the server gives up within 3 s.
func trickleCutOff(t *testing.T, addr, path string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST "+path+" HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nSAMLResponse=") //nolint:errcheck // a failed write shows as a quick close
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, _ = io.ReadAll(conn) // the server answers or closes once its read deadline passes
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a client trickling its body to %s held the connection for %v; the read deadline is 300 ms", path, d)
	}
}

// A login through the gateway lands on the URL it began at, up to
// --max-return-url: the gateway used to cap return URLs at 2 KiB whatever
// the flag said and land longer ones on /.
func TestGatewayLongReturnURL(t *testing.T) {
	t.Parallel()
	env := startGateway(t, 1, nil, nil, func(c *sp.Config) { c.MaxReturnURL = 8192 })
	path := "/deep/page?q=" + strings.Repeat("x", 3000)
	b := newBrowser()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := b.Login(ctx, env.top.ProxyURL+path, "alice", "alice-password")
	if res.Final == nil || res.Final.Status != http.StatusOK {
		t.Fatalf("login failed:\n%s", describe(res))
	}
	if got := res.Final.URL.RequestURI(); got != path {
		t.Fatalf("landed on %.60q (%d bytes), want the %d-byte URL it began at", got, len(got), len(path))
	}
}

// normalise reads a request target as the most lenient servers do, all at
// once: Tomcat and Spring drop ";" parameters, IIS reads "\" as "/" and
// strips trailing dots and spaces, some decode escapes twice, and many
// route without regard to case.
func normalise(target string) string {
	p, _, _ := strings.Cut(target, "?")
	p = strings.ReplaceAll(p, "\\", "/")
	for range 2 {
		if d, err := url.PathUnescape(p); err == nil {
			p = d
		}
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		s, _, _ = strings.Cut(s, ";")
		segs[i] = strings.TrimRight(strings.TrimRight(s, "\x00"), ". ")
	}
	return strings.ToLower(path.Clean("/" + strings.Join(segs, "/")))
}

// An --allow rule holds for an upstream that normalises paths: no spelling
// of /admin reaches that upstream's /admin for a user the rule refuses
// (each is refused as path-not-canonical, or judged as /admin and refused
// as forbidden), while the user the rule admits gets there.
func TestGatewayAllowHoldsForANormalisingUpstream(t *testing.T) {
	t.Parallel()
	rule, _ := access.ParseRule("/admin:eduPersonAffiliation=admins")
	var adminHits atomic.Int64
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if access.Under(normalise(r.RequestURI), "/admin") {
			adminHits.Add(1)
		}
		w.Header().Set(respond.HeaderUser, r.Header.Get("X-Samlha-User"))
		fmt.Fprintln(w, "ok")
	})
	env := startGateway(t, 1, nil, func(g *sp.Gateway) { g.Allow = access.Rules{rule} })
	env.up.Config.Handler = app
	send := func(b *sptest.Browser, target string) *http.Response {
		u := mustURL(env.top.ProxyURL)
		req := &http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: u.Scheme, Host: u.Host, Opaque: target}, Header: http.Header{}, Host: u.Host}
		for _, c := range b.Cookies(u) {
			req.AddCookie(c)
		}
		return do(t, req)
	}
	alice := newBrowser()
	loginVia(t, env, alice, "alice", "/app")
	for _, target := range []string{
		"/admin", "/ADMIN", "/Admin/x", "/admin;/x", "/admin;jsessionid=1", "/admin.", "/admin%20", "/admin%00",
		"/admin%2e", "/%61dmin", "/public/../admin", "/public/%2e%2e/admin", "/x/..%2fadmin", "/admin%252f",
		"/%2561dmin", "/admin\\x", "/ADMIN%3b", "/aDmIn./x",
	} {
		before := adminHits.Load()
		resp := send(alice, target)
		if adminHits.Load() != before {
			t.Errorf("%s reached the upstream's /admin for alice (%d)", target, resp.StatusCode)
			continue
		}
		if c := resp.Header.Get(respond.HeaderCause); c != "forbidden" && c != "path-not-canonical" {
			t.Errorf("%s: %d cause %q, want forbidden or path-not-canonical", target, resp.StatusCode, c)
		}
	}
	bob := newBrowser()
	loginVia(t, env, bob, "bob", "/app")
	if resp := send(bob, "/admin/users"); resp.StatusCode != http.StatusOK || adminHits.Load() == 0 {
		t.Fatalf("bob (admins) did not reach /admin/users: %d", resp.StatusCode)
	}
}

// Logout in gateway mode: the logout page's form posts to the SP's own
// /saml/logout (never to the application), the session ends on every
// replica, single logout reaches the IdP, and the browser ends on the SP's
// signed-out page, styled by the SP's own sheet, which starts no login by
// itself (the IdP session would log the user in again at once).
func TestGatewayLogout(t *testing.T) {
	t.Parallel()
	env := startGateway(t, 2, nil, nil)
	b := newBrowser()
	loginVia(t, env, b, "alice", "/app")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seen := env.up.count()
	confirm, err := b.Browse(ctx, env.top.ProxyURL+sp.PathLogout)
	if err != nil {
		t.Fatal(err)
	}
	if confirm.Status != http.StatusOK || !strings.Contains(string(confirm.Body), `action="`+sp.PathLogout+`"`) ||
		!strings.Contains(string(confirm.Body), `href="/saml/static/style.css"`) {
		t.Fatalf("GET %s: %d; want the SP's logout page, posting to %s with the SP's style sheet:\n%s", sp.PathLogout, confirm.Status, sp.PathLogout, confirm.Body)
	}
	page, err := b.SubmitForm(ctx, confirm, sp.PathLogout)
	if err != nil {
		t.Fatal(err)
	}
	if page.Status != http.StatusOK || page.URL.Path != login.PathSignedOut || page.Header.Get("X-Samlha-Logout") != "confirmed" {
		t.Fatalf("logout ended with %d at %s (%q), want the signed-out page, confirmed", page.Status, page.URL, page.Header.Get("X-Samlha-Logout"))
	}
	if strings.Contains(string(page.Body), "<script") || page.Header.Get("Refresh") != "" {
		t.Error("the signed-out page may not start anything by itself")
	}
	if env.up.count() != seen {
		t.Errorf("the application got %d requests during the logout: the SP's pages are the SP's", env.up.count()-seen)
	}
	for _, r := range env.top.Replicas {
		req := mustGet(r.URL + "/x")
		for _, c := range b.Cookies(mustURL(env.top.ProxyURL)) {
			req.AddCookie(c)
		}
		req.Header.Set("Accept", "application/json")
		if resp := do(t, req); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("after logout, %s still serves the session: %d", r.ID, resp.StatusCode)
		}
	}
}

// The gateway's fast hop to the upstream (package stickyproxy/upstream,
// taken for plain requests without a body) sends the upstream what the
// reverse proxy sends (taken when a Transport is configured) and gives
// the client what the reverse proxy gives: the same request line, Host,
// headers (hop-by-hop ones and those a Connection header names dropped,
// the SP's cookies stripped, the forwarding headers and the identity the
// gateway's own), and the same reply. Both gateways run side by side,
// each with its own upstream, and get the same requests.
func TestGatewayFastHopAgreesWithReverseProxy(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, uri, host string
		header            http.Header
	}
	start := func(rp bool) (*gatewayEnv, chan seen, []*http.Cookie) {
		got := make(chan seen, 1)
		extra := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got <- seen{r.Method, r.RequestURI, r.Host, r.Header.Clone()}
			w.Header().Set("X-Reply", "1")
			w.Header().Add("Set-Cookie", "a=1")
			w.Header().Add("Set-Cookie", "b=2")
			w.Header().Set("Connection", "X-Hop")
			w.Header().Set("X-Hop", "dropped")
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			switch r.URL.Query().Get("reply") {
			case "chunked":
				w.Write([]byte("part one, "))
				w.(http.Flusher).Flush()
				w.Write([]byte("part two"))
			case "404":
				w.WriteHeader(http.StatusNotFound)
				w.Write([]byte("no such thing"))
			case "204":
				w.WriteHeader(http.StatusNoContent)
			default:
				w.Header().Set("Content-Length", "5")
				w.Write([]byte("hello"))
			}
		})
		env := startGateway(t, 1, extra, func(g *sp.Gateway) {
			if rp {
				g.Transport = &http.Transport{DisableCompression: true}
			}
		})
		b := newBrowser()
		loginVia(t, env, b, "alice", "/app")
		return env, got, b.Cookies(mustURL(env.top.ProxyURL))
	}
	fastEnv, fastGot, fastCookies := start(false)
	rpEnv, rpGot, rpCookies := start(true)
	for _, tc := range []struct {
		method, path string
		header       http.Header
	}{
		{"GET", "/x/plain", nil},
		{"GET", "/x/q?a=1&b=%2F&c=caf%C3%A9&reply=chunked", http.Header{"Accept": {"text/html", "*/*"}}},
		{"GET", "/x/caf%C3%A9/a%20b?reply=404", http.Header{"Connection": {"X-Gone, keep-alive"}, "X-Gone": {"1"},
			"Keep-Alive": {"timeout=5"}, "Te": {"trailers, deflate"}, "X-Kept": {"1", "2"}}},
		{"HEAD", "/x/head", nil},
		{"DELETE", "/x/del?reply=204", http.Header{"X-Forwarded-For": {"203.0.113.9"}, "Forwarded": {"for=1.2.3.4"},
			"Proxy-Authorization": {"Basic eA=="}, "Cookie": {"app=1; samlha_other=2"}}},
		{"OPTIONS", "/x/opt?", http.Header{"Accept-Encoding": {"gzip"}}},
		{"POST", "/x/empty-post", http.Header{"Expect": {"100-continue"}}},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			do1 := func(env *gatewayEnv, got chan seen, cookies []*http.Cookie) (seen, *http.Response, string) {
				req, err := http.NewRequest(tc.method, env.top.Replicas[0].URL+tc.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range tc.header {
					req.Header[k] = v
				}
				for _, c := range cookies {
					if strings.HasPrefix(c.Name, "samlha") { // not the IdP's, on the same host
						req.AddCookie(c)
					}
				}
				resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				select {
				case s := <-got:
					return s, resp, string(body)
				default:
					t.Fatalf("the upstream got nothing; the gateway answered %d %q", resp.StatusCode, body)
				}
				return seen{}, nil, ""
			}
			fs, fresp, fbody := do1(fastEnv, fastGot, fastCookies)
			rs, rresp, rbody := do1(rpEnv, rpGot, rpCookies)
			// What differs by construction: the upstream's address (Host,
			// by the gateway's choice), and the replica's root URL in
			// X-Forwarded-Host.
			fastUp, rpUp := mustURL(fastEnv.up.URL).Host, mustURL(rpEnv.up.URL).Host
			if fs.host != fastUp || rs.host != rpUp {
				t.Errorf("Host: fast hop %q (want %q), reverse proxy %q (want %q)", fs.host, fastUp, rs.host, rpUp)
			}
			for _, h := range []http.Header{fs.header, rs.header} {
				h.Del("X-Forwarded-Host")
			}
			// The one header the hops treat apart: Expect, which net/http
			// answers to the client itself; the fast hop never sends it
			// on (there is no body to wait for).
			if fs.header["Expect"] != nil {
				t.Errorf("the fast hop sent Expect %q", fs.header["Expect"])
			}
			rs.header.Del("Expect")
			fs.host, rs.host = "", ""
			if diff := cmp.Diff(rs, fs, cmp.AllowUnexported(seen{})); diff != "" {
				t.Errorf("the upstream's request (-reverse proxy +fast hop):\n%s", diff)
			}
			for _, h := range []http.Header{fresp.Header, rresp.Header} {
				h.Del("Date")
				h.Del(respond.HeaderInstance)
			}
			if fresp.StatusCode != rresp.StatusCode || fbody != rbody || !cmp.Equal(rresp.Header, fresp.Header) {
				t.Errorf("the client's reply: fast hop %d %q %v, reverse proxy %d %q %v\n(-reverse proxy +fast hop) %s",
					fresp.StatusCode, fbody, fresp.Header, rresp.StatusCode, rbody, rresp.Header, cmp.Diff(rresp.Header, fresp.Header))
			}
		})
	}
}
