package session

import (
	"context"
	"crypto"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/samlha/samlha/sp/keypair"
	"github.com/samlha/samlha/sp/keyring"
)

// Either is the session provider of a replica on the way from stateless
// mode to a shared store (README "From stateless to shared state"): it
// reads a session cookie of either form under the one cookie name — a
// store session (<instance>~<id>.<secret>, which has a "~" no JWT has) from
// Store, crewjam's signed JWT from Cookies — and ends each where it lives.
// New sessions are the replica's own kind: JWTs when CookiesFirst (a
// stateless replica), else store sessions, which the ACS makes.
type Either struct {
	Store        samlsp.SessionProvider // *Provider or *Cache
	Cookies      samlsp.CookieSessionProvider
	CookiesFirst bool
}

var (
	_ samlsp.SessionProvider   = Either{}
	_ samlsp.SessionTerminator = Either{}
)

// pick is the provider of r's session cookie; without one, the replica's
// own.
func (e Either) pick(r *http.Request) samlsp.SessionProvider {
	ck, err := r.Cookie(CookieName)
	switch {
	case err != nil && e.CookiesFirst:
		return e.Cookies
	case err != nil:
		return e.Store
	case IsStoreCookie(ck.Value):
		return e.Store
	}
	return e.Cookies
}

// IsStoreCookie reports whether v is a store session's cookie, not a JWT.
func IsStoreCookie(v string) bool {
	_, err := ParseCookie(v)
	return err == nil
}

// GetSession implements samlsp.SessionProvider.
func (e Either) GetSession(r *http.Request) (samlsp.Session, error) { return e.pick(r).GetSession(r) }

// CreateSession implements samlsp.SessionProvider: the replica's own kind.
func (e Either) CreateSession(w http.ResponseWriter, r *http.Request, a *saml.Assertion) error {
	if e.CookiesFirst {
		return e.Cookies.CreateSession(w, r, a)
	}
	return e.Store.CreateSession(w, r, a)
}

// DeleteSession implements samlsp.SessionProvider: a store session is
// deleted from the store, a JWT's cookie expired.
func (e Either) DeleteSession(w http.ResponseWriter, r *http.Request) error {
	return e.pick(r).DeleteSession(w, r)
}

// TerminateSessions implements samlsp.SessionTerminator: the sessions req
// names are revoked in both forms, so neither outlives a logout.
func (e Either) TerminateSessions(ctx context.Context, req *saml.LogoutRequest) error {
	var errs []error
	if t, ok := e.Store.(samlsp.SessionTerminator); ok {
		errs = append(errs, t.TerminateSessions(ctx, req))
	}
	errs = append(errs, e.Cookies.TerminateSessions(ctx, req))
	return errors.Join(errs...)
}

// JWTCodec is crewjam's JWTSessionCodec verifying with more than one key:
// Key signs, and a token signed by Key or by one of Next (the SP key being
// rolled in, --sp-key-next) decodes. Everything else (audience, issuer,
// expiry, algorithm) is checked by crewjam's Decode under each key.
type JWTCodec struct {
	samlsp.JWTSessionCodec
	Next []crypto.Signer
}

// Decode implements samlsp.SessionCodec.
func (c JWTCodec) Decode(signed string) (samlsp.Session, error) {
	return keypair.TryKeys(c.Key, c.Next, jwt.ErrTokenSignatureInvalid, func(k crypto.Signer) (samlsp.Session, error) {
		cc := c.JWTSessionCodec
		cc.Key = k
		return cc.Decode(signed)
	})
}

// jwtRevocations keeps the revocations of crewjam's JWT sessions in the
// store beside the store sessions' own: crewjam's keys (a plain SHA-256 of
// the NameID) are MACed under every key of the ring, as the store
// sessions' revocation keys are, so a reader of the store cannot confirm
// a NameID, and the records hold on every replica during a rotation.
type jwtRevocations struct {
	v    *Revocations
	ring *keyring.Ring
}

// JWTRevocations is the revocation store of crewjam's JWT sessions on a
// replica that shares this provider's store.
func (p *Provider) JWTRevocations() samlsp.SessionRevocationStore {
	return jwtRevocations{v: p.revoked, ring: p.ring}
}

func jwtRevocationKey(k keyring.Key, key string) string {
	h := keyring.MAC(k.Pepper)
	h.Write([]byte("jwt\x00"))
	h.Write([]byte(key))
	return "jwt:" + hex.EncodeToString(h.Sum(nil))
}

func (j jwtRevocations) Revoke(ctx context.Context, key string, revokedAt, expiresAt time.Time) error {
	for _, k := range j.ring.All() {
		if err := j.v.Revoke(ctx, jwtRevocationKey(k, key), revokedAt, expiresAt); err != nil {
			return err
		}
	}
	return nil
}

func (j jwtRevocations) RevokedAt(ctx context.Context, key string) (time.Time, error) {
	var last time.Time
	for _, k := range j.ring.All() {
		at, err := j.v.RevokedAt(ctx, jwtRevocationKey(k, key))
		if err != nil {
			return time.Time{}, err
		}
		if at.After(last) {
			last = at
		}
	}
	return last, nil
}
