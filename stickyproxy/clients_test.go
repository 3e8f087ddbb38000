package stickyproxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/samlha/samlha/stickyproxy"
)

// The attacks of "hostile clients cannot take the cluster down": each test
// fails when the bound it names is removed. Clients are told apart by
// their loopback source address (127.0.0.1 attacks, 127.0.0.2 is
// everyone else), or by X-Forwarded-For behind a trusted peer.

// dialFrom opens a connection to addr from the loopback address ip.
func dialFrom(t testing.TB, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// clientFrom is an HTTP client whose connections come from ip.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}}
}

// replyOn reads the reply to what was written on c.
func replyOn(t testing.TB, c net.Conn) *http.Response {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the reply: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// wantServed checks that a GET from ip is answered 200 with decision.
func wantServed(t testing.TB, what, ip, u, decision string) {
	t.Helper()
	resp, err := clientFrom(ip).Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantReply(t, what, resp, 200, decision)
}

func wantReply(t testing.TB, what string, resp *http.Response, status int, decision string) {
	t.Helper()
	if resp.StatusCode != status || resp.Header.Get(stickyproxy.HeaderDecision) != decision {
		t.Errorf("%s: %d %s, want %d %s", what, resp.StatusCode, resp.Header.Get(stickyproxy.HeaderDecision), status, decision)
	}
}

// sink is a target that reads the whole body and answers 200; /hold waits
// until the test ends.
func sink(t *testing.T, name string) (string, *atomic.Int32) {
	t.Helper()
	var held atomic.Int32
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Samlha-Instance", name)
		if r.URL.Path == "/hold" {
			held.Add(1)
			defer held.Add(-1)
			select {
			case <-done:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv.URL, &held
}

// ordered sets the targets in order (the first balanced request goes to
// the first).
func ordered(urls ...string) func(*stickyproxy.Config) {
	return func(c *stickyproxy.Config) {
		c.Targets = nil
		for i, u := range urls {
			c.Targets = append(c.Targets, stickyproxy.Target{Name: fmt.Sprintf("sp-%d", i+1), URL: mustURL(u)})
		}
	}
}

func both(edits ...func(*stickyproxy.Config)) func(*stickyproxy.Config) {
	return func(c *stickyproxy.Config) {
		for _, e := range edits {
			e(c)
		}
	}
}

func inFlight(h *hostile) func() float64 {
	return func() float64 { return gaugeValue(h.t.(*testing.T), h.proxy, "stickyproxy_in_flight_requests") }
}

// TestStalledBodiesHoldNoTargetSlots: tiny POSTs that announce a body and
// stall (150 bytes each) fill no target's in-flight slots: a request holds
// a slot only once its body has arrived (Config.MaxBufferedBody). Before,
// as many stalled POSTs as there were slots answered everyone else 503
// no-target until the body timeout.
func TestStalledBodiesHoldNoTargetSlots(t *testing.T) {
	t.Parallel()
	u1, _ := sink(t, "sp-1")
	u2, _ := sink(t, "sp-2")
	h := newHostile(t, stickyproxy.EngineFast, nil, both(ordered(u1, u2), func(c *stickyproxy.Config) { c.MaxInFlightPerTarget = 4 }))
	const stalled = 8 // every slot of both targets
	for range stalled {
		c := dialFrom(t, "127.0.0.1", h.addr)
		fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: p\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n%s", strings.Repeat("x", 60))
	}
	waitFor(t, "every stalled POST inside the proxy", func() bool { return inFlight(h)() == stalled })
	wantServed(t, "another client's request beside the stalled POSTs", "127.0.0.2", h.url+"/", "new")
}

// relayStateForm is the start of an ACS POST body naming instance in its
// RelayState, padded to n bytes of a SAMLResponse.
func relayStateForm(instance string, n int) string {
	return "RelayState=" + instance + "~" + strings.Repeat("A", 32) + "&SAMLResponse=" + strings.Repeat("P", n)
}

// TestRelayStateFloodDoesNotPinTargetSlots: ACS POSTs naming sp-1 in their
// RelayState, 70 KB bodies sent but for the last bytes, do not hold sp-1's
// slots (its pinned users are served) nor reach sp-1 at all: the body is
// buffered whole first. Before, the RelayState peek routed them and the
// rest of the body streamed to sp-1, which held its slots (target-busy for
// its users) and its memory.
func TestRelayStateFloodDoesNotPinTargetSlots(t *testing.T) {
	t.Parallel()
	u1, _ := sink(t, "sp-1")
	u2, _ := sink(t, "sp-2")
	h := newHostile(t, stickyproxy.EngineFast, nil, both(ordered(u1, u2), func(c *stickyproxy.Config) {
		c.MaxInFlightPerTarget = 4
		c.SAMLAware = true
	}))
	victim := clientFrom("127.0.0.2")
	resp, err := victim.Get(h.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(stickyproxy.HeaderTarget); got != "sp-1" {
		t.Fatalf("the victim was pinned to %s, want sp-1", got)
	}
	cookie := affinityCookie(resp, "AWSALB")
	const flood = 4
	for range flood {
		c := dialFrom(t, "127.0.0.1", h.addr)
		fmt.Fprintf(c, "POST /saml/acs HTTP/1.1\r\nHost: p\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 70000\r\n\r\n%s",
			relayStateForm("sp-1", 66000))
	}
	waitFor(t, "every flooding POST inside the proxy", func() bool { return inFlight(h)() == flood })
	req, _ := http.NewRequest(http.MethodGet, h.url+"/", nil)
	req.Header.Set("Cookie", cookie)
	resp, err = victim.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantReply(t, "sp-1's pinned user during the flood", resp, 200, "pinned")
}

// stallPOST sends the head of a POST announcing length bytes and n bytes
// of its body from ip, and leaves it there.
func stallPOST(t *testing.T, ip, addr, path string, length, n int) net.Conn {
	c := dialFrom(t, ip, addr)
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: p\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s",
		path, length, strings.Repeat("x", n))
	return c
}

// TestBufferBudgets: one client's bodies being buffered (and RelayState
// peeks) pin at most Config.MaxBufferPerClient bytes, a request past it
// being refused 429 client-limit at once; all clients' together at most
// Config.MaxBufferTotal, past which 503 proxy-busy. Other clients are
// served meanwhile.
func TestBufferBudgets(t *testing.T) {
	t.Parallel()
	u1, _ := sink(t, "sp-1")
	for _, tt := range []struct {
		limit, decision  string
		perClient, total int64
		from             [3]string // the two stalled POSTs, then the refused one
		status           int
		served           string // a client still served after
	}{
		{"buffer-per-client", "client-limit", 150_000, -1, [3]string{"127.0.0.1", "127.0.0.1", "127.0.0.1"}, 429, "127.0.0.2"},
		{"buffer-total", "proxy-busy", 100_000, 150_000, [3]string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}, 503, ""},
	} {
		t.Run(tt.limit, func(t *testing.T) {
			t.Parallel()
			h := newHostile(t, stickyproxy.EngineFast, nil, both(ordered(u1), func(c *stickyproxy.Config) {
				c.MaxBufferedBody, c.MaxBufferPerClient, c.MaxBufferTotal = 100_000, tt.perClient, tt.total
			}))
			stallPOST(t, tt.from[0], h.addr, "/a", 70_000, 100)
			stallPOST(t, tt.from[1], h.addr, "/b", 70_000, 100)
			waitFor(t, "two stalled POSTs inside the proxy", func() bool { return inFlight(h)() == 2 })
			third := stallPOST(t, tt.from[2], h.addr, "/c", 70_000, 100)
			wantReply(t, "a third 70 KB body", replyOn(t, third), tt.status, tt.decision)
			if n := metricValue(t, h.proxy.Registry(), "stickyproxy_client_limited_total", "limit", tt.limit); n != 1 {
				t.Errorf("limited counted %v, want 1", n)
			}
			if got := gaugeValue(t, h.proxy, "stickyproxy_buffered_bytes"); got > 150_000 {
				t.Errorf("%v bytes buffered, over the 150000 allowed", got)
			}
			if tt.served == "" {
				return
			}
			resp, err := clientFrom(tt.served).Post(h.url+"/", "text/plain", bytes.NewReader(make([]byte, 70_000)))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			wantReply(t, "another client's 70 KB POST", resp, 200, "new")
		})
	}
}

// TestStreamedBodiesPerClient: a body too large to buffer streams to the
// target and holds its slot meanwhile; one client may have at most
// Config.MaxStreamingPerClient such requests at once, so stalled uploads
// from one client cannot fill a target.
func TestStreamedBodiesPerClient(t *testing.T) {
	t.Parallel()
	u1, _ := sink(t, "sp-1")
	h := newHostile(t, stickyproxy.EngineFast, nil, both(ordered(u1), func(c *stickyproxy.Config) {
		c.MaxBufferedBody = 1024
		c.MaxStreamingPerClient = 2
		c.MaxInFlightPerTarget = 4
	}))
	stallPOST(t, "127.0.0.1", h.addr, "/a", 100_000, 10)
	stallPOST(t, "127.0.0.1", h.addr, "/b", 100_000, 10)
	waitFor(t, "two streamed uploads holding slots", func() bool { return h.proxy.Targets()[0].InFlight == 2 })
	for _, p := range []string{"/c", "/d"} {
		wantReply(t, "a third streamed upload from the same client", replyOn(t, stallPOST(t, "127.0.0.1", h.addr, p, 100_000, 10)), 429, "client-limit")
	}
	wantServed(t, "another client beside the stalled uploads", "127.0.0.2", h.url+"/", "new")
}

// TestConnsPerClient: one client (TCP peer; an IPv6 peer by its /64) may
// hold at most Config.MaxConnsPerClient connections; one more is answered
// 429 and closed, and others still connect. A trusted peer (a front
// proxy) is not limited.
func TestConnsPerClient(t *testing.T) {
	t.Parallel()
	u1, _ := sink(t, "sp-1")
	for _, trusted := range []bool{false, true} {
		t.Run(fmt.Sprintf("trusted=%v", trusted), func(t *testing.T) {
			h := newHostile(t, stickyproxy.EngineFast, nil, both(ordered(u1), func(c *stickyproxy.Config) {
				c.MaxConnsPerClient = 3
				if trusted {
					c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
				}
			}))
			for range 3 {
				dialFrom(t, "127.0.0.1", h.addr)
			}
			waitFor(t, "three connections counted", func() bool {
				return gaugeValue(t, h.proxy, "stickyproxy_client_conns") == 3
			})
			c := dialFrom(t, "127.0.0.1", h.addr)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: p\r\n\r\n")
			want := 429
			if trusted {
				want = 200
			}
			if resp := replyOn(t, c); resp.StatusCode != want {
				t.Errorf("a fourth connection: %d, want %d", resp.StatusCode, want)
			}
			wantServed(t, "another client", "127.0.0.2", h.url+"/", "new")
		})
	}
}

// TestInFlightPerClient: one client may have at most
// Config.MaxInFlightPerClient requests forwarded at once; the client is
// the TCP peer, or behind a trusted peer the address X-Forwarded-For
// names, IPv6 by its /64.
func TestInFlightPerClient(t *testing.T) {
	t.Parallel()
	u1, held := sink(t, "sp-1")
	h := newHostile(t, stickyproxy.EngineFast, nil, both(ordered(u1), func(c *stickyproxy.Config) {
		c.MaxInFlightPerClient = 2
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}
	}))
	get := func(from, xff, path string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, h.url+path, nil)
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := clientFrom(from).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	hold := func(from, xff string) {
		wg.Add(1)
		go func() { defer wg.Done(); get(from, xff, "/hold") }()
	}
	hold("127.0.0.1", "")
	hold("127.0.0.1", "")
	hold("127.0.0.3", "2001:db8:1:2::1")
	hold("127.0.0.3", "2001:db8:1:2::2")
	waitFor(t, "four requests held", func() bool { return held.Load() == 4 })
	for _, tt := range []struct {
		from, xff, what string
		status          int
		decision        string
	}{
		{"127.0.0.1", "", "a third from the same peer", 429, "client-limit"},
		{"127.0.0.2", "", "another peer", 200, "new"},
		{"127.0.0.3", "2001:db8:1:2::99", "a third from the same /64 behind a trusted peer", 429, "client-limit"},
		{"127.0.0.3", "2001:db8:1:3::1", "another /64 behind the trusted peer", 200, "new"},
		{"127.0.0.1", "203.0.113.1", "the limited peer naming another client, untrusted", 429, "client-limit"},
	} {
		resp, err := get(tt.from, tt.xff, "/")
		if err != nil {
			t.Fatal(err)
		}
		wantReply(t, tt.what, resp, tt.status, tt.decision)
	}
}

// TestBusyIsNotDown: when every healthy target is at its in-flight limit,
// a balanced request is answered 503 target-busy; fail-open is for when
// nothing is healthy, and must not send it to a target that is down.
func TestBusyIsNotDown(t *testing.T) {
	t.Parallel()
	u1, held := sink(t, "sp-1")
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	h := newHostile(t, stickyproxy.EngineFast, nil, both(ordered(u1, dead.URL), func(c *stickyproxy.Config) {
		c.MaxInFlightPerTarget = 1
		c.Stickiness = stickyproxy.StickinessOff
	}))
	resp, err := http.Get(h.url + "/") // sp-1
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get(h.url + "/") // sp-2: refused, marked down, retried on sp-1
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if h.healthy("sp-2") {
		t.Fatal("sp-2 still healthy")
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Add(1)
	go func() {
		defer wg.Done()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, h.url+"/hold", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "sp-1's one slot held", func() bool { return held.Load() == 1 })
	resp, err = http.Get(h.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wantReply(t, "a balanced request with sp-1 busy and sp-2 down", resp, 503, "target-busy")
	if got := resp.Header.Get("Retry-After"); got == "" {
		t.Error("no Retry-After")
	}
}

// lines counts log records by message.
type lines struct {
	mu sync.Mutex
	n  map[string]int
}

func (l *lines) Enabled(context.Context, slog.Level) bool { return true }
func (l *lines) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n[r.Message]++
	return nil
}
func (l *lines) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *lines) WithGroup(string) slog.Handler      { return l }
func (l *lines) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[msg]
}

// TestAdminRefusalsSampled: a flood of refused admin calls is counted in
// full but logged at most once a second per reason (with the number left
// out).
func TestAdminRefusalsSampled(t *testing.T) {
	t.Parallel()
	log := &lines{n: map[string]int{}}
	e := newEnv(t, stickyproxy.EngineFast, func(c *stickyproxy.Config) { c.Logger = slog.New(log) })
	const flood = 200
	start := time.Now()
	for range flood {
		req, _ := http.NewRequest(http.MethodGet, e.admin.URL+"/targets", nil)
		req.Header.Set("Authorization", "Bearer wrong-token-wrong-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	secs := int(time.Since(start)/time.Second) + 1
	if n := metricValue(t, e.proxy.Registry(), "stickyproxy_admin_refused_total", "reason", "wrong-token"); n != flood {
		t.Errorf("refusals counted %v, want %d", n, flood)
	}
	if n := log.count("admin request refused"); n < 1 || n > secs+1 {
		t.Errorf("%d log lines for %d refusals in under %d s, want one a second", n, flood, secs)
	}
}
