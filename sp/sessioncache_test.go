package sp_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/samlha/samlha/sp"
	"github.com/samlha/samlha/store"
	"github.com/samlha/samlha/store/memory"
)

// With the near cache, a logout on one replica reaches another within the
// cache's TTL (1s): before, the other replica may still serve the session
// from its memory; after, it refuses it. The replica that logged out
// refuses at once.
func TestSessionCacheRevocationReachesEveryReplicaWithinTTL(t *testing.T) {
	t.Parallel()
	fc := clockwork.NewFakeClockAt(time.Now())
	st := memory.New(memory.Options{})
	t.Cleanup(func() { st.Close() })
	top := startTopology(t, topologyConfig{Replicas: 2,
		Store: func(testing.TB, int) store.Store { return st },
		Configure: func(_ int, c *sp.Config) {
			c.Clock = dsig.NewFakeClock(fc)
			c.SessionCacheTTL = time.Second
		}})
	b := top.browser()
	if res := top.login(t, b, "alice"); !res.OK {
		t.Fatal(describe(res))
	}
	one, two := top.Replicas[0], top.Replicas[1]
	if code, _ := whoami(t, top, b, two); code != http.StatusOK {
		t.Fatalf("before logout, %s: %d", two.ID, code)
	}
	// Logout on replica one (the session is deleted from the store there;
	// the redirect to the IdP is not followed).
	// GET /logout shows the page with its token; the POST logs out.
	page := mustGet(one.URL + "/logout")
	for _, c := range b.Cookies(mustURL(top.ProxyURL)) {
		page.AddCookie(c)
	}
	pageResp := do(t, page)
	body, _ := io.ReadAll(pageResp.Body)
	pageResp.Body.Close()
	req, _ := http.NewRequest(http.MethodPost, one.URL+"/logout",
		strings.NewReader(url.Values{"token": {formValue(t, body, "token")}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range b.Cookies(mustURL(top.ProxyURL)) {
		req.AddCookie(c)
	}
	if resp := do(t, req); resp.StatusCode >= 400 {
		t.Fatalf("logout on %s: %d", one.ID, resp.StatusCode)
	}
	if code, _ := whoami(t, top, b, one); code != http.StatusUnauthorized {
		t.Fatalf("the replica that logged out still serves the session: %d", code)
	}
	// Replica two serves it from its cache until the TTL is over (this is
	// what the cache saves: the store round trip)...
	if code, _ := whoami(t, top, b, two); code != http.StatusOK {
		t.Fatalf("within the TTL, %s answered %d: the cache is not in use", two.ID, code)
	}
	// ...and refuses it once the TTL has passed.
	fc.Advance(time.Second + time.Millisecond)
	if code, body := whoami(t, top, b, two); code != http.StatusUnauthorized {
		t.Fatalf("1s after the logout, %s still serves the session: %d %v", two.ID, code, body)
	}
}
