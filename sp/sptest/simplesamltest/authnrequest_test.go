package simplesamltest_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/samlha/samlha/sp/sptest"
	"github.com/samlha/samlha/sp/sptest/simplesamltest"
)

// ssoPath is SimpleSAMLphp's SSO endpoint.
const ssoPath = "/saml2/idp/SSOService.php"

// The control: SimpleSAMLphp with validate.authnrequest refuses the
// unsigned AuthnRequest of a samlsp that was not told to sign, so the two
// tests after it cannot pass by accident.
func TestUnsignedAuthnRequestRefused(t *testing.T) {
	t.Parallel()
	_, s, _ := setup(t, simplesamltest.Config{}, simplesamltest.SPConfig{ValidateAuthnRequest: true}, spOptions{})
	res := browser().Login(ctx(t), s.URL+"/app", "alice", "alice-password")
	if res.OK {
		t.Fatalf("SimpleSAMLphp accepted an unsigned AuthnRequest with validate.authnrequest:\n%s", describe(res))
	}
	req, err := authnRequest(res.Hops, ssoPath)
	if err != nil {
		t.Fatal(err)
	}
	if req.Signed {
		t.Fatal("samlsp signed its AuthnRequest without being told to")
	}
	if slices.ContainsFunc(res.Hops, func(h sptest.Hop) bool { return h.Form == sptest.FormLogin }) {
		t.Errorf("the IdP asked for the password before refusing the request:\n%s", describe(res))
	}
	if !strings.Contains(string(res.Final.Body), "no signature found") {
		t.Errorf("the IdP's page does not give the reason SimpleSAMLphp gives for an unsigned request:\n%s", describe(res))
	}
}

// With --sign-authn-requests, samlsp signs its AuthnRequests and
// SimpleSAMLphp, which requires it (validate.authnrequest) without saying
// so in its metadata, lets the user log in.
func TestSignedAuthnRequestWithFlag(t *testing.T) {
	t.Parallel()
	_, s, _ := setup(t, simplesamltest.Config{}, simplesamltest.SPConfig{ValidateAuthnRequest: true},
		spOptions{Args: []string{"--sign-authn-requests"}})
	loginSigned(t, s)
}

// When the IdP's metadata says WantAuthnRequestsSigned="true", samlsp signs
// without being told to.
func TestSignedAuthnRequestFromIdPMetadata(t *testing.T) {
	t.Parallel()
	idp, s, _ := setup(t, simplesamltest.Config{WantAuthnRequestsSigned: true}, simplesamltest.SPConfig{ValidateAuthnRequest: true}, spOptions{})
	if md := string(idp.Metadata(t)); !strings.Contains(md, `WantAuthnRequestsSigned="true"`) {
		t.Fatalf("the IdP's metadata does not say WantAuthnRequestsSigned=\"true\":\n%s", md)
	}
	loginSigned(t, s)
}

// loginSigned logs alice in and checks that the AuthnRequest was signed.
func loginSigned(t *testing.T, s *samlspProc) {
	t.Helper()
	b := browser()
	res := b.Login(ctx(t), s.URL+"/app", "alice", "alice-password")
	req, err := authnRequest(res.Hops, ssoPath)
	if err != nil {
		t.Fatalf("%v:\n%s", err, describe(res))
	}
	if !req.Signed {
		t.Errorf("samlsp sent its AuthnRequest unsigned (no Signature on the redirect, none in the XML)")
	}
	if !res.OK {
		t.Fatalf("login failed:\n%s", describe(res))
	}
	checkAlice(t, b, s)
}
