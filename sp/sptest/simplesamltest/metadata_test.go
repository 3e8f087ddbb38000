package simplesamltest_test

import (
	"testing"
	"time"

	"github.com/samlha/samlha/sp/sptest/simplesamltest"
)

// Bindings of SAML 2.0 endpoints.
const (
	bindingPOST     = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
	bindingArtifact = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"
)

// spMetadata starts SimpleSAMLphp and samlsp, and reads samlsp's
// /saml/metadata with SimpleSAMLphp's metadata parser.
func spMetadata(t *testing.T) (*simplesamltest.SPMetadata, *samlspProc) {
	t.Helper()
	simplesamltest.Require(t, simplesamltest.Config{})
	idp := simplesamltest.Start(t, simplesamltest.Config{})
	s := startSP(t, idp, spOptions{})
	xml := simplesamltest.FetchMetadata(t, s.metadataURL())
	md, err := idp.ParseSPMetadata(xml)
	if err != nil {
		t.Fatalf("SimpleSAMLphp's metadata parser refuses samlsp's metadata: %v\n%s", err, xml)
	}
	return md, s
}

// samlsp's metadata is what SimpleSAMLphp's parser (SAMLParser) reads as a
// SAML 2.0 SP, valid against the metadata schema, with the endpoints and
// keys a login and a logout need.
func TestMetadataAcceptedBySimpleSAMLphp(t *testing.T) {
	t.Parallel()
	md, s := spMetadata(t)
	if md.SchemaError != "" {
		t.Errorf("samlsp's metadata is not valid against the SAML 2.0 metadata schema: %s", md.SchemaError)
	}
	if want := s.URL + "/saml/metadata"; md.EntityID != want {
		t.Errorf("entity ID %q, want %q", md.EntityID, want)
	}
	acs := false
	for _, ep := range md.AssertionConsumerService {
		acs = acs || (ep.Binding == bindingPOST && ep.Location == s.URL+"/saml/acs")
	}
	if !acs {
		t.Errorf("no HTTP-POST AssertionConsumerService at %s/saml/acs: %+v", s.URL, md.AssertionConsumerService)
	}
	if len(md.SingleLogoutService) == 0 {
		t.Error("no SingleLogoutService: the IdP cannot take part in logout")
	}
	var signing, encryption bool
	for _, k := range md.Keys {
		signing = signing || (k.Signing && k.X509Certificate != "")
		encryption = encryption || (k.Encryption && k.X509Certificate != "")
	}
	if !signing || !encryption {
		t.Errorf("keys: signing %v, encryption %v; want a certificate for both: %+v", signing, encryption, md.Keys)
	}
}

// samlsp's metadata lists no HTTP-Artifact AssertionConsumerService: samlsp
// refuses artifacts, and an IdP that picks the endpoint (SimpleSAMLphp with
// saml20.sendartifact, or by index) would send the user into a failure.
func TestMetadataHasNoArtifactACS(t *testing.T) {
	t.Parallel()
	md, _ := spMetadata(t)
	for _, ep := range md.AssertionConsumerService {
		if ep.Binding == bindingArtifact {
			t.Errorf("samlsp's metadata advertises an HTTP-Artifact ACS it refuses: %+v", ep)
		}
	}
}

// The metadata's validUntil leaves a copied file (an operator's import of
// it into an IdP) at least a week: SimpleSAMLphp drops an SP whose
// metadata has expired.
func TestMetadataValidUntilOutlastsACopy(t *testing.T) {
	t.Parallel()
	md, _ := spMetadata(t)
	const atLeast = 7 * 24 * time.Hour
	if md.Expire.IsZero() {
		return // no validUntil: the copy never expires
	}
	if left := time.Until(md.Expire); left < atLeast {
		t.Errorf("samlsp's metadata is valid until %s, %v from now; a copy imported into an IdP must last at least %v",
			md.Expire.UTC().Format(time.RFC3339), left.Round(time.Hour), atLeast)
	}
}
