package login

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"

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

// ServeLogout starts a logout only from the SP's own logout page: a GET
// shows a page with one button, which POSTs the token of this browser's
// session; a POST without it is logout-token-invalid (403), so a link or
// a form on another site cannot log the user out (crewjam's
// RequirePOSTToStartLogout, which is also set, refuses a GET).
func (e *Engine) ServeLogout(w http.ResponseWriter, r *http.Request) {
	rt := e.live(w, r)
	if rt == nil {
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		ck, err := r.Cookie(session.CookieName)
		if err != nil {
			http.Redirect(w, r, "/", http.StatusFound) // nothing to log out of
			return
		}
		e.resp.Page(w, http.StatusOK, "logout.html", struct {
			respond.Page
			Token        string
			SingleLogout bool
		}{e.resp.PageData("Log out"), logoutToken(ck.Value), rt.mw.ServiceProvider.GetSLOBindingLocation(saml.HTTPRedirectBinding) != "" ||
			rt.mw.ServiceProvider.GetSLOBindingLocation(saml.HTTPPostBinding) != ""})
	case http.MethodPost:
		if f := limits.Body(w, r, limits.MaxFormBody); f != nil {
			e.resp.Fail(w, r, f)
			return
		}
		ck, err := r.Cookie(session.CookieName)
		if err != nil {
			http.Redirect(w, r, "/", http.StatusFound)
			return
		}
		got := r.PostForm.Get(logoutTokenField)
		if !hmac.Equal([]byte(got), []byte(logoutToken(ck.Value))) {
			detail := "POST /logout with a token that is not this session's"
			if got == "" {
				detail = "POST /logout without the logout page's token"
			}
			e.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseLogoutTokenInvalid, Detail: detail})
			return
		}
		rt.mw.HandleStartLogout(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
	}
}

// ServeSLO is crewjam's single logout endpoint with a body limit of its own.
func (e *Engine) ServeSLO(w http.ResponseWriter, r *http.Request) {
	rt := e.live(w, r)
	if rt == nil {
		return
	}
	if f := limits.Body(w, r, limits.MaxSLOBody); f != nil {
		e.resp.Fail(w, r, f)
		return
	}
	if f := screenSLO(r); f != nil {
		e.resp.Fail(w, r, f)
		return
	}
	rt.mw.ServeSLO(w, r)
}
