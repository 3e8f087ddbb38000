package sp_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/redis"
	"github.com/samlha/samlha/store/redis/redistest"
)

// countedRedis is one private Redis, opened once per replica with a
// round-trip counter on every store (go-redis hooks; background work such
// as the invalidation channel's heartbeats is not counted).
func countedRedis(t *testing.T) (func(testing.TB, int) store.Store, *redistest.Counter) {
	t.Helper()
	srv := redistest.Start(t)
	c := &redistest.Counter{}
	return func(tb testing.TB, _ int) store.Store {
		st, err := store.Open(context.Background(), srv.URL(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { st.Close() })
		st.(*redis.Store).AddHook(c)
		return st
	}, c
}

// The ACS finishes a login in one round trip on Redis: the response is
// checked against the AuthnRequest the browser's binding cookie names, and
// one atomic commit consumes the login, records the assertion and stores
// the session. Counted with a go-redis hook, not timed.
func TestACSIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	stores, counter := countedRedis(t)
	top := startTopology(t, topologyConfig{Replicas: 2, Store: stores, Configure: func(_ int, c *sp.Config) { c.SessionCacheTTL = -1 }})
	for i := range 3 {
		b := top.browser()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		pf, res, err := b.LoginUntilACS(ctx, top.ProxyURL+"/app", "alice", "alice-password")
		if err != nil || pf == nil {
			cancel()
			t.Fatalf("login %d did not reach the ACS: %v %s", i, err, describe(res))
		}
		counter.Reset()
		done := b.Submit(ctx, pf)
		cancel()
		if !done.OK {
			t.Fatalf("login %d: %s", i, describe(done))
		}
		// The ACS's trips, then /app's (a session read).
		trips := counter.Trips()
		if len(trips) < 1 {
			t.Fatalf("login %d: no round trip counted", i)
		}
		acs := tripsBefore(trips, "get", "mget")
		if i > 0 && acs != 1 { // the first loads the script (NOSCRIPT, then EVAL)
			t.Errorf("login %d: the ACS made %d round trips, want 1: %v", i, acs, trips)
		}
	}
}

// tripsBefore counts the trips before the first that begins with one of
// the commands named (the next request's), leaving out a new connection's
// HELLO.
func tripsBefore(trips [][]string, next ...string) int {
	n := 0
	for _, tr := range trips {
		if len(tr) == 0 || tr[0] == "hello" {
			continue
		}
		for _, c := range next {
			if tr[0] == c {
				return n
			}
		}
		n++
	}
	return n
}

var _ = fmt.Sprint
var _ http.Handler

// A session read that is not served from the replica's cache costs one
// round trip: the record and its two revocation records at once.
func TestSessionReadIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	stores, counter := countedRedis(t)
	top := startTopology(t, topologyConfig{Replicas: 2, Store: stores, Configure: func(_ int, c *sp.Config) { c.SessionCacheTTL = -1 }})
	b := top.browser()
	if res := top.login(t, b, "alice"); !res.OK {
		t.Fatalf("login: %s", describe(res))
	}
	for _, r := range top.Replicas {
		counter.Reset()
		if code, _ := whoami(t, top, b, r); code != http.StatusOK {
			t.Fatalf("/whoami on %s: %d", r.ID, code)
		}
		if n := tripsBefore(counter.Trips()); n != 1 {
			t.Errorf("a session read on %s made %d round trips, want 1: %v", r.ID, n, counter.Trips())
		}
	}
}
