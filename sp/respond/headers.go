package respond

import (
	"net/http"
	"strings"

	"github.com/crewjam/saml"

	"github.com/samlha/samlha/sp/relaystate"
)

// Security headers. Every reply of the SP's own gets the baseline; its HTML pages
// replace its Content-Security-Policy with one that names everything the
// page may load: its style sheet, and for the auto-POST form its one script,
// by nonce. No page may be framed, cached or followed by a Referer.
const (
	// baselineCSP is the policy of every reply. It restricts nothing a
	// library's page may need (crewjam's own forms add their policy with a
	// script hash; browsers enforce both), only framing and <base>.
	baselineCSP = "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
	// pageCSP is the policy of the SP's own pages (templates in web/): no
	// script at all, the style sheet from this origin. No form-action: the
	// logout form posts here and is redirected to the IdP, which
	// form-action would block.
	pageCSP = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'"
	// ReferrerPolicy keeps SAML messages and return URLs in this site's
	// addresses out of Referer headers.
	ReferrerPolicy = "no-referrer"
)

// SetBaseline sets the security headers of every reply the SP itself makes:
// no framing, no sniffing, no Referer, no caching, and a policy that
// restricts nothing a library's page may need (crewjam's own forms add
// theirs with a script hash; browsers enforce both).
func SetBaseline(h http.Header) {
	h.Set("Content-Security-Policy", baselineCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", ReferrerPolicy)
	h.Set("Cache-Control", "no-store")
}

// Baseline is middleware that sets the baseline before the handler runs,
// so the handler can replace any of it. Mount it on the SP's own routes
// only: an upstream's replies keep the upstream's policy.
func Baseline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SetBaseline(w.Header())
		next.ServeHTTP(w, r)
	})
}

// SetPageHeaders sets the headers of one of the SP's own HTML pages: the
// baseline, with a policy that names everything the page may load.
func SetPageHeaders(h http.Header) {
	SetBaseline(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
}

// ScriptCSP is the policy of a page whose only script carries nonce.
func ScriptCSP(nonce string) string {
	return "default-src 'none'; script-src 'nonce-" + nonce + "'; base-uri 'none'; frame-ancestors 'none'"
}

// WriteAuthnRequestForm writes crewjam's auto-submitting HTTP-POST form for
// authReq under a policy that allows its one script by a fresh nonce, and
// the no-cache headers the SAML bindings require (saml-bindings-2.0-os
// §3.5.5.1). crewjam's HandleStartAuthFlow page has the same guarantees
// (a script hash and no-store); this keeps them.
func WriteAuthnRequestForm(w http.ResponseWriter, authReq *saml.AuthnRequest, relayState string) {
	nonce := relaystate.Token(16)
	h := w.Header()
	SetBaseline(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", ScriptCSP(nonce))
	h.Set("Cache-Control", "no-cache, no-store")
	h.Set("Pragma", "no-cache")
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html><html><head><title>Continue</title></head><body>`)
	b.Write(authReq.PostWithNonce(relayState, nonce))
	b.WriteString(`</body></html>`)
	_, _ = w.Write([]byte(b.String()))
}
