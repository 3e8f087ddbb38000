package sp_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/respond"
)

// FuzzACS posts mutated responses to the ACS. Each input is a splice into
// a real signed response to a real login begun at sp-1 (delete del bytes at
// off, insert ins) and, when rs is not empty, a RelayState in place of the
// login's own; it is posted to sp-2, which shares sp-1's store. The ACS
// must never panic; every refusal must carry a cause of the taxonomy with
// its status and set no session; and a login that succeeds must be the
// one the IdP signed, for the RelayState it was begun with. The unmutated
// response must log in, so the target cannot pass by refusing everything.
//
//	go test -run '^$' -fuzz '^FuzzACS$' -fuzztime 10s ./sp
func FuzzACS(f *testing.F) {
	base := newBattery(f, nil)
	f.Add(uint16(0), uint8(0), []byte(nil), "")
	f.Add(uint16(0), uint8(0), []byte("<!DOCTYPE r>"), "")
	f.Add(uint16(0), uint8(0), []byte(nil), "sp-1~AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add(uint16(400), uint8(6), []byte("admin"), "")
	f.Add(uint16(1200), uint8(0), []byte("<!---->"), "")
	f.Fuzz(func(t *testing.T, off uint16, del uint8, ins []byte, rs string) {
		b := base.with(t)
		for _, r := range b.replicas {
			r.log.reset()
		}
		br := newBrowserJar()
		l := b.begin(br, b.replicas[0])
		orig := b.respond(l, mint{})
		o := int(off) % (len(orig) + 1)
		e := min(len(orig), o+int(del))
		doc := slices.Concat(orig[:o], ins, orig[e:])
		relay := l.relayState
		if rs != "" {
			relay = rs
		}
		p := b.postXML(br, b.replicas[1], relay, doc)
		if p.status == http.StatusFound {
			if p.sessionCookie == "" {
				t.Fatal("302 from the ACS without a session")
			}
			if relay != l.relayState {
				t.Fatalf("logged in with RelayState %q, begun with %q", relay, l.relayState)
			}
			rec := br.do(b.replicas[0], httptest.NewRequest("GET", batteryRoot+"/whoami", nil))
			var who struct {
				NameID string `json:"name_id"`
			}
			_ = json.Unmarshal(rec.Body.Bytes(), &who)
			if who.NameID != "alice@example.org" {
				t.Fatalf("a mutated response logged in as %q", who.NameID)
			}
			return
		}
		if bytes.Equal(doc, orig) && relay == l.relayState {
			t.Fatalf("the unmutated response was refused: %d %s (%s): %s", p.status, p.cause, p.reason, p.detail)
		}
		if !slices.Contains(failure.AllCauses, failure.Cause(p.cause)) || failure.Cause(p.cause).Status() != p.status {
			t.Fatalf("refused with %d and cause %q, which is not a cause of the taxonomy with its status", p.status, p.cause)
		}
		if p.sessionCookie != "" {
			t.Fatal("a refused login set a session cookie")
		}
	})
}

// FuzzACSForm posts arbitrary bodies to the ACS, as a form or as anything
// else, with the RelayState of a live login wherever the body says
// "{RS}": never a panic, never a session, every answer a cause of the
// taxonomy with its status.
//
//	go test -run '^$' -fuzz '^FuzzACSForm$' -fuzztime 10s ./sp
func FuzzACSForm(f *testing.F) {
	base := newBattery(f, nil)
	f.Add([]byte("SAMLResponse=PHg%2BPC94Pg%3D%3D&RelayState={RS}"), "application/x-www-form-urlencoded")
	f.Add([]byte("SAMLResponse=&RelayState={RS}"), "application/x-www-form-urlencoded")
	f.Add([]byte("SAMLResponse=PCFET0NUWVBFIHI%2BPHIvPg%3D%3D"), "application/x-www-form-urlencoded")
	f.Add([]byte("SAMLart=AAQAAA&RelayState={RS}"), "application/x-www-form-urlencoded")
	f.Add([]byte("%zz=%zz"), "application/x-www-form-urlencoded")
	f.Add([]byte("--b\r\nContent-Disposition: form-data; name=\"SAMLResponse\"\r\n\r\nPHg+\r\n--b--\r\n"), "multipart/form-data; boundary=b")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		b := base.with(t)
		for _, r := range b.replicas {
			r.log.reset()
		}
		br := newBrowserJar()
		l := b.begin(br, b.replicas[0])
		body = bytes.ReplaceAll(body, []byte("{RS}"), []byte(l.relayState))
		req := httptest.NewRequest("POST", batteryRoot+"/saml/acs", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		rec := br.do(b.replicas[1], req)
		cause := failure.Cause(rec.Header().Get(respond.HeaderCause))
		if !slices.Contains(failure.AllCauses, cause) || cause.Status() != rec.Code {
			t.Fatalf("answered %d with cause %q, not a cause of the taxonomy with its status", rec.Code, cause)
		}
		for _, c := range rec.Result().Cookies() {
			if c.Name == "samlha_session" && c.Value != "" {
				t.Fatal("a session from a form no IdP made")
			}
		}
	})
}
