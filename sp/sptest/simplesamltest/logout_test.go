package simplesamltest_test

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/sp/sptest/simplesamltest"
)

// sloPath is SimpleSAMLphp's single logout endpoint.
const sloPath = "/saml2/idp/SingleLogoutService.php"

// unsignedLogoutCause reports whether cause names an unsigned
// LogoutResponse, the one cause a completed logout may carry. The SP
// change names it; any cause that says "unsigned" is accepted here.
func unsignedLogoutCause(cause string) bool { return strings.Contains(cause, "unsigned") }

// SP-initiated single logout: the user presses the button of samlsp's
// /logout page, samlsp sends a LogoutRequest to SimpleSAMLphp, which ends
// its session and answers with a LogoutResponse, signed (sign.logout) or
// not (SimpleSAMLphp's default). Either way the user must end on samlsp's
// signed-out page, not on an error: the unsigned case may name the
// unsigned LogoutResponse as its cause (X-Samlha-Cause), nothing else.
// Both sessions must be gone: /whoami answers 401, and logging in again
// asks for the password.
func TestSPInitiatedLogout(t *testing.T) {
	t.Parallel()
	for _, signed := range []bool{true, false} {
		t.Run(fmt.Sprintf("signed=%v", signed), func(t *testing.T) {
			t.Parallel()
			idp, s, b := loggedIn(t, simplesamltest.SPConfig{SignLogout: signed})
			confirm := browse(t, b, s.URL+"/logout")
			if confirm.Status != http.StatusOK || confirm.URL.Path != "/logout" {
				t.Fatalf("GET /logout: %d at %s, want samlsp's logout page", confirm.Status, confirm.URL)
			}
			page, err := b.SubmitForm(ctx(t), confirm, "/saml/logout")
			if err != nil {
				t.Fatal(err)
			}
			hops := describeHops(page.Hops)
			if !slices.ContainsFunc(page.Hops, func(h sptest.Hop) bool { return hopHas(h, sloPath, "SAMLRequest") }) {
				t.Errorf("no LogoutRequest reached SimpleSAMLphp: the logout was local only:\n%s", hops)
			}
			if !slices.ContainsFunc(page.Hops, func(h sptest.Hop) bool { return hopHas(h, "/saml/slo", "SAMLResponse") }) {
				t.Errorf("SimpleSAMLphp's LogoutResponse never reached samlsp's /saml/slo:\n%s", hops)
			}
			cause := page.Header.Get(sptest.HeaderCause)
			switch {
			case page.Status >= 400:
				t.Errorf("the logout ended on HTTP %d (cause %q) at %s, want samlsp's signed-out page:\n%s\n%s", page.Status, cause, page.URL, hops, pageText(page.Body))
			case !sameOrigin(page.URL, s.URL):
				t.Errorf("the logout ended at %s, want a page of samlsp (%s):\n%s", page.URL, s.URL, hops)
			case cause != "" && (signed || !unsignedLogoutCause(cause)):
				t.Errorf("the signed-out page names cause %q; want none%s:\n%s", cause, map[bool]string{false: " or the unsigned LogoutResponse"}[signed], hops)
			case page.URL.Path != "/saml/signed-out":
				t.Errorf("the logout ended at %s, want samlsp's signed-out page:\n%s", page.URL, hops)
			}
			// The page says what is known of the IdP's part.
			want := map[bool]string{true: "confirmed", false: "unconfirmed; reason=logout-unsigned"}[signed]
			if got := page.Header.Get("X-Samlha-Logout"); got != want {
				t.Errorf("X-Samlha-Logout %q, want %q", got, want)
			}
			t.Logf("the logout ended on %d at %s (cause %q)", page.Status, page.URL, cause)
			checkSignedOut(t, b, idp, s)
		})
	}
}

// IdP-initiated single logout: a logout started at SimpleSAMLphp
// (SingleLogoutService.php?ReturnTo=...) sends samlsp a signed LogoutRequest
// (sign.logout), which ends samlsp's session; samlsp answers, and the
// browser comes back to ReturnTo with both sessions gone.
func TestIdPInitiatedLogout(t *testing.T) {
	t.Parallel()
	idp, s, b := loggedIn(t, simplesamltest.SPConfig{SignLogout: true})
	page := browse(t, b, idp.LogoutURL(s.URL+"/"))
	hops := describeHops(page.Hops)
	if !slices.ContainsFunc(page.Hops, func(h sptest.Hop) bool { return hopHas(h, "/saml/slo", "SAMLRequest") }) {
		t.Errorf("SimpleSAMLphp never sent samlsp a LogoutRequest:\n%s", hops)
	}
	if !slices.ContainsFunc(page.Hops, func(h sptest.Hop) bool { return hopHas(h, sloPath, "SAMLResponse") }) {
		t.Errorf("samlsp never answered SimpleSAMLphp with a LogoutResponse:\n%s", hops)
	}
	if page.Status >= 400 || page.URL.String() != s.URL+"/" {
		t.Errorf("the logout ended on HTTP %d (cause %q) at %s, want ReturnTo %s/:\n%s", page.Status, page.Header.Get(sptest.HeaderCause), page.URL, s.URL, hops)
	}
	checkSignedOut(t, b, idp, s)
}

// An unsigned LogoutRequest (SimpleSAMLphp's default, sign.logout false)
// is refused with a named cause and ends no session: anyone can make a
// browser carry an unsigned one, and a page on another site must not be
// able to log the user out (DESIGN.md, threat model).
func TestIdPInitiatedLogoutUnsignedRefused(t *testing.T) {
	t.Parallel()
	idp, s, b := loggedIn(t, simplesamltest.SPConfig{})
	page := browse(t, b, idp.LogoutURL(s.URL+"/"))
	last := page.Hops[len(page.Hops)-1]
	if !hopHas(last, "/saml/slo", "SAMLRequest") || last.Status < 400 || last.Status >= 500 || last.Cause == "" {
		t.Errorf("samlsp should refuse the unsigned LogoutRequest with a 4xx and a named cause; the flow ended at %s -> %d cause %q:\n%s",
			last.URL, last.Status, last.Cause, describeHops(page.Hops))
	}
	t.Logf("refused with cause %q (HTTP %d)", last.Cause, last.Status)
	if who := whoami(t, b, s); who.Status != http.StatusOK {
		t.Errorf("an unsigned LogoutRequest ended samlsp's session: /whoami %d, want 200", who.Status)
	}
}

// loggedIn starts SimpleSAMLphp, with sp as its entry for samlsp, and
// samlsp, and logs alice in.
func loggedIn(t *testing.T, sp simplesamltest.SPConfig) (*simplesamltest.IdP, *samlspProc, *sptest.Browser) {
	t.Helper()
	idp, s, _ := setup(t, simplesamltest.Config{}, sp, spOptions{})
	b := browser()
	if res := b.Login(ctx(t), s.URL+"/app", "alice", "alice-password"); !res.OK {
		t.Fatalf("login failed:\n%s", describe(res))
	}
	return idp, s, b
}

// browse is Browser.Browse; an error (no response at all) is fatal.
func browse(t *testing.T, b *sptest.Browser, rawURL string) *sptest.Page {
	t.Helper()
	page, err := b.Browse(ctx(t), rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

// idpSignedIn reports whether the browser has a session at SimpleSAMLphp:
// its auth source's test page shows the user rather than sending the
// browser to the login form.
func idpSignedIn(t *testing.T, b *sptest.Browser, idp *simplesamltest.IdP) bool {
	t.Helper()
	page := browse(t, b, idp.AuthSourceURL())
	switch {
	case page.Status == http.StatusOK && page.URL.Path == simplesamltest.LoginFormPath:
		return false
	case page.Status == http.StatusOK && strings.Contains(string(page.Body), "alice@example.com"):
		return true
	}
	t.Fatalf("SimpleSAMLphp's %s answered %d at %s, neither the login form nor alice's attributes:\n%s", idp.AuthSourceURL(), page.Status, page.URL, pageText(page.Body))
	return false
}

// checkSignedOut checks that both sessions ended: samlsp's /whoami
// answers 401, SimpleSAMLphp has no session, and logging in at s again
// asks for the password (and works).
func checkSignedOut(t *testing.T, b *sptest.Browser, idp *simplesamltest.IdP, s *samlspProc) {
	t.Helper()
	spGone := true
	if who := whoami(t, b, s); who.Status != http.StatusUnauthorized {
		t.Errorf("samlsp still has the session after logout: /whoami %d, want 401", who.Status)
		spGone = false
	}
	if idpSignedIn(t, b, idp) {
		t.Error("SimpleSAMLphp's session survived the logout")
		return
	}
	if !spGone {
		return // a login at samlsp would not reach the IdP
	}
	res := b.Login(ctx(t), s.URL+"/app", "alice", "alice-password")
	if !slices.ContainsFunc(res.Hops, func(h sptest.Hop) bool { return h.Form == sptest.FormLogin }) {
		t.Errorf("logging in again did not ask for the password:\n%s", describe(res))
	}
	if !res.OK {
		t.Errorf("logging in again after the logout failed:\n%s", describe(res))
	}
}

// hopHas reports whether h requested path with the query parameter param.
func hopHas(h sptest.Hop, path, param string) bool {
	u, err := url.Parse(h.URL)
	return err == nil && u.Path == path && u.Query().Get(param) != ""
}

func sameOrigin(u *url.URL, base string) bool {
	b, err := url.Parse(base)
	return err == nil && u.Scheme == b.Scheme && u.Host == b.Host
}
