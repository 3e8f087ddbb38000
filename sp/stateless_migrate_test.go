package sp_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crewjam/saml/samlsp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/sp/failure"
	"github.com/samlha/samlha/sp/session"
)

// migrating makes the battery's sp-1 a stateless replica on its way to the
// shared store (step 1: --store stateless --store-handoff) and sp-2 a
// store replica that accepts stateless artifacts (step 2: --store redis
// --accept-stateless), over the battery's one shared store.
func migrating(next crypto.Signer, nextCert *x509.Certificate) func(c *sp.Config) {
	return func(c *sp.Config) {
		if c.InstanceID == "sp-1" {
			c.Handoff, c.Store, c.StoreHandoff = c.Store, nil, "redis://127.0.0.1:6379/0"
			return
		}
		c.AcceptStateless = true
		c.NextKey, c.NextCertificate = next, nextCert
	}
}

// loginAt begins a login in br at replica from and posts its response to
// replica to.
func (b *battery) loginAt(br *browserJar, from, to *batteryReplica) (*begun, []byte, *post) {
	b.t.Helper()
	l := b.begin(br, from)
	doc := b.respond(l, mint{encrypt: true})
	return l, doc, b.postXML(br, to, l.relayState, doc)
}

// cloneJar is a browser with br's cookies for u.
func cloneJar(t *testing.T, br *browserJar, u string) *browserJar {
	t.Helper()
	c := newBrowserJar()
	pu := mustParseURL(t, u)
	c.jar.SetCookies(pu, br.jar.Cookies(pu))
	return c
}

// A login begun in a stateless replica's signed cookie finishes on a
// store replica with --accept-stateless, into a store session, and its
// response is accepted once across both kinds: the same response with the
// same tracking cookie, from another browser, is refused on either: as
// used (the store took the login once), and failing that as a replay.
func TestMigrateStatelessLoginFinishesOnAStoreReplicaOnce(t *testing.T) {
	t.Parallel()
	b := newBattery(t, migrating(nil, nil))
	step1, step2 := b.replicas[0], b.replicas[1]
	br := newBrowserJar()
	l := b.begin(br, step1)
	doc := b.respond(l, mint{encrypt: true})
	thief := cloneJar(t, br, batteryRoot+"/saml/acs")
	thief2 := cloneJar(t, br, batteryRoot+"/saml/acs")
	br0 := cloneJar(t, br, batteryRoot+"/saml/acs")
	p := b.postXML(br, step2, l.relayState, doc)
	if p.status != http.StatusFound || !session.IsStoreCookie(p.sessionCookie) {
		t.Fatalf("stateless login on the store replica: %d %s (%s), session cookie %q; want a store session", p.status, p.cause, p.detail, p.sessionCookie)
	}
	if b.whoami(br, step1) != http.StatusOK || b.whoami(br, step2) != http.StatusOK {
		t.Error("the store session it made is not a session on both replicas")
	}
	// Taken once in the store: the copy is refused as used before its
	// response is parsed, on either kind of replica.
	for _, tc := range []struct {
		br *browserJar
		r  *batteryReplica
	}{{thief, step2}, {thief2, step1}} {
		if p := b.postXML(tc.br, tc.r, l.relayState, doc); p.cause != string(failure.CauseStateAlreadyUsed) || p.sessionCookie != "" {
			t.Errorf("the same response and tracking cookie on %s: %d %s (%s); want %s", tc.r.id, p.status, p.cause, p.detail, failure.CauseStateAlreadyUsed)
		}
	}
	// And without that record, the assertion's replay record refuses it.
	for _, r := range []*batteryReplica{step1, step2} {
		if err := b.store.Delete(context.Background(), "req:"+l.relayState); err != nil {
			t.Fatal(err)
		}
		thief3 := newBrowserJar()
		thief3.jar.SetCookies(mustParseURL(t, batteryRoot+"/saml/acs"), []*http.Cookie{{Name: "saml_" + l.relayState, Value: tracking(t, br0, l.relayState), Path: "/saml/acs"}})
		if p := b.postXML(thief3, r, l.relayState, doc); p.cause != string(failure.CauseAssertionReplayed) || p.sessionCookie != "" {
			t.Errorf("the same response and tracking cookie on %s, its take-once record gone: %d %s (%s); want %s", r.id, p.status, p.cause, p.detail, failure.CauseAssertionReplayed)
		}
	}
}

// tracking is the value of br's tracking cookie of login rs.
func tracking(t *testing.T, br *browserJar, rs string) string {
	t.Helper()
	for _, c := range br.jar.Cookies(mustParseURL(t, batteryRoot+"/saml/acs")) {
		if c.Name == "saml_"+rs {
			return c.Value
		}
	}
	t.Fatal("no tracking cookie")
	return ""
}

// A login begun on a store replica finishes on a step-1 stateless replica
// (taken once from the store, binding cookie checked), into a signed
// session cookie; its second submission is refused as used; and a store
// session is a session on the step-1 replica.
func TestMigrateStoreLoginAndSessionOnAStatelessReplica(t *testing.T) {
	t.Parallel()
	b := newBattery(t, migrating(nil, nil))
	step1, step2 := b.replicas[0], b.replicas[1]
	br := newBrowserJar()
	l, doc, p := b.loginAt(br, step2, step1)
	if p.status != http.StatusFound || p.sessionCookie == "" || session.IsStoreCookie(p.sessionCookie) {
		t.Fatalf("store login on the stateless replica: %d %s (%s), session cookie %q; want a signed session cookie", p.status, p.cause, p.detail, p.sessionCookie)
	}
	if p := b.postXML(br, step2, l.relayState, doc); p.cause != string(failure.CauseStateAlreadyUsed) {
		t.Errorf("second submission on the store replica: %d %s (%s); want %s", p.status, p.cause, p.detail, failure.CauseStateAlreadyUsed)
	}
	other := newBrowserJar()
	if _, _, p := b.loginAt(other, step2, step2); p.status != http.StatusFound {
		t.Fatalf("store login: %d %s", p.status, p.cause)
	}
	if b.whoami(other, step1) != http.StatusOK {
		t.Error("a store session is not a session on the step-1 replica")
	}
	// Forged: another browser without the login's binding cookie.
	l = b.begin(newBrowserJar(), step2)
	if p := b.postXML(newBrowserJar(), step1, l.relayState, b.respond(l, mint{encrypt: true})); p.status < 400 || p.sessionCookie != "" {
		t.Errorf("a store login's response from a browser that did not begin it, on the step-1 replica: %d %s; want a refusal", p.status, p.cause)
	}
}

// A stateless replica's session JWT is a session on a store replica with
// --accept-stateless, and also when signed by the next SP key; tampered,
// signed by any other key, or expired, it is not.
func TestMigrateSessionJWTOnAStoreReplica(t *testing.T) {
	t.Parallel()
	nextKey, nextCert := newKeyPair(t)
	b := newBattery(t, migrating(nextKey, nextCert))
	step1, step2 := b.replicas[0], b.replicas[1]
	br := newBrowserJar()
	if _, _, p := b.loginAt(br, step1, step1); p.status != http.StatusFound || p.sessionCookie == "" || session.IsStoreCookie(p.sessionCookie) {
		t.Fatalf("stateless login: %d %s, session cookie %q", p.status, p.cause, p.sessionCookie)
	}
	if got := b.whoami(br, step2); got != http.StatusOK {
		t.Fatalf("the session JWT on the store replica: %d", got)
	}
	u := mustParseURL(t, batteryRoot+"/")
	token := ""
	for _, c := range br.jar.Cookies(u) {
		if c.Name == session.CookieName {
			token = c.Value
		}
	}
	otherKey, _ := newKeyPair(t)
	parts := strings.Split(token, ".")
	tampered := parts[0] + "." + strings.Replace(parts[1], parts[1][5:6], flip(parts[1][5:6]), 1) + "." + parts[2]
	for _, tc := range []struct {
		what, value string
		want        int
	}{
		{"signed by the next SP key", resign(t, token, nextKey), http.StatusOK},
		{"signed by another key", resign(t, token, otherKey), http.StatusUnauthorized},
		{"tampered", tampered, http.StatusUnauthorized},
		{"with its signature stripped", parts[0] + "." + parts[1] + ".", http.StatusUnauthorized},
	} {
		j := newBrowserJar()
		j.jar.SetCookies(u, []*http.Cookie{{Name: session.CookieName, Value: tc.value, Path: "/"}})
		if got := b.whoami(j, step2); got != tc.want {
			t.Errorf("a session JWT %s: %d, want %d", tc.what, got, tc.want)
		}
	}
	b.clock.Advance(9 * time.Hour)
	if got := b.whoami(br, step2); got != http.StatusUnauthorized {
		t.Errorf("an expired session JWT: %d, want 401", got)
	}
}

// resign signs the claims of the session JWT token with key.
func resign(t *testing.T, token string, key crypto.Signer) string {
	t.Helper()
	claims := samlsp.JWTSessionClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(token, &claims); err != nil {
		t.Fatal(err)
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// flip is another base64url character than c.
func flip(c string) string {
	if c == "A" {
		return "B"
	}
	return "A"
}
