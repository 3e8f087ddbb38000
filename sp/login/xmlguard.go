package login

import (
	"bytes"
	"compress/flate"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/samlha/samlha/sp/failure"
)

// errDTD is the private detail of a SAML message refused because it
// carries a document type declaration (or any other markup declaration).
var errDTD = errors.New("the message carries a DTD or markup declaration; SAML messages have none")

// checkNoDTD refuses an XML document that holds any markup declaration:
// <!DOCTYPE ...>, <!ENTITY ...>, <!ELEMENT ...>, in any letter case. SAML
// (saml-core 1.2) forbids DTDs in its messages, and a DTD is the vehicle
// of entity expansion (billion laughs) and of external entities, so it is
// refused before anything parses the XML.
//
// It is one pass over the bytes with no allocation: "<!" opens a comment
// ("<!--", skipped to "-->"), a CDATA section ("<![CDATA[", skipped to
// "]]>") or a declaration, which is refused. Processing instructions are
// skipped to "?>" so that text inside them is not taken for markup. In
// well-formed XML "<" cannot appear in attribute values or character data,
// so no other "<!" can occur; in malformed XML a false alarm is harmless,
// since the message would be refused anyway. Documents in an encoding
// other than UTF-8 (or ASCII) are refused by the XML parser later, so a
// declaration cannot hide in UTF-16.
func checkNoDTD(doc []byte) error {
	for i := 0; i < len(doc); {
		j := bytes.IndexByte(doc[i:], '<')
		if j < 0 {
			return nil
		}
		i += j
		rest := doc[i:]
		var end []byte
		switch {
		case bytes.HasPrefix(rest, []byte("<!--")):
			end, i = []byte("-->"), i+4
		case bytes.HasPrefix(rest, []byte("<![CDATA[")):
			end, i = []byte("]]>"), i+9
		case bytes.HasPrefix(rest, []byte("<?")):
			end, i = []byte("?>"), i+2
		case bytes.HasPrefix(rest, []byte("<!")):
			return fmt.Errorf("%w (at byte %d)", errDTD, i)
		default:
			i++
			continue
		}
		k := bytes.Index(doc[i:], end)
		if k < 0 {
			return nil // unterminated: the parser refuses it
		}
		i += k + len(end)
	}
	return nil
}

// maxInflate is crewjam's cap on a message inflated from the HTTP-Redirect
// binding (1 MiB, saml.flateUncompressLimit): crewjam refuses a larger one,
// so the screen reads no further.
const maxInflate = 1 << 20

// screenSLO refuses a single-logout message (the IdP's LogoutRequest or
// LogoutResponse) that carries a DTD, before crewjam parses it: from the
// query string (HTTP-Redirect binding, deflated) or from a POSTed form
// (base64 only). What does not decode is left to crewjam, which refuses it
// with its own reason.
func screenSLO(r *http.Request) *failure.Failure {
	params := []string{"SAMLRequest", "SAMLResponse"}
	q := r.URL.Query()
	for _, p := range params {
		if v := q.Get(p); v != "" {
			if err := screenMessage(v, true); err != nil {
				return &failure.Failure{Cause: failure.CauseResponseInvalid, Reason: "logout-dtd", Detail: p + ": " + err.Error(), Err: err}
			}
		}
	}
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		return nil
	}
	for _, p := range params {
		if v := r.PostForm.Get(p); v != "" {
			if err := screenMessage(v, false); err != nil {
				return &failure.Failure{Cause: failure.CauseResponseInvalid, Reason: "logout-dtd", Detail: p + ": " + err.Error(), Err: err}
			}
		}
	}
	return nil
}

// screenMessage decodes a SAML message as its binding does (base64, then
// raw DEFLATE for HTTP-Redirect, at most maxInflate bytes of it) and checks
// it for a DTD. Undecodable input is not its business.
func screenMessage(b64 string, deflated bool) error {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil
	}
	if deflated {
		// A corrupt stream still yields what inflated before the error,
		// and that is screened.
		raw, _ = io.ReadAll(io.LimitReader(flate.NewReader(bytes.NewReader(raw)), maxInflate))
	}
	return checkNoDTD(raw)
}
