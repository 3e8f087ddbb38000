package sp_test

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/respond"
)

// Stateless mode names what the cookies allow it to tell apart: a second
// submission of a consumed response from the same browser is
// state-already-used (the tracking cookie was replaced by a tombstone),
// a RelayState this browser holds no cookie for while its other tracking
// cookies do reach the ACS is state-unknown, and only a browser that sent
// no tracking cookie at all is binding-cookie-missing (SameSite, blocked
// cookies).
func TestStatelessRefusalsNameTheirCause(t *testing.T) {
	t.Parallel()
	stateless := func(c *sp.Config) { c.Store = nil }

	t.Run("double submit", func(t *testing.T) {
		t.Parallel()
		b := newBattery(t, stateless)
		br := newBrowserJar()
		l := b.begin(br, b.replicas[0])
		doc := b.respond(l, mint{encrypt: true})
		var tracking *http.Cookie
		for _, c := range br.jar.Cookies(mustParseURL(t, batteryRoot+"/saml/acs")) {
			if c.Name == "saml_"+l.relayState {
				tracking = c
			}
		}
		if tracking == nil {
			t.Fatal("no tracking cookie after the login began")
		}
		form := url.Values{"SAMLResponse": {base64.StdEncoding.EncodeToString(doc)}, "RelayState": {l.relayState}}
		req := httptest.NewRequest("POST", batteryRoot+"/saml/acs", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := br.do(b.replicas[1], req)
		if rec.Code != http.StatusFound {
			t.Fatalf("first submission: %d %s", rec.Code, rec.Header().Get(respond.HeaderCause))
		}
		var tomb *http.Cookie
		for _, c := range rec.Result().Cookies() {
			if c.Name == "saml_"+l.relayState {
				tomb = c
			}
		}
		if tomb == nil || tomb.Value != "used" || tomb.MaxAge <= 0 || tomb.Path != "/saml/acs" || !tomb.HttpOnly {
			t.Fatalf("the consumed tracking cookie became %+v, want a tombstone on /saml/acs", tomb)
		}
		if p := b.postXML(br, b.replicas[0], l.relayState, doc); p.cause != string(failure.CauseStateAlreadyUsed) || p.status != http.StatusConflict {
			t.Fatalf("second submission: %d %s (%s), want 409 %s", p.status, p.cause, p.detail, failure.CauseStateAlreadyUsed)
		}
	})

	t.Run("no cookies at all", func(t *testing.T) {
		t.Parallel()
		b := newBattery(t, stateless)
		l := b.begin(newBrowserJar(), b.replicas[0])
		p := b.postXML(newBrowserJar(), b.replicas[1], l.relayState, b.respond(l, mint{encrypt: true}))
		if p.cause != string(failure.CauseBindingCookieMissing) {
			t.Fatalf("%d %s (%s), want %s", p.status, p.cause, p.detail, failure.CauseBindingCookieMissing)
		}
	})

	t.Run("another browser's RelayState, from a browser with a login of its own", func(t *testing.T) {
		t.Parallel()
		b := newBattery(t, stateless)
		l := b.begin(newBrowserJar(), b.replicas[0])
		other := newBrowserJar()
		b.begin(other, b.replicas[1])
		p := b.postXML(other, b.replicas[1], l.relayState, b.respond(l, mint{encrypt: true}))
		if p.cause != string(failure.CauseStateUnknown) || p.sessionCookie != "" {
			t.Fatalf("%d %s (%s), want %s", p.status, p.cause, p.detail, failure.CauseStateUnknown)
		}
	})

	t.Run("forged RelayState, from a browser whose only tracking cookie is a tombstone", func(t *testing.T) {
		t.Parallel()
		b := newBattery(t, stateless)
		br := newBrowserJar()
		l := b.begin(br, b.replicas[0])
		if p := b.postXML(br, b.replicas[0], l.relayState, b.respond(l, mint{encrypt: true})); p.status != http.StatusFound {
			t.Fatalf("login: %d %s", p.status, p.cause)
		}
		l2 := b.begin(newBrowserJar(), b.replicas[0])
		p := b.postXML(br, b.replicas[1], "sp-1~AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", b.respond(l2, mint{encrypt: true}))
		if p.cause != string(failure.CauseStateUnknown) {
			t.Fatalf("%d %s (%s), want %s", p.status, p.cause, p.detail, failure.CauseStateUnknown)
		}
	})
}

// In stateless mode the return URL travels in a cookie, so the limit may not
// be raised past what a browser keeps.
func TestStatelessReturnURLLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		max int
		ok  bool
	}{{sp.MaxStatelessReturnURL, true}, {sp.MaxStatelessReturnURL + 1, false}} {
		_, err := sp.New(sp.Config{MaxReturnURL: tc.max})
		if got := err == nil || !strings.Contains(err.Error(), "stateless mode"); got != tc.ok {
			t.Errorf("stateless, max return URL %d: %v", tc.max, err)
		}
	}
}
