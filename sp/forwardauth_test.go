package sp

import (
	"net/url"
	"strings"
	"testing"

	"github.com/samlha/samlha/sp/failure"
)

// The return URL is never an open redirect: every hostile form is refused.
func TestReturnTargetRefusesHostileValues(t *testing.T) {
	t.Parallel()
	root, _ := url.Parse("https://app.example.com")
	s := &SP{cfg: Config{RootURL: root, Gateway: &Gateway{AllowedRedirectHosts: []string{"other.example.com", ".corp.example", "wiki.example.com:8443"}}}}
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
		{"/" + strings.Repeat("a", maxRedirectURL), ""},
		{"ftp://app.example.com/", ""},
		{"evil.test", ""},
	} {
		got, ok := s.returnTarget(tc.in)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("returnTarget(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
}

func TestParseAllowRule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want AllowRule
		err  bool
	}{
		{in: "groups=admins", want: AllowRule{"/", "groups", "admins"}},
		{in: "/admin:groups=admins", want: AllowRule{"/admin", "groups", "admins"}},
		{in: "/admin/:mail=a@b.c", want: AllowRule{"/admin/", "mail", "a@b.c"}},
		{in: "groups", err: true},
		{in: "=x", err: true},
		{in: "groups=", err: true},
		{in: "/admin", err: true},
		{in: "/a/../b:groups=x", err: true},
	} {
		got, err := ParseAllowRule(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("ParseAllowRule(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// The longest prefix's rules apply, any of them admits; paths no rule
// covers need only a session.
func TestAuthorizeLongestPrefixAnyOf(t *testing.T) {
	t.Parallel()
	rules := []AllowRule{
		{"/", "groups", "staff"},
		{"/admin", "groups", "admins"},
		{"/admin", "groups", "root"},
		{"/admin/public", "groups", "staff"},
	}
	s := &SP{cfg: Config{Gateway: &Gateway{Allow: rules}}}
	staff := identity{User: "s", Attrs: map[string][]string{"groups": {"staff"}}}
	root := identity{User: "r", Attrs: map[string][]string{"groups": {"root"}}}
	none := identity{User: "n"}
	for _, tc := range []struct {
		id   identity
		path string
		ok   bool
	}{
		{staff, "/", true}, {root, "/", false}, {none, "/x", false},
		{staff, "/admin", false}, {root, "/admin/x", true}, {staff, "/administrator", true},
		{staff, "/admin/public/x", true}, {root, "/admin/public", false},
	} {
		f := s.authorize(tc.id, tc.path)
		if (f == nil) != tc.ok {
			t.Errorf("authorize(%s, %s) = %v, want ok=%v", tc.id.User, tc.path, f, tc.ok)
		}
		if f != nil && f.Cause != failure.CauseForbidden {
			t.Errorf("cause %s, want forbidden", f.Cause)
		}
	}
	s.cfg.Gateway.Allow = nil
	if f := s.authorize(none, "/admin"); f != nil {
		t.Errorf("without rules a session is enough; got %v", f)
	}
}

func TestIDPInitiatedReturnPath(t *testing.T) {
	t.Parallel()
	c := &IDPInitiated{RedirectPrefixes: []string{"/reports", "/docs/"}}
	for in, want := range map[string]string{
		"":                       "/",
		"/reports":               "/reports",
		"/reports/q3?x=1":        "/reports/q3?x=1",
		"/reportsX":              "/",
		"/docs/a":                "/docs/a",
		"/other":                 "/",
		"//evil.test/reports":    "/",
		"https://evil.test/docs": "/",
		"/reports/../admin":      "/",
		"/reports\r\nX: y":       "/",
		"sp-1~abc":               "/",
	} {
		if got := c.returnPath(in); got != want {
			t.Errorf("returnPath(%q) = %q, want %q", in, got, want)
		}
	}
}
