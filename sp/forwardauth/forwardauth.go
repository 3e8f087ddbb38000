// Package forwardauth answers a front proxy's authentication subrequests
// (nginx auth_request, Caddy forward_auth, Traefik forwardAuth) at
// /saml/auth: 200 with the identity headers for a session the --allow
// rules admit on the original path, 403 for one they do not, and without a
// session a redirect that starts the login (for a browser navigation the
// proxy describes) or 401. It never creates login state, and it refuses a
// request that carries a forged identity header under any spelling, so the
// proxy can be talked into passing none on.
package forwardauth

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/samlha/samlha/sp/access"
	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/identity"
	"github.com/samlha/samlha/sp/login"
	"github.com/samlha/samlha/sp/respond"
	"github.com/samlha/samlha/sp/returnurl"
	"github.com/samlha/samlha/stickyproxy/forward"
)

// Options configure a Handler.
type Options struct {
	Allow access.Rules
	// TrustedProxies are the front proxies whose X-Forwarded-* and
	// X-Original-URI describe the original request.
	TrustedProxies forward.Trusted
	ReturnURL      returnurl.Policy
	RootURL        *url.URL

	Engine    *login.Engine
	Identity  *identity.Headers
	Responder *respond.Responder
	Registry  prometheus.Registerer
	Logger    *slog.Logger
}

// Handler serves forward-auth.
type Handler struct {
	o       Options
	answers *prometheus.CounterVec // outcome
}

// New returns the handler o configures, with its metric registered.
func New(o Options) *Handler {
	h := &Handler{o: o, answers: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "samlha_gateway_forward_auth_total",
		Help: "Answers of /saml/auth by outcome: ok, unauthenticated, redirect, forbidden, path-refused, forged.",
	}, []string{"outcome"})}
	o.Registry.MustRegister(h.answers)
	return h
}

// original is the request a front proxy asks /saml/auth about.
type original struct {
	method, proto, host, uri string
}

// originalOf reads the original request from a trusted peer's
// X-Forwarded-Method/-Proto/-Host/-Uri (Caddy forward_auth, Traefik
// forwardAuth), X-Original-URI (nginx auth_request) or X-Original-URL
// (ingress-nginx). ok is false when the peer is not trusted. When more than
// one names the URI they must agree: a proxy that passes a client's copy of
// one of them on (and sets another) must not let the client choose the
// path the rules judge; disagreement is an error.
func (h *Handler) originalOf(r *http.Request) (o original, ok bool, err error) {
	if !h.o.TrustedProxies.PeerTrusted(r) {
		return original{}, false, nil
	}
	hd := r.Header
	o = original{method: hd.Get("X-Forwarded-Method"), proto: hd.Get("X-Forwarded-Proto"), host: hd.Get("X-Forwarded-Host")}
	for _, name := range []string{"X-Forwarded-Uri", "X-Original-Uri", "X-Original-Url"} {
		v := hd.Get(name)
		if name == "X-Original-Url" && v != "" {
			u, perr := url.Parse(v)
			if perr != nil {
				return o, true, fmt.Errorf("X-Original-URL %q: %v", failure.Truncate(v, 200), perr)
			}
			v = u.RequestURI()
		}
		switch {
		case v == "":
		case o.uri == "":
			o.uri = v
		case v != o.uri:
			return o, true, fmt.Errorf("the front proxy's headers disagree on the original URI (%s %q, another %q): a client's copy was passed on",
				name, failure.Truncate(v, 100), failure.Truncate(o.uri, 100))
		}
	}
	return o, true, nil
}

// path is the canonical path of the original request, for the allow rules.
func (o original) path() (string, error) {
	u, err := url.ParseRequestURI(o.uri)
	if err != nil {
		return "", err
	}
	return access.Canonical(u.EscapedPath())
}

// ServeLogin is /saml/login in forward-auth mode: /saml/login?rd=URL, or,
// without rd, the original URI a trusted nginx names in X-Original-URI
// (error_page 401 sends the browser here through a named location; nginx
// cannot URL-encode the URI into rd=). An API call gets 401 without any
// login state, as in gateway mode.
func (h *Handler) ServeLogin(w http.ResponseWriter, r *http.Request) {
	rd := r.URL.Query().Get("rd")
	o, trusted, err := h.originalOf(r)
	if err != nil {
		h.answers.WithLabelValues("path-refused").Inc()
		h.o.Responder.Fail(w, r, &failure.Failure{Cause: failure.CausePathNotCanonical, Op: "forward-auth", Detail: err.Error(), Err: err})
		return
	}
	if rd == "" && trusted && o.uri != "" {
		if !login.Navigation(r) {
			h.answers.WithLabelValues("unauthenticated").Inc()
			h.o.Responder.Fail(w, r, &failure.Failure{Cause: failure.CauseSessionRequired, Op: "forward-auth", API: true,
				Detail: "login start through nginx's error_page for a request that is not a browser navigation"})
			return
		}
		rd = o.uri
	}
	h.o.Engine.StartTo(w, r, rd)
}

// ServeAuth is /saml/auth.
func (h *Handler) ServeAuth(w http.ResponseWriter, r *http.Request) {
	if name, forged := h.o.Identity.Protected().Forged(r.Header); forged {
		h.answers.WithLabelValues("forged").Inc()
		h.o.Responder.Fail(w, r, &failure.Failure{Cause: failure.CauseIdentityHeaderForged, Op: "forward-auth", API: true,
			Detail: "the request carries " + failure.Truncate(name, 100) + ", which only this SP may set"})
		return
	}
	// A path that is not canonical is a page for a browser, JSON for a
	// program (the Responder decides by Accept): nginx asks /saml/auth
	// again, as a plain request, to show samlsp's answer to the client.
	o, trusted, err := h.originalOf(r)
	if err != nil {
		h.answers.WithLabelValues("path-refused").Inc()
		h.o.Responder.Fail(w, r, &failure.Failure{Cause: failure.CausePathNotCanonical, Op: "forward-auth", Detail: err.Error(), Err: err})
		return
	}
	sess, _, ok := h.o.Engine.Session(w, r)
	if !ok {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if sess == nil {
		h.unauthenticated(w, r, o, trusted)
		return
	}
	p := "/"
	switch {
	case trusted && o.uri != "":
		var err error
		if p, err = o.path(); err != nil {
			h.answers.WithLabelValues("path-refused").Inc()
			h.o.Responder.Fail(w, r, &failure.Failure{Cause: failure.CausePathNotCanonical, Op: "forward-auth",
				Detail: "original URI " + failure.Truncate(o.uri, 200) + ": " + err.Error(), Err: err})
			return
		}
	case h.o.Allow.PathMatters():
		// Rules for some paths only, and no trusted proxy says which
		// path this is: refuse rather than judge it as "/".
		h.answers.WithLabelValues("forbidden").Inc()
		h.o.Responder.Fail(w, r, &failure.Failure{Cause: failure.CauseForbidden, Op: "forward-auth",
			Detail: "--allow has per-path rules, and the original path is unknown (no X-Forwarded-Uri or X-Original-URI from a --trusted-proxies peer)"})
		return
	}
	id := identity.Of(sess)
	if f := h.o.Allow.Decide(p, id.User, id.Attrs); f != nil {
		f.Op = "forward-auth"
		h.answers.WithLabelValues("forbidden").Inc()
		h.o.Responder.Fail(w, r, f)
		return
	}
	if err := h.o.Identity.Set(w.Header(), id); err != nil {
		h.o.Responder.Fail(w, r, &failure.Failure{Cause: failure.CauseInternal, Op: "forward-auth",
			Detail: "cannot sign the identity JWT: " + err.Error(), Err: err})
		return
	}
	h.answers.WithLabelValues("ok").Inc()
	w.WriteHeader(http.StatusOK)
}

// unauthenticated answers a subrequest without a session: a redirect that
// starts the login when a trusted proxy describes a browser navigation to
// an allowed URL, else 401.
func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request, o original, trusted bool) {
	if trusted && o.method != "" && o.proto != "" && o.host != "" && strings.HasPrefix(o.uri, "/") &&
		login.Navigation(&http.Request{Method: o.method, Header: r.Header}) {
		if target, f := h.o.ReturnURL.Check(o.proto + "://" + o.host + o.uri); f == nil {
			h.answers.WithLabelValues("redirect").Inc()
			http.Redirect(w, r, h.o.RootURL.JoinPath("/saml/login").String()+"?rd="+url.QueryEscape(target), http.StatusFound)
			return
		}
		h.o.Logger.Warn("forward-auth: original URL is not an allowed return URL; answering 401",
			"host", failure.Truncate(o.host, 100), "proto", failure.Truncate(o.proto, 10))
	}
	h.answers.WithLabelValues("unauthenticated").Inc()
	h.o.Responder.Fail(w, r, &failure.Failure{Cause: failure.CauseSessionRequired, Op: "forward-auth", API: true,
		Detail: "no session; the front proxy answers the client"})
}
