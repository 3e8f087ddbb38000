package login

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"

	"github.com/crewjam/saml"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/limits"
	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/sp/session"
)

// logoutTokenField is the form field of the logout page's CSRF token.
const logoutTokenField = "token"

// logoutToken is the CSRF token of the logout form of the browser whose
// session cookie holds sessionCookie: a MAC keyed by the cookie, which
// another site can neither read nor compute. It changes with every login.
func logoutToken(sessionCookie string) string {
	mac := hmac.New(sha256.New, []byte(sessionCookie))
	mac.Write([]byte("samlha logout v1"))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// PathSignedOut is the page every logout ends on. It starts no login by
// itself: a browser that still has a session at the IdP would be logged in
// again at once, silently, by a page that does.
const PathSignedOut = "/saml/signed-out"

// Logout is the engine seen as what ends sessions: the logout page and its
// form, single logout with the IdP, and the signed-out page.
type Logout struct{ e *Engine }

// Logout returns the engine's logout handlers.
func (e *Engine) Logout() Logout { return Logout{e} }

// What the signed-out page says of the IdP (query parameter idp).
const (
	idpConfirmed   = "confirmed"   // the IdP's LogoutResponse verified
	idpNone        = "none"        // the IdP offers no single logout
	idpUnconfirmed = "unconfirmed" // its LogoutResponse was refused
)

// ServePage starts a logout only from the SP's own logout page: a GET shows
// a page with one button, which POSTs the token of this browser's session;
// a POST without it is logout-token-invalid (403), so a link or a form on
// another site cannot log the user out (crewjam's RequirePOSTToStartLogout,
// which is also set, refuses a GET). With the token, the session ends here
// and, when the IdP offers single logout, the browser goes there; every
// path ends on the signed-out page.
func (l Logout) ServePage(w http.ResponseWriter, r *http.Request) {
	e := l.e
	rt := e.live(w, r)
	if rt == nil {
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		ck, err := r.Cookie(session.CookieName)
		if err != nil {
			http.Redirect(w, r, PathSignedOut, http.StatusFound) // nothing to log out of
			return
		}
		e.resp.Page(w, http.StatusOK, "logout.html", struct {
			respond.Page
			Token        string
			SingleLogout bool
		}{e.resp.PageData("Log out"), logoutToken(ck.Value), singleLogout(rt)})
	case http.MethodPost:
		l.start(w, r, rt)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
	}
}

// singleLogout reports whether the IdP offers single logout.
func singleLogout(rt *liveConfig) bool {
	sp := &rt.mw.ServiceProvider
	return sp.GetSLOBindingLocation(saml.HTTPRedirectBinding) != "" || sp.GetSLOBindingLocation(saml.HTTPPostBinding) != ""
}

// start ends the session of a POST from the logout page.
func (l Logout) start(w http.ResponseWriter, r *http.Request, rt *liveConfig) {
	e := l.e
	if f := limits.Body(w, r, limits.MaxFormBody); f != nil {
		f.Op = "logout"
		e.resp.Fail(w, r, f)
		return
	}
	ck, err := r.Cookie(session.CookieName)
	if err != nil {
		http.Redirect(w, r, PathSignedOut, http.StatusFound)
		return
	}
	got := r.PostForm.Get(logoutTokenField)
	if !hmac.Equal([]byte(got), []byte(logoutToken(ck.Value))) {
		detail := "POST " + r.URL.Path + " with a token that is not this session's"
		if got == "" {
			detail = "POST " + r.URL.Path + " without the logout page's token"
		}
		e.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseLogoutTokenInvalid, Op: "logout", Detail: detail})
		return
	}
	slo := singleLogout(rt)
	end := PathSignedOut + "?idp=" + idpNone
	outcome := "local"
	if slo {
		end, outcome = PathSignedOut, "sent-to-idp"
	}
	// crewjam ends the session (and revokes it by NameID and
	// SessionIndex) and sends the LogoutRequest; where it would send the
	// browser home ("/", which in gateway mode is the application, and
	// would log the user in again), it goes to the signed-out page.
	rt.mw.HandleStartLogout(&homeRedirect{ResponseWriter: w, to: end}, r)
	e.m.logouts.WithLabelValues(outcome).Inc()
	e.log.Info("logout", "outcome", outcome, "single_logout", slo)
}

// ServeSLO is crewjam's single logout endpoint, with a body limit and a DTD
// screen of its own: a LogoutRequest from the IdP ends the session here
// (and is answered), a LogoutResponse ends an SP-initiated logout on the
// signed-out page. The session was ended before the browser went to the
// IdP, so a LogoutResponse that does not verify (SimpleSAMLphp sends them
// unsigned by default) ends there too, saying that the IdP's part is
// unconfirmed, rather than on an error page.
func (l Logout) ServeSLO(w http.ResponseWriter, r *http.Request) {
	e := l.e
	rt := e.live(w, r)
	if rt == nil {
		return
	}
	if f := limits.Body(w, r, limits.MaxSLOBody); f != nil {
		f.Op = "logout"
		e.resp.Fail(w, r, f)
		return
	}
	if f := screenSLO(r); f != nil {
		f.Op = "logout"
		e.resp.Fail(w, r, f)
		return
	}
	if r.Form.Get("SAMLResponse") == "" {
		rt.mw.ServeSLO(w, r) // a LogoutRequest: crewjam answers the IdP
		e.m.logouts.WithLabelValues("idp-initiated").Inc()
		return
	}
	// Only a browser with a logout of this SP's pending (crewjam tracks it
	// in a cookie) may end on the signed-out page when the response is
	// refused: any other refused response is an error, as before, and
	// ends nothing (a page on another site must not log anyone out).
	if t := rt.mw.LogoutRequestTracker; t != nil && len(t.GetTrackedRequests(r)) > 0 {
		r = r.WithContext(context.WithValue(r.Context(), sloResponseKey{}, true))
	}
	hr := &homeRedirect{ResponseWriter: w, to: PathSignedOut + "?idp=" + idpConfirmed}
	rt.mw.ServeSLO(hr, r)
	if hr.done {
		e.m.logouts.WithLabelValues("idp-confirmed").Inc()
		e.log.Info("logout", "outcome", "idp-confirmed")
	}
}

// sloResponseKey marks a request carrying the IdP's LogoutResponse, for
// onLibraryError.
type sloResponseKey struct{}

// unconfirmed ends an SP-initiated logout whose LogoutResponse was refused
// (f): the session ended here when the logout began (start), f is counted
// and logged as a logout's, and the browser goes to the signed-out page,
// which names the reason.
func (l Logout) unconfirmed(w http.ResponseWriter, r *http.Request, f *failure.Failure) {
	e := l.e
	f.Op = "logout"
	e.resp.Record(r, f)
	e.m.logouts.WithLabelValues("idp-unconfirmed").Inc()
	http.Redirect(w, r, PathSignedOut+"?idp="+idpUnconfirmed+"&reason="+url.QueryEscape(f.Reason), http.StatusFound)
}

// ServeSignedOut is the signed-out page: it names what is known of the
// IdP's part, and links to a new login, which it never starts by itself.
func (l Logout) ServeSignedOut(w http.ResponseWriter, r *http.Request) {
	e := l.e
	q := r.URL.Query()
	idp, reason := q.Get("idp"), q.Get("reason")
	switch idp {
	case idpConfirmed, idpNone, idpUnconfirmed:
	default:
		idp = ""
	}
	if !logoutReason(reason) {
		reason = ""
	}
	w.Header().Set("X-Samlha-Logout", nonEmpty(idp, "local")+nonEmptyPrefix("; reason=", reason))
	e.resp.Page(w, http.StatusOK, "signedout.html", struct {
		respond.Page
		IdP, Reason, LoginURL string
	}{e.resp.PageData("Signed out"), idp, reason, e.cfg.ReturnURL.Home})
}

// logoutReason reports whether reason is one the signed-out page may show:
// a reason label of a refused logout message, never text from the request.
func logoutReason(reason string) bool {
	r, ok := strings.CutPrefix(reason, "logout-")
	if !ok {
		return false
	}
	if r == "unsigned" || r == "status" || r == "other" || r == "dtd" {
		return true
	}
	for _, rr := range responseReasons {
		if rr.reason == r {
			return true
		}
	}
	return false
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func nonEmptyPrefix(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

// homeRedirect sends a redirect to "/" (crewjam's home after a logout) to
// another place instead.
type homeRedirect struct {
	http.ResponseWriter
	to   string
	done bool // the redirect home was sent, elsewhere
}

func (h *homeRedirect) WriteHeader(code int) {
	if code == http.StatusFound && h.Header().Get("Location") == "/" {
		h.Header().Set("Location", h.to)
		h.done = true
	}
	h.ResponseWriter.WriteHeader(code)
}
