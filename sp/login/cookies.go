package login

import (
	"net/http"
	"strings"

	"github.com/samlha/samlha/sp/loginstate"
	"github.com/samlha/samlha/sp/session"
)

// ownCookie reports whether a cookie of this name is the SP's own: the
// session, the re-login counter, a login's binding cookie, or (stateless
// mode) crewjam's tracking cookie.
func ownCookie(name string) bool {
	return name == session.CookieName || name == reloginCookie ||
		loginstate.IsBindingCookie(name) || strings.HasPrefix(name, crewjamTrackingPrefix)
}

// crewjamTrackingPrefix is the name prefix of crewjam's request tracking
// cookies (samlsp.CookieRequestTracker, stateless mode).
const crewjamTrackingPrefix = "saml_"

// StripOwnCookies removes the SP's own cookies from the Cookie headers of
// h, so that an application behind the gateway never sees them (the
// session cookie is a bearer secret that would land in its logs). Other
// cookies pass as they came.
func StripOwnCookies(h http.Header) {
	vals := h.Values("Cookie")
	if len(vals) == 0 {
		return
	}
	var kept []string
	for _, line := range vals {
		for _, pair := range strings.Split(line, ";") {
			pair = strings.TrimSpace(pair)
			name, _, _ := strings.Cut(pair, "=")
			if pair != "" && !ownCookie(strings.TrimSpace(name)) {
				kept = append(kept, pair)
			}
		}
	}
	if len(kept) == 0 {
		h.Del("Cookie")
		return
	}
	h.Set("Cookie", strings.Join(kept, "; "))
}
