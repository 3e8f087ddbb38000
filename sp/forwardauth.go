package sp

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/samlha/samlha/sp/access"
	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/identity"
)

// serveLoginRD starts a login explicitly: /saml/login?rd=URL returns to
// URL afterwards (checked by returnTarget; default "/"). A browser that
// already has a session goes to URL at once.
func (s *SP) serveLoginRD(w http.ResponseWriter, r *http.Request) {
	rt := s.live(w, r)
	if rt == nil {
		return
	}
	rd := r.URL.Query().Get("rd")
	if fw, trusted := s.forwardedRequest(r); rd == "" && trusted && fw.uri != "" {
		// nginx: error_page 401 sends the browser here through a named
		// location, with the original URI in X-Original-URI (nginx cannot
		// URL-encode it into rd=). An API call is answered 401 without
		// any login state, as in gateway mode.
		if !browserNavigation(r) {
			s.gm.forwardAuth.WithLabelValues("unauthenticated").Inc()
			s.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseSessionRequired, Op: "forward-auth", API: true,
				Detail: "login start through nginx's error_page for a request that is not a browser navigation"})
			return
		}
		rd = fw.uri
	}
	if rd == "" {
		rd = "/"
	}
	target, f := s.returnURL.Check(rd)
	if f != nil {
		s.resp.Fail(w, r, f)
		return
	}
	sess, _, ok := s.sessionOf(w, r, rt)
	if !ok {
		return
	}
	if sess != nil {
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	s.startLoginTo(w, r, rt, target)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// forwarded is the original request a front proxy asks /saml/auth about.
type forwarded struct {
	method, proto, host, uri string
}

// forwardedRequest reads the original request from a trusted peer's
// X-Forwarded-Method/-Proto/-Host/-Uri (Caddy forward_auth, Traefik
// forwardAuth) or X-Original-URI (nginx auth_request). ok is false when
// the peer is not trusted or the headers are incomplete.
func (s *SP) forwardedRequest(r *http.Request) (f forwarded, ok bool) {
	if !s.peerTrusted(r) {
		return forwarded{}, false
	}
	h := r.Header
	f = forwarded{method: h.Get("X-Forwarded-Method"), proto: h.Get("X-Forwarded-Proto"),
		host: h.Get("X-Forwarded-Host"), uri: h.Get("X-Forwarded-Uri")}
	if f.uri == "" {
		f.uri = h.Get("X-Original-Uri")
	}
	return f, true
}

// originalPath is the path of the original request, for the allow rules;
// "" when it cannot be known.
func (f forwarded) originalPath() string {
	if f.uri == "" {
		return ""
	}
	u, err := url.ParseRequestURI(f.uri)
	if err != nil {
		return ""
	}
	p, err := access.Canonical(u.EscapedPath())
	if err != nil {
		return ""
	}
	return p
}

// serveAuth is the forward-auth endpoint for nginx auth_request, Caddy
// forward_auth and Traefik forwardAuth: 200 with the identity headers for
// a session allowed on the original path; 403 (cause forbidden) for one
// that is not; without a session, a redirect that starts the login when a
// trusted proxy names the original request (method, proto, host, URI) and
// it is a browser navigation, else 401. It never creates login state.
func (s *SP) serveAuth(w http.ResponseWriter, r *http.Request) {
	rt := s.live(w, r)
	if rt == nil {
		return
	}
	fw, trusted := s.forwardedRequest(r)
	sess, _, ok := s.sessionOf(w, r, rt)
	if !ok {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if sess != nil {
		id := identity.Of(sess)
		p := "/"
		switch {
		case trusted && fw.uri != "":
			if p = fw.originalPath(); p == "" {
				s.gm.forwardAuth.WithLabelValues("path-refused").Inc()
				s.resp.Fail(w, r, &failure.Failure{Cause: failure.CausePathNotCanonical, Op: "forward-auth", API: true,
					Detail: "original URI " + truncate(fw.uri, 200) + " is not in canonical form"})
				return
			}
		case s.cfg.Gateway.Allow.PathMatters():
			// Rules for some paths only, and no trusted proxy says which
			// path this is: refuse rather than judge it as "/".
			s.gm.forwardAuth.WithLabelValues("forbidden").Inc()
			s.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseForbidden, Op: "forward-auth", Detail: "--allow has per-path rules, and the original path is unknown (no X-Forwarded-Uri or X-Original-URI from a --trusted-proxies peer)"})
			return
		}
		if f := s.cfg.Gateway.Allow.Decide(p, id.User, id.Attrs); f != nil {
			f.Op = "forward-auth"
			s.gm.forwardAuth.WithLabelValues("forbidden").Inc()
			s.resp.Fail(w, r, f)
			return
		}
		if err := s.ids.Set(w.Header(), id); err != nil {
			s.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseInternal, Detail: "cannot sign the identity JWT: " + err.Error(), Err: err})
			return
		}
		s.gm.forwardAuth.WithLabelValues("ok").Inc()
		w.WriteHeader(http.StatusOK)
		return
	}
	if trusted && fw.method != "" && fw.proto != "" && fw.host != "" && strings.HasPrefix(fw.uri, "/") &&
		(fw.method == http.MethodGet || fw.method == http.MethodHead) && browserNavigation(&http.Request{Method: fw.method, Header: r.Header}) {
		if target, f := s.returnURL.Check(fw.proto + "://" + fw.host + fw.uri); f == nil {
			s.gm.forwardAuth.WithLabelValues("redirect").Inc()
			http.Redirect(w, r, s.loginURL(target), http.StatusFound)
			return
		}
		s.log.Warn("forward-auth: original URL is not an allowed return URL; answering 401",
			"host", truncate(fw.host, 100), "proto", truncate(fw.proto, 10))
	}
	s.gm.forwardAuth.WithLabelValues("unauthenticated").Inc()
	s.resp.Fail(w, r, &failure.Failure{Cause: failure.CauseSessionRequired, Op: "forward-auth", API: true,
		Detail: "no session; the front proxy answers the client"})
}
