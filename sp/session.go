package sp

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"

	"github.com/samlha/samlha/store"
)

// sessionCookieName holds the session's ID and secret in store mode (see
// seal.go), and crewjam's signed session JWT in stateless mode.
const sessionCookieName = "samlha_session"

// Session is a logged-in user's server-side session. It embeds crewjam's
// claims (made by its JWTSessionCodec.New from the assertion, so attributes,
// NameID and SessionIndex follow the library's rules exactly), so it
// satisfies samlsp.SessionWithAttributes, SessionWithNameID,
// SessionWithSAMLNameID and RevocableSession, and crewjam's logout works
// with it unchanged.
type Session struct {
	samlsp.JWTSessionClaims `json:"c"`
	// LoginInstance began the login; ACSInstance finished it.
	LoginInstance string    `json:"l,omitempty"`
	ACSInstance   string    `json:"a,omitempty"`
	Created       time.Time `json:"t"`
	Touched       time.Time `json:"u"`
	// Expires is the absolute end: the SP's maximum session lifetime,
	// capped by the IdP's SessionNotOnOrAfter.
	Expires time.Time `json:"x"`
}

// GetSessionIssuedAt implements samlsp.RevocableSession with millisecond
// precision (the JWT claim has only seconds).
func (s *Session) GetSessionIssuedAt() time.Time { return s.Created }

// sessionMiss is wrapped, with samlsp.ErrNoSession, in the error GetSession
// returns when the browser presents a session cookie whose session cannot be
// used. It tells requireAccount whether a re-login can help.
type sessionMiss struct {
	kind   string // cross-instance, not-found, invalid, revoked, expired
	origin string
	detail string
}

func (m *sessionMiss) Error() string { return "session " + m.kind + ": " + m.detail }

// storeSessions is a samlsp.SessionProvider whose sessions live in a
// store.Store, sealed: the cookie holds a random ID and secret, new at each
// login, prefixed by the instance that made it (for diagnosis); the store
// holds the session encrypted under a key derived from that secret and the
// SP's session key (seal.go), under a hash of the ID.
type storeSessions struct {
	store     store.Store
	storeKind string
	shared    bool // store.Shared: other replicas see the same sessions
	instance  string
	idle      time.Duration
	absolute  time.Duration
	timeout   time.Duration
	now       func() time.Time
	codec     samlsp.JWTSessionCodec // only its New: claims from an assertion
	revoked   *revocations
	ring      *keyRing
	cookie    cookieSettings
	onErr     func(op string, err error)
}

var (
	_ samlsp.SessionProvider   = (*storeSessions)(nil)
	_ samlsp.SessionTerminator = (*storeSessions)(nil)
)

// newSession builds the session and its cookie for assertion, for a login
// begun on loginInstance; it writes nothing. The ACS stores it (p.seal)
// together with the replay record (see SP.commitLogin).
func (p *storeSessions) newSession(assertion *saml.Assertion, loginInstance string) (sessionCookie, *Session, error) {
	claims, err := p.codec.New(assertion)
	if err != nil {
		return sessionCookie{}, nil, err
	}
	c := claims.(samlsp.JWTSessionClaims)
	now := p.now()
	s := &Session{JWTSessionClaims: c, LoginInstance: loginInstance, ACSInstance: p.instance,
		Created: now, Touched: now, Expires: c.ExpiresAt.Time}
	return newSessionCookie(p.instance), s, nil
}

// seal is the stored value of session s of cookie c.
func (p *storeSessions) seal(c sessionCookie, s *Session) ([]byte, error) {
	return sealSession(p.ring, c, s)
}

// ttl is how long the record lives from now: the idle timeout, capped by the
// absolute expiry.
func (p *storeSessions) ttl(s *Session, now time.Time) time.Duration {
	return min(p.idle, s.Expires.Sub(now))
}

// CreateSession implements samlsp.SessionProvider.
func (p *storeSessions) CreateSession(w http.ResponseWriter, r *http.Request, assertion *saml.Assertion) error {
	// Called through crewjam's interface, the login's origin is unknown.
	c, s, err := p.newSession(assertion, "")
	if err != nil {
		return err
	}
	b, err := p.seal(c, s)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	if err := p.store.Put(ctx, c.storeKey(), b, p.ttl(s, s.Created)); err != nil {
		p.onErr("put", err)
		return err
	}
	p.replaceCookie(w, r, c, s)
	return nil
}

// replaceCookie sets the session cookie for a new session and deletes the
// session the browser held before, if any (a new ID at every login).
func (p *storeSessions) replaceCookie(w http.ResponseWriter, r *http.Request, c sessionCookie, s *Session) {
	if ck, err := r.Cookie(sessionCookieName); err == nil {
		if old, err := parseSessionCookie(ck.Value); err == nil && old.storeKey() != c.storeKey() {
			ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
			_ = p.store.Delete(ctx, old.storeKey())
			cancel()
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookieName,
		Value:    c.String(),
		Path:     "/",
		Domain:   p.cookie.domain,
		Expires:  s.Expires,
		HttpOnly: true,
		Secure:   p.cookie.secure,
		// The session cookie need not survive the IdP's cross-site POST
		// (it is set by the ACS response), so it is Lax.
		SameSite: http.SameSiteLaxMode,
	})
}

// DeleteSession implements samlsp.SessionProvider.
func (p *storeSessions) DeleteSession(w http.ResponseWriter, r *http.Request) error {
	if ck, err := r.Cookie(sessionCookieName); err == nil {
		if c, err := parseSessionCookie(ck.Value); err == nil {
			ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
			defer cancel()
			if err := p.store.Delete(ctx, c.storeKey()); err != nil {
				p.onErr("delete", err)
				return err
			}
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookieName, Value: "", Path: "/", Domain: p.cookie.domain,
		MaxAge: -1, HttpOnly: true, Secure: p.cookie.secure, SameSite: http.SameSiteLaxMode})
	return nil
}

// GetSession implements samlsp.SessionProvider. A missing or unusable
// session is an error matching samlsp.ErrNoSession (and, when the browser
// did present a cookie, wrapping a *sessionMiss); a store failure is an
// error that does not match it, so no login is started on a guess.
func (p *storeSessions) GetSession(r *http.Request) (samlsp.Session, error) {
	ck, err := r.Cookie(sessionCookieName)
	if err != nil {
		return nil, samlsp.ErrNoSession
	}
	c, err := parseSessionCookie(ck.Value)
	if err != nil {
		return nil, missErr(&sessionMiss{kind: "invalid", detail: "session cookie is not a samlha session cookie"})
	}
	origin := c.instance
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	key := c.storeKey()
	b, err := p.store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, missErr(p.notFound(origin))
	}
	if err != nil {
		p.onErr("get", err)
		return nil, err
	}
	s, current, err := openSession(p.ring, c, b)
	if err != nil {
		// Not deleted: whoever presents a wrong secret for a real ID
		// must not be able to end that session.
		return nil, missErr(&sessionMiss{kind: "invalid", origin: origin, detail: err.Error()})
	}
	now := p.now()
	if !now.Before(s.Expires) {
		_ = p.store.Delete(ctx, key)
		return nil, missErr(&sessionMiss{kind: "expired", origin: origin, detail: "session reached its absolute expiry"})
	}
	if err := p.checkRevoked(ctx, s); err != nil {
		return nil, err
	}
	// Slide the idle timeout, but write at most once per quarter of it
	// (and when a key being rotated out sealed the record). The write is
	// a Swap, which writes only over a live record: a logout (or a new
	// login's replacement) that deleted the session after the Get above is
	// not undone, and the session ends here too.
	if now.Sub(s.Touched) > p.idle/4 || !current {
		s.Touched = now
		nb, err := p.seal(c, s)
		if err != nil {
			return nil, err
		}
		_, err = p.store.Swap(ctx, key, nb, p.ttl(s, now))
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, missErr(&sessionMiss{kind: "not-found", origin: origin, detail: "session ended (logged out) while this request read it"})
		case err != nil:
			p.onErr("swap", err)
		}
	}
	return s, nil
}

// notFound describes a session cookie whose record is not in the store.
func (p *storeSessions) notFound(origin string) *sessionMiss {
	m := &sessionMiss{kind: "not-found", origin: origin, detail: "no such session (expired, logged out, or never existed)"}
	if origin != p.instance && !p.shared {
		m.kind = "cross-instance"
		m.detail = fmt.Sprintf("session was created on %s; this is %s and the %s store is per instance", origin, p.instance, p.storeKind)
	}
	return m
}

func missErr(m *sessionMiss) error { return fmt.Errorf("%w: %w", samlsp.ErrNoSession, m) }

// TerminateSessions implements samlsp.SessionTerminator, for logout
// requests from the IdP: the sessions it names are recorded as revoked and
// refused by GetSession on every replica that shares the store.
func (p *storeSessions) TerminateSessions(ctx context.Context, req *saml.LogoutRequest) error {
	if req.NameID == nil || req.NameID.Value == "" {
		return fmt.Errorf("%w: the LogoutRequest has no NameID", saml.ErrUnsupported)
	}
	nameID := req.NameID.Value
	now := p.now()
	until := now.Add(p.absolute)
	indexes := req.AllSessionIndexes()
	// A revocation is written under every key of the ring and read under
	// every key, so it holds on every replica during a rotation, whichever
	// ring each replica has.
	for i := range p.ring.keys {
		pepper := p.ring.keys[i].pepper
		if len(indexes) == 0 {
			if err := p.revoked.Revoke(ctx, nameIDRevocationKey(pepper, nameID), now, until); err != nil {
				return err
			}
			continue
		}
		for _, idx := range append(indexes, saml.SessionIndex{}) {
			if err := p.revoked.Revoke(ctx, sessionIndexRevocationKey(pepper, nameID, idx.Value), now, until); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *storeSessions) checkRevoked(ctx context.Context, s *Session) error {
	nameID := s.GetNameID()
	if nameID == "" {
		return nil
	}
	indexes := s.GetAttributes()["SessionIndex"]
	if len(indexes) == 0 {
		indexes = []string{""}
	}
	keys := make([]string, 0, (1+len(indexes))*len(p.ring.keys))
	for i := range p.ring.keys {
		pepper := p.ring.keys[i].pepper
		keys = append(keys, nameIDRevocationKey(pepper, nameID))
		for _, idx := range indexes {
			keys = append(keys, sessionIndexRevocationKey(pepper, nameID, idx))
		}
	}
	// The keys are independent: read them at once, so the check costs one
	// round trip of latency on every request, not one per key.
	type answer struct {
		at  time.Time
		err error
	}
	answers := make([]answer, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			at, err := p.revoked.RevokedAt(ctx, k)
			answers[i+1] = answer{at, err}
		}()
	}
	at, err := p.revoked.RevokedAt(ctx, keys[0])
	answers[0] = answer{at, err}
	wg.Wait()
	for _, a := range answers {
		if a.err != nil {
			p.onErr("get", a.err)
			return fmt.Errorf("cannot check whether the session is revoked: %w", a.err)
		}
		if !a.at.IsZero() && !s.Created.After(a.at) {
			return missErr(&sessionMiss{kind: "revoked", detail: "session ended by single logout"})
		}
	}
	return nil
}

// Revocation keys: every session of a NameID, or those of a NameID with one
// SessionIndex (the length prefix keeps the two parts apart). They are
// HMACs under a pepper derived from the SP's session key: a plain hash of a
// NameID (an e-mail address, often) could be confirmed by anyone with a
// list of candidates and a copy of the store.
func nameIDRevocationKey(pepper []byte, nameID string) string {
	h := newMAC(pepper)
	h.Write([]byte("nameid\x00"))
	h.Write([]byte(nameID))
	return "nameid:" + hex.EncodeToString(h.Sum(nil))
}

func sessionIndexRevocationKey(pepper []byte, nameID, sessionIndex string) string {
	h := newMAC(pepper)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(nameID)))
	h.Write([]byte("sessionindex\x00"))
	h.Write(n[:])
	h.Write([]byte(nameID))
	h.Write([]byte(sessionIndex))
	return "sessionindex:" + hex.EncodeToString(h.Sum(nil))
}
