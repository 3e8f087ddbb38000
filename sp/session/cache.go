package session

import (
	"context"
	"crypto/sha256"
	"net/http"
	"sync"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
)

// Cache is a near cache in front of a session provider: a session
// found in the store is served from this replica's memory for at most
// MaxAge, so the authenticated path of the gateway costs no store round
// trip on most requests. A session ended anywhere (logout on another
// replica, single logout, revocation, expiry) is refused here at most
// MaxAge later: that is the bound on revocation reaching every replica,
// whatever the store's pub/sub does. A logout through this replica drops
// the entry at once.
//
// Only successes are cached: a miss or a store error goes to the provider
// every time. Entries are keyed by a hash of the whole session cookie, so
// a cookie that differs in any byte is a different entry.
type Cache struct {
	inner      samlsp.SessionProvider
	maxAge     time.Duration
	maxEntries int
	now        func() time.Time

	mu        sync.RWMutex
	entries   map[[32]byte]cachedSession
	nextSweep time.Time // a full cache is not swept again before this
	sweeps    int       // full-cache sweeps so far (tests)
}

type cachedSession struct {
	sess    samlsp.Session
	expires time.Time
}

var (
	_ samlsp.SessionProvider   = (*Cache)(nil)
	_ samlsp.SessionTerminator = (*Cache)(nil)
)

func NewCache(inner samlsp.SessionProvider, maxAge time.Duration, maxEntries int, now func() time.Time) *Cache {
	return &Cache{inner: inner, maxAge: maxAge, maxEntries: maxEntries, now: now, entries: map[[32]byte]cachedSession{}}
}

func cacheKey(r *http.Request) ([32]byte, bool) {
	ck, err := r.Cookie(CookieName)
	if err != nil || ck.Value == "" {
		return [32]byte{}, false
	}
	return sha256.Sum256([]byte(ck.Value)), true
}

// GetSession implements samlsp.SessionProvider.
func (c *Cache) GetSession(r *http.Request) (samlsp.Session, error) {
	key, ok := cacheKey(r)
	if !ok {
		return c.inner.GetSession(r)
	}
	now := c.now()
	c.mu.RLock()
	e, hit := c.entries[key]
	c.mu.RUnlock()
	if hit && now.Before(e.expires) {
		return e.sess, nil
	}
	sess, err := c.inner.GetSession(r)
	if err != nil || sess == nil {
		if hit {
			c.drop(key)
		}
		return sess, err
	}
	c.mu.Lock()
	if len(c.entries) >= c.maxEntries && !now.Before(c.nextSweep) {
		// A full cache of live entries is swept at most once per maxAge:
		// until then a miss is served from the store without a scan.
		c.sweepLocked(now)
		c.nextSweep = now.Add(c.maxAge)
	}
	if len(c.entries) < c.maxEntries {
		c.entries[key] = cachedSession{sess: sess, expires: now.Add(c.maxAge)}
	}
	c.mu.Unlock()
	return sess, nil
}

// sweepLocked drops expired entries; the caller holds mu.
func (c *Cache) sweepLocked(now time.Time) {
	c.sweeps++
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
}

func (c *Cache) drop(key [32]byte) {
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
}

// CreateSession implements samlsp.SessionProvider.
func (c *Cache) CreateSession(w http.ResponseWriter, r *http.Request, assertion *saml.Assertion) error {
	if key, ok := cacheKey(r); ok {
		c.drop(key)
	}
	return c.inner.CreateSession(w, r, assertion)
}

// DeleteSession implements samlsp.SessionProvider: the entry goes first,
// so this replica refuses the session at once.
func (c *Cache) DeleteSession(w http.ResponseWriter, r *http.Request) error {
	if key, ok := cacheKey(r); ok {
		c.drop(key)
	}
	return c.inner.DeleteSession(w, r)
}

// TerminateSessions implements samlsp.SessionTerminator (single logout
// from the IdP): the named sessions are revoked in the store, and this
// replica forgets every cached session, since it cannot tell which
// entries they are.
func (c *Cache) TerminateSessions(ctx context.Context, req *saml.LogoutRequest) error {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
	if t, ok := c.inner.(samlsp.SessionTerminator); ok {
		return t.TerminateSessions(ctx, req)
	}
	return nil
}
