package sp

import (
	"fmt"
	"net/http"
)

// Cause names why the SP could not finish a login or serve a session. The
// same string is logged, labels the samlha_sp_failures_total counter, is
// sent in the X-Samlha-Cause header and is shown on the error page, so a
// person can follow one failure from the browser to the metrics.
type Cause string

// The failure taxonomy (DESIGN.md section 4).
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
	// Gateway: the session's attributes do not satisfy the --allow rules
	// for the path.
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
	// A POST to /logout without the token of the logout page: another
	// site tried to log the user out (logout CSRF), or the page is stale.
	CauseLogoutTokenInvalid Cause = "logout-token-invalid"
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
}

// Status is the HTTP status the SP answers a failure of this cause with.
func (c Cause) Status() int {
	switch c {
	case CauseStateCrossInstance, CauseSessionCrossInstance, CauseStateSignatureInvalid, CauseSessionInvalid:
		// The request reached a replica that cannot answer it.
		return http.StatusMisdirectedRequest
	case CauseStateAlreadyUsed:
		return http.StatusConflict
	case CauseBindingMismatch, CauseResponseInvalid, CauseAssertionReplayed, CauseForbidden:
		return http.StatusForbidden
	case CauseStoreUnavailable, CauseStoreFull, CauseIdPMetadataUnavailable:
		return http.StatusServiceUnavailable
	case CauseInternal:
		return http.StatusInternalServerError
	case CauseLoginRateLimited:
		return http.StatusTooManyRequests
	case CauseRequestTooLarge:
		return http.StatusRequestEntityTooLarge
	case CauseReturnURLTooLong:
		return http.StatusRequestURITooLong
	case CauseLogoutTokenInvalid:
		return http.StatusForbidden
	default:
		return http.StatusBadRequest
	}
}

// Failure is a login or session failure with everything needed to log it,
// count it and explain it. Detail is private (logs only); nothing in the
// page comes from the request unescaped.
type Failure struct {
	Cause Cause
	// Detail is the private reason, for the log: crewjam's PrivateErr, the
	// store error, the tombstone's history. Never shown to the browser.
	Detail string
	// Reason is a bounded sub-classification, for response-invalid: the
	// crewjam sentinel that matched ("signature", "audience", ...).
	Reason string
	// Origin is the instance the RelayState or session ID names.
	Origin string
	// RequestID is the AuthnRequest ID, when known.
	RequestID string
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

func failf(c Cause, err error, format string, args ...any) *Failure {
	return &Failure{Cause: c, Err: err, Detail: fmt.Sprintf(format, args...)}
}

// explanation is the public text of a failure's page.
type explanation struct {
	Title string
	What  string
	Fixes []string
}

// explain renders the human explanation of f as seen from instance self,
// whose store is of kind storeKind.
func explain(f *Failure, self, storeKind string) explanation {
	switch f.Cause {
	case CauseStateCrossInstance:
		return explanation{
			Title: "The login began on another replica",
			What: fmt.Sprintf("This login was started on replica %q, but the identity provider's response was delivered to replica %q. "+
				"Each replica keeps login state in its own memory (store %q), so %q has never heard of this login. "+
				"The load balancer sent the two halves of one login to different replicas.", f.Origin, self, storeKind, self),
			Fixes: []string{
				"Pin each browser to one replica: sticky sessions at the load balancer (AWS ALB duration-based stickiness, HAProxy \"cookie SRV insert\", stickyproxy --stickiness duration). The affinity cookie must reach the ACS on the identity provider's cross-site POST: use SameSite=None; Secure (ALB's AWSALBCORS, stickyproxy --cookie-twin).",
				"Or share the state: run every replica with --store redis and the same --store-url, so any replica can finish any login.",
				"Or route the ACS POST by its RelayState: stickyproxy --saml-aware sends it to the replica named in the RelayState.",
			},
		}
	case CauseStateExpired:
		return explanation{
			Title: "The login took too long",
			What:  "The login was found, but it expired before the identity provider's response arrived.",
			Fixes: []string{"Log in again.", "If users routinely need longer at the identity provider (MFA, password reset), raise --request-ttl."},
		}
	case CauseStateAlreadyUsed:
		return explanation{
			Title: "This login response was already used",
			What:  "The identity provider's response for this login has already been accepted once. A response is accepted only once: this one was submitted twice (double click, back button) or replayed.",
			Fixes: []string{"Go to the application; if you are not logged in, log in again.", "If this happens without user action, look for a proxy or client retrying POSTs to the ACS."},
		}
	case CauseStateUnknown:
		return explanation{
			Title: "Unknown login",
			What:  "The response names a login this service never started, or one it has forgotten (expired long ago, or lost when a replica with in-memory state restarted).",
			Fixes: []string{"Log in again from the application, not from a bookmark of the identity provider.", "If replicas restart often, keep state in a shared store (--store redis)."},
		}
	case CauseStateSignatureInvalid:
		return explanation{
			Title: "The login cookie was signed by another key",
			What:  fmt.Sprintf("In stateless mode the login state travels in a signed cookie. Replica %q cannot verify the cookie's signature: the replica that began the login (%q) signs with a different key, or the cookie was altered.", self, f.Origin),
			Fixes: []string{"Give every replica the same --sp-key and --sp-cert.", "Or keep login state in a shared store (--store redis)."},
		}
	case CauseBindingCookieMissing:
		return explanation{
			Title: "Your browser did not send the login cookie",
			What:  "When the login began, this service set a cookie that ties the login to your browser. The identity provider's response arrived without it. Browsers withhold SameSite=Lax and Strict cookies on the identity provider's cross-site POST, and some block them as third-party cookies; or the response was begun in another browser.",
			Fixes: []string{"Serve the service over https so that the cookie can be SameSite=None; Secure (the default on https), or set --cookie-samesite none with https.", "Make sure no extension or privacy setting blocks the cookie.", "Log in again from this browser."},
		}
	case CauseBindingMismatch:
		return explanation{
			Title: "This response belongs to another browser",
			What:  "The identity provider's response is for a login begun in a different browser. Accepting it would log you in as someone else (login CSRF), so it was refused.",
			Fixes: []string{"Log in again from the application in this browser."},
		}
	case CauseStoreUnavailable:
		return explanation{
			Title: "Login state is unavailable",
			What:  fmt.Sprintf("Replica %q cannot reach its %s store, so it cannot start or finish a login. Nothing was guessed: the login was neither accepted nor refused.", self, storeKind),
			Fixes: []string{"Try again in a moment.", "Operators: check the store (readiness at /readyz fails while it is down); make it highly available (Redis Sentinel or Cluster)."},
		}
	case CauseStoreFull:
		if f.Reason == "pending-logins" {
			return explanation{
				Title: "Too many logins in progress",
				What: fmt.Sprintf("Replica %q has begun as many logins as it may keep pending (--max-pending-logins), and refuses new ones rather than let the %s store grow without bound. "+
					"Users who are logged in, and logins already under way, are still served.", self, storeKind),
				Fixes: []string{"Try again later (the Retry-After header says when a slot frees).", "Operators: look for a flood of login starts (samlha_sp_failures_total{cause=\"login-rate-limited\"}); raise --max-pending-logins or lower --request-ttl and --tombstone-ttl, sized as README \"Bounds on input\" says."},
			}
		}
		return explanation{
			Title: "The login store is full",
			What:  "This replica's in-memory store is full and refuses new login state rather than forget logins in progress.",
			Fixes: []string{"Try again in a moment.", "Operators: raise max_entries in the memory store URL, lower --request-ttl, or use a shared store."},
		}
	case CauseResponseInvalid:
		return explanation{
			Title: "The identity provider's response was refused",
			What:  fmt.Sprintf("The SAML response failed validation (%s). The precise reason is in this replica's log; it is not shown here.", nonEmpty(f.Reason, "see log")),
			Fixes: []string{"Log in again.", "Operators: check the clocks of the SP and IdP, the IdP metadata (--idp-metadata-url), and that every replica has the same --root-url and key."},
		}
	case CauseAssertionReplayed:
		return explanation{
			Title: "This assertion was already used",
			What:  "The identity provider's assertion has been accepted before. Each assertion is accepted once, on any replica.",
			Fixes: []string{"Log in again."},
		}
	case CauseSessionCrossInstance:
		return explanation{
			Title: "Your session lives on another replica",
			What: fmt.Sprintf("Your browser has a session created on replica %q, but this request reached replica %q, which keeps sessions in its own memory (store %q). "+
				"Logging in again did not help, so this service stopped instead of sending you round in circles.", f.Origin, self, storeKind),
			Fixes: []string{"Pin browsers to one replica (sticky sessions), or share sessions with --store redis.", "Clear this site's cookies and log in again."},
		}
	case CauseSessionInvalid:
		return explanation{
			Title: "Your session cookie is not valid here",
			What:  fmt.Sprintf("Replica %q cannot verify your session cookie (stateless mode: it was signed with another key), and logging in again did not help.", self),
			Fixes: []string{"Give every replica the same --sp-key and --sp-cert.", "Clear this site's cookies and log in again."},
		}
	case CauseIdPMetadataUnavailable:
		return explanation{
			Title: "The identity provider is not configured yet",
			What:  fmt.Sprintf("Replica %q has not loaded the identity provider's metadata yet, so it cannot start or finish a login.", self),
			Fixes: []string{"Try again in a moment.", "Operators: check --idp-metadata-url (or --idp-metadata-file) and this replica's log."},
		}
	case CauseForbidden:
		return explanation{
			Title: "You may not open this page",
			What:  "You are logged in, but this page is restricted to users with attributes your account does not have.",
			Fixes: []string{"Ask the application's owner for access.", "Operators: the --allow rules and the attribute the IdP sends are in this replica's log (cause=forbidden)."},
		}
	case CauseRedirectRefused:
		return explanation{
			Title: "Refused to send you to another site",
			What:  "The link asked this service to send you, after login, to an address that is not on this site or on one it trusts.",
			Fixes: []string{"Open the application directly.", "Operators: add the host to --allowed-redirect-hosts if it is yours."},
		}
	case CauseInternal:
		return explanation{
			Title: "Something went wrong on this replica",
			What:  fmt.Sprintf("Replica %q failed in a way that is neither your request's fault nor a store outage. The error is in its log.", self),
			Fixes: []string{"Try again.", "Operators: look for this request in the replica's log (cause=internal-error)."},
		}
	case CauseLoginRateLimited:
		who := "Your address has"
		if f.Reason == "replica" {
			who = fmt.Sprintf("Replica %q has", self)
		}
		return explanation{
			Title: "Too many logins at once",
			What:  who + " started more logins than the limit allows in a short time, so this one was not started. Nothing was stored.",
			Fixes: []string{"Wait a few seconds (the Retry-After header says how many) and try again.", "Operators: if many real users share one address (a NAT), raise --login-rate-per-client and --login-burst-per-client; behind a proxy set --trusted-proxies so each user's own address counts."},
		}
	case CauseRequestTooLarge:
		return explanation{
			Title: "The request was too large",
			What:  "The request's body is larger than this endpoint accepts, so it was not read.",
			Fixes: []string{"Log in again from the application.", "Operators: the limits per endpoint are listed in README \"Bounds on input\"."},
		}
	case CauseReturnURLTooLong:
		return explanation{
			Title: "The address is too long to return to",
			What:  "After login this service sends you back to the page you asked for, and remembers its address until then. This address is longer than it will remember, so no login was started.",
			Fixes: []string{"Open a shorter address of the application and log in from there.", "Operators: raise --max-return-url (at most 8 KiB) if the application needs longer addresses."},
		}
	case CauseLogoutTokenInvalid:
		return explanation{
			Title: "Logout needs confirmation",
			What:  "Logging out takes a click on this service's own logout page. This request did not come from it (another site may have tried to log you out), so you are still logged in.",
			Fixes: []string{"To log out, open /logout and press the button."},
		}
	default:
		return explanation{
			Title: "The login request was malformed",
			What:  "The request to the assertion consumer service is not a usable SAML POST.",
			Fixes: []string{"Log in again from the application."},
		}
	}
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
