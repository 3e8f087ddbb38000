package simplesamltest_test

import (
	"net/url"
	"regexp"
	"testing"

	"github.com/samlha/samlha/sp/sptest/simplesamltest"
)

// nameIDFormats are the formats samlsp's --name-id-format names, and what
// SimpleSAMLphp's generators make of alice in each.
var nameIDFormats = []struct {
	flag, format string
	value        *regexp.Regexp
}{
	{"persistent", simplesamltest.NameIDPersistent, regexp.MustCompile(`^[0-9a-f]{40}$`)}, // saml:PersistentNameID: a hash of uid
	{"email", simplesamltest.NameIDEmail, regexp.MustCompile(`^alice@example\.com$`)},     // saml:AttributeNameID of mail
	{"transient", simplesamltest.NameIDTransient, regexp.MustCompile(`^_[0-9a-f]+$`)},     // saml:TransientNameID: random
	{"unspecified", simplesamltest.NameIDUnspecified, regexp.MustCompile(`^alice$`)},      // saml:AttributeNameID of uid
}

// The IdP makes every format of nameIDFormats when asked for it (an
// IdP-initiated login's NameIDFormat parameter), as the table says: a
// failure of TestNameIDFormat is then samlsp's, not the harness's.
func TestIdPMakesEveryNameIDFormat(t *testing.T) {
	t.Parallel()
	idp, _, entityID := setup(t, simplesamltest.Config{}, simplesamltest.SPConfig{}, spOptions{})
	for _, tc := range nameIDFormats {
		pf, res, err := browser().LoginUntilACS(ctx(t), idp.LoginURL(entityID, "")+"&"+url.Values{"NameIDFormat": {tc.format}}.Encode(), "alice", "alice-password")
		if err != nil {
			t.Fatalf("%s: the login did not reach the ACS: %v\n%s", tc.flag, err, describe(res))
		}
		info, err := readResponse(pf)
		if err != nil {
			t.Fatal(err)
		}
		if info.NameIDFormat != tc.format || !tc.value.MatchString(info.NameID) {
			t.Errorf("%s: NameID %q of format %q, want format %q and a value matching %s", tc.flag, info.NameID, info.NameIDFormat, tc.format, tc.value)
		}
	}
}

// samlsp --name-id-format asks for a NameID format, and gets it from an
// IdP configured for that format (the SP's entry at SimpleSAMLphp names
// it; the IdP can make all four). The format is read from the assertion
// the browser carried, and the value from samlsp's session.
func TestNameIDFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range nameIDFormats {
		t.Run(tc.flag, func(t *testing.T) {
			t.Parallel()
			_, s, _ := setup(t, simplesamltest.Config{}, simplesamltest.SPConfig{NameIDFormat: tc.format},
				spOptions{Args: []string{"--name-id-format", tc.flag}})
			b := browser()
			pf, res, err := b.LoginUntilACS(ctx(t), s.URL+"/app", "alice", "alice-password")
			if err != nil {
				t.Fatalf("login did not reach the ACS: %v\n%s", err, describe(res))
			}
			req, err := authnRequest(res.Hops, ssoPath)
			if err != nil {
				t.Fatal(err)
			}
			if req.NameIDPolicyFormat != tc.format {
				t.Errorf("the AuthnRequest asks for NameID format %q, want %q", req.NameIDPolicyFormat, tc.format)
			}
			info, err := readResponse(pf)
			if err != nil {
				t.Fatal(err)
			}
			if info.NameIDFormat != tc.format || !tc.value.MatchString(info.NameID) {
				t.Errorf("the assertion's NameID is %q of format %q, want format %q and a value matching %s", info.NameID, info.NameIDFormat, tc.format, tc.value)
			}
			if res := b.Submit(ctx(t), pf); !res.OK {
				t.Fatalf("login failed:\n%s", describe(res))
			}
			if who := checkAlice(t, b, s); who.NameID != info.NameID {
				t.Errorf("samlsp's session has NameID %q, the assertion %q", who.NameID, info.NameID)
			}
		})
	}
}
