package stickyproxy_test

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/samlha/samlha/stickyproxy"
	"github.com/samlha/samlha/stickyproxy/affinity"
)

// clock is a settable clock for the proxy.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// backend is a test target that mimics an SP replica: it names itself in
// X-Samlha-Instance and echoes what it received.
type backend struct {
	name    string
	srv     *httptest.Server
	healthy atomic.Bool
	mu      sync.Mutex
	last    echo
}

type echo struct {
	Instance      string
	Method        string
	Path          string
	ContentLength int64
	BodySHA       string
	XFF           string
	XFProto       string
	XFHost        string
	RealIP        string
	Identity      string // every header a test strips, as "name=value" lines
	Host          string
}

func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.healthy.Store(true)
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Samlha-Instance", b.name)
	switch r.URL.Path {
	case "/healthz":
		if !b.healthy.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
		return
	case "/login":
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: "session-on-" + b.name, Path: "/"})
	case "/logout":
		http.SetCookie(w, &http.Cookie{Name: "sid", Value: "", Path: "/", MaxAge: -1})
	case "/stream":
		io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // held open until the client goes
		return
	case "/trailer":
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "abc123")
		return
	}
	body, _ := io.ReadAll(r.Body)
	sum := sha256.Sum256(body)
	e := echo{
		Instance: b.name, Method: r.Method, Path: r.URL.Path, ContentLength: r.ContentLength,
		BodySHA: hex.EncodeToString(sum[:]), XFF: strings.Join(r.Header.Values("X-Forwarded-For"), "|"),
		XFProto: r.Header.Get("X-Forwarded-Proto"), XFHost: r.Header.Get("X-Forwarded-Host"), Host: r.Host,
		RealIP: r.Header.Get("X-Real-Ip"),
	}
	var ids []string
	for k, v := range r.Header {
		if l := strings.ToLower(k); strings.HasPrefix(l, "x-samlha") || strings.HasPrefix(l, "x_samlha") || l == "x-groups" || l == "x_groups" {
			ids = append(ids, k+"="+strings.Join(v, ","))
		}
	}
	slices.Sort(ids)
	e.Identity = strings.Join(ids, ";")
	b.mu.Lock()
	b.last = e
	b.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(e)
}

type env struct {
	t        *testing.T
	clock    *clock
	backends []*backend
	proxy    *stickyproxy.Proxy
	srv      *httptest.Server
	admin    *httptest.Server
}

var testKey = mustKey("the test key, long enough")

func mustKey(s string) [32]byte {
	k, err := affinity.DeriveKey(s)
	if err != nil {
		panic(err)
	}
	return k
}

// newEnv starts three backends and a proxy in front of them; edit adjusts
// the configuration.
func newEnv(t *testing.T, engine stickyproxy.Engine, edit func(*stickyproxy.Config)) *env {
	t.Helper()
	e := &env{t: t, clock: newClock()}
	cfg := stickyproxy.Config{
		Keys:       [][32]byte{testKey},
		Duration:   time.Hour,
		Now:        e.clock.Now,
		Engine:     engine,
		AdminToken: testAdminToken,
	}
	for _, name := range []string{"sp-1", "sp-2", "sp-3"} {
		b := newBackend(t, name)
		e.backends = append(e.backends, b)
		u, _ := url.Parse(b.srv.URL)
		cfg.Targets = append(cfg.Targets, stickyproxy.Target{Name: name, URL: u})
	}
	if edit != nil {
		edit(&cfg)
	}
	p, err := stickyproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.proxy = p
	e.srv = publicServer(t, p)
	e.admin = httptest.NewServer(p.Admin())
	t.Cleanup(func() { e.srv.Close(); e.admin.Close(); p.Close() })
	return e
}

func (e *env) backend(name string) *backend {
	for _, b := range e.backends {
		if b.name == name {
			return b
		}
	}
	e.t.Fatalf("no backend %s", name)
	return nil
}

// reply is what a test looks at in a response.
type reply struct {
	Status   int
	Target   string
	Decision string
	Instance string // X-Samlha-Instance, who really served it
}

func (e *env) do(req *http.Request) (reply, *http.Response, []byte) {
	e.t.Helper()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return reply{
		Status: resp.StatusCode, Target: resp.Header.Get(stickyproxy.HeaderTarget),
		Decision: resp.Header.Get(stickyproxy.HeaderDecision), Instance: resp.Header.Get("X-Samlha-Instance"),
	}, resp, body
}

// get requests path with the given cookies ("name=value" each).
// echo sends req and returns what the backend received.
func (e *env) echo(req *http.Request) echo {
	_, _, body := e.do(req)
	var got echo
	if err := json.Unmarshal(body, &got); err != nil {
		e.t.Fatalf("the backend's echo: %v: %s", err, body)
	}
	return got
}

func (e *env) get(path string, cookies ...string) (reply, *http.Response) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	if len(cookies) > 0 {
		req.Header.Set("Cookie", strings.Join(cookies, "; "))
	}
	r, resp, _ := e.do(req)
	return r, resp
}

// affinity returns "AWSALB=<value>" from a response's Set-Cookie, or "".
func affinityCookie(resp *http.Response, name string) string {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c.Name + "=" + c.Value
		}
	}
	return ""
}

func setCookieLine(resp *http.Response, name string) string {
	for _, l := range resp.Header.Values("Set-Cookie") {
		if strings.HasPrefix(l, name+"=") {
			return l
		}
	}
	return ""
}

func ok(name, decision string) reply {
	return reply{Status: 200, Target: name, Decision: decision, Instance: name}
}

var engines = []stickyproxy.Engine{stickyproxy.EngineFast, stickyproxy.EngineReverseProxy}

func forEngine(t *testing.T, f func(t *testing.T, engine stickyproxy.Engine)) {
	for _, engine := range engines {
		t.Run(string(engine), func(t *testing.T) {
			t.Parallel()
			f(t, engine)
		})
	}
}

func TestPinning(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		e := newEnv(t, engine, nil)
		// New clients are spread round robin over the three targets.
		var cookies []string
		for i, want := range []string{"sp-1", "sp-2", "sp-3"} {
			got, resp := e.get("/page")
			if diff := cmp.Diff(ok(want, "new"), got); diff != "" {
				t.Fatalf("new client %d (-want +got):\n%s", i, diff)
			}
			c := affinityCookie(resp, "AWSALB")
			if c == "" {
				t.Fatalf("new client %d: no AWSALB cookie in %q", i, resp.Header.Values("Set-Cookie"))
			}
			cookies = append(cookies, c)
		}
		// Each stays where it was pinned.
		for round := 0; round < 3; round++ {
			for i, want := range []string{"sp-1", "sp-2", "sp-3"} {
				got, resp := e.get("/page", cookies[i], "other=1")
				if diff := cmp.Diff(ok(want, "pinned"), got); diff != "" {
					t.Fatalf("round %d client %d (-want +got):\n%s", round, i, diff)
				}
				if affinityCookie(resp, "AWSALB") == "" {
					t.Errorf("pinned reply does not refresh the cookie")
				}
			}
		}
		st := e.proxy.Targets()
		if st[0].PinnedRequests != 3 || st[0].PinsIssued != 1 || st[0].Requests != 4 {
			t.Errorf("sp-1 counters: %+v", st[0])
		}
	})
}

func TestCookieValueHidesTarget(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stickyproxy.EngineFast, nil)
	_, resp := e.get("/")
	line := setCookieLine(resp, "AWSALB")
	for _, leak := range []string{"sp-1", "127.0.0.1", e.backends[0].srv.URL} {
		if strings.Contains(line, leak) {
			t.Errorf("Set-Cookie %q shows %q", line, leak)
		}
	}
}

func TestExpiryRefreshedPerResponse(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		e := newEnv(t, engine, nil) // cookie duration 1h
		start := e.clock.Now()
		_, resp := e.get("/")
		first := affinityCookie(resp, "AWSALB")
		wantExp := func(at time.Time) string {
			return "Expires=" + at.Add(time.Hour).UTC().Format(http.TimeFormat)
		}
		if l := setCookieLine(resp, "AWSALB"); !strings.Contains(l, wantExp(start)) {
			t.Fatalf("Set-Cookie %q, want %s", l, wantExp(start))
		}
		// 50 minutes later the cookie still pins, and the reply extends it.
		e.clock.Advance(50 * time.Minute)
		got, resp := e.get("/", first)
		if diff := cmp.Diff(ok("sp-1", "pinned"), got); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		if l := setCookieLine(resp, "AWSALB"); !strings.Contains(l, wantExp(e.clock.Now())) {
			t.Fatalf("refreshed Set-Cookie %q, want %s", l, wantExp(e.clock.Now()))
		}
		refreshed := affinityCookie(resp, "AWSALB")
		// 20 more minutes: the first cookie has expired, the refreshed not.
		e.clock.Advance(20 * time.Minute)
		if got, _ := e.get("/", first); got.Decision != "expired" || got.Status != 200 {
			t.Errorf("first cookie after its expiry: %+v, want decision expired", got)
		}
		if got, _ := e.get("/", refreshed); got != ok("sp-1", "pinned") {
			t.Errorf("refreshed cookie: %+v, want pinned to sp-1", got)
		}
	})
}

func TestCookieValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stickyproxy.EngineFast, nil)
	_, resp := e.get("/") // pinned to sp-1
	good := affinityCookie(resp, "AWSALB")
	value := strings.TrimPrefix(good, "AWSALB=")

	sealWith := func(key [32]byte, purpose, id string) string {
		c, _ := affinity.New(purpose, key)
		v, _ := c.Seal(id, e.clock.Now().Add(time.Hour))
		return "AWSALB=" + v
	}
	raw, _ := base64.RawURLEncoding.DecodeString(value)
	raw[len(raw)-3] ^= 1
	tampered := "AWSALB=" + base64.RawURLEncoding.EncodeToString(raw)

	tests := []struct {
		name, cookie, want string
	}{
		{"valid", good, "pinned"},
		{"another proxy instance with the same key", sealWith(testKey, "AWSALB", "sp-1"), "pinned"},
		{"another proxy's key", sealWith(mustKey("somebody else's key!"), "AWSALB", "sp-1"), "invalid-cookie"},
		{"tampered", tampered, "invalid-cookie"},
		{"truncated", good[:len(good)-4], "invalid-cookie"},
		{"garbage", "AWSALB=hello", "invalid-cookie"},
		{"target name in clear", "AWSALB=sp-1", "invalid-cookie"},
		{"unknown target", sealWith(testKey, "AWSALB", "sp-9"), "invalid-cookie"},
		{"empty", "AWSALB=", "invalid-cookie"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, resp := e.get("/", tt.cookie)
			if got.Decision != tt.want || got.Status != 200 {
				t.Fatalf("got %+v, want decision %s", got, tt.want)
			}
			if tt.want != "pinned" && affinityCookie(resp, "AWSALB") == "" {
				t.Error("an invalid cookie must be replaced by a valid one")
			}
		})
	}
	reg := e.proxy.Registry()
	for reason, want := range map[string]float64{"forged": 3, "malformed": 3, "unknown-target": 1} {
		if got := metricValue(t, reg, "stickyproxy_invalid_cookies_total", "reason", reason); got != want {
			t.Errorf("invalid cookies %s = %v, want %v", reason, got, want)
		}
	}
}

func TestKeyRotationAcrossInstances(t *testing.T) {
	t.Parallel()
	oldKey, newKey := mustKey("the old key, long enough"), mustKey("the new key, long enough")
	a := newEnv(t, stickyproxy.EngineFast, func(c *stickyproxy.Config) { c.Keys = [][32]byte{oldKey} })
	_, resp := a.get("/")
	oldCookie := affinityCookie(resp, "AWSALB")
	// B has rotated: it seals with the new key and still opens old cookies.
	b := newEnv(t, stickyproxy.EngineFast, func(c *stickyproxy.Config) { c.Keys = [][32]byte{newKey, oldKey} })
	if got, _ := b.get("/", oldCookie); got.Decision != "pinned" || got.Target != "sp-1" {
		t.Fatalf("rotated instance with an old cookie: %+v", got)
	}
	_, resp = b.get("/", oldCookie)
	newCookie := affinityCookie(resp, "AWSALB")
	// A, not yet rotated, cannot read B's new cookies: it re-pins.
	if got, _ := a.get("/", newCookie); got.Decision != "invalid-cookie" {
		t.Fatalf("old instance with a new cookie: %+v, want invalid-cookie", got)
	}
}

func TestFailoverWhenTargetKilled(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		e := newEnv(t, engine, func(c *stickyproxy.Config) { c.PassiveFall = 1 })
		_, resp := e.get("/")
		cookie := affinityCookie(resp, "AWSALB") // sp-1
		e.backend("sp-1").srv.Close()
		// Drop the proxy's idle connection to sp-1 from the first request,
		// so that this test is about a connection that cannot be made. (A
		// POST on a pooled connection the dead target had closed is another
		// case: the fast engine resends it on a new connection, but Go's
		// Transport, under the reverseproxy engine, does not resend a
		// non-replayable request, and which of the two happens first
		// depends on when the Transport notices the close.)
		e.proxy.Close()
		// The connection to sp-1 cannot be made: retried on another target,
		// and the client is pinned there.
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/form", strings.NewReader("a=1&b=2"))
		req.Header.Set("Cookie", cookie)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		got, resp, body := e.do(req)
		if got.Status != 200 || got.Decision != "retried" || got.Target == "sp-1" || got.Target != got.Instance {
			t.Fatalf("after kill: %+v", got)
		}
		var ec echo
		json.Unmarshal(body, &ec)
		if sum := sha256.Sum256([]byte("a=1&b=2")); ec.BodySHA != hex.EncodeToString(sum[:]) {
			t.Errorf("retried POST body arrived as %+v", ec)
		}
		moved := affinityCookie(resp, "AWSALB")
		if got2, _ := e.get("/", moved); got2.Decision != "pinned" || got2.Target != got.Target {
			t.Errorf("new cookie: %+v, want pinned to %s", got2, got.Target)
		}
		// Passive checks marked sp-1 down: the old cookie is re-pinned
		// without a failed attempt.
		if got3, _ := e.get("/", cookie); got3.Decision != "repinned-unhealthy" || got3.Status != 200 {
			t.Errorf("old cookie after passive down: %+v", got3)
		}
		if n := metricValue(t, e.proxy.Registry(), "stickyproxy_upstream_errors_total", "target", "sp-1", "kind", "dial"); n != 1 {
			t.Errorf("dial errors for sp-1 = %v, want 1", n)
		}
	})
}

func TestActiveHealthChecks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stickyproxy.EngineFast, func(c *stickyproxy.Config) { c.HealthRise, c.HealthFall = 2, 2 })
	_, resp := e.get("/")
	cookie := affinityCookie(resp, "AWSALB")
	sp1 := e.backend("sp-1")
	sp1.healthy.Store(false)
	e.proxy.CheckNow(t.Context())
	if got, _ := e.get("/", cookie); got.Decision != "pinned" {
		t.Fatalf("after one failed check (fall=2): %+v, want still pinned", got)
	}
	e.proxy.CheckNow(t.Context())
	if got, _ := e.get("/", cookie); got.Decision != "repinned-unhealthy" || got.Target == "sp-1" {
		t.Fatalf("after two failed checks: %+v, want repinned-unhealthy", got)
	}
	sp1.healthy.Store(true)
	e.proxy.CheckNow(t.Context())
	if got, _ := e.get("/", cookie); got.Decision != "repinned-unhealthy" {
		t.Fatalf("after one passing check (rise=2): %+v, want still down", got)
	}
	e.proxy.CheckNow(t.Context())
	if got, _ := e.get("/", cookie); got != ok("sp-1", "pinned") {
		t.Fatalf("after two passing checks: %+v, want pinned to sp-1", got)
	}
}

func TestRunChecksInBackground(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stickyproxy.EngineFast, func(c *stickyproxy.Config) {
		c.HealthInterval, c.HealthRise, c.HealthFall = 10*time.Millisecond, 1, 1
	})
	go e.proxy.Run(t.Context())
	e.backend("sp-2").healthy.Store(false)
	waitFor(t, "sp-2 marked down", func() bool { return !e.proxy.Targets()[1].Healthy })
	e.backend("sp-2").healthy.Store(true)
	waitFor(t, "sp-2 marked up", func() bool { return e.proxy.Targets()[1].Healthy })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStrictMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stickyproxy.EngineFast, func(c *stickyproxy.Config) {
		c.OnPinnedDown = stickyproxy.PinnedDownStrict
		c.HealthFall = 1
	})
	_, resp := e.get("/")
	cookie := affinityCookie(resp, "AWSALB")
	e.backend("sp-1").healthy.Store(false)
	e.proxy.CheckNow(t.Context())
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/", nil)
	req.Header.Set("Cookie", cookie)
	got, resp, body := e.do(req)
	want := reply{Status: 503, Target: "sp-1", Decision: "strict-refused"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("(-want +got):\n%s", diff)
	}
	if !strings.Contains(string(body), "sp-1") || !strings.Contains(string(body), "strict") {
		t.Errorf("body does not explain: %q", body)
	}
	if affinityCookie(resp, "AWSALB") != "" {
		t.Error("strict refusal must not re-pin")
	}
	// Clients without a cookie are still served elsewhere.
	if got, _ := e.get("/"); got.Status != 200 || got.Target == "sp-1" {
		t.Errorf("new client: %+v", got)
	}
}

func TestDraining(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		mode       stickyproxy.DrainMode
		wantPinned reply
	}{
		{stickyproxy.DrainALB, reply{Status: 200, Decision: "repinned-draining"}},
		{stickyproxy.DrainHAProxy, ok("sp-1", "pinned")},
	} {
		t.Run(string(tt.mode), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, stickyproxy.EngineFast, func(c *stickyproxy.Config) { c.DrainMode = tt.mode })
			_, resp := e.get("/")
			cookie := affinityCookie(resp, "AWSALB") // sp-1
			adminPost(t, e.admin.URL+"/targets/sp-1/drain", http.StatusOK)
			got, _ := e.get("/", cookie)
			if tt.mode == stickyproxy.DrainALB {
				if got.Target == "sp-1" || got.Target != got.Instance {
					t.Fatalf("ALB drain served a pinned client from sp-1: %+v", got)
				}
				got.Target, got.Instance = "", ""
			}
			if diff := cmp.Diff(tt.wantPinned, got); diff != "" {
				t.Fatalf("pinned client while draining (-want +got):\n%s", diff)
			}
			for i := 0; i < 6; i++ {
				if got, _ := e.get("/"); got.Target == "sp-1" {
					t.Fatalf("new client %d sent to draining sp-1", i)
				}
			}
			adminPost(t, e.admin.URL+"/targets/sp-1/undrain", http.StatusOK)
			seen := map[string]bool{}
			for i := 0; i < 3; i++ {
				got, _ := e.get("/")
				seen[got.Target] = true
			}
			if !seen["sp-1"] {
				t.Errorf("undrained sp-1 gets no new clients: %v", seen)
			}
			adminPost(t, e.admin.URL+"/targets/nope/drain", http.StatusNotFound)
		})
	}
}

const testAdminToken = "test-admin-token-0123456789"

// adminReq calls the admin API with the test token.
func adminReq(t *testing.T, method, u string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, u, nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func adminPost(t *testing.T, u string, want int) {
	t.Helper()
	resp := adminReq(t, http.MethodPost, u)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("POST %s: %d, want %d", u, resp.StatusCode, want)
	}
}

func TestCookieAttributes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*stickyproxy.Config)
		want []string // Set-Cookie lines after the value
	}{
		{"defaults: HttpOnly", nil, []string{"; Path=/; HttpOnly; SameSite=Lax"}},
		{"all attributes", func(c *stickyproxy.Config) {
			c.CookiePath, c.CookieDomain, c.CookieSecure = "/app", "example.test", true
			c.CookieSameSite = http.SameSiteStrictMode
		}, []string{"; Path=/app; Domain=example.test; HttpOnly; Secure; SameSite=Strict"}},
		{"scriptable drops HttpOnly", func(c *stickyproxy.Config) { c.CookieScriptable = true },
			[]string{"; Path=/; SameSite=Lax"}},
		{"samesite default omits the attribute", func(c *stickyproxy.Config) { c.CookieSameSite = http.SameSiteDefaultMode },
			[]string{"; Path=/; HttpOnly"}},
		{"twin: HttpOnly and Secure", func(c *stickyproxy.Config) { c.CookieTwin = true }, []string{
			"; Path=/; HttpOnly; SameSite=Lax",
			"; Path=/; HttpOnly; Secure; SameSite=None",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, stickyproxy.EngineFast, tt.edit)
			_, resp := e.get("/")
			exp := "; Expires=" + e.clock.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
			var got []string
			for _, l := range resp.Header.Values("Set-Cookie") {
				name, rest, _ := strings.Cut(l, "=")
				_, attrs, _ := strings.Cut(rest, ";")
				got = append(got, name+":"+strings.TrimPrefix(";"+attrs, exp))
			}
			var want []string
			for i, w := range tt.want {
				want = append(want, []string{"AWSALB", "AWSALBCORS"}[i]+":"+w)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("Set-Cookie attributes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTwinCookieCarriesAffinity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stickyproxy.EngineFast, func(c *stickyproxy.Config) { c.CookieTwin = true })
	e.get("/") // sp-1
	_, resp := e.get("/")
	twin := affinityCookie(resp, "AWSALBCORS") // sp-2
	main := affinityCookie(resp, "AWSALB")
	if strings.TrimPrefix(twin, "AWSALBCORS=") != strings.TrimPrefix(main, "AWSALB=") {
		t.Fatalf("twin %q and main %q differ", twin, main)
	}
	// A cross-site POST on which the browser withheld the Lax cookie but
	// sent the SameSite=None twin stays pinned.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/saml/acs", strings.NewReader("x=1"))
	req.Header.Set("Cookie", twin)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if got, _, _ := e.do(req); got != ok("sp-2", "pinned") {
		t.Fatalf("POST with only the twin: %+v", got)
	}
}

func TestRelayStateRouting(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		e := newEnv(t, engine, func(c *stickyproxy.Config) { c.SAMLAware = true })
		big := make([]byte, 15000)
		rand.Read(big)
		samlResponse := base64.StdEncoding.EncodeToString(big) // ~20 KB, before RelayState as browsers send it
		nonce := base64.RawURLEncoding.EncodeToString(big[:24])
		form := func(relayState string) string {
			return url.Values{"SAMLResponse": {samlResponse}}.Encode() + "&RelayState=" + relayState
		}
		tests := []struct {
			name, path, body, cookie string
			want                     reply
		}{
			{"names sp-3", "/saml/acs", form("sp-3~" + nonce), "", ok("sp-3", "relaystate")},
			{"tilde percent-encoded", "/saml/acs", form("sp-2%7E" + nonce), "", ok("sp-2", "relaystate")},
			{"unknown instance falls back", "/saml/acs", form("sp-9~" + nonce), "", reply{}},
			{"no tilde falls back", "/saml/acs", form("sp-3"), "", reply{}},
			{"other path ignored", "/other", form("sp-3~" + nonce), "", reply{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				req, _ := http.NewRequest(http.MethodPost, e.srv.URL+tt.path, strings.NewReader(tt.body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Origin", "https://idp.example")
				got, _, body := e.do(req)
				if tt.want == (reply{}) {
					if got.Decision != "new" || got.Status != 200 {
						t.Fatalf("got %+v, want normal balancing", got)
					}
				} else if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Fatalf("(-want +got):\n%s", diff)
				}
				var ec echo
				if err := json.Unmarshal(body, &ec); err != nil {
					t.Fatal(err)
				}
				sum := sha256.Sum256([]byte(tt.body))
				if ec.BodySHA != hex.EncodeToString(sum[:]) || ec.ContentLength != int64(len(tt.body)) {
					t.Fatalf("body changed on the way: got %d bytes sha %s, sent %d", ec.ContentLength, ec.BodySHA[:8], len(tt.body))
				}
			})
		}
		// A valid cookie wins over RelayState.
		_, resp := e.get("/")
		cookie := affinityCookie(resp, "AWSALB")
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/saml/acs", strings.NewReader(form("sp-3~"+nonce)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Cookie", cookie)
		if got, _, _ := e.do(req); got.Decision != "pinned" {
			t.Errorf("with a valid cookie: %+v, want pinned", got)
		}
		if n := metricValue(t, e.proxy.Registry(), "stickyproxy_cross_site_post_without_cookie_total", "acs", "true"); n != 4 {
			t.Errorf("cross-site ACS POSTs without cookie = %v, want 4", n)
		}
	})
}

// TestRelayStateBeyondPeekLimit: a body too large to buffer whole
// (MaxBufferedBody) is peeked at for RelayState only up to RelayStatePeek.
// (A buffered body is read whole, and its RelayState found anywhere.)
func TestRelayStateBeyondPeekLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stickyproxy.EngineFast, func(c *stickyproxy.Config) {
		c.SAMLAware, c.RelayStatePeek, c.MaxBufferedBody = true, 4096, 4096
	})
	body := "SAMLResponse=" + strings.Repeat("A", 5000) + "&RelayState=sp-3~AAAABBBBCCCCDDDDEEEEFFFFGGGGHHHH"
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/saml/acs", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	got, _, raw := e.do(req)
	if got.Decision != "new" {
		t.Fatalf("RelayState past the peek limit: %+v, want new", got)
	}
	var ec echo
	json.Unmarshal(raw, &ec)
	if ec.ContentLength != int64(len(body)) {
		t.Fatalf("body length %d, sent %d", ec.ContentLength, len(body))
	}
}

func TestRelayStateInstance(t *testing.T) {
	t.Parallel()
	nonce := strings.Repeat("Ab-_", 8) // 32 characters of base64url
	tests := []struct {
		form     string
		complete bool
		want     string
		wantOK   bool
	}{
		{"SAMLResponse=abc&RelayState=sp-1~" + nonce, true, "sp-1", true},
		{"RelayState=sp-1~" + nonce + "&SAMLResponse=abc", false, "sp-1", true},
		{"SAMLResponse=abc&RelayState=sp-1~" + nonce, false, "", false}, // may be cut off
		{"RelayState=sp.a_b-2%7E" + nonce, true, "sp.a_b-2", true},
		{"RelayState=sp-1~junk", true, "", false}, // not the form the SP issues
		{"RelayState=sp-1~" + nonce + "x", true, "", false},
		{"RelayState=%zz", true, "", false},
		{"RelayState=~" + nonce, true, "", false},
		{"RelayState=" + strings.Repeat("a", 41) + "~" + nonce, true, "", false},
		{"RelayState=sp 1~" + nonce, true, "", false},
		{"relaystate=sp-1~" + nonce, true, "", false},
		{"", true, "", false},
	}
	for _, tt := range tests {
		got, gotOK := stickyproxy.RelayStateInstance([]byte(tt.form), tt.complete)
		if got != tt.want || gotOK != tt.wantOK {
			t.Errorf("RelayStateInstance(%q, %v) = %q, %v; want %q, %v", tt.form, tt.complete, got, gotOK, tt.want, tt.wantOK)
		}
	}
}

func TestForwardedHeaders(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		for _, tt := range []struct {
			name    string
			trusted []netip.Prefix
			want    echo
		}{
			{"spoofed values dropped", nil, echo{XFF: "127.0.0.1", XFProto: "http", XFHost: "public.example", RealIP: "127.0.0.1"}},
			{"trusted peer kept", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
				echo{XFF: "203.0.113.9, 127.0.0.1", XFProto: "https", XFHost: "edge.example", RealIP: "203.0.113.9"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				e := newEnv(t, engine, func(c *stickyproxy.Config) { c.TrustedProxies = tt.trusted })
				req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/", nil)
				req.Host = "public.example"
				req.Header.Set("X-Forwarded-For", "203.0.113.9")
				req.Header.Set("X-Forwarded-Proto", "https")
				req.Header.Set("X-Forwarded-Host", "edge.example")
				req.Header.Set("X-Real-IP", "198.51.100.66")
				got := e.echo(req)
				if got.Host != "public.example" {
					t.Errorf("Host %q, want the public host kept", got.Host)
				}
				got = echo{XFF: got.XFF, XFProto: got.XFProto, XFHost: got.XFHost, RealIP: got.RealIP}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
			})
		}
	})
}

// TestStripRequestHeaders: with --strip-request-header(-prefix), a client's
// identity headers never reach the target, under any spelling, by both
// engines, and they are counted.
func TestStripRequestHeaders(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		e := newEnv(t, engine, func(c *stickyproxy.Config) {
			c.StripRequestHeaders = []string{"X-Groups"}
			c.StripRequestHeaderPrefixes = []string{"X-Samlha-"}
		})
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/", nil)
		for _, k := range []string{"X-Samlha-User", "x_samlha_user", "X_Groups", "x-groups", "X-Samlha-Email"} {
			req.Header[k] = []string{"admin"}
		}
		req.Header.Set("X-Samlhax", "kept")
		if got := e.echo(req); got.Identity != "X-Samlhax=kept" {
			t.Errorf("identity headers at the target: %q, want only X-Samlhax", got.Identity)
		}
		if n := metricValue(t, e.proxy.Registry(), "stickyproxy_request_headers_stripped_total"); n != 5 {
			t.Errorf("stripped counted %v, want 5", n)
		}
	})
}

func TestAllDown(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		mode stickyproxy.AllDown
		want reply
	}{
		{stickyproxy.AllDownFailOpen, reply{Status: 200, Target: "sp-2", Decision: "fail-open", Instance: "sp-2"}}, // the healthy pass moved round robin on
		{stickyproxy.AllDown503, reply{Status: 503, Target: "none", Decision: "no-target"}},
	} {
		t.Run(string(tt.mode), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, stickyproxy.EngineFast, func(c *stickyproxy.Config) { c.AllDown, c.HealthFall = tt.mode, 1 })
			for _, b := range e.backends {
				b.healthy.Store(false)
			}
			e.proxy.CheckNow(t.Context())
			if got, _ := e.get("/"); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNoTargetReachable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stickyproxy.EngineFast, nil)
	for _, b := range e.backends {
		b.srv.Close()
	}
	got, _ := e.get("/")
	if got.Status != http.StatusBadGateway || got.Decision != "upstream-error" {
		t.Fatalf("got %+v, want 502 upstream-error", got)
	}
}

func TestAppStickiness(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		e := newEnv(t, engine, func(c *stickyproxy.Config) {
			c.Stickiness, c.AppCookie = stickyproxy.StickinessApp, "sid"
		})
		got, resp := e.get("/")
		if got.Decision != "new" || affinityCookie(resp, "AWSALBAPP") != "" {
			t.Fatalf("before the app sets its cookie: %+v, Set-Cookie %q", got, resp.Header.Values("Set-Cookie"))
		}
		got, resp = e.get("/login") // sp-2 sets sid
		app := affinityCookie(resp, "AWSALBAPP")
		sid := affinityCookie(resp, "sid")
		if app == "" || sid == "" {
			t.Fatalf("app set its cookie but the proxy did not pin: %q", resp.Header.Values("Set-Cookie"))
		}
		for i := 0; i < 3; i++ {
			if g, _ := e.get("/", sid, app); g != ok(got.Target, "pinned") {
				t.Fatalf("with sid and AWSALBAPP: %+v, want pinned to %s", g, got.Target)
			}
		}
		if g, _ := e.get("/", app); g.Decision != "new" {
			t.Errorf("AWSALBAPP without the app cookie: %+v, want new", g)
		}
		_, resp = e.get("/logout", sid, app)
		if l := setCookieLine(resp, "AWSALBAPP"); !strings.Contains(l, "Max-Age=0") {
			t.Errorf("app deleted its cookie; proxy's Set-Cookie %q, want deletion", l)
		}
	})
}

func TestStickinessOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stickyproxy.EngineFast, func(c *stickyproxy.Config) { c.Stickiness = stickyproxy.StickinessOff })
	var targets []string
	for i := 0; i < 4; i++ {
		got, resp := e.get("/", "AWSALB=whatever")
		if got.Decision != "balanced" || len(resp.Header.Values("Set-Cookie")) != 0 {
			t.Fatalf("got %+v, Set-Cookie %q", got, resp.Header.Values("Set-Cookie"))
		}
		targets = append(targets, got.Target)
	}
	if diff := cmp.Diff([]string{"sp-1", "sp-2", "sp-3", "sp-1"}, targets); diff != "" {
		t.Errorf("round robin (-want +got):\n%s", diff)
	}
}

func TestStreamingAndTrailers(t *testing.T) {
	t.Parallel()
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		e := newEnv(t, engine, nil)
		// The first chunk must arrive while the backend holds the reply open.
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+"/stream", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if line != "first\n" || err != nil {
			t.Fatalf("streamed %q, %v", line, err)
		}
		resp.Body.Close()

		resp, err = http.Get(e.srv.URL + "/trailer")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "body" || resp.Trailer.Get("X-Checksum") != "abc123" {
			t.Fatalf("body %q trailer %v", body, resp.Trailer)
		}
	})
}

func TestWebSocketUpgrade(t *testing.T) {
	t.Parallel()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want upgrade", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		line, _ := brw.ReadString('\n')
		brw.WriteString("echo: " + line)
		brw.Flush()
	}))
	t.Cleanup(upstream.Close)
	u, _ := url.Parse(upstream.URL)
	p, err := stickyproxy.New(stickyproxy.Config{Targets: []stickyproxy.Target{{Name: "ws", URL: u}}, Keys: [][32]byte{testKey}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get(stickyproxy.HeaderTarget) != "ws" {
		t.Fatalf("status %d headers %v", resp.StatusCode, resp.Header)
	}
	fmt.Fprintf(conn, "hello\n")
	line, err := br.ReadString('\n')
	if line != "echo: hello\n" || err != nil {
		t.Fatalf("got %q, %v", line, err)
	}
}

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stickyproxy.EngineFast, func(c *stickyproxy.Config) {
		c.Targets[1].Weight = 3
	})
	e.get("/")
	resp := adminReq(t, http.MethodGet, e.admin.URL+"/targets")
	var got []stickyproxy.TargetStatus
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	want := []stickyproxy.TargetStatus{
		{Name: "sp-1", URL: e.backends[0].srv.URL, Weight: 1, Healthy: true},
		// Smooth weighted round robin starts with the heaviest.
		{Name: "sp-2", URL: e.backends[1].srv.URL, Weight: 3, Healthy: true, Requests: 1, PinsIssued: 1},
		{Name: "sp-3", URL: e.backends[2].srv.URL, Weight: 1, Healthy: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GET /targets (-want +got):\n%s", diff)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp := adminReq(t, http.MethodGet, e.admin.URL+path)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d", path, resp.StatusCode)
		}
		if path == "/metrics" {
			for _, name := range []string{"stickyproxy_requests_total", "stickyproxy_upstream_latency_seconds", "stickyproxy_target_healthy",
				"stickyproxy_load_imbalance_ratio", "stickyproxy_in_flight_requests"} {
				if !bytes.Contains(body, []byte(name)) {
					t.Errorf("metrics lack %s", name)
				}
			}
		}
	}
}

func TestLoadImbalanceGauge(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stickyproxy.EngineFast, nil)
	_, resp := e.get("/")
	cookie := affinityCookie(resp, "AWSALB")
	for i := 0; i < 5; i++ {
		e.get("/", cookie) // all on sp-1
	}
	// 6 requests on sp-1 of 6: busiest share over the mean = 6 / (6/3) = 3.
	if got := gaugeValue(t, e.proxy, "stickyproxy_load_imbalance_ratio"); got != 3 {
		t.Errorf("imbalance = %v, want 3", got)
	}
	e.get("/") // sp-2
	e.get("/") // sp-3
	// 6, 1, 1 of 8: 6 / (8/3) = 2.25.
	if got := gaugeValue(t, e.proxy, "stickyproxy_load_imbalance_ratio"); got != 2.25 {
		t.Errorf("imbalance = %v, want 2.25", got)
	}
	e.clock.Advance(2 * time.Minute) // the window (1m) has slid past them
	if got := gaugeValue(t, e.proxy, "stickyproxy_load_imbalance_ratio"); got != 0 {
		t.Errorf("imbalance after the window = %v, want 0", got)
	}
}

func TestCrossSitePOSTWithoutCookieCounted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stickyproxy.EngineFast, nil)
	_, resp := e.get("/")
	cookie := affinityCookie(resp, "AWSALB")
	post := func(cookie string, headers ...string) {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/form", strings.NewReader("a=1"))
		req.Host = "sp.example"
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		e.do(req)
	}
	post("", "Sec-Fetch-Site", "cross-site")            // counted
	post("", "Origin", "https://idp.example")           // counted
	post("", "Origin", "null")                          // counted
	post(cookie, "Sec-Fetch-Site", "cross-site")        // valid cookie: not counted
	post("", "Origin", "https://sp.example")            // same origin: not counted
	post("", "Sec-Fetch-Site", "same-origin")           // not counted
	post("AWSALB=junk", "Sec-Fetch-Site", "cross-site") // counted: invalid cookie
	if n := metricValue(t, e.proxy.Registry(), "stickyproxy_cross_site_post_without_cookie_total", "acs", "false"); n != 4 {
		t.Errorf("cross-site POSTs without a valid cookie = %v, want 4", n)
	}
}

func TestBodiesAndHead(t *testing.T) {
	t.Parallel()
	big := make([]byte, 3<<20) // over the fast engine's body limit and the copy buffer
	rand.Read(big)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(body)
		w.Header().Set("X-Body-SHA", hex.EncodeToString(sum[:]))
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			w.Write(big)
		case "/chunked":
			for i := 0; i < len(big); i += 1 << 20 {
				w.Write(big[i : i+1<<20])
				http.NewResponseController(w).Flush()
			}
		default:
			io.WriteString(w, "small")
		}
	}))
	t.Cleanup(upstream.Close)
	u, _ := url.Parse(upstream.URL)
	forEngine(t, func(t *testing.T, engine stickyproxy.Engine) {
		p, err := stickyproxy.New(stickyproxy.Config{Targets: []stickyproxy.Target{{Name: "a", URL: u}}, Keys: [][32]byte{testKey}, Engine: engine})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(p)
		t.Cleanup(srv.Close)
		bigSum := sha256.Sum256(big)
		for _, tt := range []struct {
			method, path string
			body         []byte
			chunked      bool
		}{
			{"GET", "/big", nil, false},
			{"GET", "/chunked", nil, false},
			{"POST", "/small", big[:1000], false},
			{"POST", "/small", big, false},      // over 1 MiB: the ReverseProxy path
			{"PUT", "/small", big[:5000], true}, // unknown length
		} {
			var body io.Reader
			if tt.body != nil {
				body = bytes.NewReader(tt.body)
				if tt.chunked {
					body = io.MultiReader(body) // hides the length
				}
			}
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, body)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", tt.method, tt.path, err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			sent := sha256.Sum256(tt.body)
			if resp.Header.Get("X-Body-SHA") != hex.EncodeToString(sent[:]) {
				t.Errorf("%s %s (%d bytes): target got a different body", tt.method, tt.path, len(tt.body))
			}
			if tt.path != "/small" && sha256.Sum256(got) != bigSum {
				t.Errorf("%s %s: client got %d bytes, not the %d sent", tt.method, tt.path, len(got), len(big))
			}
		}
		resp, err := http.Head(srv.URL + "/big")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ContentLength != int64(len(big)) {
			t.Errorf("HEAD: status %d, length %d", resp.StatusCode, resp.ContentLength)
		}
	})
}

// Stickiness turned off at run time, as the last step of a move to shared
// state: a pinned client is balanced from then on and gets no new cookie;
// turned on again, new clients are pinned.
func TestStickinessSwitchedAtRunTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stickyproxy.EngineFast, nil)
	_, resp := e.get("/")
	cookie := affinityCookie(resp, "AWSALB")
	if cookie == "" {
		t.Fatal("no affinity cookie before the switch")
	}
	adminPost(t, e.admin.URL+"/stickiness/off", http.StatusOK)
	seen := map[string]bool{}
	for range 6 {
		got, resp := e.get("/", cookie)
		if got.Decision != "balanced" || affinityCookie(resp, "AWSALB") != "" {
			t.Fatalf("a pinned client with stickiness off: %+v, cookie %q", got, affinityCookie(resp, "AWSALB"))
		}
		seen[got.Target] = true
	}
	if len(seen) < 2 {
		t.Errorf("with stickiness off a pinned client still reached only %v", seen)
	}
	adminPost(t, e.admin.URL+"/stickiness/on", http.StatusOK)
	if _, resp := e.get("/"); affinityCookie(resp, "AWSALB") == "" {
		t.Error("stickiness on again: a new client got no cookie")
	}
	off := newEnv(t, stickyproxy.EngineFast, func(c *stickyproxy.Config) { c.Stickiness = stickyproxy.StickinessOff })
	adminPost(t, off.admin.URL+"/stickiness/on", http.StatusConflict)
}
