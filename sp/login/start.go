package login

import (
	"net/http"
	"strings"
	"time"

	"github.com/crewjam/saml"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/limits"
	"github.com/samlha/samlha/sp/respond"
)

// Start sends the browser to the IdP with a new AuthnRequest tracked in the
// login state, to return to r's own URL. Unlike crewjam's
// HandleStartAuthFlow, a store failure is a 503 with its cause, not a 500
// with the error text.
func (e *Engine) Start(w http.ResponseWriter, r *http.Request) {
	if rt := e.live(w, r); rt != nil {
		starter{e}.login(w, r, rt, "")
	}
}

// StartTo starts a login explicitly, to return to rd (checked by the
// return-URL policy; "" is "/"): /saml/login?rd=. A hostile rd is refused
// whoever asks; a program (not a browser navigation: an API call, a fetch)
// gets 401 session-required and no login state is created; a browser that
// already has a session goes to rd at once.
func (e *Engine) StartTo(w http.ResponseWriter, r *http.Request, rd string) {
	if rd == "" {
		rd = "/"
	}
	target, f := e.cfg.ReturnURL.Check(rd)
	if f != nil {
		e.resp.Fail(w, r, f)
		return
	}
	if !Navigation(r) {
		e.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseSessionRequired, API: true, Op: "login",
			Detail: r.Method + " " + PathLoginDoc + " from a program, not a browser navigation: no login started"})
		return
	}
	rt := e.live(w, r)
	if rt == nil {
		return
	}
	sess, _, ok := e.session(w, r)
	if !ok {
		return
	}
	if sess != nil {
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	starter{e}.login(w, r, rt, target)
}

// ServeLogin is /saml/login?rd=URL: StartTo(rd).
func (e *Engine) ServeLogin(w http.ResponseWriter, r *http.Request) {
	e.StartTo(w, r, r.URL.Query().Get("rd"))
}

// PathLoginDoc names the explicit login start in log lines.
const PathLoginDoc = "/saml/login"

// Navigation reports whether r is a top-level navigation by a browser,
// which may be sent to log in: GET or HEAD asking for HTML, and not a
// fetch or XHR (Sec-Fetch-Mode, X-Requested-With).
func Navigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" && m != "navigate" {
		return false
	}
	if strings.EqualFold(r.Header.Get("X-Requested-With"), "XMLHttpRequest") {
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// login starts a login that returns to target: "" is r's own path and
// query (returnurl.Policy.FromRequest); anything else is a return URL the
// caller has already checked (StartTo).
// starter is the engine seen as what begins logins.
type starter struct{ *Engine }

func (e starter) login(w http.ResponseWriter, r *http.Request, rt *liveConfig, target string) {
	sp := &rt.mw.ServiceProvider
	binding := saml.HTTPRedirectBinding
	loc := sp.GetSSOBindingLocation(binding)
	if loc == "" {
		binding = saml.HTTPPostBinding
		loc = sp.GetSSOBindingLocation(binding)
	}
	if loc == "" {
		e.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseIdPMetadataUnavailable, Detail: "IdP metadata lists no SSO endpoint for HTTP-Redirect or HTTP-POST"})
		return
	}
	authReq, err := sp.MakeAuthenticationRequest(loc, binding, saml.HTTPPostBinding)
	if err != nil {
		e.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseIdPMetadataUnavailable, Detail: "cannot make AuthnRequest: " + err.Error(), Err: err})
		return
	}
	uri, now, ok := e.admit(w, r, target)
	if !ok {
		return
	}
	rs, err := rt.state.Begin(w, r, authReq.ID, uri)
	if err != nil {
		e.cfg.Gate.Release(limits.ClientAddress(r), now)
		e.resp.Fail(w, r, failure.FromStore(err, e.cfg.Instance))
		return
	}
	e.m.loginsStarted.Inc()
	e.log.Debug("login started", "request_id", authReq.ID, "return_to", r.URL.Path)
	w.Header().Set("Cache-Control", "no-cache, no-store")
	w.Header().Set("Pragma", "no-cache")
	if binding == saml.HTTPRedirectBinding {
		u, err := authReq.Redirect(rs, sp)
		if err != nil {
			e.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseIdPMetadataUnavailable, Detail: "cannot encode AuthnRequest: " + err.Error(), Err: err})
			return
		}
		http.Redirect(w, r, u.String(), http.StatusFound)
		return
	}
	respond.WriteAuthnRequestForm(w, authReq, rs)
}

// admit checks the return URL and the login limits for a login r is
// about to start. It returns the URI to store and the time the start was
// counted at (for limits.Gate.Release), or answers r and returns false.
func (e starter) admit(w http.ResponseWriter, r *http.Request, target string) (string, time.Time, bool) {
	uri, f := target, (*failure.Failure)(nil)
	if target == "" {
		uri, f = e.cfg.ReturnURL.FromRequest(r)
	}
	if f != nil {
		e.resp.Fail(w, r, f)
		return "", time.Time{}, false
	}
	now := e.cfg.Now()
	client := limits.ClientAddress(r)
	if f, wait := e.cfg.Gate.Admit(client, now); f != nil {
		f.RetryAfter = wait
		e.resp.Fail(w, r, f) // logged by sample under a flood; counted in full
		return "", time.Time{}, false
	}
	return uri, now, true
}
