package simplesamltest_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/sp/sptest/simplesamltest"
	"github.com/samlha/samlha/store/redis/redistest"
)

// setup starts SimpleSAMLphp and a samlsp that uses it, and registers the
// SP at the IdP from the metadata samlsp serves.
func setup(t *testing.T, idpCfg simplesamltest.Config, spCfg simplesamltest.SPConfig, o spOptions) (*simplesamltest.IdP, *samlspProc, string) {
	t.Helper()
	idp := simplesamltest.Start(t, idpCfg)
	s := startSP(t, idp, o)
	entityID := idp.RegisterSPFromURL(t, s.metadataURL(), spCfg)
	return idp, s, entityID
}

// checkAlice checks that the browser's session at s is alice's, with the
// attributes SimpleSAMLphp released.
func checkAlice(t *testing.T, b *sptest.Browser, s *samlspProc) session {
	t.Helper()
	who := whoami(t, b, s)
	if who.Status != http.StatusOK {
		t.Fatalf("/whoami after login: %d, want 200", who.Status)
	}
	if who.User != "alice" {
		t.Errorf("/whoami user %q, want alice", who.User)
	}
	for name, want := range map[string][]string{
		"uid":                  {"alice"},
		"mail":                 {"alice@example.com"},
		"eduPersonAffiliation": {"member", "staff"},
	} {
		got := slices.Clone(who.attr(name))
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("attribute %s = %q, want %q", name, got, want)
		}
	}
	return who
}

// An SP-initiated login with SimpleSAMLphp's defaults (signed response and
// assertion, nothing encrypted): the user lands on /app, which shows the
// user and the attributes.
func TestSPInitiatedLogin(t *testing.T) {
	t.Parallel()
	_, s, _ := setup(t, simplesamltest.Config{}, simplesamltest.SPConfig{}, spOptions{})
	b := browser()
	res := b.Login(ctx(t), s.URL+"/app", "alice", "alice-password")
	if !res.OK {
		t.Fatalf("login failed:\n%s", describe(res))
	}
	if !slices.ContainsFunc(res.Hops, func(h sptest.Hop) bool { return h.Form == sptest.FormLogin }) {
		t.Errorf("the login never filled SimpleSAMLphp's form:\n%s", describeHops(res.Hops))
	}
	body := string(res.Final.Body)
	for _, want := range []string{"alice", "alice@example.com", "eduPersonAffiliation", "staff"} {
		if !strings.Contains(body, want) {
			t.Errorf("/app does not show %q", want)
		}
	}
	checkAlice(t, b, s)
}

// Encrypted assertions (assertion.encryption): SimpleSAMLphp encrypts to
// the certificate in samlsp's metadata, and samlsp decrypts.
func TestEncryptedAssertionLogin(t *testing.T) {
	t.Parallel()
	_, s, _ := setup(t, simplesamltest.Config{}, simplesamltest.SPConfig{EncryptAssertion: true}, spOptions{})
	b := browser()
	pf, res, err := b.LoginUntilACS(ctx(t), s.URL+"/app", "alice", "alice-password")
	if err != nil {
		t.Fatalf("login did not reach the ACS: %v\n%s", err, describe(res))
	}
	info, err := readResponse(pf)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Encrypted {
		t.Fatal("SimpleSAMLphp sent a plain assertion: assertion.encryption did not take")
	}
	if res := b.Submit(ctx(t), pf); !res.OK {
		t.Fatalf("the encrypted assertion was refused:\n%s", describe(res))
	}
	checkAlice(t, b, s)
}

// IdP-initiated login (saml2/idp/SSOService.php?spentityid=...) to a
// samlsp that accepts them (--allow-idp-initiated, on a shared store, as
// samlsp requires): the user lands on the RelayState's page.
func TestIdPInitiatedLoginAllowed(t *testing.T) {
	t.Parallel()
	simplesamltest.Require(t, simplesamltest.Config{})
	srv := redistest.Start(t)
	idp, s, entityID := setup(t, simplesamltest.Config{}, simplesamltest.SPConfig{}, spOptions{
		Store: "redis", StoreURL: srv.URL(),
		Args: []string{"--allow-idp-initiated", "--idp-initiated-redirect", "/app"},
	})
	b := browser()
	pf, res, err := b.LoginUntilACS(ctx(t), idp.LoginURL(entityID, "/app"), "alice", "alice-password")
	if err != nil {
		t.Fatalf("IdP-initiated login did not reach the ACS: %v\n%s", err, describe(res))
	}
	if info, err := readResponse(pf); err != nil || info.InResponseTo != "" {
		t.Fatalf("the response answers a request (InResponseTo %q, %v): not IdP-initiated", info.InResponseTo, err)
	}
	if res := b.Submit(ctx(t), pf); !res.OK {
		t.Fatalf("IdP-initiated login refused:\n%s", describe(res))
	}
	checkAlice(t, b, s)
}

// Without --allow-idp-initiated, an IdP-initiated response is refused with
// a cause the SP names, and leaves no session.
func TestIdPInitiatedLoginRefusedByDefault(t *testing.T) {
	t.Parallel()
	idp, s, entityID := setup(t, simplesamltest.Config{}, simplesamltest.SPConfig{}, spOptions{})
	b := browser()
	res := b.Login(ctx(t), idp.LoginURL(entityID, "/app"), "alice", "alice-password")
	if res.OK {
		t.Fatalf("an IdP-initiated login succeeded without --allow-idp-initiated:\n%s", describe(res))
	}
	last := res.Hops[len(res.Hops)-1]
	if last.Form != sptest.FormSAMLResponse || last.Cause == "" || last.Status < 400 || last.Status >= 500 {
		t.Errorf("the ACS should refuse the response with a 4xx and a named cause (%s); the flow ended at %s %s -> %d cause %q:\n%s",
			sptest.HeaderCause, last.Method, last.URL, last.Status, last.Cause, describe(res))
	}
	t.Logf("refused with cause %q (HTTP %d)", last.Cause, last.Status)
	if who := whoami(t, b, s); who.Status != http.StatusUnauthorized {
		t.Errorf("/whoami after the refused login: %d, want 401", who.Status)
	}
}
