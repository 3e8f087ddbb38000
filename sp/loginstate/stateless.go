package loginstate

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/crewjam/saml/samlsp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/relaystate"
)

// StatelessTracker is crewjam's CookieRequestTracker: the tracked request
// travels in a cookie signed with the SP key, named after the RelayState.
// Only the RelayState follows samlha's format, so the proxy can route by it
// and failures can name the replica that began the login.
//
// One thing is added so that failures can be told apart: a consumed
// tracking cookie is not just deleted but replaced, for the tombstone TTL,
// by a tombstone of the same name, attributes and path ("used"). A second
// submission of the same response from the same browser then meets the
// tombstone and is state-already-used, not binding-cookie-missing. And a
// RelayState with no cookie, from a browser that did send other tracking
// cookies (or tombstones) to the ACS, is state-unknown: its cookies do
// reach the ACS, so SameSite is not why this one is missing.
type StatelessTracker struct {
	cookies  samlsp.CookieRequestTracker
	instance string
	// tombstone is how long a consumed tracking cookie is remembered.
	tombstone time.Duration
}

var _ Tracker = (*StatelessTracker)(nil)

// NewStateless tracks logins in crewjam's signed cookies, for the replica
// instance, remembering a consumed one for tombstone.
func NewStateless(cookies samlsp.CookieRequestTracker, instance string, tombstone time.Duration) *StatelessTracker {
	return &StatelessTracker{cookies: cookies, instance: instance, tombstone: tombstone}
}

// trackingTombstone is the value of a consumed tracking cookie. It is not
// signed: a browser that forges one only refuses its own login.
const trackingTombstone = "used"

func (t *StatelessTracker) Begin(w http.ResponseWriter, r *http.Request, requestID, _ string) (string, error) {
	// CookieRequestTracker records r.URL as the return URI.
	return t.cookies.TrackRequest(w, r, requestID)
}

// cookieName is the name CookieRequestTracker gives the tracking cookie of
// rs: the prefix and rs as it is, since a RelayState of samlha's form is a
// cookie-name token that does not start with "~" (crewjam encodes any
// other index).
func (t *StatelessTracker) cookieName(rs string) string { return t.cookies.NamePrefix + rs }

func (t *StatelessTracker) Finish(w http.ResponseWriter, r *http.Request, rs string) (*Tracked, *failure.Failure) {
	origin, _, perr := relaystate.Parse(rs)
	if perr != nil {
		return nil, &failure.Failure{Cause: failure.CauseStateUnknown, Detail: perr.Error(), Err: perr}
	}
	name := t.cookieName(rs)
	if ck, err := r.Cookie(name); err == nil && ck.Value == trackingTombstone {
		return nil, &failure.Failure{Cause: failure.CauseStateAlreadyUsed, Origin: origin,
			Detail: "the tracking cookie of this RelayState was consumed by an earlier submission from this browser"}
	}
	got, err := t.cookies.GetTrackedRequest(r, rs)
	if err != nil {
		f := &failure.Failure{Cause: failure.CauseStateUnknown, Origin: origin, Detail: err.Error(), Err: err}
		switch {
		case errors.Is(err, http.ErrNoCookie):
			if n := t.otherTrackingCookies(r, name); n > 0 {
				f.Detail = "no tracking cookie for this RelayState, though the browser sent " + strconv.Itoa(n) +
					" other tracking cookie(s) to the ACS: never issued to this browser, or forged"
			} else {
				f.Cause = failure.CauseBindingCookieMissing
				f.Detail = "no tracking cookie at all on the ACS request"
			}
		case errors.Is(err, jwt.ErrTokenExpired):
			f.Cause = failure.CauseStateExpired
		case errors.Is(err, jwt.ErrTokenSignatureInvalid):
			f.Cause = failure.CauseStateSignatureInvalid
			if origin != t.instance {
				f.Detail = "tracking cookie set by " + origin + " does not verify with this instance's key: " + err.Error()
			}
		}
		return nil, f
	}
	t.bury(w, name)
	// The ACS redirects only to a local path (localURI).
	return &Tracked{RequestID: got.SAMLRequestID, URI: got.URI, Origin: origin}, nil
}

// otherTrackingCookies counts the tracking cookies (and tombstones) other
// than name on r.
func (t *StatelessTracker) otherTrackingCookies(r *http.Request, name string) int {
	n := 0
	for _, ck := range r.Cookies() {
		if ck.Name != name && strings.HasPrefix(ck.Name, t.cookies.NamePrefix) {
			n++
		}
	}
	return n
}

// bury replaces the tracking cookie name with its tombstone, with the
// attributes CookieRequestTracker gives the tracking cookie, so that the
// browser sends it back exactly when it would have sent the original.
func (t *StatelessTracker) bury(w http.ResponseWriter, name string) {
	secure := t.cookies.ServiceProvider.AcsURL.Scheme == "https"
	sameSite := t.cookies.SameSite
	if (sameSite == 0 || sameSite == http.SameSiteDefaultMode) && secure {
		sameSite = http.SameSiteNoneMode
	}
	path := t.cookies.Path
	if path == "" {
		path = t.cookies.ServiceProvider.AcsURL.Path
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: trackingTombstone, Path: path,
		MaxAge: max(1, int(t.tombstone/time.Second)), HttpOnly: true, Secure: secure, SameSite: sameSite})
}
