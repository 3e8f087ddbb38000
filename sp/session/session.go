// Package session keeps logged-in users' sessions: the session record and
// its sealing (seal.go), the store-backed provider crewjam reads and the
// revocations single logout writes (this file), the assertion replay record
// (replay.go), and the per-replica near cache (cache.go).
package session

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"

	"github.com/samlha/samlha/sp/keyring"
	"github.com/samlha/samlha/store"
)

// CookieName holds the session's ID and secret in store mode (see
// seal.go), and crewjam's signed session JWT in stateless mode.
const CookieName = "samlha_session"

// Key prefixes of what this package keeps in the store.
const (
	keySession = "sess:"
	keyReplay  = "replay:"
	keyRevoked = "revoked:"
)

// CookieSettings are the attributes of the session cookie.
type CookieSettings struct {
	Secure bool
	Domain string
}

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

// Miss is wrapped, with samlsp.ErrNoSession, in the error GetSession
// returns when the browser presents a session cookie whose session cannot be
// used. It tells the caller whether a re-login can help.
type Miss struct {
	Kind   string // cross-instance, not-found, invalid, revoked, expired
	Origin string // the instance the cookie names
	Detail string
}

func (m *Miss) Error() string { return "session " + m.Kind + ": " + m.Detail }

// Provider is a samlsp.SessionProvider whose sessions live in a
// store.Store, sealed: the cookie holds a random ID and secret, new at each
// login, prefixed by the instance that made it (for diagnosis); the store
// holds the session encrypted under a key derived from that secret and the
// SP's session key (seal.go), under a hash of the ID.
type Provider struct {
	store     store.Store
	storeKind string
	shared    bool // store.Shared: other replicas see the same sessions
	instance  string
	idle      time.Duration
	absolute  time.Duration
	timeout   time.Duration
	now       func() time.Time
	codec     samlsp.JWTSessionCodec // only its New: claims from an assertion
	revoked   *Revocations
	ring      *keyring.Ring
	cookie    CookieSettings
	onErr     func(op string, err error)
	// ended, when set (by a Cache in front of the provider), is told of
	// every session deleted from the store; its error fails a logout.
	ended func(ctx context.Context, key string) error
}

var (
	_ samlsp.SessionProvider   = (*Provider)(nil)
	_ samlsp.SessionTerminator = (*Provider)(nil)
)

// ProviderConfig configures a Provider.
type ProviderConfig struct {
	Store     store.Store
	StoreKind string
	Instance  string
	Idle      time.Duration // idle timeout
	Absolute  time.Duration // absolute lifetime (capped by the IdP's SessionNotOnOrAfter)
	Timeout   time.Duration // per store call
	Now       func() time.Time
	Ring      *keyring.Ring
	Cookie    CookieSettings
	// OnStoreError is told of every store failure other than not-found
	// (for the store-errors metric and the log).
	OnStoreError func(op string, err error)
}

// NewProvider returns the provider configured by c. Call SetCodec before
// it makes sessions.
func NewProvider(c ProviderConfig) *Provider {
	return &Provider{store: c.Store, storeKind: c.StoreKind, shared: store.Shared(c.Store), instance: c.Instance,
		idle: c.Idle, absolute: c.Absolute, timeout: c.Timeout, now: c.Now,
		revoked: &Revocations{store: c.Store, timeout: c.Timeout, now: c.Now},
		ring:    c.Ring, cookie: c.Cookie, onErr: c.OnStoreError}
}

// SetCodec sets the crewjam codec whose New turns an assertion into the
// session's claims (it depends on the IdP metadata's configuration).
func (p *Provider) SetCodec(c samlsp.JWTSessionCodec) { p.codec = c }

// Revocations is the crewjam SessionRevocationStore this provider checks.
func (p *Provider) Revocations() *Revocations { return p.revoked }

// Shared reports whether other replicas see the same sessions.
func (p *Provider) Shared() bool { return p.shared }

// NewSession builds the session and its cookie for assertion, for a login
// begun on loginInstance; it writes nothing. The ACS stores it (Seal)
// together with the replay record.
func (p *Provider) NewSession(assertion *saml.Assertion, loginInstance string) (Cookie, *Session, error) {
	claims, err := p.codec.New(assertion)
	if err != nil {
		return Cookie{}, nil, err
	}
	c := claims.(samlsp.JWTSessionClaims)
	now := p.now()
	s := &Session{JWTSessionClaims: c, LoginInstance: loginInstance, ACSInstance: p.instance,
		Created: now, Touched: now, Expires: c.ExpiresAt.Time}
	ck := NewCookie(p.instance)
	if nameID, idx, ok := revocationSubject(s); ok {
		ck.tags = revocationTags(p.ring.Sealing(), nameID, idx)
	}
	return ck, s, nil
}

// Seal is the stored value of session s of cookie c.
func (p *Provider) Seal(c Cookie, s *Session) ([]byte, error) {
	return Seal(p.ring, c, s)
}

// TTL is how long the record lives from now: the idle timeout, capped by the
// absolute expiry.
func (p *Provider) TTL(s *Session, now time.Time) time.Duration {
	return min(p.idle, s.Expires.Sub(now))
}

// CreateSession implements samlsp.SessionProvider. It refuses: sessions are
// made by the SP's ACS, which records the assertion as used in the same
// round trip (crewjam calls this only from handlers the SP does not mount).
func (p *Provider) CreateSession(http.ResponseWriter, *http.Request, *saml.Assertion) error {
	return errors.New("sessions are created by the SP's ACS with the assertion's replay record, not through crewjam's SessionProvider")
}

// ReplaceCookie sets the session cookie for a new session and deletes the
// session the browser held before, if any (a new ID at every login).
func (p *Provider) ReplaceCookie(w http.ResponseWriter, r *http.Request, c Cookie, s *Session) {
	if ck, err := r.Cookie(CookieName); err == nil {
		if old, err := ParseCookie(ck.Value); err == nil && old.StoreKey() != c.StoreKey() {
			ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
			if p.store.Delete(ctx, old.StoreKey()) == nil {
				_ = p.end(ctx, old.StoreKey())
			}
			cancel()
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    c.String(),
		Path:     "/",
		Domain:   p.cookie.Domain,
		Expires:  s.Expires,
		HttpOnly: true,
		Secure:   p.cookie.Secure,
		// The session cookie need not survive the IdP's cross-site POST
		// (it is set by the ACS response), so it is Lax.
		SameSite: http.SameSiteLaxMode,
	})
}

// end tells the hook (a Cache in front of p) that the session under key
// was deleted from the store.
func (p *Provider) end(ctx context.Context, key string) error {
	if p.ended == nil {
		return nil
	}
	return p.ended(ctx, key)
}

// DeleteSession implements samlsp.SessionProvider.
func (p *Provider) DeleteSession(w http.ResponseWriter, r *http.Request) error {
	if ck, err := r.Cookie(CookieName); err == nil {
		if c, err := ParseCookie(ck.Value); err == nil {
			ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
			defer cancel()
			if err := p.store.Delete(ctx, c.StoreKey()); err != nil {
				p.onErr("delete", err)
				return err
			}
			if err := p.end(ctx, c.StoreKey()); err != nil {
				return err
			}
		}
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", Domain: p.cookie.Domain,
		MaxAge: -1, HttpOnly: true, Secure: p.cookie.Secure, SameSite: http.SameSiteLaxMode})
	return nil
}

// GetSession implements samlsp.SessionProvider. A missing or unusable
// session is an error matching samlsp.ErrNoSession (and, when the browser
// did present a cookie, wrapping a *Miss); a store failure is an
// error that does not match it, so no login is started on a guess.
func (p *Provider) GetSession(r *http.Request) (samlsp.Session, error) {
	ck, err := r.Cookie(CookieName)
	if err != nil {
		return nil, samlsp.ErrNoSession
	}
	c, err := ParseCookie(ck.Value)
	if err != nil {
		return nil, missErr(&Miss{Kind: "invalid", Detail: "session cookie is not a samlha session cookie"})
	}
	origin := c.instance
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	defer cancel()
	key := c.StoreKey()
	s, current, err := p.read(ctx, c)
	if err != nil {
		return nil, err
	}
	now := p.now()
	if !now.Before(s.Expires) {
		_ = p.store.Delete(ctx, key)
		return nil, missErr(&Miss{Kind: "expired", Origin: origin, Detail: "session reached its absolute expiry"})
	}
	// Slide the idle timeout, but write at most once per quarter of it
	// (and when a key being rotated out sealed the record). The write is
	// a Swap, which writes only over a live record: a logout (or a new
	// login's replacement) that deleted the session after the Get above is
	// not undone, and the session ends here too.
	if now.Sub(s.Touched) > p.idle/4 || !current {
		s.Touched = now
		nb, err := p.Seal(c, s)
		if err != nil {
			return nil, err
		}
		_, err = p.store.Swap(ctx, key, nb, p.TTL(s, now))
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil, missErr(&Miss{Kind: "not-found", Origin: origin, Detail: "session ended (logged out) while this request read it"})
		case err != nil:
			p.onErr("swap", err)
		}
	}
	return s, nil
}

// read reads the session of cookie c and whether it was revoked: in one
// round trip (store.GetMany) when the cookie names its revocation keys
// under a key of the ring, else the session first and its revocation
// records after (a cookie of an earlier release, or of a key no longer in
// the ring, or of a session with several SessionIndexes). It returns the
// session open, whether the ring's sealing key sealed it, and a Miss or a
// store error.
func (p *Provider) read(ctx context.Context, c Cookie) (*Session, bool, error) {
	key := c.StoreKey()
	rk := p.tagKey(c)
	if rk == nil {
		b, err := p.get(ctx, c, key)
		if err != nil {
			return nil, false, err
		}
		s, current, err := p.open(c, b)
		if err != nil {
			return nil, false, err
		}
		return s, current, p.checkRevoked(ctx, s)
	}
	keys := []string{key, keyRevoked + "nameid:" + hex.EncodeToString(c.tags[1:1+sha256.Size]),
		keyRevoked + "sessionindex:" + hex.EncodeToString(c.tags[1+sha256.Size:])}
	vals, err := store.GetMany(ctx, p.store, keys)
	if err != nil {
		p.onErr("get-many", err)
		return nil, false, err
	}
	if vals[0] == nil {
		return nil, false, missErr(p.notFound(c.instance))
	}
	s, current, err := p.open(c, vals[0])
	if err != nil {
		return nil, false, err
	}
	nameID, idx, ok := revocationSubject(s)
	if !ok || !hmac.Equal(c.tags, revocationTags(rk, nameID, idx)) {
		// The cookie names revocation keys that are not this session's:
		// it was altered, to skip a revocation.
		return nil, false, missErr(&Miss{Kind: "invalid", Origin: c.instance, Detail: "the session cookie names revocation keys that are not its session's"})
	}
	for _, v := range vals[1:] {
		if revokedBefore(v, s.Created) {
			return nil, false, missErr(&Miss{Kind: "revoked", Detail: "session ended by single logout"})
		}
	}
	return s, current, nil
}

// get reads the stored record of a session.
func (p *Provider) get(ctx context.Context, c Cookie, key string) ([]byte, error) {
	b, err := p.store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, missErr(p.notFound(c.instance))
	}
	if err != nil {
		p.onErr("get", err)
		return nil, err
	}
	return b, nil
}

// open opens a stored record, or says why it cannot be used. A record that
// does not open is not deleted: whoever presents a wrong secret for a real
// ID must not be able to end that session.
func (p *Provider) open(c Cookie, b []byte) (*Session, bool, error) {
	s, current, err := Open(p.ring, c, b)
	if err != nil {
		return nil, false, missErr(&Miss{Kind: "invalid", Origin: c.instance, Detail: err.Error()})
	}
	return s, current, nil
}

// tagKey is the ring key a cookie's revocation tags were made with, nil if
// it has none or that key is no longer in the ring (then the revocation
// records are read under every key of the ring, the slow way).
func (p *Provider) tagKey(c Cookie) *keyring.Key {
	if len(c.tags) != tagsBytes {
		return nil
	}
	if ks := p.ring.ByID(c.tags[0]); len(ks) == 1 {
		return ks[0]
	}
	return nil
}

// revocationSubject is what a session's revocation keys are made of: its
// NameID and its one SessionIndex ("" if none). ok is false for a session
// without a NameID or with several SessionIndexes (its keys are read the
// slow way).
func revocationSubject(s *Session) (nameID, idx string, ok bool) {
	nameID = s.GetNameID()
	idxs := s.GetAttributes()["SessionIndex"]
	if nameID == "" || len(idxs) > 1 {
		return "", "", false
	}
	if len(idxs) == 1 {
		idx = idxs[0]
	}
	return nameID, idx, true
}

// revocationTags are the tags of a session of nameID with SessionIndex idx,
// under ring key k (Cookie).
func revocationTags(k *keyring.Key, nameID, idx string) []byte {
	t := make([]byte, 0, tagsBytes)
	t = append(t, k.ID)
	t = append(t, nameIDRevocationMAC(k.Pepper, nameID)...)
	return append(t, sessionIndexRevocationMAC(k.Pepper, nameID, idx)...)
}

// revokedBefore reports whether the revocation record v (nil: none) ends a
// session created at created.
func revokedBefore(v []byte, created time.Time) bool {
	if v == nil {
		return false
	}
	at, err := time.Parse(time.RFC3339Nano, string(v))
	return err != nil || !created.After(at) // an unreadable record revokes: never guess in the session's favour
}

// notFound describes a session cookie whose record is not in the store.
func (p *Provider) notFound(origin string) *Miss {
	m := &Miss{Kind: "not-found", Origin: origin, Detail: "no such session (expired, logged out, or never existed)"}
	if origin != p.instance && !p.shared {
		m.Kind = "cross-instance"
		m.Detail = fmt.Sprintf("session was created on %s; this is %s and the %s store is per instance", origin, p.instance, p.storeKind)
	}
	return m
}

func missErr(m *Miss) error { return fmt.Errorf("%w: %w", samlsp.ErrNoSession, m) }

// TerminateSessions implements samlsp.SessionTerminator, for logout
// requests from the IdP: the sessions it names are recorded as revoked and
// refused by GetSession on every replica that shares the store.
func (p *Provider) TerminateSessions(ctx context.Context, req *saml.LogoutRequest) error {
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
	for _, k := range p.ring.All() {
		pepper := k.Pepper
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

func (p *Provider) checkRevoked(ctx context.Context, s *Session) error {
	nameID := s.GetNameID()
	if nameID == "" {
		return nil
	}
	indexes := s.GetAttributes()["SessionIndex"]
	if len(indexes) == 0 {
		indexes = []string{""}
	}
	keys := make([]string, 0, (1+len(indexes))*len(p.ring.All()))
	for _, k := range p.ring.All() {
		pepper := k.Pepper
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
			return missErr(&Miss{Kind: "revoked", Detail: "session ended by single logout"})
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
	return "nameid:" + hex.EncodeToString(nameIDRevocationMAC(pepper, nameID))
}

func nameIDRevocationMAC(pepper []byte, nameID string) []byte {
	h := keyring.MAC(pepper)
	h.Write([]byte("nameid\x00"))
	h.Write([]byte(nameID))
	return h.Sum(nil)
}

func sessionIndexRevocationKey(pepper []byte, nameID, sessionIndex string) string {
	return "sessionindex:" + hex.EncodeToString(sessionIndexRevocationMAC(pepper, nameID, sessionIndex))
}

func sessionIndexRevocationMAC(pepper []byte, nameID, sessionIndex string) []byte {
	h := keyring.MAC(pepper)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(nameID)))
	h.Write([]byte("sessionindex\x00"))
	h.Write(n[:])
	h.Write([]byte(nameID))
	h.Write([]byte(sessionIndex))
	return h.Sum(nil)
}
