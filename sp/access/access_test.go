package access

import (
	"errors"
	"testing"

	"github.com/samlha/samlha/sp/failure"
)

// The forms of a path that servers read differently are refused; plain
// forms pass, decoded.
func TestCanonical(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"", "admin", "//admin", "/admin//x", "/./admin", "/admin/.", "/admin/..", "/public/../admin", "/a/%2e%2e/admin",
		"/admin;/x", "/admin;jsessionid=1", "/admin%3b/x", "/admin%3B", "/admin.", "/admin%2e", "/admin%20", "/admin%20/x",
		"/admin%00", "/admin%00.html", "/admin%0a", "/admin%7f", "/admin%2fx", "/admin%2Fx", "/admin%5cx", "/admin\\x",
		"/admin%25", "/admin%252e", "/admin%", "/admin%2", "/admin%zz", "/%c0%ae%c0%ae/admin", "/%ff", "/a b", "/caf\xc3\xa9",
		"/admin...", "/x/admin ",
	} {
		if got, err := Canonical(in); err == nil || !errors.Is(err, ErrNotCanonical) {
			t.Errorf("Canonical(%q) = %q, %v; want refused", in, got, err)
		}
	}
	for in, want := range map[string]string{
		"/": "/", "/admin": "/admin", "/admin/": "/admin/", "/a.b/c.json": "/a.b/c.json", "/%61dmin": "/admin",
		"/caf%C3%A9": "/café", "/a%20b": "/a b", "/ADMIN": "/ADMIN", "/v1.0/items": "/v1.0/items",
	} {
		if got, err := Canonical(in); err != nil || got != want {
			t.Errorf("Canonical(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// The list: none of these reaches past a rule for /admin, for a
// user the rule refuses: refused as not canonical, or judged as /admin.
func TestAdminRuleCannotBeSidestepped(t *testing.T) {
	t.Parallel()
	rules := Rules{{PathPrefix: "/admin", Attribute: "groups", Value: "admins"}}
	for _, in := range []string{"/ADMIN", "/Admin/x", "/admin;/x", "/admin.", "/admin%20", "/admin%00", "/%61dmin", "/admin/", "/aDmIn/x/y"} {
		p, err := Canonical(in)
		if err != nil {
			continue
		}
		if f := rules.Decide(p, "mallory", map[string][]string{"groups": {"staff"}}); f == nil {
			t.Errorf("%q (canonical %q) admits a user the /admin rule refuses", in, p)
		}
	}
}

// Public paths are matched exactly: another spelling needs a session.
func TestPublicPathsExact(t *testing.T) {
	t.Parallel()
	pp := PublicPaths{"/static/", "/*.ico", "/health"}
	for p, want := range map[string]bool{
		"/static/a.css": true, "/static/": true, "/static": true, "/STATIC/a.css": false, "/favicon.ico": true,
		"/a/favicon.ico": false, "/health": true, "/health/x": true, "/healthz": false, "/": false,
	} {
		if got := pp.Match(p); got != want {
			t.Errorf("Match(%q) = %v, want %v", p, got, want)
		}
	}
	for _, bad := range []string{"static/", "/a//b/", "/a;b", "/[", "/x/../y"} {
		if CheckPublicPath(bad) == nil {
			t.Errorf("CheckPublicPath(%q) accepted it", bad)
		}
	}
}

func TestParseRule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want Rule
		err  bool
	}{
		{in: "groups=admins", want: Rule{"/", "groups", "admins"}},
		{in: "/admin:groups=admins", want: Rule{"/admin", "groups", "admins"}},
		{in: "/admin/:mail=a@b.c", want: Rule{"/admin/", "mail", "a@b.c"}},
		{in: "groups", err: true},
		{in: "=x", err: true},
		{in: "groups=", err: true},
		{in: "/admin", err: true},
		{in: "/a/../b:groups=x", err: true},
	} {
		got, err := ParseRule(tc.in)
		if (err != nil) != tc.err || (!tc.err && got != tc.want) {
			t.Errorf("ParseRule(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

// The longest prefix's rules apply, any of them admits; paths no rule
// covers need only a session.
func TestAuthorizeLongestPrefixAnyOf(t *testing.T) {
	t.Parallel()
	rules := Rules{
		{"/", "groups", "staff"},
		{"/admin", "groups", "admins"},
		{"/admin", "groups", "root"},
		{"/admin/public", "groups", "staff"},
	}
	type identity struct {
		User  string
		Attrs map[string][]string
	}
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
		// Case does not get around a rule: /ADMIN is judged as /admin.
		{staff, "/ADMIN", false}, {staff, "/Admin/x", false}, {root, "/ADMIN/x", true}, {staff, "/ADMIN/PUBLIC/x", true},
	} {
		f := rules.Decide(tc.path, tc.id.User, tc.id.Attrs)
		if (f == nil) != tc.ok {
			t.Errorf("Decide(%s, %s) = %v, want ok=%v", tc.id.User, tc.path, f, tc.ok)
		}
		if f != nil && f.Cause != failure.CauseForbidden {
			t.Errorf("cause %s, want forbidden", f.Cause)
		}
	}
	if f := Rules(nil).Decide("/admin", none.User, none.Attrs); f != nil {
		t.Errorf("without rules a session is enough; got %v", f)
	}
}
