package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"

	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/redis/redistest"
)

// redisFixture is a session fixture whose store is a private
// redis-server, which carries the invalidations between replicas.
func redisFixture(t testing.TB) (*sessionFixture, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t)
	f := newSessionFixture(t, "sp-1", "redis")
	f.p.store = openStore(t, srv.URL())
	f.p.revoked.store = f.p.store
	return f, srv
}

func openStore(t testing.TB, url string) store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), url, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// refusedSoon waits until r refuses cookie c with a miss of kind: an
// invalidation is delivered within milliseconds (at most the store's
// delivery bound, 1 s), and never is the session served after that.
func refusedSoon(t *testing.T, r replica, c *http.Cookie, kind string) {
	t.Helper()
	var err error
	waitFor(t, "the other replica to refuse the ended session", func() bool {
		_, err = r.get(c)
		return err != nil
	})
	wantMiss(t, err, kind)
	for range 10 {
		_, err = r.get(c)
		wantMiss(t, err, kind)
	}
}

// replica is one replica's session provider with its cache.
type replica struct {
	p *Provider
	c *Cache
}

// twoReplicas returns two replicas whose providers share f's store (the
// second may reach it through st2, e.g. a proxy that can be cut) and
// whose caches take invalidations from notifier n1 and n2.
func twoReplicas(t testing.TB, f *sessionFixture, st2 store.Store) (one, two replica) {
	t.Helper()
	mk := func(st store.Store) replica {
		p := *f.p
		p.store, p.revoked = st, &Revocations{store: st, timeout: time.Second, now: f.clock.Now}
		n, ok := st.(store.Notifier)
		if !ok {
			t.Fatalf("%T is not a store.Notifier", st)
		}
		c, err := NewCache(&p, CacheConfig{MaxAge: time.Minute, MaxEntries: 1000, Now: f.clock.Now, Notifier: n})
		if err != nil {
			t.Fatal(err)
		}
		waitTrusted(t, c, true)
		return replica{&p, c}
	}
	return mk(f.p.store), mk(st2)
}

func waitTrusted(t testing.TB, c *Cache, want bool) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the cache's trust to become %v", want), func() bool { return c.Trusted() == want })
}

func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// generation counts the cache's flushes (each Live and Lost flushes).
func (c *Cache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (r replica) get(c *http.Cookie) (samlsp.Session, error) {
	req := httptest.NewRequest("GET", "/app", nil)
	req.AddCookie(c)
	return r.c.GetSession(req)
}

func (r replica) logout(t *testing.T, c *http.Cookie) {
	t.Helper()
	req := httptest.NewRequest("POST", "/logout", nil)
	req.AddCookie(c)
	if err := r.c.DeleteSession(httptest.NewRecorder(), req); err != nil {
		t.Fatalf("logout: %v", err)
	}
}

// cached reports whether r's cache holds the session of cookie c.
func (r replica) cached(c *http.Cookie) bool {
	ck, err := ParseCookie(c.Value)
	if err != nil {
		return false
	}
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	_, ok := r.c.entries[ck.StoreKey()]
	return ok
}

// A logout on one replica is refused by another that had the session in
// its cache as soon as the invalidation arrives (milliseconds on Redis;
// BenchmarkInvalidation measures it), not a TTL later.
func TestCacheLogoutReachesOtherReplicaAtOnce(t *testing.T) {
	t.Parallel()
	f, _ := redisFixture(t)
	one, two := twoReplicas(t, f, f.p.store)
	ck := f.login(t, assertionFor("alice", "idx-1", nil))
	for range 3 {
		if _, err := two.get(ck); err != nil {
			t.Fatal(err)
		}
	}
	if !two.cached(ck) {
		t.Fatal("the second replica did not cache the session it read")
	}
	one.logout(t, ck)
	refusedSoon(t, two, ck, "not-found")
}

// Single logout from the IdP names a NameID, not a session: every replica
// forgets every cached session, and the revocation is read from the store.
func TestCacheSingleLogoutFlushesEveryReplica(t *testing.T) {
	t.Parallel()
	f, _ := redisFixture(t)
	one, two := twoReplicas(t, f, f.p.store)
	ck := f.login(t, assertionFor("alice", "idx-1", nil))
	if _, err := two.get(ck); err != nil || !two.cached(ck) {
		t.Fatalf("not cached: %v", err)
	}
	f.clock.Advance(time.Second) // a revocation holds for sessions created before it
	if err := one.c.TerminateSessions(context.Background(), &saml.LogoutRequest{NameID: &saml.NameID{Value: "alice"}}); err != nil {
		t.Fatal(err)
	}
	refusedSoon(t, two, ck, "revoked")
}

// A new login replaces the browser's old session: the old one is deleted
// and announced, so a copy of the old cookie is refused everywhere.
func TestCacheReplacedSessionIsAnnounced(t *testing.T) {
	t.Parallel()
	f, _ := redisFixture(t)
	one, two := twoReplicas(t, f, f.p.store)
	old := f.login(t, assertionFor("alice", "idx-1", nil))
	if _, err := two.get(old); err != nil || !two.cached(old) {
		t.Fatalf("not cached: %v", err)
	}
	a := assertionFor("alice", "idx-2", nil)
	ck, s, err := one.p.NewSession(a, "sp-1")
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/saml/acs", nil)
	req.AddCookie(old)
	one.p.ReplaceCookie(httptest.NewRecorder(), req, ck, s)
	refusedSoon(t, two, old, "not-found")
}

// A cookie that differs from the cached one in any byte (same store key,
// wrong secret) is never served from memory.
func TestCacheNeverServesAnotherCookie(t *testing.T) {
	t.Parallel()
	f, _ := redisFixture(t)
	_, two := twoReplicas(t, f, f.p.store)
	ck := f.login(t, assertionFor("alice", "idx-1", nil))
	if _, err := two.get(ck); err != nil || !two.cached(ck) {
		t.Fatalf("not cached: %v", err)
	}
	forged := *ck
	b := []byte(forged.Value)
	b[len(b)-1] ^= 1
	if b[len(b)-1] == '.' || b[len(b)-1] == '~' {
		b[len(b)-1] = 'A'
	}
	forged.Value = string(b)
	if _, err := two.get(&forged); !errors.Is(err, samlsp.ErrNoSession) {
		t.Fatalf("a cookie with a wrong byte: err = %v, want no session", err)
	}
}

// A session is never served from memory past its absolute expiry.
func TestCacheHonoursAbsoluteExpiry(t *testing.T) {
	t.Parallel()
	f, _ := redisFixture(t)
	_, two := twoReplicas(t, f, f.p.store)
	soon := f.clock.Now().Add(10 * time.Second)
	ck := f.login(t, assertionFor("alice", "idx-1", &soon))
	if _, err := two.get(ck); err != nil || !two.cached(ck) {
		t.Fatalf("not cached: %v", err)
	}
	f.clock.Advance(11*time.Second + saml.MaxClockSkew)
	if _, err := two.get(ck); !errors.Is(err, samlsp.ErrNoSession) {
		t.Fatalf("past SessionNotOnOrAfter: err = %v, want no session", err)
	}
}

// A cache full of live sessions is swept at most once per max age, not on
// every miss: a flood of new cookies costs one scan of the cache, not one
// scan each under the write lock; a full cache serves from the store.
func TestSessionCacheFullSweepsOncePerMaxAge(t *testing.T) {
	t.Parallel()
	f := newSessionFixture(t, "sp-1", "redis")
	c, err := NewCache(f.p, CacheConfig{MaxAge: time.Second, MaxEntries: 10, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	r := replica{f.p, c}
	var cookies []*http.Cookie
	for i := range 50 {
		a := assertionFor(fmt.Sprint("user", i), "idx", nil)
		a.ID = fmt.Sprint("assertion-", i)
		cookies = append(cookies, f.login(t, a))
	}
	for _, ck := range cookies {
		if _, err := r.get(ck); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.entries) != 10 || c.sweeps != 1 {
		t.Fatalf("after 50 cookies on a cache of 10 live entries: %d entries, %d sweeps; want 10 and 1", len(c.entries), c.sweeps)
	}
	f.clock.Advance(time.Second)
	if _, err := r.get(cookies[20]); err != nil {
		t.Fatal(err)
	}
	if c.sweeps != 2 || len(c.entries) != 1 {
		t.Fatalf("once the max age passed: %d sweeps, %d entries; want 2 and 1 (the expired ones dropped)", c.sweeps, len(c.entries))
	}
}

// The invalidation channel cut mid-run, on a real redis-server: the second
// replica reaches Redis through a proxy that the test cuts (connections
// closed) or stalls (connections held, nothing delivered). While the
// channel is down a logout is made on the first replica; the second stops
// trusting its cache once its subscription says Lost (at once for a cut,
// within the store's delivery bound for a stall), and after it has
// resubscribed and flushed it still refuses the session: it never serves
// a session that was ended while it could not hear about it.
func TestCacheChannelCutNeverServesARevokedSession(t *testing.T) {
	t.Parallel()
	for _, fault := range []string{"cut", "stall"} {
		t.Run(fault, func(t *testing.T) {
			t.Parallel()
			f, srv := redisFixture(t)
			proxy := redistest.StartProxy(t, srv.Addr())
			one, two := twoReplicas(t, f, openStore(t, "redis://"+proxy.Addr()))
			ck := f.login(t, assertionFor("alice", "idx-1", nil))
			if _, err := two.get(ck); err != nil || !two.cached(ck) {
				t.Fatalf("not cached: %v", err)
			}
			gen := two.c.generation()
			if fault == "cut" {
				proxy.Cut()
			} else {
				proxy.Stall()
			}
			one.logout(t, ck)
			// The subscription may go Lost and, over a new connection
			// (the proxy forwards those), Live again within milliseconds;
			// either flushes the cache, which is what is waited for.
			waitFor(t, "the lost channel to be noticed", func() bool { return two.c.generation() > gen })
			if two.cached(ck) {
				t.Fatal("the cache still holds the session after its channel was lost")
			}
			if s, err := two.get(ck); err == nil {
				t.Fatalf("after the channel was lost, the second replica served the ended session %v", s)
			}
			proxy.Resume()
			waitTrusted(t, two.c, true)
			_, err := two.get(ck)
			wantMiss(t, err, "not-found")
		})
	}
}

// BenchmarkCacheInvalidation measures how long a logout on one replica
// takes to reach another replica's cache over a real redis-server: the
// time from the logout's start to the other replica's first refusal
// (reported as ms/invalidation; the logout's own round trips included).
//
//	go test -run '^$' -bench CacheInvalidation ./sp/session
func BenchmarkCacheInvalidation(b *testing.B) {
	f, _ := redisFixture(b)
	one, two := twoReplicas(b, f, f.p.store)
	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		a := assertionFor("alice", "idx", nil)
		a.ID = fmt.Sprint("assertion-", i)
		ck := f.login(b, a)
		if _, err := two.get(ck); err != nil || !two.cached(ck) {
			b.Fatalf("not cached: %v", err)
		}
		b.StartTimer()
		began := time.Now()
		req := httptest.NewRequest("POST", "/logout", nil)
		req.AddCookie(ck)
		if err := one.c.DeleteSession(httptest.NewRecorder(), req); err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := two.get(ck); err != nil {
				break
			}
			if time.Since(began) > 5*time.Second {
				b.Fatal("not refused within 5s")
			}
		}
		total += time.Since(began)
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/invalidation")
}
