package stickyproxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var internalKey = [32]byte{1, 2, 3}

func testProxy(t testing.TB, now time.Time, edit func(*Config)) *Proxy {
	t.Helper()
	cfg := Config{Keys: [][32]byte{internalKey}, Duration: time.Hour, Now: func() time.Time { return now }}
	for i, n := range []string{"sp-1", "sp-2", "sp-3"} {
		u, _ := url.Parse("http://127.0.0.1:" + string(rune('1'+i)) + "0001")
		cfg.Targets = append(cfg.Targets, Target{Name: n, URL: u})
	}
	if edit != nil {
		edit(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRouteDecisions(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	seal := func(p *Proxy, id string, exp time.Time) string {
		v, err := p.codec.Seal(id, exp)
		if err != nil {
			t.Fatal(err)
		}
		return p.cfg.CookieName + "=" + v
	}
	type want struct{ Target, Decision string }
	tests := []struct {
		name   string
		edit   func(*Config)
		state  func(p *Proxy) // target states before routing
		method string
		path   string
		body   string
		cookie func(p *Proxy) string
		want   want
	}{
		{name: "stickiness off", edit: func(c *Config) { c.Stickiness = StickinessOff }, want: want{"sp-1", "balanced"}},
		{name: "no cookie", want: want{"sp-1", "new"}},
		{name: "valid cookie", cookie: func(p *Proxy) string { return seal(p, "sp-2", now.Add(time.Minute)) }, want: want{"sp-2", "pinned"}},
		{name: "pinned target down, repin",
			state:  func(p *Proxy) { p.byName["sp-2"].healthy.Store(false) },
			cookie: func(p *Proxy) string { return seal(p, "sp-2", now.Add(time.Minute)) }, want: want{"sp-1", "repinned-unhealthy"}},
		{name: "pinned target down, strict", edit: func(c *Config) { c.OnPinnedDown = PinnedDownStrict },
			state:  func(p *Proxy) { p.byName["sp-2"].healthy.Store(false) },
			cookie: func(p *Proxy) string { return seal(p, "sp-2", now.Add(time.Minute)) }, want: want{"sp-2", "strict-refused"}},
		{name: "pinned target draining, alb",
			state:  func(p *Proxy) { p.byName["sp-2"].draining.Store(true) },
			cookie: func(p *Proxy) string { return seal(p, "sp-2", now.Add(time.Minute)) }, want: want{"sp-1", "repinned-draining"}},
		{name: "pinned target draining, haproxy", edit: func(c *Config) { c.DrainMode = DrainHAProxy },
			state:  func(p *Proxy) { p.byName["sp-2"].draining.Store(true) },
			cookie: func(p *Proxy) string { return seal(p, "sp-2", now.Add(time.Minute)) }, want: want{"sp-2", "pinned"}},
		{name: "draining and down, strict: refused", edit: func(c *Config) { c.OnPinnedDown, c.DrainMode = PinnedDownStrict, DrainHAProxy },
			state:  func(p *Proxy) { p.byName["sp-2"].draining.Store(true); p.byName["sp-2"].healthy.Store(false) },
			cookie: func(p *Proxy) string { return seal(p, "sp-2", now.Add(time.Minute)) }, want: want{"sp-2", "strict-refused"}},
		{name: "forged cookie", cookie: func(p *Proxy) string { return "AWSALB=" + strings.Repeat("A", 60) }, want: want{"sp-1", "invalid-cookie"}},
		{name: "unknown target", cookie: func(p *Proxy) string { return seal(p, "gone", now.Add(time.Minute)) }, want: want{"sp-1", "invalid-cookie"}},
		{name: "expired cookie", cookie: func(p *Proxy) string { return seal(p, "sp-2", now) }, want: want{"sp-1", "expired"}},
		{name: "relaystate", edit: func(c *Config) { c.SAMLAware = true }, method: "POST", path: "/saml/acs",
			body: "SAMLResponse=x&RelayState=sp-3~AAAABBBBCCCCDDDDEEEEFFFFGGGGHHHH", want: want{"sp-3", "relaystate"}},
		{name: "relaystate names a down target", edit: func(c *Config) { c.SAMLAware = true }, method: "POST", path: "/saml/acs",
			state: func(p *Proxy) { p.byName["sp-3"].healthy.Store(false) },
			body:  "SAMLResponse=x&RelayState=sp-3~AAAABBBBCCCCDDDDEEEEFFFFGGGGHHHH", want: want{"sp-1", "new"}},
		{name: "relaystate off", method: "POST", path: "/saml/acs", body: "SAMLResponse=x&RelayState=sp-3~AAAABBBBCCCCDDDDEEEEFFFFGGGGHHHH", want: want{"sp-1", "new"}},
		{name: "expired cookie on ACS: relaystate", edit: func(c *Config) { c.SAMLAware = true }, method: "POST", path: "/saml/acs",
			cookie: func(p *Proxy) string { return seal(p, "sp-2", now) },
			body:   "SAMLResponse=x&RelayState=sp-3~AAAABBBBCCCCDDDDEEEEFFFFGGGGHHHH", want: want{"sp-3", "relaystate"}},
		{name: "all down, 503", edit: func(c *Config) { c.AllDown = AllDown503 },
			state: func(p *Proxy) {
				for _, t := range p.targets {
					t.healthy.Store(false)
				}
			}, want: want{"", "no-target"}},
		{name: "all down, fail-open",
			state: func(p *Proxy) {
				for _, t := range p.targets {
					t.healthy.Store(false)
				}
			}, want: want{"sp-2", "fail-open"}},
		{name: "app stickiness without the app cookie", edit: func(c *Config) { c.Stickiness, c.AppCookie = StickinessApp, "sid" },
			cookie: func(p *Proxy) string { return seal(p, "sp-2", now.Add(time.Minute)) }, want: want{"sp-1", "new"}},
		{name: "app stickiness with the app cookie", edit: func(c *Config) { c.Stickiness, c.AppCookie = StickinessApp, "sid" },
			cookie: func(p *Proxy) string { return "sid=1; " + seal(p, "sp-2", now.Add(time.Minute)) }, want: want{"sp-2", "pinned"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := testProxy(t, now, tt.edit)
			if tt.state != nil {
				tt.state(p)
			}
			method, path := tt.method, tt.path
			if method == "" {
				method, path = "GET", "/"
			}
			r := httptest.NewRequest(method, path, strings.NewReader(tt.body))
			if tt.body != "" {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if tt.cookie != nil {
				r.Header.Set("Cookie", tt.cookie(p))
			}
			x := &exchange{p: p, start: now}
			p.route(x, r)
			got := want{Decision: x.d.String()}
			if x.t != nil {
				got.Target = x.t.name
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if body, _ := io.ReadAll(r.Body); string(body) != tt.body {
				t.Errorf("body after routing %q, want %q", body, tt.body)
			}
		})
	}
}

func names(ts []*target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.name)
	}
	return out
}

func TestRoundRobin(t *testing.T) {
	t.Parallel()
	p := testProxy(t, time.Now(), func(c *Config) { c.Targets[1].Weight = 3 })
	if diff := cmp.Diff([]string{"sp-2", "sp-1", "sp-2", "sp-3", "sp-2"}, names(p.sel.(*roundRobin).schedule)); diff != "" {
		t.Errorf("smooth weighted schedule (-want +got):\n%s", diff)
	}
	f := filter{now: time.Now().UnixNano()}
	var got []*target
	for range 10 {
		got = append(got, p.pick(&f))
	}
	want := []string{"sp-2", "sp-1", "sp-2", "sp-3", "sp-2", "sp-2", "sp-1", "sp-2", "sp-3", "sp-2"}
	if diff := cmp.Diff(want, names(got)); diff != "" {
		t.Errorf("picks (-want +got):\n%s", diff)
	}
	// An unusable target's turns are dealt evenly among the others, not
	// all handed to its successor in the schedule.
	p.byName["sp-2"].healthy.Store(false)
	count := map[string]int{}
	for range 1000 {
		count[p.pick(&f).name]++
	}
	if count["sp-2"] != 0 || count["sp-1"] < 450 || count["sp-3"] < 450 {
		t.Errorf("picks with sp-2 down: %v, want sp-1 and sp-3 about even", count)
	}
	f.tried = []*target{p.byName["sp-1"], p.byName["sp-3"]}
	if tg := p.pick(&f); tg != nil {
		t.Errorf("every target tried or down, got %s", tg.name)
	}
}

// With equal weights and one target down, the survivors share its load
// evenly (a skip-to-next round robin gives one of them twice the other's).
func TestRoundRobinEvenAfterFailure(t *testing.T) {
	t.Parallel()
	for _, n := range []int{3, 4, 5} {
		p := testProxy(t, time.Now(), func(c *Config) {
			for len(c.Targets) < n {
				c.Targets = append(c.Targets, Target{Name: fmt.Sprintf("sp-%d", len(c.Targets)+1), URL: c.Targets[0].URL, Weight: 1})
			}
		})
		p.byName["sp-2"].healthy.Store(false)
		f := filter{now: time.Now().UnixNano()}
		count := map[string]int{}
		const picks = 1200
		for range picks {
			count[p.pick(&f).name]++
		}
		even := picks / (n - 1)
		for name, c := range count {
			if name == "sp-2" || c < even*9/10 || c > even*11/10 {
				t.Errorf("%d targets, sp-2 down: %v, want about %d each for the others", n, count, even)
				break
			}
		}
	}
}

func TestLeastOutstanding(t *testing.T) {
	t.Parallel()
	p := testProxy(t, time.Now(), func(c *Config) { c.Balance = LeastOutstanding; c.Targets[2].Weight = 2 })
	f := filter{now: time.Now().UnixNano()}
	set := func(a, b, c int64) {
		p.targets[0].inflight.Store(a)
		p.targets[1].inflight.Store(b)
		p.targets[2].inflight.Store(c)
	}
	tests := []struct {
		a, b, c int64
		want    string
	}{
		{5, 1, 9, "sp-2"},
		{5, 4, 7, "sp-3"}, // 7/2 < 4/1
		{0, 9, 9, "sp-1"},
	}
	for _, tt := range tests {
		set(tt.a, tt.b, tt.c)
		if got := p.pick(&f); got.name != tt.want {
			t.Errorf("in flight %d,%d,%d: picked %s, want %s", tt.a, tt.b, tt.c, got.name, tt.want)
		}
	}
	// Ties rotate.
	set(0, 0, 0)
	p.targets[2].weight = 1
	seen := map[string]bool{}
	for range 3 {
		seen[p.pick(&f).name] = true
	}
	if len(seen) != 3 {
		t.Errorf("ties always went to %v", seen)
	}
}

func TestCookieValue(t *testing.T) {
	t.Parallel()
	tests := []struct {
		lines []string
		name  string
		want  string
		found bool
	}{
		{[]string{"a=1; AWSALB=xyz; b=2"}, "AWSALB", "xyz", true},
		{[]string{"a=1", "AWSALB=\"q\""}, "AWSALB", "q", true},
		{[]string{"AWSALBCORS=1"}, "AWSALB", "", false},
		{[]string{"XAWSALB=1;AWSALB=2"}, "AWSALB", "2", true},
		{[]string{"AWSALB="}, "AWSALB", "", true},
		{nil, "AWSALB", "", false},
	}
	for _, tt := range tests {
		got, found := cookieValue(tt.lines, tt.name)
		if got != tt.want || found != tt.found {
			t.Errorf("cookieValue(%q) = %q, %v; want %q, %v", tt.lines, got, found, tt.want, tt.found)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	cfg := Config{
		Stickiness: "sometimes", Balance: "random", Duration: 8 * 24 * time.Hour, DrainMode: "x", OnPinnedDown: "y",
		AllDown: "z", AccessLog: "loud", Engine: "v8", CookieName: "bad name", CookieSameSite: http.SameSiteNoneMode,
	}
	cfg.Defaults()
	var probs []string
	fields := map[string]bool{}
	for _, err := range cfg.Validate() {
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Fatalf("%v is not a *FieldError", err)
		}
		fields[fe.Field] = true
		probs = append(probs, err.Error())
	}
	for _, field := range []string{"Targets", "Stickiness", "Balance", "Duration", "DrainMode", "OnPinnedDown",
		"AllDown", "AccessLog", "Engine", "CookieName", "CookieSameSite"} {
		if !fields[field] {
			t.Errorf("no problem reported for %s in %q", field, probs)
		}
	}
	for _, want := range []string{`Engine: "v8", want fast or reverseproxy`, `AccessLog: "loud", want all, anomalies or off`} {
		if !slices.Contains(probs, want) {
			t.Errorf("problems %q lack %q", probs, want)
		}
	}
}

// discardWriter is a ResponseWriter that keeps nothing, for benchmarks.
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkRoute is the decision alone for a pinned client: open the cookie,
// find the target, check it.
func BenchmarkRoute(b *testing.B) {
	now := time.Now()
	p := testProxy(b, now, nil)
	v, _ := p.codec.Seal("sp-2", now.Add(time.Hour))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", "session=abc; AWSALB="+v)
	x := &exchange{p: p, start: now}
	b.ReportAllocs()
	for b.Loop() {
		x.reset()
		x.start = now
		p.route(x, r)
		if x.d != DecisionPinned {
			b.Fatal(x.d)
		}
	}
}

// rawBackend is an upstream that allocates almost nothing per request, so
// that a benchmark's allocations are the proxy's: it reads a request head
// (GET, no body) and writes a fixed reply.
func rawBackend(b testing.TB) *url.URL {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	reply := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n\r\nhello from the backend")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(line) <= 2 { // end of the head
						if _, err := c.Write(reply); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}
}

// BenchmarkServeHTTP is the whole per-request path of each engine against a
// real upstream over loopback, for a new client (cookie sealed, from the
// per-second cache) and a pinned one (cookie opened and refreshed). The
// allocations are the proxy's and its upstream client's; the server side of
// the client's connection (net/http's) is not in it.
func BenchmarkServeHTTP(b *testing.B) {
	u := rawBackend(b)
	for _, engine := range []Engine{EngineFast, EngineReverseProxy} {
		for _, pinned := range []bool{false, true} {
			name := string(engine) + "/new"
			if pinned {
				name = string(engine) + "/pinned"
			}
			b.Run(name, func(b *testing.B) {
				p, err := New(Config{Targets: []Target{{Name: "sp-1", URL: u}}, Keys: [][32]byte{internalKey}, Engine: engine, AccessLog: AccessLogOff})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				r := httptest.NewRequest("GET", "/path?q=1", nil)
				r.RemoteAddr = "192.0.2.1:1234"
				r.Header.Set("User-Agent", "bench")
				r.Header.Set("Accept", "*/*")
				if pinned {
					v, _ := p.codec.Seal("sp-1", time.Now().Add(time.Hour))
					r.Header.Set("Cookie", "AWSALB="+v)
				}
				w := &discardWriter{h: http.Header{}}
				b.ReportAllocs()
				for b.Loop() {
					clear(w.h)
					p.ServeHTTP(w, r)
					if w.code != 200 {
						b.Fatal(w.code)
					}
				}
			})
			// The same from 64 goroutines at once: under load the reply
			// is usually there at the first read, which the fast engine
			// turns to account (readHead).
			b.Run(name+"/parallel", func(b *testing.B) {
				p, err := New(Config{Targets: []Target{{Name: "sp-1", URL: u}}, Keys: [][32]byte{internalKey}, Engine: engine,
					AccessLog: AccessLogOff, MaxInFlightPerClient: 1024})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				var cookie string
				if pinned {
					v, _ := p.codec.Seal("sp-1", time.Now().Add(time.Hour))
					cookie = "AWSALB=" + v
				}
				b.SetParallelism(64)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					r := httptest.NewRequest("GET", "/path?q=1", nil)
					r.RemoteAddr = "192.0.2.1:1234"
					r.Header.Set("User-Agent", "bench")
					r.Header.Set("Accept", "*/*")
					if cookie != "" {
						r.Header.Set("Cookie", cookie)
					}
					w := &discardWriter{h: http.Header{}}
					for pb.Next() {
						clear(w.h)
						p.ServeHTTP(w, r)
						if w.code != 200 {
							b.Errorf("status %d", w.code)
							return
						}
					}
				})
			})
		}
	}
}

// TestBalancedAcquireNoRace: two balanced requests routed at once to the
// same target, which has room for one, both go through: the second takes
// a slot elsewhere instead of 503 target-busy. (Before, the check in
// routing and the increment in forwarding were apart, so concurrent
// requests could all pass the check and all but one be refused while
// other targets had room.)
func TestBalancedAcquireNoRace(t *testing.T) {
	t.Parallel()
	p := testProxy(t, time.Now(), func(c *Config) {
		c.Targets = c.Targets[:2]
		c.Targets[0].Weight = 3 // round robin: sp-1, sp-1, sp-2, sp-1
		c.MaxInFlightPerTarget = 1
	})
	r := httptest.NewRequest("GET", "/", nil)
	var xs [2]*exchange
	for i := range xs {
		x := &exchange{p: p, start: time.Now()}
		x.client, x.clientAddr = p.clientOf(r)
		p.route(x, r)
		if x.t == nil || x.t.name != "sp-1" {
			t.Fatalf("request %d routed to %v, want sp-1 (the race needs both there)", i, x.t)
		}
		xs[i] = x
	}
	for i, x := range xs {
		w := &discardWriter{h: http.Header{}}
		if !p.acquire(w, x) {
			t.Fatalf("request %d refused %d %s while sp-2 had room", i, w.code, x.d)
		}
	}
	if xs[0].t == xs[1].t {
		t.Errorf("both requests hold a slot of %s, whose limit is 1", xs[0].t.name)
	}
	if xs[1].d != DecisionNew {
		t.Errorf("the moved request's decision is %s, want new", xs[1].d)
	}
}

// TestPassiveFailuresPastThresholdTakeNoLock: once a target is down, the
// 5xx replies and failures that follow do not take the health lock (they
// did on every one, which a flood of 5xx turned into contention).
func TestPassiveFailuresPastThresholdTakeNoLock(t *testing.T) {
	t.Parallel()
	p := testProxy(t, time.Now(), func(c *Config) { c.Passive5xx, c.PassiveFall = 1, 1 })
	sp1 := p.targets[0]
	p.replied(sp1, 500)
	if sp1.up(p.now().UnixNano()) {
		t.Fatal("sp-1 not marked down by a 5xx")
	}
	p.checkMu.Lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			p.replied(sp1, 503)
			p.passiveFail(sp1, errors.New("refused"))
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Error("failures of a target already down wait for the health lock")
	}
	p.checkMu.Unlock()
	<-done
}
