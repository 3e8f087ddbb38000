package simplesamltest_test

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/samlha/samlha/sp/sptest"
)

// What the tests read of the SAML messages the browser carried. They read
// only what an observer of the browser sees: they prove what crossed the
// wire, not what either side believes.

// responseInfo is what a SAMLResponse form carried.
type responseInfo struct {
	// Encrypted: the assertion was an EncryptedAssertion.
	Encrypted bool
	// NameIDFormat and NameID of the assertion's subject (empty when
	// encrypted).
	NameIDFormat, NameID string
	// InResponseTo of the Response ("" when IdP-initiated).
	InResponseTo string
}

// readResponse decodes the SAMLResponse of an HTTP-POST binding form.
func readResponse(pf *sptest.PendingForm) (responseInfo, error) {
	raw, err := base64.StdEncoding.DecodeString(pf.Fields.Get("SAMLResponse"))
	if err != nil {
		return responseInfo{}, fmt.Errorf("SAMLResponse is not base64: %w", err)
	}
	var info responseInfo
	err = eachElement(raw, func(dec *xml.Decoder, path []string, e xml.StartElement) error {
		switch {
		case len(path) == 1 && e.Name.Local == "Response":
			info.InResponseTo = attrValue(e, "InResponseTo")
		case e.Name.Local == "EncryptedAssertion":
			info.Encrypted = true
		case e.Name.Local == "NameID" && strings.HasSuffix(strings.Join(path, "/"), "Assertion/Subject/NameID"):
			info.NameIDFormat = attrValue(e, "Format")
			var v string
			if err := dec.DecodeElement(&v, &e); err != nil {
				return fmt.Errorf("NameID: %w", err)
			}
			info.NameID = strings.TrimSpace(v)
		}
		return nil
	})
	if err != nil {
		return info, fmt.Errorf("SAMLResponse: %w", err)
	}
	return info, nil
}

// eachElement calls fn with every start element of the XML document data
// and the local names of its ancestors and itself. fn may consume the
// element with dec.DecodeElement.
func eachElement(data []byte, fn func(dec *xml.Decoder, path []string, e xml.StartElement) error) error {
	var path []string
	dec := xml.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			path = append(path, t.Name.Local)
			before := dec.InputOffset()
			if err := fn(dec, path, t); err != nil {
				return err
			}
			if dec.InputOffset() != before { // fn consumed the element, end tag included
				path = path[:len(path)-1]
			}
		case xml.EndElement:
			path = path[:len(path)-1]
		}
	}
}

func attrValue(e xml.StartElement, local string) string {
	for _, a := range e.Attr {
		if a.Name.Local == local {
			return a.Value
		}
	}
	return ""
}

// requestInfo is what an AuthnRequest sent over the HTTP-Redirect binding
// carried.
type requestInfo struct {
	// Signed: the redirect carried Signature and SigAlg (the binding's
	// signature), or the XML holds a ds:Signature.
	Signed bool
	// NameIDPolicyFormat is the NameIDPolicy's Format ("" if none).
	NameIDPolicyFormat string
}

// authnRequest finds the AuthnRequest the browser carried to path (the
// IdP's SSO endpoint) among hops. SimpleSAMLphp's metadata offers only the
// HTTP-Redirect binding for it, so it is in the hop's URL.
func authnRequest(hops []sptest.Hop, path string) (requestInfo, error) {
	for _, h := range hops {
		u, err := url.Parse(h.URL)
		if err != nil || u.Path != path {
			continue
		}
		q := u.Query()
		if q.Get("SAMLRequest") == "" {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(q.Get("SAMLRequest"))
		if err != nil {
			return requestInfo{}, fmt.Errorf("SAMLRequest is not base64: %w", err)
		}
		xmlText, err := io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(raw)), 1<<20))
		if err != nil {
			return requestInfo{}, fmt.Errorf("SAMLRequest does not inflate: %w", err)
		}
		info := requestInfo{Signed: q.Get("Signature") != "" && q.Get("SigAlg") != ""}
		err = eachElement(xmlText, func(_ *xml.Decoder, _ []string, e xml.StartElement) error {
			switch e.Name.Local {
			case "NameIDPolicy":
				info.NameIDPolicyFormat = attrValue(e, "Format")
			case "Signature":
				info.Signed = true
			}
			return nil
		})
		if err != nil {
			return info, fmt.Errorf("AuthnRequest: %w", err)
		}
		return info, nil
	}
	return requestInfo{}, fmt.Errorf("no AuthnRequest reached %s over the HTTP-Redirect binding", path)
}
