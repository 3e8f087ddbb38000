package sp

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/xml"
	"net/http"

	"github.com/crewjam/saml"
)

// applyRollover gives sp the next key pair (Config.NextKey): it decrypts
// assertions encrypted to either certificate. Signing stays with Key.
func (s *SP) applyRollover(sp *saml.ServiceProvider) {
	if k, ok := s.cfg.NextKey.(*rsa.PrivateKey); ok {
		sp.DecryptionKeys = append(sp.DecryptionKeys, k)
	}
}

// writeMetadata serves sp's metadata with, during a rollover, the next
// certificate published beside the current one, for signing and for
// encryption. IdPs encrypt to the first encryption key, the current one,
// until the swap makes the next one current.
func (s *SP) writeMetadata(w http.ResponseWriter, sp *saml.ServiceProvider) {
	md := sp.Metadata()
	if next := s.cfg.NextCertificate; next != nil {
		data := base64.StdEncoding.EncodeToString(next.Raw)
		for i := range md.SPSSODescriptors {
			d := &md.SPSSODescriptors[i]
			var extra []saml.KeyDescriptor
			for _, kd := range d.KeyDescriptors {
				nk := saml.KeyDescriptor{Use: kd.Use, EncryptionMethods: kd.EncryptionMethods,
					KeyInfo: saml.KeyInfo{X509Data: saml.X509Data{X509Certificates: []saml.X509Certificate{{Data: data}}}}}
				extra = append(extra, nk)
			}
			d.KeyDescriptors = append(d.KeyDescriptors, extra...)
		}
	}
	buf, err := xml.MarshalIndent(md, "", "  ")
	if err != nil {
		s.log.Error("cannot marshal metadata", "err", err)
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	_, _ = w.Write(buf)
}
