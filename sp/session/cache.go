package session

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"

	"github.com/samlha/samlha/store"
)

// InvalidationChannel is the store channel on which replicas announce the
// sessions they end: the store key of one, or flushAll.
const InvalidationChannel = "samlha.sessions"

// flushAll asks every replica to forget every cached session (single
// logout from the IdP: which sessions it ends is known only by reading
// them).
const flushAll = "*"

// Cache serves sessions from this replica's memory, in front of the store
// provider, and drops them the moment another replica ends them.
//
// With a store that carries messages (store.Notifier), every replica that
// ends a session (logout, single logout) publishes it on
// InvalidationChannel, and every replica's Cache drops it on receipt. The
// cache is trusted only while its subscription is proven live (between the
// store's Live and Lost events; a Live empties it first), so a replica
// whose connection to the store is cut stops serving from memory within
// the store's delivery bound (store.Notifier.DeliveryBound, 1 s by default
// on Redis) and until it has resubscribed and flushed: a revoked session is
// never served. Without a Notifier, an entry is served for at most MaxAge,
// which then bounds how late a logout elsewhere is seen here.
//
// Only successes are cached, for at most MaxAge (capped at a quarter of the
// idle timeout, so the idle timeout still slides in the store) and at most
// MaxEntries (a full cache serves from the store rather than evict).
// Entries are keyed by the session's store key and keep a hash of the whole
// cookie, so a cookie that differs in any byte (a wrong secret) is never
// served from memory.
type Cache struct {
	inner      *Provider
	maxAge     time.Duration
	maxEntries int
	now        func() time.Time
	log        *slog.Logger
	notifier   store.Notifier // nil: MaxAge bounds staleness
	sub        store.Subscription
	events     <-chan store.Event
	done       chan struct{} // closed when listen returns

	mu      sync.Mutex
	entries map[string]cachedSession
	// live is whether the subscription is proven (always, without a
	// notifier); gen counts flushes, so that a store read that began
	// before a flush is not cached after it.
	live      bool
	gen       uint64
	nextSweep time.Time
	sweeps    int
}

type cachedSession struct {
	sess    samlsp.Session
	cookie  [32]byte
	expires time.Time
}

var (
	_ samlsp.SessionProvider   = (*Cache)(nil)
	_ samlsp.SessionTerminator = (*Cache)(nil)
)

// CacheConfig configures a Cache.
type CacheConfig struct {
	MaxAge     time.Duration
	MaxEntries int
	Now        func() time.Time
	Logger     *slog.Logger
	// Notifier carries invalidations; nil: MaxAge alone bounds how late a
	// session ended elsewhere is refused here.
	Notifier store.Notifier
}

// NewCache puts a cache in front of p. With a Notifier it subscribes to
// InvalidationChannel; the subscription lasts as long as the store.
func NewCache(p *Provider, c CacheConfig) (*Cache, error) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	maxAge := c.MaxAge
	if q := p.idle / 4; q > 0 && q < maxAge {
		maxAge = q
	}
	cc := &Cache{inner: p, maxAge: maxAge, maxEntries: c.MaxEntries, now: c.Now, log: c.Logger,
		notifier: c.Notifier, entries: map[string]cachedSession{}, live: c.Notifier == nil}
	p.ended = cc.ended
	if c.Notifier != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sub, err := c.Notifier.Subscribe(ctx, InvalidationChannel)
		if err != nil {
			return nil, err
		}
		cc.sub, cc.events, cc.done = sub, sub.Events(), make(chan struct{})
		go cc.listen()
	}
	return cc, nil
}

// listen applies the subscription's events until it ends (Close, or the
// store's Close): then the cache is no longer trusted, silently, since
// the replica is shutting down.
func (c *Cache) listen() {
	defer close(c.done)
	for ev := range c.events {
		c.apply(ev)
	}
	c.mu.Lock()
	c.flushLocked()
	c.live = false
	c.mu.Unlock()
}

// Close ends the cache's subscription and waits until its events are no
// longer applied; the cache then reads every session from the store.
func (c *Cache) Close() error {
	if c.sub == nil {
		return nil
	}
	err := c.sub.Close()
	<-c.done
	return err
}

func (c *Cache) apply(ev store.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch ev.Kind {
	case store.EventMessage:
		if string(ev.Payload) == flushAll {
			c.flushLocked()
			return
		}
		delete(c.entries, string(ev.Payload))
	case store.EventLive:
		c.flushLocked()
		if !c.live {
			c.log.Info("session cache trusted again: invalidations are delivered")
		}
		c.live = true
	case store.EventLost:
		c.flushLocked()
		if c.live {
			c.log.Warn("session cache not trusted: invalidations may be missed; sessions are read from the store until the channel is proven again")
		}
		c.live = false
	}
}

func (c *Cache) flushLocked() {
	clear(c.entries)
	c.gen++
}

// MaxAge is how long an entry is served before the store is read again.
func (c *Cache) MaxAge() time.Duration { return c.maxAge }

// Trusted reports whether the cache serves from memory now.
func (c *Cache) Trusted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.live
}

// GetSession implements samlsp.SessionProvider.
func (c *Cache) GetSession(r *http.Request) (samlsp.Session, error) {
	ck, err := r.Cookie(CookieName)
	if err != nil || ck.Value == "" {
		return c.inner.GetSession(r)
	}
	parsed, err := ParseCookie(ck.Value)
	if err != nil {
		return c.inner.GetSession(r)
	}
	// Both the key and the cookie's bytes for its hash stay on the stack
	// (ParseCookie has bounded the cookie's length).
	var kb [storeKeyLen]byte
	var vb [maxSessionCookieLen]byte
	key, sum := parsed.AppendStoreKey(kb[:0]), sha256.Sum256(append(vb[:0], ck.Value...))
	now := c.now()
	c.mu.Lock()
	e, hit := c.entries[string(key)] // no string made for the look-up
	live, gen := c.live, c.gen
	c.mu.Unlock()
	if live && hit && now.Before(e.expires) && subtle.ConstantTimeCompare(e.cookie[:], sum[:]) == 1 {
		return e.sess, nil
	}
	sess, err := c.inner.GetSession(r)
	if err != nil || sess == nil || !live {
		return sess, err
	}
	expires := now.Add(c.maxAge)
	if s, ok := sess.(*Session); ok && s.Expires.Before(expires) {
		expires = s.Expires
	}
	c.mu.Lock()
	if c.gen == gen && c.live {
		c.insertLocked(string(key), cachedSession{sess: sess, cookie: sum, expires: expires}, now)
	}
	c.mu.Unlock()
	return sess, nil
}

// insertLocked caches e under key unless the cache is full of live
// entries; a full cache is swept at most once per maxAge, not on every
// miss. The caller holds mu.
func (c *Cache) insertLocked(key string, e cachedSession, now time.Time) {
	if len(c.entries) >= c.maxEntries && !now.Before(c.nextSweep) {
		c.sweeps++
		for k, old := range c.entries {
			if !now.Before(old.expires) {
				delete(c.entries, k)
			}
		}
		c.nextSweep = now.Add(c.maxAge)
	}
	if len(c.entries) < c.maxEntries {
		c.entries[key] = e
	}
}

// CreateSession implements samlsp.SessionProvider (the provider refuses).
func (c *Cache) CreateSession(w http.ResponseWriter, r *http.Request, assertion *saml.Assertion) error {
	return c.inner.CreateSession(w, r, assertion)
}

// DeleteSession implements samlsp.SessionProvider. The provider deletes
// the session from the store and calls ended, which drops it here and
// announces it to every other replica.
func (c *Cache) DeleteSession(w http.ResponseWriter, r *http.Request) error {
	return c.inner.DeleteSession(w, r)
}

// ended is the provider's hook for a session it deleted from the store
// (logout, or a new login replacing the browser's old session): the
// session is dropped here and announced on InvalidationChannel. If the
// announcement cannot be published the logout fails (the store is
// failing; another replica could serve the session from its memory until
// its own subscription notices, within the store's delivery bound).
func (c *Cache) ended(ctx context.Context, key string) error {
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
	return c.publish(ctx, key)
}

// TerminateSessions implements samlsp.SessionTerminator (single logout
// from the IdP): the named sessions are revoked in the store, and every
// replica forgets every cached session, since none can tell which entries
// they are without reading them.
func (c *Cache) TerminateSessions(ctx context.Context, req *saml.LogoutRequest) error {
	c.mu.Lock()
	c.flushLocked()
	c.mu.Unlock()
	if err := c.inner.TerminateSessions(ctx, req); err != nil {
		return err
	}
	return c.publish(ctx, flushAll)
}

func (c *Cache) publish(ctx context.Context, msg string) error {
	if c.notifier == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.inner.timeout)
	defer cancel()
	if err := c.notifier.Publish(ctx, InvalidationChannel, []byte(msg)); err != nil {
		c.inner.onErr("publish", err)
		return err
	}
	return nil
}
