package sp_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// By default, on Redis, a session is served from each replica's memory:
// a second request on a replica costs no round trip. A logout on one
// replica is refused on the other as soon as the invalidation arrives over
// Redis pub/sub (milliseconds), without any clock moving: not a TTL later.
func TestSessionCacheByDefaultAndLogoutReachesEveryReplica(t *testing.T) {
	t.Parallel()
	stores, counter := countedRedis(t)
	top := startTopology(t, topologyConfig{Replicas: 2, Store: stores})
	b := top.browser()
	if res := top.login(t, b, "alice"); !res.OK {
		t.Fatal(describe(res))
	}
	one, two := top.Replicas[0], top.Replicas[1]
	for _, r := range top.Replicas {
		if code, _ := whoami(t, top, b, r); code != http.StatusOK {
			t.Fatalf("before logout, %s: %d", r.ID, code)
		}
		counter.Reset()
		if code, _ := whoami(t, top, b, r); code != http.StatusOK {
			t.Fatalf("before logout, %s: %d", r.ID, code)
		}
		if n := storeTrips(counter.Trips()); n != 0 {
			t.Fatalf("a second session read on %s made %d round trips, want 0 (served from memory): %v", r.ID, n, counter.Trips())
		}
	}
	// Logout on replica one: GET /logout shows the page with its token;
	// the POST logs out (the redirect to the IdP is not followed).
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _ := whoami(t, top, b, two)
		if code == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("10s after the logout on %s, %s still serves the session: %d", one.ID, two.ID, code)
		}
		time.Sleep(time.Millisecond)
	}
	for range 5 {
		if code, _ := whoami(t, top, b, two); code != http.StatusUnauthorized {
			t.Fatalf("once refused, %s served the ended session again: %d", two.ID, code)
		}
	}
}

// storeTrips counts the round trips of trips that read or write data,
// leaving out the invalidation channel's own heartbeats.
func storeTrips(trips [][]string) int {
	n := 0
	for _, tr := range trips {
		if len(tr) == 0 || tr[0] == "hello" || tr[0] == "publish" || tr[0] == "ping" {
			continue
		}
		n++
	}
	return n
}
