package sptest

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/publicsuffix"
)

// jar is the scripted browser's cookie store. net/http/cookiejar cannot be
// used: it drops the SameSite attribute, which is the point of the exercise.
//
// It follows RFC 6265 (domain and path matching, host-only cookies, Max-Age
// over Expires, deletion by expiry) and Chrome's rules on top of it:
//   - a cookie without SameSite (or with an unknown value) is treated as
//     SameSite=Lax ("Lax by default");
//   - SameSite=None without Secure is rejected when it is set;
//   - Secure cookies are set and sent only over https ("strict secure
//     cookies"); an http page cannot overwrite a Secure cookie either. Unlike
//     Chrome, http://localhost and 127.0.0.0/8 are not treated as secure;
//   - the __Secure- and __Host- name prefixes are enforced.
//
// Chrome's "Lax+POST" exception (a Lax-by-default cookie younger than two
// minutes is still sent on a cross-site top-level POST) is emulated only when
// laxPlusPOST is set (Options.LaxPlusPOST): it was meant as a temporary
// migration aid, and by default relying on it would hide exactly the failure
// the lab is meant to show. With it on, the lab shows the other face of it:
// fast logins pass and slow ones fail.
type jar struct {
	now         func() time.Time
	sameSite    bool // apply SameSite rules when sending
	laxPlusPOST bool

	mu      sync.Mutex
	seq     uint64
	cookies map[cookieKey]*storedCookie
}

// cookieKey identifies a stored cookie: a Set-Cookie with the same name,
// domain and path replaces it.
type cookieKey struct {
	name, domain, path string
}

// storedCookie is a cookie as the jar keeps it.
type storedCookie struct {
	name, value string
	quoted      bool
	domain      string // canonical host (host-only) or domain, without a leading dot
	hostOnly    bool
	path        string
	secure      bool
	httpOnly    bool
	sameSite    http.SameSite // Lax, Strict or None; unset is stored as Lax
	sameSiteSet bool          // the Set-Cookie line named a valid SameSite
	persistent  bool
	expires     time.Time // when persistent
	created     time.Time
	seq         uint64 // creation order, to break ties
}

func newJar(now func() time.Time, sameSite bool) *jar {
	return &jar{now: now, sameSite: sameSite, cookies: map[cookieKey]*storedCookie{}}
}

// errCookieRejected wraps the reason a cookie was not stored.
var errCookieRejected = errors.New("cookie rejected")

func rejectf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errCookieRejected, fmt.Sprintf(format, args...))
}

// setFromHeader stores the cookies of the Set-Cookie lines in h, received
// from u. Lines that cannot be parsed or break a rule are dropped, as a
// browser drops them.
func (j *jar) setFromHeader(u *url.URL, h http.Header) {
	for _, line := range h.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil {
			continue
		}
		_ = j.set(u, c)
	}
}

// set stores c as if a response from u had set it, or returns why it was
// rejected. A cookie whose expiry has passed deletes the stored one.
func (j *jar) set(u *url.URL, c *http.Cookie) error {
	now := j.now()
	host := canonicalHost(u)
	secureURL := isSecureScheme(u)
	if c.Name == "" {
		return rejectf("empty name")
	}

	sc := &storedCookie{
		name:     c.Name,
		value:    c.Value,
		quoted:   c.Quoted,
		secure:   c.Secure,
		httpOnly: c.HttpOnly,
		created:  now,
	}

	if err := sc.setDomain(c.Domain, host); err != nil {
		return err
	}
	// Path (§5.2.4): a missing or relative path defaults to the directory
	// of the request path.
	sc.path = c.Path
	if !strings.HasPrefix(sc.path, "/") {
		sc.path = defaultPath(u)
	}
	if err := sc.setSecurity(c.SameSite, u); err != nil {
		return err
	}
	sc.setExpiry(c, now)

	j.mu.Lock()
	defer j.mu.Unlock()
	if !secureURL {
		// Leave Secure cookies alone (RFC 6265bis §5.7 step 16): an insecure
		// page cannot overwrite a Secure cookie that would match it.
		for _, old := range j.cookies {
			if old.secure && old.name == sc.name &&
				(domainMatch(old.domain, sc.domain) || domainMatch(sc.domain, old.domain)) &&
				pathMatch(old.path, sc.path) {
				return rejectf("would overwrite a Secure cookie from %s", u.Scheme)
			}
		}
	}
	key := cookieKey{name: sc.name, domain: sc.domain, path: sc.path}
	if old, ok := j.cookies[key]; ok {
		// RFC 6265 keeps the old cookie's creation time on every
		// overwrite; Chromium keeps it only when the value is unchanged
		// (a balancer that re-seals its affinity cookie on each response
		// makes it young again, which is what Lax+POST's age sees:
		// TestChromiumConfirmsLaxPlusPOST).
		sc.seq = old.seq
		if old.value == sc.value {
			sc.created = old.created
		}
	} else {
		j.seq++
		sc.seq = j.seq
	}
	if sc.persistent && !sc.expires.After(now) {
		delete(j.cookies, key)
		return nil
	}
	j.cookies[key] = sc
	return nil
}

// sendContext says how a request is made, for the cookies sent with it.
type sendContext struct {
	method    string
	crossSite bool // the browser judged the request cross-site
}

// cookiesFor returns the cookies to send to u, in the order browsers send
// them (longer paths first, then older cookies first). Expired cookies are
// removed on the way.
func (j *jar) cookiesFor(u *url.URL, sc sendContext) []*storedCookie {
	now := j.now()
	host := canonicalHost(u)
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	secureURL := isSecureScheme(u)

	j.mu.Lock()
	defer j.mu.Unlock()
	var out []*storedCookie
	for key, c := range j.cookies {
		if c.persistent && !c.expires.After(now) {
			delete(j.cookies, key)
			continue
		}
		if c.hostOnly && host != c.domain || !c.hostOnly && !domainMatch(host, c.domain) {
			continue
		}
		if !pathMatch(path, c.path) {
			continue
		}
		if c.secure && !secureURL {
			continue
		}
		if j.sameSite && sc.crossSite && !sendCrossSite(c, sc.method) &&
			!(j.laxPlusPOST && laxPlusPOST(c, sc.method, now)) {
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(a, b int) bool {
		if len(out[a].path) != len(out[b].path) {
			return len(out[a].path) > len(out[b].path)
		}
		return out[a].seq < out[b].seq
	})
	return out
}

// sendCrossSite reports whether c goes with a cross-site top-level
// navigation made with method: None always (it is Secure by construction),
// Lax only with a safe method (GET, HEAD), Strict never.
func sendCrossSite(c *storedCookie, method string) bool {
	switch c.sameSite {
	case http.SameSiteNoneMode:
		return true
	case http.SameSiteLaxMode:
		return method == http.MethodGet || method == http.MethodHead
	default:
		return false
	}
}

// LaxPlusPOSTWindow is the age under which Chrome still sends a cookie set
// without SameSite on a cross-site top-level POST.
const LaxPlusPOSTWindow = 2 * time.Minute

// laxPlusPOST reports whether Chrome's Lax+POST exception lets c go with a
// cross-site top-level POST at now: c was set without a SameSite attribute
// and is younger than LaxPlusPOSTWindow.
func laxPlusPOST(c *storedCookie, method string, now time.Time) bool {
	return method == http.MethodPost && !c.sameSiteSet && now.Sub(c.created) < LaxPlusPOSTWindow
}

// cookieHeader renders cookies as a Cookie request header value.
func cookieHeader(cookies []*storedCookie) string {
	var b strings.Builder
	for i, c := range cookies {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(c.name)
		b.WriteByte('=')
		if c.quoted {
			b.WriteByte('"')
			b.WriteString(c.value)
			b.WriteByte('"')
		} else {
			b.WriteString(c.value)
		}
	}
	return b.String()
}

// httpCookie returns c as an *http.Cookie, with the attributes the jar
// keeps (Domain is empty for a host-only cookie).
func (c *storedCookie) httpCookie() *http.Cookie {
	hc := &http.Cookie{
		Name:     c.name,
		Value:    c.value,
		Quoted:   c.quoted,
		Path:     c.path,
		Secure:   c.secure,
		HttpOnly: c.httpOnly,
		SameSite: c.sameSite,
	}
	if !c.hostOnly {
		hc.Domain = c.domain
	}
	if c.persistent {
		hc.Expires = c.expires
	}
	return hc
}

// domainMatch reports whether host domain-matches domain (RFC 6265 §5.1.3):
// they are equal, or host is a name (not an IP address) ending in
// "."+domain.
func domainMatch(host, domain string) bool {
	if host == domain {
		return true
	}
	return net.ParseIP(host) == nil && strings.HasSuffix(host, "."+domain)
}

// pathMatch reports whether reqPath path-matches cookiePath (RFC 6265
// §5.1.4).
func pathMatch(reqPath, cookiePath string) bool {
	if reqPath == cookiePath {
		return true
	}
	if !strings.HasPrefix(reqPath, cookiePath) {
		return false
	}
	return strings.HasSuffix(cookiePath, "/") || reqPath[len(cookiePath)] == '/'
}

// defaultPath is the default-path of u (RFC 6265 §5.1.4): the directory of
// its path, "/" at the top.
func defaultPath(u *url.URL) string {
	p := u.EscapedPath()
	if !strings.HasPrefix(p, "/") {
		return "/"
	}
	i := strings.LastIndex(p, "/")
	if i == 0 {
		return "/"
	}
	return p[:i]
}

// isPublicSuffix reports whether domain is a public suffix ("com",
// "co.uk"; "test", as the list's default rule makes any unknown top-level
// label one). IP addresses and "localhost" are not.
func isPublicSuffix(domain string) bool {
	if net.ParseIP(domain) != nil || domain == "localhost" {
		return false
	}
	ps, _ := publicsuffix.PublicSuffix(domain)
	return ps == domain
}

// setDomain applies the Domain attribute d of a cookie from host (RFC 6265
// §5.3 steps 4-6).
func (sc *storedCookie) setDomain(d, host string) error {
	domain := strings.ToLower(strings.TrimPrefix(d, "."))
	switch {
	case domain == "":
		sc.hostOnly, sc.domain = true, host
	case isPublicSuffix(domain):
		if domain != host {
			return rejectf("Domain=%s is a public suffix", domain)
		}
		sc.hostOnly, sc.domain = true, host
	case !domainMatch(host, domain):
		return rejectf("Domain=%s does not match host %s", domain, host)
	default:
		sc.domain = domain
	}
	return nil
}

// setSecurity applies Secure, SameSite and the name prefixes as Chrome
// enforces them; secureURL tells whether the cookie came over https.
func (sc *storedCookie) setSecurity(sameSite http.SameSite, u *url.URL) error {
	secureURL := isSecureScheme(u)
	if sc.secure && !secureURL {
		return rejectf("Secure cookie set over %s", u.Scheme)
	}
	switch sameSite {
	case http.SameSiteLaxMode, http.SameSiteStrictMode, http.SameSiteNoneMode:
		sc.sameSite, sc.sameSiteSet = sameSite, true
	default: // unset or unknown: Lax by default
		sc.sameSite = http.SameSiteLaxMode
	}
	if sc.sameSite == http.SameSiteNoneMode && !sc.secure {
		return rejectf("SameSite=None without Secure")
	}
	if strings.HasPrefix(sc.name, "__Secure-") && !sc.secure {
		return rejectf("__Secure- cookie without Secure")
	}
	if strings.HasPrefix(sc.name, "__Host-") && (!sc.secure || !sc.hostOnly || sc.path != "/") {
		return rejectf("__Host- cookie needs Secure, no Domain and Path=/")
	}
	return nil
}

// setExpiry applies Max-Age, which wins over Expires (§5.3 step 3).
func (sc *storedCookie) setExpiry(c *http.Cookie, now time.Time) {
	switch {
	case c.MaxAge < 0:
		sc.persistent, sc.expires = true, time.Time{}
	case c.MaxAge > 0:
		sc.persistent, sc.expires = true, now.Add(time.Duration(c.MaxAge)*time.Second)
	case !c.Expires.IsZero():
		sc.persistent, sc.expires = true, c.Expires
	}
}
