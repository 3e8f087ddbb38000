// Package sptest is a scripted browser that completes SP-initiated SAML
// logins over real HTTP, for samlha's tests and its lab.
//
// A Browser follows redirects (GET after 301/302/303 from a POST, method and
// body kept on 307/308), parses each page's HTML, fills the IdP's login form
// (inputs "user" and "password", after Options.ThinkTime), submits the
// auto-POST forms that carry SAMLRequest or SAMLResponse (crewjam's are
// submitted by script), and stops at Options.SuccessPath. It records every
// hop: URL, status, the SP instance and named cause (X-Samlha-Instance,
// X-Samlha-Cause), stickyproxy's target and decision, the names of the
// cookies sent, and whether the request was cross-site.
//
//	b := sptest.NewBrowser(sptest.Options{})
//	res := b.Login(ctx, "http://127.0.0.1:8081/app", "alice", "alice-password")
//	if !res.OK { fmt.Println(res.Cause, res.Err) }
//
// # Cookies and SameSite
//
// The browser keeps its own cookie jar, because net/http/cookiejar drops
// SameSite. It applies Chrome's rules to top-level navigations:
//
//   - A site is a scheme plus a registrable domain (public suffix + one
//     label; ports do not count; an IP address or "localhost" is its own
//     site). A request is cross-site when its target's site differs from
//     the site of the page that submitted the form or, in a redirect chain,
//     of any URL of the chain so far (the chain is tainted as a whole).
//   - Cross-site GET: SameSite=None and Lax cookies are sent, Strict ones
//     are not. Cross-site POST: only SameSite=None (which must be Secure).
//     Same-site: all.
//   - A cookie without SameSite is Lax. Chrome's two-minute "Lax+POST"
//     exception (such a cookie still goes with a cross-site POST while it
//     is younger than two minutes) is emulated only with
//     Options.LaxPlusPOST; Options.SimulatedThink ages the cookies by a
//     user's think time without waiting for it.
//   - SameSite=None without Secure is rejected when set; Secure cookies are
//     set and sent over https only (http://localhost and 127.0.0.0/8 are
//     NOT treated as secure, unlike Chrome: use TLS to test Secure cookies).
//   - Domain and Path matching, host-only cookies, Max-Age over Expires,
//     deletion, and the __Secure-/__Host- prefixes follow RFC 6265(bis).
//
// Options.DisableSameSite sends every matching cookie instead, to show that
// a failure is SameSite's.
//
// Requests carry what Chrome sends on navigations: Sec-Fetch-Site,
// -Mode, -Dest and -User, Origin on POSTs (samlidp refuses a login POST
// whose origin is not its own), and Referer under
// strict-origin-when-cross-origin.
//
// # Several sites on loopback
//
// Options.Resolve maps host names to loopback addresses, so an IdP at
// http://idp.samlha-idp.test:9000 and an SP at http://sp.samlha-sp.test:8081
// are two sites to the browser while both listen on 127.0.0.1. Options.RootCAs
// trusts a lab's throwaway CA for TLS.
//
// # Lower-level steps
//
// LoginUntilACS stops before the SAMLResponse is posted and returns the form;
// Submit posts such a form from any browser (to replay or transplant a
// response); Get navigates to a URL; Cookies and SetCookie read and tamper
// with the jar.
//
// The development IdP the tests run against is in sp/devidp.
package sptest
