package login

import (
	"testing"

	"github.com/samlha/samlha/sp/returnurl"
)

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
		if got := c.returnPath(returnurl.Policy{MaxLen: 2048, Home: "/"}, in); got != want {
			t.Errorf("returnPath(%q) = %q, want %q", in, got, want)
		}
	}
}
