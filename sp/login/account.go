package login

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/crewjam/saml/samlsp"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/session"
)

// reloginCookie counts how often this browser was sent to log in again
// because its session cookie named a session this replica could not use.
const reloginCookie = "samlha_relogin"

// RequireAccount serves next if the request has a session, and starts a
// login otherwise. A browser whose session cookie names a session this
// replica cannot use (it lives on another replica, or is signed with
// another key) is sent to log in again at most MaxRelogins times in a row;
// after that the SP explains instead of looping.
func (e *Engine) RequireAccount(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rt := e.rt.Load()
		sess, err := e.provider.GetSession(r)
		if err == nil && sess != nil {
			if _, err := r.Cookie(reloginCookie); err == nil {
				http.SetCookie(w, &http.Cookie{Name: reloginCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: e.cookies.Secure, SameSite: http.SameSiteLaxMode})
			}
			next.ServeHTTP(w, r.WithContext(samlsp.ContextWithSession(r.Context(), sess)))
			return
		}
		if err != nil && !errors.Is(err, samlsp.ErrNoSession) {
			e.resp.Fail(w, r, failure.FromStore(err, ""))
			return
		}
		if rt == nil {
			// Only a login needs the metadata.
			e.resp.Fail(w, r, errMetadataNotLoaded())
			return
		}
		if _, ckErr := r.Cookie(session.CookieName); ckErr != nil {
			starter{e}.login(w, r, rt, "") // no session cookie at all: an ordinary first login
			return
		}
		miss := &session.Miss{Kind: "invalid", Detail: "session cookie does not verify: " + errString(err)}
		if !errors.As(err, &miss) && e.cfg.Store == nil {
			miss.Origin = "another replica"
		}
		e.m.sessionMisses.WithLabelValues(miss.Kind).Inc()
		n := 0
		if ck, err := r.Cookie(reloginCookie); err == nil {
			n, _ = strconv.Atoi(ck.Value)
		}
		if n >= e.cfg.MaxRelogins && (miss.Kind == "cross-instance" || miss.Kind == "invalid" || miss.Kind == "not-found") {
			c := failure.CauseSessionInvalid
			if miss.Kind == "cross-instance" {
				c = failure.CauseSessionCrossInstance
			}
			e.resp.Fail(w, r, &failure.Failure{Cause: c, Origin: miss.Origin,
				Detail: miss.Detail + "; gave up after " + strconv.Itoa(n) + " re-logins"})
			return
		}
		e.log.Info("session unusable, logging in again", "kind", miss.Kind, "origin", miss.Origin, "attempt", n+1, "detail", miss.Detail)
		http.SetCookie(w, &http.Cookie{Name: reloginCookie, Value: strconv.Itoa(n + 1), Path: "/", MaxAge: 600,
			HttpOnly: true, Secure: e.cookies.Secure, SameSite: http.SameSiteLaxMode})
		starter{e}.login(w, r, rt, "")
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// Session reads r's session: nil without one, with err the session miss
// (samlsp.ErrNoSession, wrapping a *session.Miss when the cookie named
// one). When the store fails, or r has no session and the IdP metadata is
// not loaded (a login could not start), it answers r with the named cause
// and returns ok false: nothing is guessed, no login is started. A session
// needs no metadata: a replica that has just started, or whose IdP is
// down, serves the sessions it can read.
func (e *Engine) Session(w http.ResponseWriter, r *http.Request) (sess samlsp.Session, err error, ok bool) {
	rt := e.rt.Load()
	sess, err, ok = e.session(w, r)
	if ok && sess == nil && rt == nil {
		e.resp.Fail(w, r, errMetadataNotLoaded())
		return nil, nil, false
	}
	return sess, err, ok
}

func (e *Engine) session(w http.ResponseWriter, r *http.Request) (sess samlsp.Session, err error, ok bool) {
	sess, err = e.provider.GetSession(r)
	if err != nil && !errors.Is(err, samlsp.ErrNoSession) {
		f := failure.FromStore(err, "")
		f.Op = "session"
		e.resp.Fail(w, r, f)
		return nil, nil, false
	}
	return sess, err, true
}
