package session

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dsig "github.com/russellhaering/goxmldsig"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
	"github.com/jonboulle/clockwork"

	"github.com/samlha/samlha/sp/keyring/keyringtest"
	"github.com/samlha/samlha/sp/relaystate"
	"github.com/samlha/samlha/store/memory"
)

type sessionFixture struct {
	clock *clockwork.FakeClock
	p     *Provider
}

func newSessionFixture(t testing.TB, instance, kind string) *sessionFixture {
	t.Helper()
	clock := clockwork.NewFakeClockAt(time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC))
	st := memory.New(memory.Options{Now: clock.Now, JanitorInterval: -1})
	t.Cleanup(func() { st.Close() })
	f := &sessionFixture{clock: clock}
	// What the provider believes; the bytes go to one memory store either way.
	f.p = &Provider{store: st, storeKind: kind, shared: kind != "memory", instance: instance, idle: 30 * time.Minute, absolute: 8 * time.Hour,
		timeout: time.Second, now: clock.Now, onErr: func(string, error) {},
		revoked: &Revocations{store: st, timeout: time.Second, now: clock.Now}, ring: keyringtest.Ring(t, "k1"),
		codec: samlsp.JWTSessionCodec{MaxAge: 8 * time.Hour, Clock: dsig.NewFakeClock(clock)}}
	return f
}

func assertionFor(nameID, sessionIndex string, notOnOrAfter *time.Time) *saml.Assertion {
	return &saml.Assertion{
		ID:              "id-assertion",
		Subject:         &saml.Subject{NameID: &saml.NameID{Value: nameID}},
		AuthnStatements: []saml.AuthnStatement{{SessionIndex: sessionIndex, SessionNotOnOrAfter: notOnOrAfter}},
		AttributeStatements: []saml.AttributeStatement{{Attributes: []saml.Attribute{
			{FriendlyName: "uid", Name: "urn:oid:0.9.2342.19200300.100.1.1", Values: []saml.AttributeValue{{Value: "alice"}}},
		}}},
	}
}

// login creates a session and returns the cookie the browser got.
func (f *sessionFixture) login(t testing.TB, a *saml.Assertion) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	if err := createSession(f.p, rec, httptest.NewRequest("POST", "/saml/acs", nil), a); err != nil {
		t.Fatal(err)
	}
	for _, c := range rec.Result().Cookies() {
		if c.Name == CookieName {
			return c
		}
	}
	t.Fatal("no session cookie")
	return nil
}

func (f *sessionFixture) get(c *http.Cookie) (samlsp.Session, error) {
	r := httptest.NewRequest("GET", "/app", nil)
	r.AddCookie(c)
	return f.p.GetSession(r)
}

func wantMiss(t *testing.T, err error, kind string) {
	t.Helper()
	var m *Miss
	if !errors.Is(err, samlsp.ErrNoSession) || !errors.As(err, &m) || m.Kind != kind {
		t.Fatalf("err = %v, want a %q session miss", err, kind)
	}
}

func TestSessionIdleAndAbsoluteExpiry(t *testing.T) {
	t.Parallel()
	f := newSessionFixture(t, "sp-1", "memory")
	c := f.login(t, assertionFor("alice@example.com", "idx-1", nil))
	s, err := f.get(c)
	if err != nil || s.(*Session).GetAttributes().Get("uid") != "alice" {
		t.Fatalf("fresh session: %v %v", s, err)
	}
	// Activity every 20 minutes keeps a 30-minute idle timeout alive...
	for range 5 {
		f.clock.Advance(20 * time.Minute)
		if _, err := f.get(c); err != nil {
			t.Fatalf("active session expired at %v: %v", f.clock.Now(), err)
		}
	}
	// ...but not 31 minutes of silence.
	f.clock.Advance(31 * time.Minute)
	wantMiss(t, func() error { _, err := f.get(c); return err }(), "not-found")

	// The absolute limit ends even an active session.
	c = f.login(t, assertionFor("alice@example.com", "idx-2", nil))
	for range 8*3 - 1 {
		f.clock.Advance(20 * time.Minute)
		if _, err := f.get(c); err != nil {
			t.Fatalf("session ended early at %v: %v", f.clock.Now(), err)
		}
	}
	f.clock.Advance(21 * time.Minute)
	_, err = f.get(c)
	if !errors.Is(err, samlsp.ErrNoSession) {
		t.Fatalf("after 8h: %v, want no session", err)
	}
}

func TestSessionCappedBySessionNotOnOrAfter(t *testing.T) {
	t.Parallel()
	f := newSessionFixture(t, "sp-1", "memory")
	end := f.clock.Now().Add(10 * time.Minute)
	c := f.login(t, assertionFor("bob@example.com", "idx", &end))
	f.clock.Advance(9 * time.Minute)
	if _, err := f.get(c); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(2*time.Minute + saml.MaxClockSkew)
	if _, err := f.get(c); !errors.Is(err, samlsp.ErrNoSession) {
		t.Fatalf("past the IdP's SessionNotOnOrAfter: %v", err)
	}
}

func TestSessionRevokedByIdPLogout(t *testing.T) {
	t.Parallel()
	f := newSessionFixture(t, "sp-1", "redis")
	c1 := f.login(t, assertionFor("alice@example.com", "idx-1", nil))
	c2 := f.login(t, assertionFor("alice@example.com", "idx-2", nil))
	other := f.login(t, assertionFor("bob@example.com", "idx-9", nil))
	f.clock.Advance(time.Second)
	req := &saml.LogoutRequest{NameID: &saml.NameID{Value: "alice@example.com"}, SessionIndex: &saml.SessionIndex{Value: "idx-1"}}
	if err := f.p.TerminateSessions(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	wantMiss(t, func() error { _, err := f.get(c1); return err }(), "revoked")
	if _, err := f.get(c2); err != nil {
		t.Errorf("another session of the same user (another SessionIndex) was ended: %v", err)
	}
	if _, err := f.get(other); err != nil {
		t.Errorf("another user's session was ended: %v", err)
	}
	// Without a SessionIndex, every session of the user goes; a login after
	// the revocation is not affected.
	if err := f.p.TerminateSessions(context.Background(), &saml.LogoutRequest{NameID: &saml.NameID{Value: "alice@example.com"}}); err != nil {
		t.Fatal(err)
	}
	wantMiss(t, func() error { _, err := f.get(c2); return err }(), "revoked")
	f.clock.Advance(time.Second)
	if _, err := f.get(f.login(t, assertionFor("alice@example.com", "idx-3", nil))); err != nil {
		t.Errorf("a session made after the revocation was refused: %v", err)
	}
}

func TestSessionCrossInstanceAndForgedCookies(t *testing.T) {
	t.Parallel()
	sp1 := newSessionFixture(t, "sp-1", "memory")
	sp2 := newSessionFixture(t, "sp-2", "memory")
	c := sp1.login(t, assertionFor("alice@example.com", "idx", nil))
	_, err := sp2.get(c)
	wantMiss(t, err, "cross-instance")
	var m *Miss
	errors.As(err, &m)
	if m.Origin != "sp-1" {
		t.Errorf("origin %q, want sp-1", m.Origin)
	}
	for _, v := range []string{"", "garbage", "sp-1~short", "bad id!~" + relaystate.Token(sessionIDBytes) + "." + relaystate.Token(sessionSecretBytes),
		"sp-1~" + relaystate.Token(sessionIDBytes), "sp-1~" + relaystate.Token(32)} {
		_, err := sp1.get(&http.Cookie{Name: CookieName, Value: v})
		if !errors.Is(err, samlsp.ErrNoSession) {
			t.Errorf("cookie %q: %v, want no session", v, err)
		}
	}
	// A new login replaces (and deletes) the browser's previous session.
	r := httptest.NewRequest("POST", "/saml/acs", nil)
	r.AddCookie(c)
	rec := httptest.NewRecorder()
	if err := createSession(sp1.p, rec, r, assertionFor("alice@example.com", "idx-new", nil)); err != nil {
		t.Fatal(err)
	}
	wantMiss(t, func() error { _, err := sp1.get(c); return err }(), "not-found")
}

// createSession makes and stores a session for a, as the SP's ACS does
// (without the replay record), and sets its cookie on w.
func createSession(p *Provider, w http.ResponseWriter, r *http.Request, a *saml.Assertion) error {
	c, sess, err := p.NewSession(a, "")
	if err != nil {
		return err
	}
	b, err := p.Seal(c, sess)
	if err != nil {
		return err
	}
	if err := p.store.Put(r.Context(), c.StoreKey(), b, p.TTL(sess, sess.Created)); err != nil {
		return err
	}
	p.ReplaceCookie(w, r, c, sess)
	return nil
}

// crewjam's SessionProvider.CreateSession would make a session without the
// assertion's replay record: the provider refuses it, and writes nothing.
func TestCreateSessionThroughCrewjamRefused(t *testing.T) {
	t.Parallel()
	f := newSessionFixture(t, "sp-1", "redis")
	rec := httptest.NewRecorder()
	if err := f.p.CreateSession(rec, httptest.NewRequest("POST", "/saml/acs", nil), assertionFor("alice@example.com", "idx", nil)); err == nil {
		t.Fatal("CreateSession made a session")
	}
	if len(rec.Result().Cookies()) != 0 {
		t.Error("CreateSession set a cookie")
	}
}

// The revocation keys a cookie names are checked against its session: a
// revoked session whose cookie was edited to name another user's keys (or
// none, as a cookie of an earlier release) is refused all the same.
func TestRevocationTagsCannotSkipARevocation(t *testing.T) {
	t.Parallel()
	f := newSessionFixture(t, "sp-1", "redis")
	alice := f.login(t, assertionFor("alice@example.com", "idx-1", nil))
	f.clock.Advance(time.Second)
	if err := f.p.TerminateSessions(context.Background(), &saml.LogoutRequest{NameID: &saml.NameID{Value: "alice@example.com"}}); err != nil {
		t.Fatal(err)
	}
	c, err := ParseCookie(alice.Value)
	if err != nil || len(c.tags) != tagsBytes {
		t.Fatalf("a new session's cookie has no revocation tags: %v", err)
	}
	wantMiss(t, func() error { _, err := f.get(alice); return err }(), "revoked")
	edited := c
	edited.tags = revocationTags(f.p.ring.Sealing(), "bob@example.com", "idx-9")
	wantMiss(t, func() error { _, err := f.get(&http.Cookie{Name: CookieName, Value: edited.String()}); return err }(), "invalid")
	untagged := c
	untagged.tags = nil
	wantMiss(t, func() error { _, err := f.get(&http.Cookie{Name: CookieName, Value: untagged.String()}); return err }(), "revoked")
	// And a cookie of an earlier release (no tags) still reads a live
	// session, the slow way.
	bob := f.login(t, assertionFor("bob@example.com", "idx-9", nil))
	bc, _ := ParseCookie(bob.Value)
	bc.tags = nil
	if _, err := f.get(&http.Cookie{Name: CookieName, Value: bc.String()}); err != nil {
		t.Errorf("a session read with a cookie of an earlier release: %v", err)
	}
}
