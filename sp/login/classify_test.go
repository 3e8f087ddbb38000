package login

import (
	"bytes"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/crewjam/saml"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/store"
)

func TestClassifyResponseError(t *testing.T) {
	t.Parallel()
	wrap := func(errs ...error) error {
		return &saml.InvalidResponseError{PrivateErr: fmt.Errorf("private detail: %w", errors.Join(errs...)), Response: "<Response>secret</Response>"}
	}
	for _, tc := range []struct {
		err    error
		cause  failure.Cause
		reason string
	}{
		{wrap(saml.ErrInvalidSignature, saml.ErrUntrustedCertificate), failure.CauseResponseInvalid, "untrusted-certificate"},
		{wrap(saml.ErrInvalidSignature), failure.CauseResponseInvalid, "signature"},
		{wrap(saml.ErrExpired), failure.CauseResponseInvalid, "expired"},
		{wrap(saml.ErrNotYetValid), failure.CauseResponseInvalid, "not-yet-valid"},
		{wrap(saml.ErrAudienceMismatch), failure.CauseResponseInvalid, "audience"},
		{wrap(saml.ErrRequestIDMismatch), failure.CauseResponseInvalid, "in-response-to"},
		{wrap(saml.ErrDecryptionFailed), failure.CauseResponseInvalid, "decryption"},
		{wrap(saml.ErrDestinationMismatch), failure.CauseResponseInvalid, "destination"},
		{wrap(saml.ErrMalformedMessage), failure.CauseResponseInvalid, "malformed"},
		{wrap(saml.ErrBadStatus{Status: "urn:oasis:names:tc:SAML:2.0:status:Requester"}), failure.CauseResponseInvalid, "status"},
		{wrap(errors.New("something new")), failure.CauseResponseInvalid, "other"},
		{wrap(errors.New(crewjamUnsignedText)), failure.CauseResponseInvalid, "unsigned"},
		{wrap(fmt.Errorf("assertion: %w", errors.New(crewjamUnsignedText))), failure.CauseResponseInvalid, "unsigned"},
		{wrap(errors.New("the " + crewjamUnsignedText + " here")), failure.CauseResponseInvalid, "other"},
		{wrap(saml.ErrAssertionReplayed), failure.CauseAssertionReplayed, ""},
		{wrap(store.Unavailable("put-if-absent", errors.New("connection refused"))), failure.CauseStoreUnavailable, ""},
		{wrap(store.ErrFull), failure.CauseStoreFull, ""},
	} {
		f := classifyResponseError(tc.err)
		if f.Cause != tc.cause || f.Reason != tc.reason {
			t.Errorf("%v: got %s/%s, want %s/%s", tc.err, f.Cause, f.Reason, tc.cause, tc.reason)
		}
		if f.Detail == "" || f.Detail == "Authentication failed" {
			t.Errorf("%v: detail %q should be crewjam's private reason", tc.err, f.Detail)
		}
		if strings.Contains(f.Detail, "secret") {
			t.Errorf("the raw response leaked into the detail: %q", f.Detail)
		}
	}
}

func TestCheckNoDTD(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		doc    string
		refuse bool
	}{
		{`<?xml version="1.0"?><samlp:Response ID="a"><x>text</x></samlp:Response>`, false},
		{`<samlp:Response><!-- a comment with <!DOCTYPE x> in it --><x/></samlp:Response>`, false},
		{`<r><![CDATA[ <!ENTITY x "y"> ]]></r>`, false},
		{`<?xml-stylesheet href="<!x>"?><r/>`, false},
		{`<r a="1">&lt;!DOCTYPE x&gt;</r>`, false},
		{``, false},
		{`<!DOCTYPE r><r/>`, true},
		{`<?xml version="1.0"?>` + "\n" + `<!DOCTYPE r [<!ENTITY a "b">]><r>&a;</r>`, true},
		{`<!doctype r><r/>`, true},
		{`<r><!ENTITY a "b"></r>`, true},
		{`<!-- c --><?pi x?><!DOCTYPE r><r/>`, true},
		{`<r><![CDATA[ x ]]><!ELEMENT r ANY></r>`, true},
		{`<!`, true},
		{`<!-- unterminated`, false}, // the parser refuses it
	} {
		err := checkNoDTD([]byte(tc.doc))
		if (err != nil) != tc.refuse {
			t.Errorf("checkNoDTD(%q) = %v, want refused %v", tc.doc, err, tc.refuse)
		}
		if err != nil && !errors.Is(err, errDTD) {
			t.Errorf("checkNoDTD(%q) = %v, not errDTD", tc.doc, err)
		}
	}
}

func TestScreenResponse(t *testing.T) {
	t.Parallel()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		form   string
		reason string // "" for passed on to crewjam
	}{
		{b64(`<samlp:Response/>`), ""},
		{b64(`<!DOCTYPE r><samlp:Response/>`), "dtd"},
		{"not base64!", "malformed"},
	} {
		f := screenResponse(tc.form)
		switch {
		case tc.reason == "" && f != nil:
			t.Errorf("%q: refused %v", tc.form, f)
		case tc.reason != "" && (f == nil || f.Cause != failure.CauseResponseInvalid || f.Reason != tc.reason):
			t.Errorf("%q: %v, want response-invalid (%s)", tc.form, f, tc.reason)
		}
	}
}

func FuzzCheckNoDTD(f *testing.F) {
	f.Add([]byte(`<!DOCTYPE r><r/>`))
	f.Add([]byte(`<r><!-- c --><![CDATA[x]]></r>`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		err := checkNoDTD(doc)
		// Whatever encoding/xml calls a directive, checkNoDTD refuses.
		d := xml.NewDecoder(bytes.NewReader(doc))
		d.Strict = false
		for {
			tok, terr := d.RawToken()
			if terr != nil {
				return
			}
			if _, ok := tok.(xml.Directive); ok && err == nil {
				t.Fatalf("encoding/xml reads a directive in %q that checkNoDTD let through", doc)
			}
		}
	})
}

// BenchmarkScreenResponse: what the DTD screen adds to every ACS post,
// for a response of the size crewjam's IdP sends (about 12 KB encoded).
//
//	go test -run '^$' -bench ScreenResponse ./sp
func BenchmarkScreenResponse(b *testing.B) {
	doc := `<?xml version="1.0"?><samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="id-1">` +
		strings.Repeat(`<saml:Attribute Name="urn:oid:1.3.6.1.4.1.5923.1.1.1.1"><saml:AttributeValue>member</saml:AttributeValue></saml:Attribute>`, 80) +
		`</samlp:Response>`
	form := base64.StdEncoding.EncodeToString([]byte(doc))
	b.SetBytes(int64(len(form)))
	b.ReportAllocs()
	for b.Loop() {
		if f := screenResponse(form); f != nil {
			b.Fatal(f)
		}
	}
}

// A refusal by the IdP itself shows its status codes and message, bounded.
func TestIdPStatus(t *testing.T) {
	t.Parallel()
	doc := `<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"><samlp:Status>` +
		`<samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Responder"><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"/></samlp:StatusCode>` +
		`<samlp:StatusMessage>Your account is locked</samlp:StatusMessage></samlp:Status></samlp:Response>`
	got := idpStatus(base64.StdEncoding.EncodeToString([]byte(doc)))
	if want := `Responder / AuthnFailed ("Your account is locked")`; got != want {
		t.Errorf("idpStatus = %q, want %q", got, want)
	}
	long := strings.Replace(doc, "Your account is locked", strings.Repeat("x", 5000), 1)
	if got := idpStatus(base64.StdEncoding.EncodeToString([]byte(long))); len(got) > 300 {
		t.Errorf("a 5000-byte StatusMessage gave %d bytes", len(got))
	}
	if got := idpStatus("not base64"); got != "" {
		t.Errorf("idpStatus(garbage) = %q", got)
	}
}
