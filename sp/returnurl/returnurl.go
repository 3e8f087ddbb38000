// Package returnurl is the one rule for where the SP sends a browser after
// a login: every entry point (a protected page that starts a login,
// /saml/login?rd=, forward-auth's original URL, an IdP-initiated
// RelayState, and the tracked URL the ACS reads back) goes through Policy.
// The SP is never an open redirect: a return URL is a local path, or an
// absolute http(s) URL on the root URL's host or an allowed host, in a form
// no browser or server reads as anything else.
package returnurl

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/samlha/samlha/sp/access"
	"github.com/samlha/samlha/sp/failure"
)

// Policy decides return URLs for one SP.
type Policy struct {
	// Root is the SP's public URL; its host is always allowed.
	Root *url.URL
	// AllowedHosts may be named by an absolute return URL: "host",
	// "host:port", or ".domain" for every subdomain of domain.
	AllowedHosts []string
	// MaxLen is the longest return URL, in bytes (--max-return-url); a
	// longer one is refused with return-url-too-long, never cut.
	MaxLen int
	// Home is where a login lands when it has no usable return URL.
	Home string
}

// FromRequest is the return URL of a login that r starts: r's own path and
// query. One longer than MaxLen is refused (return-url-too-long, 414);
// one that is not a plain local path (the router served it, but it would
// not pass Check) lands on Home.
func (p Policy) FromRequest(r *http.Request) (string, *failure.Failure) {
	uri := r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		uri += "?" + r.URL.RawQuery
	}
	if f := p.checkLen(uri); f != nil {
		return "", f
	}
	if _, ok := p.check(uri); !ok {
		return p.Home, nil
	}
	return uri, nil
}

// Check checks a return URL someone gave (rd=, a front proxy's original
// URL, a RelayState) and returns the URL to redirect to: the local path,
// or the absolute URL in Go's normal form. Anything else is refused with
// redirect-refused (400), or return-url-too-long (414) when longer than
// MaxLen.
func (p Policy) Check(raw string) (string, *failure.Failure) {
	if f := p.checkLen(raw); f != nil {
		return "", f
	}
	target, ok := p.check(raw)
	if !ok {
		return "", &failure.Failure{Cause: failure.CauseRedirectRefused,
			Detail: "return URL " + failure.Truncate(raw, 200) + " is neither a plain local path nor an http(s) URL on an allowed host"}
	}
	return target, nil
}

// Landing is where the ACS sends the browser after a login that asked to
// return to uri (as stored with the tracked login, which is not trusted
// for this: it is checked again): uri if it passes Check, else Home.
func (p Policy) Landing(uri string) string {
	if t, f := p.Check(uri); f == nil {
		return t
	}
	return p.Home
}

func (p Policy) checkLen(uri string) *failure.Failure {
	if len(uri) > p.MaxLen {
		return &failure.Failure{Cause: failure.CauseReturnURLTooLong,
			Detail: fmt.Sprintf("the address to return to after login is %d bytes; the limit (--max-return-url) is %d", len(uri), p.MaxLen)}
	}
	return nil
}

// check is Check without the length: the URL to redirect to, and whether
// raw is acceptable.
func (p Policy) check(raw string) (string, bool) {
	if raw == "" {
		return "", false
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c < 0x21 || c > 0x7e || c == '\\' {
			return "", false // controls, space, non-ASCII, backslash
		}
	}
	if raw[0] == '/' {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !canonical(pathOf(raw)) {
			return "", false
		}
		return raw, true
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" || u.User != nil || u.Host == "" {
		return "", false
	}
	rest := strings.TrimPrefix(raw[len(u.Scheme)+1:], "//")
	authority, path := rest, ""
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	if strings.ContainsAny(authority, "%@") || !p.hostAllowed(u) {
		return "", false
	}
	if pp := pathOf(path); pp != "" && !canonical(pp) {
		return "", false
	}
	return u.String(), true
}

// canonical reports whether the path of a return URL is in the one
// canonical form the gateway also requires (access.Canonical): a login
// never returns to a path the gateway would refuse, nor to one a browser
// or server could read as another place.
func canonical(p string) bool {
	_, err := access.Canonical(p)
	return err == nil
}

// pathOf is the path of a path-absolute reference with its query and
// fragment, as sent.
func pathOf(ref string) string {
	if i := strings.IndexAny(ref, "?#"); i >= 0 {
		return ref[:i]
	}
	return ref
}

// hostAllowed reports whether u's host is the root URL's or an allowed one.
func (p Policy) hostAllowed(u *url.URL) bool {
	host := strings.ToLower(u.Host)
	name := strings.ToLower(u.Hostname())
	if name == "" || strings.HasSuffix(name, ".") {
		return false
	}
	if p.Root != nil && host == strings.ToLower(p.Root.Host) {
		return true
	}
	for _, a := range p.AllowedHosts {
		a = strings.ToLower(a)
		switch {
		case strings.HasPrefix(a, "."):
			if strings.HasSuffix(name, a) {
				return true
			}
		case strings.Contains(a, ":"):
			if host == a {
				return true
			}
		default:
			if name == a {
				return true
			}
		}
	}
	return false
}

// ValidAllowedHost reports why h cannot be an allowed host, or "" if it can.
func ValidAllowedHost(h string) string {
	if h == "" || h == "." || strings.ContainsAny(h, "/\\@ %?#") {
		return fmt.Sprintf("allowed redirect host %q: want host, host:port or .domain", h)
	}
	return ""
}
