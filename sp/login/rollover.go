package login

import (
	"crypto"
	"crypto/rsa"
	"encoding/base64"
	"encoding/xml"
	"net/http"

	"github.com/crewjam/saml"
)

// applyRollover gives sp the next key pair (Config.NextKey): it decrypts
// assertions encrypted to either certificate. Signing stays with Key.
func applyRollover(sp *saml.ServiceProvider, next crypto.Signer) {
	if k, ok := next.(*rsa.PrivateKey); ok {
		sp.DecryptionKeys = append(sp.DecryptionKeys, k)
	}
}

// writeMetadata serves sp's metadata with, during a rollover, the next
// certificate published beside the current one, for signing and for
// encryption. IdPs encrypt to the first encryption key, the current one,
// until the swap makes the next one current.
func (e *Engine) writeMetadata(w http.ResponseWriter, sp *saml.ServiceProvider) {
	md := sp.Metadata()
	if next := e.cfg.NextCertificate; next != nil {
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
		e.log.Error("cannot marshal metadata", "err", err)
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	_, _ = w.Write(buf)
}

// ServeMetadata serves the SP metadata. It does not need the IdP's, so the
// IdP can register this SP before the SP has loaded the IdP metadata.
func (e *Engine) ServeMetadata(w http.ResponseWriter, _ *http.Request) {
	if rt := e.rt.Load(); rt != nil {
		e.writeMetadata(w, &rt.mw.ServiceProvider)
		return
	}
	e.writeMetadata(w, &e.metadataOnly.ServiceProvider)
}
