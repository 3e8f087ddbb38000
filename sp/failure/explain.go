package failure

import (
	"fmt"
	"strings"
)

// Explanation is the public text of a failure's page: a title, what
// happened, and what to change (for the user first, then for operators).
type Explanation struct {
	Title string
	What  string
	Fixes []string
}

// Context is what an explanation may name about the replica that refused:
// its instance ID, its store's kind (never its address: pages are public),
// and the flags an operator would change.
type Context struct {
	Instance  string
	StoreKind string
	// MetadataSource names where the IdP metadata comes from, as the flag
	// that set it ("--idp-metadata-url https://idp/metadata").
	MetadataSource string
	// IDPInitiated is whether IdP-initiated logins are accepted.
	IDPInitiated bool
	// LogoutPath is where this replica's logout page is in its mode.
	LogoutPath string
}

// Explain is the public explanation of f as seen from the replica
// described by c.
func Explain(f *Failure, c Context) Explanation {
	if c.MetadataSource == "" {
		c.MetadataSource = "--idp-metadata-url or --idp-metadata-file"
	}
	if c.LogoutPath == "" {
		c.LogoutPath = "/logout"
	}
	if ex, ok := explanations[f.Cause]; ok {
		return ex(f, c)
	}
	return Explanation{
		Title: "The request was refused",
		What:  "This replica refused the request (" + string(f.Cause) + ").",
		Fixes: []string{"Operators: this replica's log has the details (cause=" + string(f.Cause) + ")."},
	}
}

var explanations = map[Cause]func(f *Failure, c Context) Explanation{
	CauseStateCrossInstance: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "The login began on another replica",
			What: fmt.Sprintf("This login was started on replica %q, but the identity provider's response was delivered to replica %q. "+
				"Each replica keeps login state in its own memory (store %q), so %q has never heard of this login. "+
				"The load balancer sent the two halves of one login to different replicas.", f.Origin, c.Instance, c.StoreKind, c.Instance),
			Fixes: []string{
				"Pin each browser to one replica: sticky sessions at the load balancer (AWS ALB duration-based stickiness, HAProxy \"cookie SRV insert\", stickyproxy --stickiness duration). The affinity cookie must reach the ACS on the identity provider's cross-site POST: use SameSite=None; Secure (ALB's AWSALBCORS, stickyproxy --cookie-twin).",
				"Or share the state: run every replica with --store redis and the same --store-url, so any replica can finish any login.",
				"Or route the ACS POST by its RelayState: stickyproxy --saml-aware sends it to the replica named in the RelayState.",
			},
		}
	},
	CauseStateExpired: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "The login took too long",
			What:  "The login was found, but it expired before the identity provider's response arrived.",
			Fixes: []string{"Log in again.", "If users routinely need longer at the identity provider (MFA, password reset), raise --request-ttl."},
		}
	},
	CauseStateAlreadyUsed: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "This login response was already used",
			What:  "The identity provider's response for this login has already been accepted once. A response is accepted only once: this one was submitted twice (double click, back button) or replayed.",
			Fixes: []string{"Go to the application; if you are not logged in, log in again.", "If this happens without user action, look for a proxy or client retrying POSTs to the ACS."},
		}
	},
	CauseStateUnknown: func(f *Failure, c Context) Explanation {
		ex := Explanation{
			Title: "Unknown login",
			What:  "The response names a login this service never started, or one it has forgotten (expired long ago, or lost when a replica with in-memory state restarted).",
			Fixes: []string{"Log in again from the application, not from a bookmark of the identity provider.", "If replicas restart often, keep state in a shared store (--store redis)."},
		}
		if f.Reason == ReasonUnsolicited {
			ex.What = "The identity provider sent a response that answers no login this service started: an IdP-initiated login (from the identity provider's portal or a bookmark of it). This service does not accept those."
			ex.Fixes = []string{"Open the application and log in from there.",
				"Operators: to accept IdP-initiated logins, start every replica with --allow-idp-initiated (it needs a shared store, --store redis, so a replayed response is refused on every replica) and, for landing pages, --idp-initiated-redirect."}
		}
		return ex
	},
	CauseStateSignatureInvalid: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "The login cookie was signed by another key",
			What:  fmt.Sprintf("In stateless mode the login state travels in a signed cookie. Replica %q cannot verify the cookie's signature: the replica that began the login (%q) signs with a different key, or the cookie was altered.", c.Instance, f.Origin),
			Fixes: []string{"Give every replica the same --sp-key and --sp-cert.", "Or keep login state in a shared store (--store redis)."},
		}
	},
	CauseBindingCookieMissing: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "Your browser did not send the login cookie",
			What:  "When the login began, this service set a cookie that ties the login to your browser. The identity provider's response arrived without it. Browsers withhold SameSite=Lax and Strict cookies on the identity provider's cross-site POST, and some block them as third-party cookies; or the response was begun in another browser.",
			Fixes: []string{"Serve the service over https so that the cookie can be SameSite=None; Secure (the default on https), or set --cookie-samesite none with https.", "Make sure no extension or privacy setting blocks the cookie.", "Log in again from this browser."},
		}
	},
	CauseBindingMismatch: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "This response belongs to another browser",
			What:  "The identity provider's response is for a login begun in a different browser. Accepting it would log you in as someone else (login CSRF), so it was refused.",
			Fixes: []string{"Log in again from the application in this browser."},
		}
	},
	CauseStoreUnavailable: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "Login state is unavailable",
			What:  fmt.Sprintf("Replica %q cannot reach its %s store, so it cannot start or finish a login. Nothing was guessed: the login was neither accepted nor refused.", c.Instance, c.StoreKind),
			Fixes: []string{"Try again in a moment.", "Operators: check the store (readiness at /readyz fails while it is down); make it highly available (Redis Sentinel or Cluster)."},
		}
	},
	CauseStoreFull: func(f *Failure, c Context) Explanation {
		if f.Reason == "pending-logins" {
			return Explanation{
				Title: "Too many logins in progress",
				What: fmt.Sprintf("Replica %q has begun as many logins as it may keep pending (--max-pending-logins), and refuses new ones rather than let the %s store grow without bound. "+
					"Users who are logged in, and logins already under way, are still served.", c.Instance, c.StoreKind),
				Fixes: []string{"Try again later (the Retry-After header says when a slot frees).", "Operators: look for a flood of login starts (samlha_sp_failures_total{cause=\"login-rate-limited\"}); raise --max-pending-logins or lower --request-ttl and --tombstone-ttl, sized as README \"Bounds on input\" says."},
			}
		}
		return Explanation{
			Title: "The login store is full",
			What:  "This replica's in-memory store is full and refuses new login state rather than forget logins in progress.",
			Fixes: []string{"Try again in a moment.", "Operators: raise max_entries in the memory store URL, lower --request-ttl, or use a shared store."},
		}
	},
	CauseResponseInvalid: responseInvalid,
	CauseAssertionReplayed: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "This assertion was already used",
			What:  "The identity provider's assertion has been accepted before. Each assertion is accepted once, on any replica.",
			Fixes: []string{"Log in again."},
		}
	},
	CauseSessionCrossInstance: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "Your session lives on another replica",
			What: fmt.Sprintf("Your browser has a session created on replica %q, but this request reached replica %q, which keeps sessions in its own memory (store %q). "+
				"Logging in again did not help, so this service stopped instead of sending you round in circles.", f.Origin, c.Instance, c.StoreKind),
			Fixes: []string{"Pin browsers to one replica (sticky sessions), or share sessions with --store redis.", "Clear this site's cookies and log in again."},
		}
	},
	CauseSessionInvalid: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "Your session cookie is not valid here",
			What:  fmt.Sprintf("Replica %q cannot verify your session cookie (stateless mode: it was signed with another key), and logging in again did not help.", c.Instance),
			Fixes: []string{"Give every replica the same --sp-key and --sp-cert.", "Clear this site's cookies and log in again."},
		}
	},
	CauseIdPMetadataUnavailable: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "The identity provider is not configured yet",
			What:  fmt.Sprintf("Replica %q has not loaded the identity provider's metadata yet, so it cannot start or finish a login.", c.Instance),
			Fixes: []string{"Try again in a moment.", "Operators: check " + c.MetadataSource + " and this replica's log (it says why the metadata did not load)."},
		}
	},
	CauseForbidden: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "You may not open this page",
			What:  "You are logged in, but this page is restricted to users with attributes your account does not have.",
			Fixes: []string{"Ask the application's owner for access.", "Operators: the --allow rules and the attribute the IdP sends are in this replica's log (cause=forbidden)."},
		}
	},
	CauseRedirectRefused: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "Refused to send you to another site",
			What:  "The link asked this service to send you, after login, to an address that is not on this site or on one it trusts.",
			Fixes: []string{"Open the application directly.", "Operators: add the host to --allowed-redirect-hosts if it is yours."},
		}
	},
	CauseInternal: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "Something went wrong on this replica",
			What:  fmt.Sprintf("Replica %q failed in a way that is neither your request's fault nor a store outage. The error is in its log.", c.Instance),
			Fixes: []string{"Try again.", "Operators: look for this request in the replica's log (cause=internal-error)."},
		}
	},
	CauseLoginRateLimited: func(f *Failure, c Context) Explanation {
		who := "Your address has"
		switch f.Reason {
		case "replica":
			who = fmt.Sprintf("Replica %q has", c.Instance)
		case "client-share", "shedding":
			return Explanation{
				Title: "Too many logins in progress from your address",
				What: fmt.Sprintf("Logins begun from your address and not finished hold more than their share of what replica %q keeps pending, "+
					"so this one was not started and nothing was stored. Logins already under way, and users who are logged in, are still served.", c.Instance),
				Fixes: []string{"Finish a login already open in another tab, or wait (the Retry-After header says how long) and try again.",
					"Operators: many users behind one address (a NAT) need a higher --max-pending-logins-per-client; behind a proxy set --trusted-proxies so each user's own address counts."},
			}
		}
		return Explanation{
			Title: "Too many logins at once",
			What:  who + " started more logins than the limit allows in a short time, so this one was not started. Nothing was stored.",
			Fixes: []string{"Wait a few seconds (the Retry-After header says how many) and try again.", "Operators: if many real users share one address (a NAT), raise --login-rate-per-client and --login-burst-per-client; behind a proxy set --trusted-proxies so each user's own address counts."},
		}
	},
	CauseRequestTooLarge: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "The request was too large",
			What:  "The request's body is larger than this endpoint accepts, so it was not read.",
			Fixes: []string{"Log in again from the application.", "Operators: the limits per endpoint are listed in README \"Bounds on input\"."},
		}
	},
	CauseReturnURLTooLong: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "The address is too long to return to",
			What:  "After login this service sends you back to the page you asked for, and remembers its address until then. This address is longer than it will remember, so no login was started.",
			Fixes: []string{"Open a shorter address of the application and log in from there.", "Operators: raise --max-return-url (at most 8 KiB) if the application needs longer addresses."},
		}
	},
	CauseLogoutTokenInvalid: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "Logout needs confirmation",
			What:  "Logging out takes a click on this service's own logout page. This request did not come from it (another site may have tried to log you out), so you are still logged in.",
			Fixes: []string{"To log out, open " + c.LogoutPath + " and press the button."},
		}
	},
	CauseRequestMalformed: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "The login request was malformed",
			What:  "The request to the assertion consumer service is not a usable SAML POST.",
			Fixes: []string{"Log in again from the application."},
		}
	},
	CauseSessionRequired: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "Log in first",
			What:  "This address needs a session, and the request came without one. Requests from programs (not a browser opening a page) are not sent to the identity provider: they get this answer, and nothing is stored.",
			Fixes: []string{"Open the application in a browser and log in, then try again.", "Programs: follow login_url in a browser, or send the session cookie."},
		}
	},
	CausePathNotCanonical: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "The address is not in its plain form",
			What:  "The path has parts that applications read in different ways (empty, . or .. segments, encoded slashes or dots, ';' parameters, backslashes, control characters, or another letter case or a trailing dot of a protected path). This service decides access on one plain form of each path, so it refuses the others rather than guess.",
			Fixes: []string{"Use the address in its plain form, as the application's own links write it.", "Operators: the refused path is in this replica's log (cause=path-not-canonical)."},
		}
	},
	CauseIdentityHeaderForged: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "The request carries a forged identity",
			What:  "The request carries a header that only this service may set (an identity header, under some spelling), or asks a proxy to drop one. It was refused so that no proxy in front of the application can be talked into passing it on.",
			Fixes: []string{"Send the request without identity headers: this service adds them after login.", "Operators: the header is named in this replica's log (cause=identity-header-forged)."},
		}
	},
	CauseUpstreamUnavailable: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "The application is not answering",
			What:  fmt.Sprintf("You are logged in, but replica %q could not reach the application behind it, or the application failed.", c.Instance),
			Fixes: []string{"Try again in a moment.", "Operators: check the application (--upstream) and this replica's log (cause=upstream-unavailable)."},
		}
	},
	CauseUpstreamTimeout: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "The application took too long",
			What:  fmt.Sprintf("Replica %q forwarded the request, but the application did not start its answer in time.", c.Instance),
			Fixes: []string{"Try again in a moment.", "Operators: check the application; raise --upstream-header-timeout if it is slow to start answers by design."},
		}
	},
	CauseClientGone: func(f *Failure, c Context) Explanation {
		return Explanation{
			Title: "The request was abandoned",
			What:  "The client closed the connection before the answer was ready.",
			Fixes: []string{"Try again."},
		}
	},
}

// Reasons the explanations read (besides response-invalid's crewjam ones).
const (
	// ReasonUnsolicited: a response without a RelayState of this SP's
	// form, while IdP-initiated logins are off.
	ReasonUnsolicited = "unsolicited"
)

// responseAdvice is the operator's advice for each response-invalid
// reason, after "Log in again."; %[1]s is the metadata source.
var responseAdvice = map[string]string{
	"signature":                 "Operators: the response's signature does not verify with the identity provider's certificate in %[1]s: the IdP's signing key changed (refresh the metadata) or the response was altered.",
	"untrusted-certificate":     "Operators: the response is signed with a certificate that is not in %[1]s: the IdP rolled its key; refresh the metadata.",
	"certificate-not-valid-now": "Operators: the IdP's signing certificate in %[1]s is expired or not yet valid; check the IdP's certificate and both clocks.",
	"decryption":                "Operators: the assertion is encrypted to a key this replica lacks: every replica needs the same --sp-key, and the IdP encrypts to the certificate in the SP metadata it last read (during a rollover, give --sp-key-next too).",
	"expired":                   "Operators: the response is too old: check the clocks of this replica and the IdP (NTP), and that nothing holds responses back.",
	"not-yet-valid":             "Operators: the response is from the future: check the clocks of this replica and the IdP (NTP).",
	"issuer":                    "Operators: the response comes from another identity provider than the one in %[1]s.",
	"destination":               "Operators: the response is addressed to another URL: every replica needs the same --root-url, the one registered at the IdP.",
	"audience":                  "Operators: the assertion is for another service: every replica needs the same --root-url (the SP's entity ID), the one registered at the IdP.",
	"in-response-to":            "Operators: the response answers another login than the one it was posted for (a response moved between logins or browsers).",
	"unsigned":                  "Operators: the message is not signed: configure the IdP to sign what it sends this SP (assertions or responses; logout messages).",
	"status":                    "Operators: the identity provider refused the login itself; its status is shown above and in its own log.",
	"dtd":                       "Operators: the message carries a DTD, which SAML forbids and this SP refuses before parsing: something between the IdP and the browser is forging or rewriting messages.",
}

// responseInvalid explains a SAML message crewjam (or the SP's screen)
// refused, with advice for the reason it found.
func responseInvalid(f *Failure, c Context) Explanation {
	reason, logout := strings.CutPrefix(f.Reason, "logout-")
	ex := Explanation{
		Title: "The identity provider's response was refused",
		What:  fmt.Sprintf("The SAML response failed validation (%s). The precise reason is in this replica's log; it is not shown here.", nonEmpty(f.Reason, "see log")),
		Fixes: []string{"Log in again."},
	}
	switch {
	case logout:
		ex.Title = "The identity provider's logout message was refused"
		ex.What = fmt.Sprintf("A single-logout message from the identity provider failed validation (%s). The precise reason is in this replica's log.", f.Reason)
		ex.Fixes = []string{"Close the browser to end every session, or log out at the identity provider."}
	case f.IdPStatus != "":
		ex.What = fmt.Sprintf("The identity provider did not log you in; it answered: %s.", f.IdPStatus)
	}
	if a, ok := responseAdvice[reason]; ok {
		ex.Fixes = append(ex.Fixes, fmt.Sprintf(a, c.MetadataSource))
	} else {
		ex.Fixes = append(ex.Fixes, "Operators: check the clocks of the SP and IdP, the IdP metadata ("+c.MetadataSource+"), and that every replica has the same --root-url and key.")
	}
	return ex
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
