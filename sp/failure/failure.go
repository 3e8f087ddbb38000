// Package failure is the SP's failure taxonomy (DESIGN.md section 4): every
// way a login, a session, a logout or a proxied request can be refused has a
// Cause, an HTTP status and a public explanation with advice. The same cause
// string is logged, labels samlha_sp_failures_total, is sent in the
// X-Samlha-Cause header and is shown on the error page, so a person can
// follow one refusal from the browser to the metrics. Package respond
// answers a Failure; this package only says what it is.
package failure

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/samlha/samlha/store"
)

// Cause names why the SP refused a request.
type Cause string

// The failure taxonomy.
const (
	// The RelayState says the login began on another replica, and this
	// replica's store is its own memory: the state is over there.
	CauseStateCrossInstance Cause = "state-not-found-cross-instance"
	// The tracked request was found but its time ran out.
	CauseStateExpired Cause = "state-expired"
	// The tracked request was already consumed: a replayed or
	// double-submitted response.
	CauseStateAlreadyUsed Cause = "state-already-used"
	// No such tracked request: never issued, forged, or forgotten.
	CauseStateUnknown Cause = "state-unknown"
	// Stateless mode: the signed tracking cookie does not verify.
	CauseStateSignatureInvalid Cause = "state-signature-invalid"
	// The browser did not send the cookie that binds the login to it.
	CauseBindingCookieMissing Cause = "binding-cookie-missing"
	// The browser sent a binding cookie, but not the one this login began
	// with: the response was begun in another browser (login CSRF).
	CauseBindingMismatch Cause = "binding-mismatch"
	// The store could not be reached; nothing was guessed.
	CauseStoreUnavailable Cause = "store-unavailable"
	// The store refused new state because it is full.
	CauseStoreFull Cause = "store-full"
	// crewjam refused the SAML response; the reason is in the log.
	CauseResponseInvalid Cause = "response-invalid"
	// The assertion was accepted before.
	CauseAssertionReplayed Cause = "assertion-replayed"
	// The browser holds a session cookie for a session this replica cannot
	// see, and re-login attempts did not help.
	CauseSessionCrossInstance Cause = "session-not-found-cross-instance"
	// The session cookie is present but invalid (stateless: signed with
	// another key), and re-login attempts did not help.
	CauseSessionInvalid Cause = "session-invalid"
	// The request to the ACS is not a usable SAML POST.
	CauseRequestMalformed Cause = "request-malformed"
	// This replica has not (yet) loaded the IdP's metadata.
	CauseIdPMetadataUnavailable Cause = "idp-metadata-unavailable"
	// Gateway and forward-auth: the session's attributes do not satisfy
	// the --allow rules for the path.
	CauseForbidden Cause = "forbidden"
	// A return URL (rd=, forward-auth) is neither a local path nor on an
	// allowed host: refused, never followed (no open redirect).
	CauseRedirectRefused Cause = "redirect-refused"
	// Something failed that is neither the request, the store nor the IdP:
	// a bug or a broken configuration. The log has the error.
	CauseInternal Cause = "internal-error"

	// Bounds on input (README "Bounds on input").

	// A client, or this replica as a whole, began logins faster than its
	// limit (reason client or replica); 429 with Retry-After.
	CauseLoginRateLimited Cause = "login-rate-limited"
	// A request body was over its route's limit.
	CauseRequestTooLarge Cause = "request-too-large"
	// The address to return to after login is over --max-return-url.
	CauseReturnURLTooLong Cause = "return-url-too-long"
	// A POST to the logout form without the token of the logout page:
	// another site tried to log the user out (logout CSRF), or the page is
	// stale.
	CauseLogoutTokenInvalid Cause = "logout-token-invalid"

	// Gateway and forward-auth.

	// A request that needs a session came without one and is not a browser
	// navigation (an API call): 401, no login state is created.
	CauseSessionRequired Cause = "session-required"
	// The path is not in the one canonical form the gateway decides on
	// (empty, . or .. segments, encoded separators or dots, path
	// parameters, backslashes, NULs, case or trailing-dot variants of a
	// rule's path): refused rather than guessed at.
	CausePathNotCanonical Cause = "path-not-canonical"
	// A client sent a header whose name, compared case-insensitively with
	// '_' as '-', is an identity header, or a Connection header naming one
	// (forward-auth: the proxy could be talked into passing it on).
	CauseIdentityHeaderForged Cause = "identity-header-forged"
	// The upstream application could not be reached or failed.
	CauseUpstreamUnavailable Cause = "upstream-unavailable"
	// The upstream application did not send its response headers within
	// --upstream-header-timeout.
	CauseUpstreamTimeout Cause = "upstream-timeout"

	// The client went away (closed the connection, cancelled the request)
	// before the SP could answer: nothing to answer, counted and logged at
	// debug level, never as a store outage or an internal error.
	CauseClientGone Cause = "client-gone"
)

// AllCauses lists every cause, for documentation and for pre-registering
// metric labels so that dashboards see zeros rather than gaps.
var AllCauses = []Cause{
	CauseStateCrossInstance, CauseStateExpired, CauseStateAlreadyUsed, CauseStateUnknown,
	CauseStateSignatureInvalid, CauseBindingCookieMissing, CauseBindingMismatch,
	CauseStoreUnavailable, CauseStoreFull, CauseResponseInvalid, CauseAssertionReplayed,
	CauseSessionCrossInstance, CauseSessionInvalid, CauseRequestMalformed, CauseIdPMetadataUnavailable,
	CauseInternal,
	CauseLoginRateLimited, CauseRequestTooLarge, CauseReturnURLTooLong, CauseLogoutTokenInvalid,
	CauseForbidden, CauseRedirectRefused,
	CauseSessionRequired, CausePathNotCanonical, CauseIdentityHeaderForged,
	CauseUpstreamUnavailable, CauseUpstreamTimeout, CauseClientGone,
}

// statuses maps each cause to its HTTP status; a cause not listed is 400.
var statuses = map[Cause]int{
	// The request reached a replica that cannot answer it.
	CauseStateCrossInstance:    http.StatusMisdirectedRequest,
	CauseSessionCrossInstance:  http.StatusMisdirectedRequest,
	CauseStateSignatureInvalid: http.StatusMisdirectedRequest,
	CauseSessionInvalid:        http.StatusMisdirectedRequest,
	CauseStateAlreadyUsed:      http.StatusConflict,
	CauseBindingMismatch:       http.StatusForbidden,
	CauseResponseInvalid:       http.StatusForbidden,
	CauseAssertionReplayed:     http.StatusForbidden,
	CauseForbidden:             http.StatusForbidden,
	// 403, not 400: nginx's auth_request passes only 401 and 403 on to
	// the client (anything else becomes its own 500).
	CauseIdentityHeaderForged:   http.StatusForbidden,
	CauseLogoutTokenInvalid:     http.StatusForbidden,
	CauseStoreUnavailable:       http.StatusServiceUnavailable,
	CauseStoreFull:              http.StatusServiceUnavailable,
	CauseIdPMetadataUnavailable: http.StatusServiceUnavailable,
	CauseInternal:               http.StatusInternalServerError,
	CauseLoginRateLimited:       http.StatusTooManyRequests,
	CauseRequestTooLarge:        http.StatusRequestEntityTooLarge,
	CauseReturnURLTooLong:       http.StatusRequestURITooLong,
	CauseSessionRequired:        http.StatusUnauthorized,
	CauseUpstreamUnavailable:    http.StatusBadGateway,
	CauseUpstreamTimeout:        http.StatusGatewayTimeout,
	// nginx's "client closed request": nobody reads it.
	CauseClientGone: 499,
}

// Status is the HTTP status the SP answers a failure of this cause with.
func (c Cause) Status() int {
	if s, ok := statuses[c]; ok {
		return s
	}
	return http.StatusBadRequest
}

// LogLevel is the level a failure of this cause is logged at: error when
// it is the replica's, the store's or the upstream's fault rather than the
// request's; debug for a client that left or an API call without a session;
// warn otherwise. A replica that
// has not loaded the IdP metadata yet is starting, not failing.
func (c Cause) LogLevel() slog.Level {
	switch {
	case c == CauseClientGone, c == CauseSessionRequired:
		// A client that left, or an API call without a session (routine
		// in forward-auth): nothing for an operator to act on.
		return slog.LevelDebug
	case c.Status() >= 500 && c != CauseIdPMetadataUnavailable:
		return slog.LevelError
	}
	return slog.LevelWarn
}

// Failure is a refusal with everything needed to log it, count it and
// explain it. Detail is private (logs only); nothing on the page comes from
// the request unescaped.
type Failure struct {
	Cause Cause
	// Detail is the private reason, for the log: crewjam's PrivateErr, the
	// store error, the tombstone's history. Never shown to the browser.
	Detail string
	// Reason is a bounded sub-classification, for the metric label: the
	// crewjam sentinel that matched ("signature", "audience", ...), or
	// "client"/"replica" for a rate limit.
	Reason string
	// Op is what was refused, for the log line ("<op> refused"): login
	// (the default), session, logout, gateway, forward-auth.
	Op string
	// Origin is the instance the RelayState or session ID names.
	Origin string
	// RequestID is the AuthnRequest ID, when known.
	RequestID string
	// IdPStatus is the status the IdP sent in a refused response (its
	// code and message), shown on the page: it is the IdP's own word.
	IdPStatus string
	// RetryAfter, when positive, is sent as Retry-After (whole seconds,
	// at least one). Every 503 gets one (default 5s) whether set or not.
	RetryAfter time.Duration
	// API marks a request from a program rather than a person: the answer
	// is JSON whatever the request's Accept header says.
	API bool
	// LoginURL, for session-required, is where a browser would start the
	// login (sent in the JSON answer).
	LoginURL string
	// Err is the underlying error, if any.
	Err error
}

func (f *Failure) Error() string {
	s := string(f.Cause)
	if f.Reason != "" {
		s += " (" + f.Reason + ")"
	}
	if f.Detail != "" {
		s += ": " + f.Detail
	}
	return s
}

func (f *Failure) Unwrap() error { return f.Err }

// FromStore classifies an error from the state layer: a full store, an
// unreachable one, or (not a store error at all, such as a cookie that
// could not be signed) an internal error, so an outage is never claimed for
// what was not one. origin is the instance the request's state names, if
// known.
func FromStore(err error, origin string) *Failure {
	c := CauseInternal
	switch {
	case errors.Is(err, context.Canceled):
		// The request's own context: the client left mid-call.
		c = CauseClientGone
	case errors.Is(err, store.ErrFull):
		c = CauseStoreFull
	case store.IsUnavailable(err), errors.Is(err, context.DeadlineExceeded):
		// A deadline here is the SP's own store timeout, which the store
		// reports as the caller's: the store did not answer in time.
		c = CauseStoreUnavailable
	}
	return &Failure{Cause: c, Origin: origin, Detail: err.Error(), Err: err}
}

// Truncate cuts s to n bytes for a Detail, marking the cut: a request can
// make a detail as long as it likes, a log line is bounded.
func Truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
