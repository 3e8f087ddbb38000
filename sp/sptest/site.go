package sptest

import (
	"net"
	"net/url"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// site is a schemeful site, as browsers use it for SameSite cookies and
// Sec-Fetch-Site: the URL's scheme and its registrable domain (eTLD+1).
// Ports do not count. An IP address or "localhost" is a site of its own.
type site struct {
	scheme string
	domain string
}

// siteOf returns the site of u.
func siteOf(u *url.URL) site {
	return site{scheme: strings.ToLower(u.Scheme), domain: registrableDomain(canonicalHost(u))}
}

// canonicalHost returns u's host name, lower case, without port or brackets.
func canonicalHost(u *url.URL) string {
	return strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
}

// registrableDomain returns host's registrable domain: the public suffix and
// one label more ("samlha-idp.test" for "idp.samlha-idp.test"; names under a
// suffix missing from the public suffix list, such as ".test", count their
// last label as the suffix). An IP address, "localhost", or a host that is
// itself a public suffix is its own registrable domain.
func registrableDomain(host string) string {
	if host == "" || host == "localhost" || net.ParseIP(host) != nil {
		return host
	}
	d, err := publicsuffix.EffectiveTLDPlusOne(host)
	if err != nil {
		return host
	}
	return d
}

// origin is an origin's serialisation: scheme://host[:port], with the
// scheme's default port left out, as browsers send it in Origin.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	host := canonicalHost(u)
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if p := u.Port(); p != "" && !(scheme == "http" && p == "80") && !(scheme == "https" && p == "443") {
		host += ":" + p
	}
	return scheme + "://" + host
}

// isSecureScheme reports whether cookies marked Secure may be sent to, and
// set from, u. Only https counts: unlike Chrome, which treats
// http://localhost and 127.0.0.0/8 as secure contexts, the scripted browser
// does not, so a lab that wants Secure cookies must use TLS.
func isSecureScheme(u *url.URL) bool {
	return strings.EqualFold(u.Scheme, "https")
}

// fetchSite is the Sec-Fetch-Site value for a request to target that was
// initiated by the page at initiator (nil for a navigation the user typed)
// after the redirect chain so far (the URLs requested before target, in
// order). It follows the Fetch Metadata spec: "none" for a user-initiated
// navigation, else the weakest relation between target and any of the
// initiator and the URLs of the chain.
func fetchSite(initiator *url.URL, chain []*url.URL, target *url.URL) string {
	if initiator == nil {
		return "none"
	}
	value := "same-origin"
	for _, u := range append([]*url.URL{initiator}, chain...) {
		switch {
		case siteOf(u) != siteOf(target):
			return "cross-site"
		case origin(u) != origin(target):
			value = "same-site"
		}
	}
	return value
}

// isCrossSite reports whether a navigation to target, initiated by the page
// at initiator (nil when typed by the user) after the redirect chain so far,
// is cross-site for SameSite cookies. Like Chrome, a chain that passed
// through another site is cross-site as a whole ("taints" it), even when its
// initiator and target share a site.
func isCrossSite(initiator *url.URL, chain []*url.URL, target *url.URL) bool {
	t := siteOf(target)
	if initiator != nil && siteOf(initiator) != t {
		return true
	}
	for _, u := range chain {
		if siteOf(u) != t {
			return true
		}
	}
	return false
}
