package identity

import (
	"net/http"
	"testing"
)

// Every spelling a CGI/WSGI/Rack/PHP app reads as an identity header is
// protected: case, '_' for '-', and both; and only those.
func TestProtectedSpellings(t *testing.T) {
	t.Parallel()
	p := NewProtected([]string{"X-Samlha-"}, []string{"X-Email", "X-Groups"})
	for _, name := range []string{
		"X-Samlha-User", "x-samlha-user", "X-SAMLHA-USER", "X_Samlha_User", "x_samlha_user", "x-samlha_user", "X_Samlha-User",
		"X-Samlha-Jwt-Assertion", "X-Samlha-Name-Id", "X-Samlha-Anything", "X_Email", "x_email", "X-EMAIL", "X_Groups", "x-groups",
	} {
		if !p.Match(name) {
			t.Errorf("%s is not protected", name)
		}
	}
	for _, name := range []string{"X-Samlha", "X-Sam", "X-Emails", "X-Group", "Email", "Cookie", "X-Forwarded-For"} {
		if p.Match(name) {
			t.Errorf("%s is protected", name)
		}
	}
}

func TestProtectedStripAndForged(t *testing.T) {
	t.Parallel()
	p := NewProtected([]string{"X-Samlha-"}, []string{"X-Groups"})
	h := http.Header{"X_samlha_user": {"mallory"}, "X-Groups": {"admins"}, "Accept": {"*/*"}}
	if n := p.Strip(h); n != 2 || len(h) != 1 || h.Get("Accept") != "*/*" {
		t.Fatalf("Strip removed %d, left %v", n, h)
	}
	for _, tc := range []struct {
		h    http.Header
		want bool
	}{
		{http.Header{"X_groups": {"admins"}}, true},
		{http.Header{"Connection": {"keep-alive, X-Samlha-User"}}, true},
		{http.Header{"Connection": {"x_groups"}}, true},
		{http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"}}, false},
		{http.Header{"Accept": {"text/html"}}, false},
	} {
		if _, got := p.Forged(tc.h); got != tc.want {
			t.Errorf("Forged(%v) = %v, want %v", tc.h, got, tc.want)
		}
	}
}
