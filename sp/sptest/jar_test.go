package sptest

import (
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestJarRules checks the jar's storage and sending rules: each case sets
// cookies from some URLs (each Set-Cookie line accepted or rejected), lets
// time pass, then asks what one request would carry.
func TestJarRules(t *testing.T) {
	t.Parallel()
	type set struct {
		from, line string
		rejected   bool
	}
	type request struct {
		url       string
		method    string // default GET
		crossSite bool
	}
	cases := []struct {
		name        string
		sets        []set
		after       time.Duration
		sameSiteOff bool
		req         request
		want        string // the Cookie header
	}{
		{
			name: "host-only cookie goes to its host, whatever the port",
			sets: []set{{from: "http://127.0.0.1:9000/login", line: "session=s1; Path=/"}},
			req:  request{url: "http://127.0.0.1:8081/app"},
			want: "session=s1",
		},
		{
			name: "host-only cookie does not go to a subdomain",
			sets: []set{{from: "http://example.org/", line: "a=1"}},
			req:  request{url: "http://www.example.org/"},
			want: "",
		},
		{
			name: "domain cookie goes to subdomains",
			sets: []set{{from: "http://idp.samlha-idp.test/", line: "a=1; Domain=.samlha-idp.test"}},
			req:  request{url: "http://x.y.samlha-idp.test/"},
			want: "a=1",
		},
		{
			name: "domain cookie does not go to a sibling site",
			sets: []set{{from: "http://idp.samlha-idp.test/", line: "a=1; Domain=samlha-idp.test"}},
			req:  request{url: "http://sp.samlha-sp.test/"},
			want: "",
		},
		{
			name: "Domain that is a public suffix is rejected",
			sets: []set{{from: "http://idp.samlha-idp.test/", line: "a=1; Domain=test", rejected: true}},
			req:  request{url: "http://idp.samlha-idp.test/"},
			want: "",
		},
		{
			name: "Domain equal to a host that is a public suffix becomes host-only",
			sets: []set{{from: "http://test/", line: "a=1; Domain=test"}},
			req:  request{url: "http://test/"},
			want: "a=1",
		},
		{
			name: "Domain the host does not match is rejected",
			sets: []set{{from: "http://sp.samlha-sp.test/", line: "a=1; Domain=samlha-idp.test", rejected: true}},
			req:  request{url: "http://idp.samlha-idp.test/"},
			want: "",
		},
		{
			name: "Domain on an IP host must be the IP itself",
			sets: []set{
				{from: "http://127.0.0.1/", line: "a=1; Domain=0.0.1", rejected: true},
				{from: "http://127.0.0.1/", line: "b=2; Domain=127.0.0.1"},
			},
			req:  request{url: "http://127.0.0.1/"},
			want: "b=2",
		},
		{
			name: "path: sent under the path, not beside it",
			sets: []set{{from: "http://sp.test/", line: "t=1; Path=/saml/acs"}},
			req:  request{url: "http://sp.test/saml/acsx"},
			want: "",
		},
		{
			name: "path: sent to the path itself and below",
			sets: []set{
				{from: "http://sp.test/", line: "t=1; Path=/saml/acs"},
				{from: "http://sp.test/", line: "u=2; Path=/saml/"},
			},
			req:  request{url: "http://sp.test/saml/acs/more"},
			want: "t=1; u=2", // longer path first
		},
		{
			name: "default path is the directory of the request path",
			sets: []set{{from: "http://sp.test/saml/acs", line: "t=1"}},
			req:  request{url: "http://sp.test/app"},
			want: "",
		},
		{
			name: "older cookie first when paths are as long",
			sets: []set{
				{from: "http://sp.test/", line: "b=2; Path=/"},
				{from: "http://sp.test/", line: "a=1; Path=/"},
				{from: "http://sp.test/", line: "b=3; Path=/"}, // replaces b, keeps its place
			},
			req:  request{url: "http://sp.test/"},
			want: "b=3; a=1",
		},
		{
			name: "Secure cookie set over http is rejected",
			sets: []set{{from: "http://127.0.0.1/", line: "s=1; Secure", rejected: true}},
			req:  request{url: "https://127.0.0.1/"},
			want: "",
		},
		{
			name: "Secure cookie is not sent over http",
			sets: []set{{from: "https://sp.test/", line: "s=1; Secure"}},
			req:  request{url: "http://sp.test/"},
			want: "",
		},
		{
			name: "Secure cookie is sent over https",
			sets: []set{{from: "https://sp.test/", line: "s=1; Secure"}},
			req:  request{url: "https://sp.test/"},
			want: "s=1",
		},
		{
			name: "http cannot overwrite a Secure cookie",
			sets: []set{
				{from: "https://sp.test/", line: "s=1; Secure; Path=/"},
				{from: "http://sp.test/", line: "s=2; Path=/", rejected: true},
			},
			req:  request{url: "https://sp.test/"},
			want: "s=1",
		},
		{
			name: "SameSite=None without Secure is rejected",
			sets: []set{{from: "https://sp.test/", line: "n=1; SameSite=None", rejected: true}},
			req:  request{url: "https://sp.test/"},
			want: "",
		},
		{
			name: "unset SameSite is Lax: kept from a cross-site POST",
			sets: []set{{from: "http://sp.test/", line: "saml_x=1; Path=/saml/acs"}},
			req:  request{url: "http://sp.test/saml/acs", method: "POST", crossSite: true},
			want: "",
		},
		{
			name: "unknown SameSite is Lax: kept from a cross-site POST",
			sets: []set{{from: "http://sp.test/", line: "l=1; SameSite=Sideways"}},
			req:  request{url: "http://sp.test/", method: "POST", crossSite: true},
			want: "",
		},
		{
			name: "unset SameSite is Lax: sent on a cross-site GET",
			sets: []set{{from: "http://sp.test/", line: "l=1"}},
			req:  request{url: "http://sp.test/", crossSite: true},
			want: "l=1",
		},
		{
			name: "Lax is sent on a same-site POST",
			sets: []set{{from: "http://sp.test/", line: "l=1; SameSite=Lax"}},
			req:  request{url: "http://sp.test/", method: "POST"},
			want: "l=1",
		},
		{
			name: "Strict is kept from a cross-site GET",
			sets: []set{{from: "http://sp.test/", line: "s=1; SameSite=Strict"}},
			req:  request{url: "http://sp.test/", crossSite: true},
			want: "",
		},
		{
			name: "Strict is sent same-site",
			sets: []set{{from: "http://sp.test/", line: "s=1; SameSite=Strict"}},
			req:  request{url: "http://sp.test/", method: "POST"},
			want: "s=1",
		},
		{
			name: "None; Secure is sent on a cross-site POST",
			sets: []set{
				{from: "https://sp.test/", line: "n=1; SameSite=None; Secure"},
				{from: "https://sp.test/", line: "l=2; Secure"},
			},
			req:  request{url: "https://sp.test/", method: "POST", crossSite: true},
			want: "n=1",
		},
		{
			name:        "with SameSite emulation off, Lax and Strict go cross-site too",
			sameSiteOff: true,
			sets: []set{
				{from: "http://sp.test/", line: "l=1"},
				{from: "http://sp.test/", line: "s=2; SameSite=Strict"},
			},
			req:  request{url: "http://sp.test/", method: "POST", crossSite: true},
			want: "l=1; s=2",
		},
		{
			name:  "Max-Age expires",
			sets:  []set{{from: "http://sp.test/", line: "m=1; Max-Age=60"}},
			after: 61 * time.Second,
			req:   request{url: "http://sp.test/"},
			want:  "",
		},
		{
			name:  "Max-Age not yet expired",
			sets:  []set{{from: "http://sp.test/", line: "m=1; Max-Age=60"}},
			after: 59 * time.Second,
			req:   request{url: "http://sp.test/"},
			want:  "m=1",
		},
		{
			name:  "Max-Age wins over Expires",
			sets:  []set{{from: "http://sp.test/", line: "m=1; Max-Age=600; Expires=Thu, 01 Jan 1970 00:00:01 GMT"}},
			after: time.Minute,
			req:   request{url: "http://sp.test/"},
			want:  "m=1",
		},
		{
			name:  "Expires in the future",
			sets:  []set{{from: "http://sp.test/", line: "e=1; Expires=Wed, 01 Jan 2031 00:00:00 GMT"}},
			after: time.Hour,
			req:   request{url: "http://sp.test/"},
			want:  "e=1",
		},
		{
			name: "Max-Age=0 deletes",
			sets: []set{
				{from: "http://sp.test/", line: "d=1; Path=/"},
				{from: "http://sp.test/", line: "d=; Path=/; Max-Age=0"},
			},
			req:  request{url: "http://sp.test/"},
			want: "",
		},
		{
			name: "an Expires in the past deletes (crewjam's StopTrackingRequest)",
			sets: []set{
				{from: "http://sp.test/saml/acs", line: "saml_x=1; Path=/saml/acs"},
				{from: "http://sp.test/saml/acs", line: "saml_x=; Path=/saml/acs; Expires=Thu, 01 Jan 1970 00:00:01 GMT"},
			},
			req:  request{url: "http://sp.test/saml/acs"},
			want: "",
		},
		{
			name: "deleting with another path leaves the cookie",
			sets: []set{
				{from: "http://sp.test/", line: "d=1; Path=/a"},
				{from: "http://sp.test/", line: "d=; Path=/; Max-Age=0"},
			},
			req:  request{url: "http://sp.test/a"},
			want: "d=1",
		},
		{
			name: "__Host- needs Secure, no Domain, Path=/",
			sets: []set{
				{from: "https://sp.test/", line: "__Host-a=1; Secure; Path=/"},
				{from: "https://sp.test/", line: "__Host-b=2; Secure; Path=/x", rejected: true},
				{from: "https://sp.test/", line: "__Host-c=3; Secure; Path=/; Domain=sp.test", rejected: true},
				{from: "https://sp.test/", line: "__Secure-d=4", rejected: true},
			},
			req:  request{url: "https://sp.test/x"},
			want: "__Host-a=1",
		},
		{
			name: "quoted values are sent as they came",
			sets: []set{{from: "http://sp.test/", line: `q="a b"`}},
			req:  request{url: "http://sp.test/"},
			want: `q="a b"`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
			j := newJar(func() time.Time { return now }, !tc.sameSiteOff)
			for _, s := range tc.sets {
				c, err := http.ParseSetCookie(s.line)
				if err != nil {
					t.Fatalf("ParseSetCookie(%q): %v", s.line, err)
				}
				err = j.set(mustParse(t, s.from), c)
				if rejected := errors.Is(err, errCookieRejected); rejected != s.rejected {
					t.Errorf("set %q from %s: err %v, want rejected=%v", s.line, s.from, err, s.rejected)
				}
			}
			now = now.Add(tc.after)
			method := tc.req.method
			if method == "" {
				method = http.MethodGet
			}
			got := cookieHeader(j.cookiesFor(mustParse(t, tc.req.url), sendContext{method: method, crossSite: tc.req.crossSite}))
			if got != tc.want {
				t.Errorf("Cookie: %q, want %q", got, tc.want)
			}
		})
	}
}

// The Set-Cookie lines of a response are all stored; unparsable ones are
// dropped.
func TestJarSetFromHeader(t *testing.T) {
	t.Parallel()
	j := newJar(time.Now, true)
	h := http.Header{}
	h.Add("Set-Cookie", "a=1; Path=/")
	h.Add("Set-Cookie", "not a cookie")
	h.Add("Set-Cookie", "b=2; Path=/; HttpOnly; SameSite=Strict")
	u := mustParse(t, "http://sp.test/x")
	j.setFromHeader(u, h)
	var got []*http.Cookie
	for _, c := range j.cookiesFor(u, sendContext{method: http.MethodGet}) {
		got = append(got, c.httpCookie())
	}
	want := []*http.Cookie{
		{Name: "a", Value: "1", Path: "/", SameSite: http.SameSiteLaxMode},
		{Name: "b", Value: "2", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stored cookies (-want +got):\n%s", diff)
	}
}

func TestSites(t *testing.T) {
	t.Parallel()
	idp := mustParse(t, "http://idp.samlha-idp.test:9000/sso")
	idp2 := mustParse(t, "http://login.samlha-idp.test:9443/x")
	idpOtherPort := mustParse(t, "http://idp.samlha-idp.test:9001/")
	idpHTTPS := mustParse(t, "https://idp.samlha-idp.test/")
	sp := mustParse(t, "http://sp.samlha-sp.test:8080/saml/acs")
	lo1 := mustParse(t, "http://127.0.0.1:9000/")
	lo2 := mustParse(t, "http://127.0.0.1:8081/")
	lh := mustParse(t, "http://localhost:8081/")
	cases := []struct {
		name      string
		initiator *url.URL
		chain     []*url.URL
		target    *url.URL
		fetchSite string
		crossSite bool
	}{
		{"typed", nil, nil, sp, "none", false},
		{"typed, redirected to another site", nil, []*url.URL{sp}, idp, "none", true},
		{"same origin", idp, nil, idp, "same-origin", false},
		{"ports differ: same site", idp, nil, idpOtherPort, "same-site", false},
		{"subdomains of one registrable domain", idp, nil, idp2, "same-site", false},
		{"schemes differ: cross-site", idp, nil, idpHTTPS, "cross-site", true},
		{"IdP posts to the SP", idp, nil, sp, "cross-site", true},
		{"loopback ports: same site", lo1, nil, lo2, "same-site", false},
		{"127.0.0.1 and localhost are two sites", lo1, nil, lh, "cross-site", true},
		{"a chain through another site taints it", sp, []*url.URL{sp, idp}, sp, "cross-site", true},
	}
	for _, tc := range cases {
		if got := fetchSite(tc.initiator, tc.chain, tc.target); got != tc.fetchSite {
			t.Errorf("%s: Sec-Fetch-Site %q, want %q", tc.name, got, tc.fetchSite)
		}
		if got := isCrossSite(tc.initiator, tc.chain, tc.target); got != tc.crossSite {
			t.Errorf("%s: cross-site %v, want %v", tc.name, got, tc.crossSite)
		}
	}
}

func TestOriginAndReferrer(t *testing.T) {
	t.Parallel()
	idp := mustParse(t, "http://idp.samlha-idp.test:9000/sso?SAMLRequest=x#frag")
	sp := mustParse(t, "http://sp.samlha-sp.test/saml/acs")
	other := mustParse(t, "http://other.test/")
	if got := origin(mustParse(t, "https://Example.ORG:443/a")); got != "https://example.org" {
		t.Errorf("origin = %q", got)
	}
	if got := originHeader(idp, nil, sp); got != "http://idp.samlha-idp.test:9000" {
		t.Errorf("Origin of a cross-site post = %q", got)
	}
	if got := originHeader(idp, []*url.URL{sp}, other); got != "null" {
		t.Errorf("Origin after a cross-origin 307 = %q, want null", got)
	}
	if got := referrer(idp, idp); got != "http://idp.samlha-idp.test:9000/sso?SAMLRequest=x" {
		t.Errorf("same-origin Referer = %q", got)
	}
	if got := referrer(idp, sp); got != "http://idp.samlha-idp.test:9000/" {
		t.Errorf("cross-origin Referer = %q", got)
	}
	if got := referrer(mustParse(t, "https://idp.test/"), sp); got != "" {
		t.Errorf("https to http Referer = %q, want none", got)
	}
}

func TestResolveAddr(t *testing.T) {
	t.Parallel()
	r := map[string]string{
		"idp.samlha-idp.test":      "127.0.0.1",
		"sp.samlha-sp.test:8443":   "127.0.0.1:18443",
		"sp.samlha-sp.test":        "127.0.0.2",
		"v6.test":                  "::1",
		"explicit.test:1":          "[::1]:2",
		"nothing-else-matches.xyz": "127.0.0.9:9",
	}
	cases := map[string]string{
		"idp.samlha-idp.test:9000": "127.0.0.1:9000",
		"sp.samlha-sp.test:8443":   "127.0.0.1:18443",
		"sp.samlha-sp.test:80":     "127.0.0.2:80",
		"v6.test:80":               "[::1]:80",
		"explicit.test:1":          "[::1]:2",
		"example.org:443":          "example.org:443",
	}
	for in, want := range cases {
		if got := resolveAddr(r, in); got != want {
			t.Errorf("resolveAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// Chrome's Lax+POST exception, when emulated: a cookie set without
// SameSite goes with a cross-site POST while younger than two minutes, and
// not after; an explicit SameSite=Lax never does; a cookie set again with
// the same value keeps its creation time (the window stays closed), one
// set with a new value is young again, as in Chromium.
func TestJarLaxPlusPOST(t *testing.T) {
	t.Parallel()
	start := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		name    string
		line    string
		age     time.Duration
		refresh string // a Set-Cookie line after age, or ""
		want    string
	}{
		{"unset, young", "a=1; Path=/", LaxPlusPOSTWindow - time.Second, "", "a=1"},
		{"unset, two minutes old", "a=1; Path=/", LaxPlusPOSTWindow, "", ""},
		{"unset, set again with the same value", "a=1; Path=/", LaxPlusPOSTWindow + time.Second, "a=1; Path=/", ""},
		{"unset, set again with a new value", "a=1; Path=/", LaxPlusPOSTWindow + time.Second, "a=2; Path=/", "a=2"},
		{"explicit Lax, young", "a=1; Path=/; SameSite=Lax", time.Second, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			now := start
			j := newJar(func() time.Time { return now }, true)
			j.laxPlusPOST = true
			c, _ := http.ParseSetCookie(tc.line)
			u := mustParse(t, "https://sp.test/")
			if err := j.set(u, c); err != nil {
				t.Fatal(err)
			}
			now = now.Add(tc.age)
			if tc.refresh != "" {
				c2, _ := http.ParseSetCookie(tc.refresh)
				if err := j.set(u, c2); err != nil {
					t.Fatal(err)
				}
			}
			post := cookieHeader(j.cookiesFor(u, sendContext{method: http.MethodPost, crossSite: true}))
			if post != tc.want {
				t.Errorf("cross-site POST: Cookie %q, want %q", post, tc.want)
			}
			j.laxPlusPOST = false
			if got := cookieHeader(j.cookiesFor(u, sendContext{method: http.MethodPost, crossSite: true})); got != "" {
				t.Errorf("without the exception: Cookie %q, want none", got)
			}
		})
	}
}
