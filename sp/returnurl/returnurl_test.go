package returnurl

import (
	"bufio"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/samlha/samlha/sp/failure"
)

// The return URL is never an open redirect: every hostile form is refused.
func TestCheckRefusesHostileValues(t *testing.T) {
	t.Parallel()
	root, _ := url.Parse("https://app.example.com")
	p := Policy{Root: root, AllowedHosts: []string{"other.example.com", ".corp.example", "wiki.example.com:8443"}, MaxLen: 2048, Home: "/"}
	for _, tc := range []struct {
		in   string
		want string // "" = refused
	}{
		{"/", "/"},
		{"/a/b?c=d#e", "/a/b?c=d#e"},
		{"https://app.example.com/x", "https://app.example.com/x"},
		{"HTTPS://APP.EXAMPLE.COM/x", "https://APP.EXAMPLE.COM/x"},
		{"http://other.example.com/y", "http://other.example.com/y"},
		{"https://a.corp.example/", "https://a.corp.example/"},
		{"https://wiki.example.com:8443/", "https://wiki.example.com:8443/"},
		{"//evil.test", ""},
		{"//evil.test/path", ""},
		{"/\\evil.test", ""},
		{"\\\\evil.test", ""},
		{"https:evil.test", ""},
		{"https:/evil.test", ""},
		{"https:///evil.test", ""},
		{"javascript:alert(1)", ""},
		{"data:text/html,x", ""},
		{"https://app.example.com@evil.test/", ""},
		{"https://user:pw@app.example.com/", ""},
		{"https://evil.test/", ""},
		{"https://app.example.com.evil.test/", ""},
		{"https://evilcorp.example/", ""},
		{"https://wiki.example.com/", ""},
		{"https://app.example.com./", ""},
		{"https://app\u3002example.com/", ""},
		{"https://аpp.example.com/", ""}, // Cyrillic а
		{"/x\r\nSet-Cookie: a=b", ""},
		{"/x\nLocation: //evil", ""},
		{"/x\ty", ""},
		{"/x y", ""},
		{"%2F%2Fevil.test", ""},
		{"", ""},
		{"/" + strings.Repeat("a", 2048), ""},
		{"ftp://app.example.com/", ""},
		{"evil.test", ""},
	} {
		got, f := p.Check(tc.in)
		if (f == nil) != (tc.want != "") || got != tc.want {
			t.Errorf("Check(%q) = %q, %v; want %q", tc.in, got, f, tc.want)
		}
	}
}

// Every line of oauth2-proxy's open-redirect corpus (testdata/README.md),
// raw and URL-decoded as a query parameter arrives, is refused, with the
// corpus's own allowed domain allowed.
func TestOpenRedirectCorpus(t *testing.T) {
	t.Parallel()
	f, err := os.Open("testdata/openredirects.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	root, _ := url.Parse("https://sp.samlha.test")
	p := Policy{Root: root, AllowedHosts: []string{"www.whitelisteddomain.tld"}, MaxLen: 8192, Home: "/"}
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		raw := sc.Text()
		forms := []string{raw}
		if dec, err := url.QueryUnescape(raw); err == nil && dec != raw {
			forms = append(forms, dec)
		}
		for _, in := range forms {
			n++
			if got, f := p.Check(in); f == nil {
				t.Errorf("Check(%q) = %q: an open redirect", in, got)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 500 {
		t.Fatalf("read only %d forms from the corpus", n)
	}
	// The control: the allowed host itself, and local paths, pass.
	for _, ok := range []string{"https://www.whitelisteddomain.tld/x?y=1", "/app?next=%2Fx", "https://sp.samlha.test/app"} {
		if _, f := p.Check(ok); f != nil {
			t.Errorf("Check(%q) refused a good URL: %v", ok, f)
		}
	}
}

// Our own cases beyond the corpus: forms servers read differently.
func TestCheckRefusesAmbiguousPaths(t *testing.T) {
	t.Parallel()
	root, _ := url.Parse("https://app.example.com")
	p := Policy{Root: root, MaxLen: 2048, Home: "/"}
	for _, in := range []string{
		"/a//b", "/a/./b", "/a/../b", "/..", "/.", "/a/%2e%2e/b", "/a/%2E/b", "/a%2fb", "/a%2Fb", "/a%5cb",
		"/a%00b", "/a%0d%0aSet-Cookie:x", "/a%25%32%66b", "/a%2", "/a%", "/a%zz", "https://app.example.com//evil.test",
		"https://app.example.com/a/../b", "https://app.example.com%2f@evil.test/", "https://app.example.com:443@evil.test/",
	} {
		if got, f := p.Check(in); f == nil {
			t.Errorf("Check(%q) = %q, want refused", in, got)
		}
	}
	for _, in := range []string{"/", "/a/b/", "/a%20b", "/caf%C3%A9", "/a?x=..%2F..&y=//z", "/a#frag", "https://app.example.com/a/b?c"} {
		if _, f := p.Check(in); f != nil {
			t.Errorf("Check(%q) refused a plain URL: %v", in, f)
		}
	}
}

// The one length rule is the configured one, in every entry point: a
// return URL up to MaxLen is kept whole (the gateway used to cap it at
// 2 KiB whatever --max-return-url said, and land such logins on /), and
// one byte more is refused with return-url-too-long.
func TestLengthIsMaxLen(t *testing.T) {
	t.Parallel()
	root, _ := url.Parse("https://app.example.com")
	p := Policy{Root: root, MaxLen: 8192, Home: "/"}
	long := "/app?q=" + strings.Repeat("x", 8192-7)
	if got, f := p.Check(long); f != nil || got != long {
		t.Fatalf("a %d-byte return URL under an 8 KiB limit: %v", len(long), f)
	}
	if got := p.Landing(long); got != long {
		t.Fatalf("Landing cut a %d-byte return URL to %q", len(long), got)
	}
	if _, f := p.Check(long + "x"); f == nil || f.Cause != failure.CauseReturnURLTooLong {
		t.Fatalf("one byte over: %v, want return-url-too-long", f)
	}
	if got := p.Landing(long + "x"); got != "/" {
		t.Fatalf("Landing of an over-long URL: %q, want Home", got)
	}
}

// The return URL of a login a request starts is its path and query,
// refused past the limit, and never anything a browser would read as
// another site.
func TestFromRequest(t *testing.T) {
	t.Parallel()
	p := Policy{MaxLen: 2048, Home: "/app"}
	for _, tc := range []struct {
		target string
		want   string
		cause  failure.Cause
	}{
		{"/app", "/app", ""},
		{"/app?a=1&b=%2F", "/app?a=1&b=%2F", ""},
		{"/app?q=" + strings.Repeat("x", 2048-7), "/app?q=" + strings.Repeat("x", 2048-7), ""},
		{"/app?q=" + strings.Repeat("x", 2048-6), "", failure.CauseReturnURLTooLong},
		{"//evil.example/app", "/app", ""},
		{"http://evil.example/app?x", "/app?x", ""}, // absolute-form request target: path and query only
		{"/a/../app", "/app", ""},
	} {
		r := httptest.NewRequest("GET", tc.target, nil)
		got, f := p.FromRequest(r)
		if f != nil {
			if f.Cause != tc.cause {
				t.Errorf("%.40s: cause %s, want %q", tc.target, f.Cause, tc.cause)
			}
			continue
		}
		if tc.cause != "" || got != tc.want {
			t.Errorf("%.40s: %.40q, want %.40q (cause %q)", tc.target, got, tc.want, tc.cause)
		}
	}
}
