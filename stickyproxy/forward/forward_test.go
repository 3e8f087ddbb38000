package forward_test

import (
	"crypto/tls"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/samlha/samlha/stickyproxy/forward"
)

func TestRemoveHopByHop(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		in   http.Header
		want http.Header
	}{
		{"RFC 9110 list and Connection-named", http.Header{
			"Connection": {"close, X-Secret", "Keep-Alive"}, "Keep-Alive": {"timeout=5"}, "X-Secret": {"s"},
			"Te": {"trailers"}, "Trailer": {"X"}, "Transfer-Encoding": {"chunked"}, "Proxy-Authorization": {"p"},
			"Proxy-Connection": {"keep-alive"}, "Proxy-Authenticate": {"x"}, "Accept": {"*/*"},
		}, http.Header{"Accept": {"*/*"}}},
		{"WebSocket upgrade kept", http.Header{
			"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Key": {"k"},
		}, http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Key": {"k"}}},
		{"Upgrade without Connection: upgrade dropped", http.Header{"Upgrade": {"websocket"}}, http.Header{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.in.Clone()
			forward.RemoveHopByHop(h)
			if diff := cmp.Diff(tt.want, h); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			forward.RemoveHopByHop(h) // idempotent
			if diff := cmp.Diff(tt.want, h); diff != "" {
				t.Errorf("second call (-want +got):\n%s", diff)
			}
			for k := range tt.in {
				_, kept := tt.want[k]
				if got := forward.Forwardable(tt.in, k); got != kept && k != "Connection" && k != "Upgrade" {
					t.Errorf("Forwardable(%s) = %v, want %v", k, got, kept)
				}
			}
		})
	}
}

func TestClientAddr(t *testing.T) {
	t.Parallel()
	trusted, err := forward.ParseTrusted([]string{"10.0.0.0/8", "192.0.2.7", " ", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"untrusted peer: its own address, XFF ignored", "203.0.113.5:1234", []string{"198.51.100.1"}, "203.0.113.5"},
		{"trusted peer: rightmost untrusted", "10.1.2.3:80", []string{"198.51.100.1, 203.0.113.9, 10.9.9.9"}, "203.0.113.9"},
		{"several lines read from the last", "10.1.2.3:80", []string{"198.51.100.1", "203.0.113.9", "192.0.2.7"}, "203.0.113.9"},
		{"garbage fails closed to the peer", "10.1.2.3:80", []string{"198.51.100.1, nonsense, 10.0.0.1"}, "10.1.2.3"},
		{"ports and brackets", "10.1.2.3:80", []string{"[2001:db9::1]:443, 10.0.0.2:8080"}, "2001:db9::1"},
		{"every entry trusted: leftmost", "10.1.2.3:80", []string{"10.0.0.1, 10.0.0.2"}, "10.0.0.1"},
		{"trusted peer, no XFF: the peer", "10.1.2.3:80", nil, "10.1.2.3"},
		{"IPv4-mapped peer", "[::ffff:10.1.2.3]:80", []string{"203.0.113.9"}, "203.0.113.9"},
		{"IPv6 peer trusted", "[2001:db8::5]:80", []string{"203.0.113.9"}, "203.0.113.9"},
		{"empty entries skipped", "10.1.2.3:80", []string{"203.0.113.9,, "}, "203.0.113.9"},
		{"no port", "203.0.113.5", nil, "203.0.113.5"},
		{"not an address", "pipe", nil, "invalid IP"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tt.remote, Header: http.Header{}}
			if tt.xff != nil {
				r.Header["X-Forwarded-For"] = tt.xff
			}
			if got := trusted.ClientAddr(r).String(); got != tt.want {
				t.Errorf("ClientAddr = %s, want %s", got, tt.want)
			}
		})
	}
	if _, err := forward.ParseTrusted([]string{"10.0.0.0/33", "fe80::1%eth0", "ok?"}); err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("ParseTrusted of three bad entries: %v, want three errors", err)
	}
}

func TestClientKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"203.0.113.5": "203.0.113.5", "2001:db8:1:2:3:4:5:6": "2001:db8:1:2::", "::ffff:192.0.2.1": "192.0.2.1",
	} {
		if got := forward.ClientKey(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("ClientKey(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestPolicy(t *testing.T) {
	t.Parallel()
	trusted := forward.NewTrusted([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	spoof := http.Header{
		"X-Forwarded-For": {"198.51.100.1"}, "X-Forwarded-Host": {"evil.example"}, "X-Forwarded-Proto": {"https"},
		"X-Real-Ip": {"1.2.3.4"}, "Forwarded": {"for=1.2.3.4"},
	}
	for _, tt := range []struct {
		name   string
		policy forward.Policy
		remote string
		tls    bool
		want   http.Header
	}{
		{"untrusted: replaced", forward.Policy{Trusted: trusted}, "203.0.113.5:1", false, http.Header{
			"X-Forwarded-For": {"203.0.113.5"}, "X-Forwarded-Host": {"app.example"}, "X-Forwarded-Proto": {"http"},
			"X-Real-Ip": {"203.0.113.5"},
		}},
		{"untrusted over TLS", forward.Policy{}, "203.0.113.5:1", true, http.Header{
			"X-Forwarded-For": {"203.0.113.5"}, "X-Forwarded-Host": {"app.example"}, "X-Forwarded-Proto": {"https"},
			"X-Real-Ip": {"203.0.113.5"},
		}},
		{"trusted: appended and kept", forward.Policy{Trusted: trusted}, "10.0.0.9:1", false, http.Header{
			"X-Forwarded-For": {"198.51.100.1, 10.0.0.9"}, "X-Forwarded-Host": {"evil.example"}, "X-Forwarded-Proto": {"https"},
			"X-Real-Ip": {"198.51.100.1"}, "Forwarded": {"for=1.2.3.4"},
		}},
		{"public URL forces host and proto", forward.Policy{Trusted: trusted, PublicURL: &url.URL{Scheme: "https", Host: "sso.example"}}, "10.0.0.9:1", false, http.Header{
			"X-Forwarded-For": {"198.51.100.1, 10.0.0.9"}, "X-Forwarded-Host": {"sso.example"}, "X-Forwarded-Proto": {"https"},
			"X-Real-Ip": {"198.51.100.1"}, "Forwarded": {"for=1.2.3.4"},
		}},
		{"own Forwarded element", forward.Policy{Forwarded: true}, "[2001:db8::1]:1", false, http.Header{
			"X-Forwarded-For": {"2001:db8::1"}, "X-Forwarded-Host": {"app.example"}, "X-Forwarded-Proto": {"http"},
			"X-Real-Ip": {"2001:db8::1"}, "Forwarded": {`for="[2001:db8::1]";host="app.example";proto=http`},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := &http.Request{RemoteAddr: tt.remote, Host: "app.example", Header: spoof.Clone()}
			if tt.tls {
				in.TLS = &tls.ConnectionState{}
			}
			out := spoof.Clone()
			out["Accept"] = []string{"*/*"}
			tt.policy.Set(out, in)
			want := tt.want.Clone()
			want["Accept"] = []string{"*/*"}
			if diff := cmp.Diff(want, out); diff != "" {
				t.Errorf("Set (-want +got):\n%s", diff)
			}
			// Append says the same on the wire.
			wire := string(tt.policy.Append(nil, in))
			parsed := http.Header{}
			for _, line := range strings.Split(strings.TrimSuffix(wire, "\r\n"), "\r\n") {
				k, v, _ := strings.Cut(line, ": ")
				parsed.Add(k, v)
			}
			if diff := cmp.Diff(tt.want, parsed); diff != "" {
				t.Errorf("Append (-want +got):\n%s", diff)
			}
			for k := range spoof {
				if !tt.policy.Owns(strings.ToLower(k)) {
					t.Errorf("Owns(%s) = false", k)
				}
			}
		})
	}
}

func TestProtected(t *testing.T) {
	t.Parallel()
	p, err := forward.NewProtected([]string{"X-Email", "X-Groups"}, []string{"X-Samlha-"})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"X-Email": true, "x-email": true, "X_Email": true, "x_EMAIL": true, "X-Emails": false, "X-Emai": false,
		"X-Samlha-User": true, "x_samlha_user": true, "X-Samlha-": true, "X-Samlha": false, "X-Groups": true,
		"Accept": false, "": false,
	} {
		if got := p.Match(name); got != want {
			t.Errorf("Match(%q) = %v, want %v", name, got, want)
		}
	}
	h := http.Header{"X_samlha_user": {"admin"}, "X-Email": {"a"}, "X-groups": {"g"}, "Accept": {"*/*"}}
	if n := p.Strip(h); n != 3 || len(h) != 1 {
		t.Errorf("Strip removed %d, left %v", n, h)
	}
	for _, c := range []string{"close, X_Samlha_User", "x-groups"} {
		if _, ok := p.NamedInConnection(http.Header{"Connection": {"keep-alive", c}}); !ok {
			t.Errorf("Connection %q not seen as naming a protected header", c)
		}
	}
	if tok, ok := p.NamedInConnection(http.Header{"Connection": {"keep-alive, Upgrade"}}); ok {
		t.Errorf("NamedInConnection = %q for a harmless Connection", tok)
	}
	if _, err := forward.NewProtected([]string{"bad name"}, []string{"ok-", "x y"}); err == nil {
		t.Error("invalid names accepted")
	}
	var none *forward.Protected
	if none.Match("X-Email") || !none.Empty() {
		t.Error("a nil set matches")
	}
}

// The fast engine's path: none of these may allocate.
func TestNoAllocations(t *testing.T) {
	trusted := forward.NewTrusted([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	pol := forward.Policy{Trusted: trusted}
	prot, _ := forward.NewProtected([]string{"X-Email"}, []string{"X-Samlha-"})
	r := &http.Request{RemoteAddr: "10.0.0.9:1234", Host: "app.example", Header: http.Header{
		"X-Forwarded-For": {"198.51.100.1, 10.0.0.1"}, "Connection": {"keep-alive"}, "Accept": {"*/*"},
	}}
	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		buf = pol.Append(buf[:0], r)
		for k := range r.Header {
			_ = forward.Forwardable(r.Header, k) && !pol.Owns(k) && !prot.Match(k)
		}
		_ = trusted.ClientAddr(r)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per request, want 0", allocs)
	}
}

func BenchmarkRequestPath(b *testing.B) {
	pol := forward.Policy{Trusted: forward.NewTrusted([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})}
	prot, _ := forward.NewProtected([]string{"X-Email"}, []string{"X-Samlha-"})
	r := &http.Request{RemoteAddr: "203.0.113.5:1234", Host: "app.example", Header: http.Header{
		"Accept": {"*/*"}, "User-Agent": {"wrk"}, "Cookie": {"AWSALB=x"}, "X-Forwarded-For": {"1.2.3.4"},
	}}
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = pol.Append(buf[:0], r)
		for k := range r.Header {
			_ = forward.Forwardable(r.Header, k) && !pol.Owns(k) && !prot.Match(k)
		}
	}
}

// A client's copy of a header the policy writes never passes under any
// spelling an application reads as it (X_Real_IP is HTTP_X_REAL_IP to PHP).
func TestPolicyOwnsEverySpelling(t *testing.T) {
	p := &forward.Policy{}
	for _, n := range []string{"X-Forwarded-Host", "x_forwarded_host", "X_Real_IP", "x-real_ip", "FORWARDED", "X-Forwarded_For", "x_forwarded_proto"} {
		if !p.Owns(n) {
			t.Errorf("Owns(%q) = false", n)
		}
	}
	for _, n := range []string{"X-Forwarded", "X-Real", "Forward", "X-Forwarded-Hosts"} {
		if p.Owns(n) {
			t.Errorf("Owns(%q) = true", n)
		}
	}
	out := http.Header{"X_forwarded_host": {"evil"}, "X_real_ip": {"6.6.6.6"}, "Accept": {"*/*"}}
	p.Set(out, &http.Request{RemoteAddr: "192.0.2.1:1234", Host: "app.test", Header: http.Header{}})
	if len(out["X_forwarded_host"])+len(out["X_real_ip"]) != 0 || out.Get("X-Real-Ip") != "192.0.2.1" || out.Get("Accept") != "*/*" {
		t.Errorf("Set left %v", out)
	}
}
