package simplesamltest_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/samlha/samlha/sp/sptest/simplesamltest"
)

// Without php or SimpleSAMLphp, the reason names the Debian packages to
// install. (It needs neither.)
func TestAvailableSaysWhatToInstall(t *testing.T) {
	t.Parallel()
	for _, cfg := range []simplesamltest.Config{
		{PHP: "/nonexistent/php"},
		{Root: t.TempDir()},
	} {
		err := simplesamltest.Available(cfg)
		if err == nil || !strings.Contains(err.Error(), simplesamltest.Packages) {
			t.Errorf("Available(%+v) = %v, want an error naming %q", cfg, err, simplesamltest.Packages)
		}
	}
}

// The IdP publishes its metadata under its entity ID, with its SSO and SLO
// endpoints, and says WantAuthnRequestsSigned="true" only when told to.
func TestIdPMetadata(t *testing.T) {
	t.Parallel()
	for _, want := range []bool{false, true} {
		t.Run(fmt.Sprintf("WantAuthnRequestsSigned=%v", want), func(t *testing.T) {
			t.Parallel()
			idp := simplesamltest.Start(t, simplesamltest.Config{WantAuthnRequestsSigned: want})
			md := string(idp.Metadata(t))
			for _, s := range []string{
				`entityID="` + idp.EntityID + `"`,
				`Location="` + idp.URL + `/saml2/idp/SSOService.php"`,
				`Location="` + idp.URL + `/saml2/idp/SingleLogoutService.php"`,
			} {
				if !strings.Contains(md, s) {
					t.Errorf("the IdP's metadata lacks %s:\n%s", s, md)
				}
			}
			if got := strings.Contains(md, `WantAuthnRequestsSigned="true"`); got != want {
				t.Errorf("WantAuthnRequestsSigned=\"true\" in the metadata: %v, want %v:\n%s", got, want, md)
			}
		})
	}
}

// The parser refuses what is not SP metadata, saying why.
func TestParseSPMetadataRefuses(t *testing.T) {
	t.Parallel()
	idp := simplesamltest.Start(t, simplesamltest.Config{})
	for name, doc := range map[string][]byte{
		"not XML":     []byte("this is not metadata"),
		"an IdP only": idp.Metadata(t),
	} {
		if md, err := idp.ParseSPMetadata(doc); err == nil {
			t.Errorf("%s: parsed as SP %q, want an error", name, md.EntityID)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}
